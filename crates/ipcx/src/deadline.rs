//! Deadlines from timeouts of any size.
//!
//! A timeout comes from a URL (`?timeout=`, up to about 1.8e19 s), a CLI
//! flag or a caller (`Duration::MAX`), and `Instant + Duration` panics when
//! the sum does not fit. Every deadline in the crate is made here: a
//! timeout too far away for `Instant` means no deadline.

use std::time::{Duration, Instant};

/// About a century: the horizon of [`far_after`]. A wait this long is a
/// wait without a deadline in practice, and `Instant` on every supported
/// target holds it.
const HORIZON: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The instant `timeout` from now; `None` (no deadline: wait as long as it
/// takes) when that is beyond what `Instant` can hold.
pub(crate) fn after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The instant `timeout` from now, for code that needs an `Instant`: a
/// timeout beyond a century is cut to a century, which no process waits
/// out.
pub(crate) fn far_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout.min(HORIZON)).unwrap_or(now)
}

/// Sleep-and-retry with doubling pauses (1 ms up to a cap), for waits on
/// something no event announces (a file to appear, a lock to come free).
#[derive(Debug)]
pub(crate) struct Backoff {
    pause: Duration,
    cap: Duration,
}

impl Backoff {
    /// Pauses from 1 ms, doubling up to `cap`.
    pub(crate) fn new(cap: Duration) -> Backoff {
        Backoff {
            pause: Duration::from_millis(1),
            cap,
        }
    }

    /// Pauses from `first`, doubling up to `cap`: for a wait whose event
    /// usually comes within microseconds.
    pub(crate) fn starting_at(first: Duration, cap: Duration) -> Backoff {
        Backoff { pause: first, cap }
    }

    /// The next pause (for a caller that waits its own way, as an async
    /// task does).
    pub(crate) fn next_pause(&mut self) -> Duration {
        let pause = self.pause;
        self.pause = (self.pause * 2).min(self.cap);
        pause
    }

    /// Sleeps the next pause, never past `deadline`; `false` (without
    /// sleeping) once the deadline has passed.
    pub(crate) fn sleep_until(&mut self, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(self.pause.min(deadline - now));
        self.pause = (self.pause * 2).min(self.cap);
        true
    }

    /// [`Backoff::sleep_until`] where `None` is no deadline (always sleeps).
    pub(crate) fn sleep_within(&mut self, deadline: Option<Instant>) -> bool {
        match deadline {
            Some(d) => self.sleep_until(d),
            None => {
                std::thread::sleep(self.next_pause());
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_mean_no_deadline() {
        assert_eq!(after(Duration::MAX), None);
        assert!(far_after(Duration::MAX) > Instant::now() + Duration::from_secs(3600 * 24 * 365));
        let soon = far_after(Duration::from_millis(5));
        assert!(soon <= Instant::now() + Duration::from_millis(5));
    }

    #[test]
    fn a_backoff_doubles_to_its_cap_and_stops_at_the_deadline() {
        let mut b = Backoff::starting_at(Duration::from_millis(1), Duration::from_millis(3));
        let pauses: Vec<_> = (0..4).map(|_| b.next_pause()).collect();
        assert_eq!(pauses, [1, 2, 3, 3].map(Duration::from_millis));
        // A deadline that passed: no sleep, so the pause does not grow.
        let mut b = Backoff::starting_at(Duration::from_millis(1), Duration::from_millis(8));
        let past = Instant::now();
        assert!(!b.sleep_until(past));
        assert!(!b.sleep_within(Some(past)), "the same, as an Option");
        // No deadline: it sleeps the first pause, and the next is doubled.
        assert!(b.sleep_within(None));
        assert_eq!(b.next_pause(), Duration::from_millis(2));
    }
}
