//! Event counts: how a side of a shared-memory ring, queue or primitive
//! sleeps until the other changes something, with no system call while
//! nobody sleeps. The one implementation for `shm` and `sync`.
//!
//! The waiter announces itself (`waiting += 1`), fences, re-checks its
//! condition, and sleeps on the futex word unless the word moved; the
//! notifier changes the shared state, fences, and only if someone announced
//! bumps the word and wakes. The two fences are Dekker's pattern: either
//! the waiter sees the change, or the notifier sees the waiter.

use std::time::{Duration, Instant};

pub(crate) mod doorbell;
pub(crate) mod primitive;

use crate::endpoint::WaitStrategy;
use primitive::{AtomicU32, Ordering, fence, futex};

/// One cache line holding one value, so two sides never share a line.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Line<T>(pub(crate) T);

/// How often a sleeping waiter wakes to check that its peer still lives.
pub(crate) const LIVENESS_INTERVAL: Duration = Duration::from_millis(20);

/// A check a waiter makes at most once per [`LIVENESS_INTERVAL`] (whether
/// a holder or peer still lives: a `/proc` read costs microseconds), never
/// before it has waited one interval.
#[derive(Debug)]
pub(crate) struct Liveness {
    next: Instant,
}

impl Liveness {
    pub(crate) fn new() -> Liveness {
        Liveness {
            next: Instant::now() + LIVENESS_INTERVAL,
        }
    }

    /// One whose first check is due at once.
    pub(crate) fn due_now() -> Liveness {
        Liveness {
            next: Instant::now(),
        }
    }

    /// Whether the check is due now (and, if so, the next one an interval
    /// later).
    pub(crate) fn due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + LIVENESS_INTERVAL;
        true
    }
}

/// How long one sleep of such a waiter lasts: an interval, or less when
/// `deadline` comes first.
pub(crate) fn sleep_slice(deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(d) => LIVENESS_INTERVAL.min(d.saturating_duration_since(Instant::now())),
        None => LIVENESS_INTERVAL,
    }
}

/// A futex word and a count of those sleeping on it: an event count.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct EventCount {
    pub(crate) word: AtomicU32,
    /// How many sleep (or are about to).
    pub(crate) waiting: AtomicU32,
}

impl EventCount {
    #[cfg(all(test, ipcx_loom))]
    pub(crate) fn new(word: AtomicU32, waiting: AtomicU32) -> EventCount {
        EventCount { word, waiting }
    }

    /// A zeroed event count (the loom models build state in place).
    #[cfg(all(test, ipcx_loom))]
    pub(crate) fn zero() -> EventCount {
        EventCount {
            word: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
        }
    }

    /// Wakes everyone who sleeps on it (a side going away).
    pub(crate) fn wake_all(&self) {
        self.word.fetch_add(1, Ordering::Release);
        let _ = futex::wake(&self.word, futex::ALL);
    }

    // The form the sync primitives use: the sleeper announces itself and
    // reads the word *before* it lets go of what it waits on (a mutex, a
    // reader hold); the notifier changes the shared state, bumps the word,
    // and wakes only if someone announced. The fences on both sides are
    // Dekker's pattern: either the sleeper's futex sees the bumped word, or
    // the notifier sees the sleeper.

    /// Announces a sleeper; returns the word to pass to [`EventCount::sleep`].
    pub(crate) fn prepare(&self) -> u32 {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.word.load(Ordering::SeqCst)
    }

    /// Sleeps unless woken since [`EventCount::prepare`] returned `seen`
    /// (or until `timeout`), then withdraws the announcement.
    pub(crate) fn sleep(&self, seen: u32, timeout: Option<Duration>) {
        let _ = futex::wait(&self.word, seen, timeout);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Withdraws an announcement without sleeping.
    pub(crate) fn cancel(&self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Wakes up to `n` sleepers (after the caller changed the state).
    pub(crate) fn wake(&self, n: u32) {
        self.word.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) != 0 {
            let _ = futex::wake(&self.word, n);
        }
    }
}

#[cfg(not(ipcx_loom))]
const _: () = {
    assert!(std::mem::size_of::<EventCount>() == 8);
    assert!(std::mem::offset_of!(EventCount, waiting) == 4);
};

/// Why a wait ended without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    TimedOut,
    PeerGone,
}

/// How a side waits: strategy, deadline, and how to tell the peer is gone.
pub(crate) struct Waiting<'a> {
    pub(crate) strategy: WaitStrategy,
    pub(crate) spin: Duration,
    pub(crate) deadline: Option<Instant>,
    pub(crate) peer_gone: &'a dyn Fn() -> bool,
}

pub(crate) fn notify(e: &EventCount) {
    // Pairs with the fence in `wait`: either the waiter sees our update, or
    // we see its `waiting` flag (Dekker's pattern).
    fence(Ordering::SeqCst);
    if e.waiting.load(Ordering::Relaxed) != 0 {
        e.word.fetch_add(1, Ordering::Release);
        let _ = futex::wake(&e.word, futex::ALL);
    }
}

pub(crate) fn wait(
    e: &EventCount,
    ready: impl Fn() -> bool,
    how: &Waiting<'_>,
) -> Result<(), WaitEnd> {
    let spin_until = match how.strategy {
        WaitStrategy::Block => None,
        WaitStrategy::Spin => Some(how.deadline),
        WaitStrategy::Adaptive => Some(Some(crate::deadline::far_after(how.spin))),
    };
    if let Some(until) = spin_until {
        let mut n = 0u32;
        let mut liveness = Liveness::new();
        loop {
            if ready() {
                return Ok(());
            }
            std::hint::spin_loop();
            n = n.wrapping_add(1);
            if n.is_multiple_of(1024) {
                let now = Instant::now();
                if how.deadline.is_some_and(|d| now >= d) && how.strategy == WaitStrategy::Spin {
                    return Err(WaitEnd::TimedOut);
                }
                if until.is_some_and(|u| now >= u) {
                    break;
                }
                if liveness.due() && (how.peer_gone)() {
                    return Err(WaitEnd::PeerGone);
                }
            }
        }
    }
    loop {
        // A read-modify-write reads the newest value: a stale `seen` would
        // make the futex return at once, again and again.
        let seen = e.word.fetch_add(0, Ordering::Acquire);
        e.waiting.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if ready() {
            e.waiting.fetch_sub(1, Ordering::Relaxed);
            return Ok(());
        }
        let _ = futex::wait(&e.word, seen, Some(sleep_slice(how.deadline)));
        e.waiting.fetch_sub(1, Ordering::Relaxed);
        if ready() {
            return Ok(());
        }
        if (how.peer_gone)() {
            return Err(WaitEnd::PeerGone);
        }
        if how.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(WaitEnd::TimedOut);
        }
    }
}
