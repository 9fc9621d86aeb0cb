//! [`Event`]: a named notification, manual or auto reset, on a futex word.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::owner::{process_dead, this_process};
use super::place::{Place, PrimitiveKind, State, ValueLayout, footprint};
use crate::error::Result;
use crate::error::{Error, ErrorKind};
use crate::shm::Segment;
use crate::wait::primitive::{AtomicU32, AtomicU64, Ordering, fence, futex};

/// What setting an [`Event`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventMode {
    /// Stays set, releasing every waiter, until [`Event::reset`].
    Manual,
    /// Releases one waiter, and is reset by that waiter's wake-up.
    Auto,
}

#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct EventState {
    /// 1 set, 0 not: the futex word.
    set: AtomicU32,
    waiting: AtomicU32,
    /// 1 auto reset, 0 manual.
    auto: AtomicU32,
    /// Places of async waiters asking `set` to ring their doorbell.
    armed: AtomicU64,
    /// Which process holds each doorbell number ([`pack`]ed pid and
    /// start time; 0 free).
    ///
    /// [`pack`]: super::owner::pack
    bell_owners: [AtomicU64; MAX_ASYNC_WAITERS],
}

/// Async waiters an event can have at once (doorbell numbers).
pub(crate) const MAX_ASYNC_WAITERS: usize = 64;

#[cfg(not(ipcx_loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(EventState, waiting) == 4);
    assert!(offset_of!(EventState, auto) == 8);
    assert!(offset_of!(EventState, armed) == 16);
    assert!(offset_of!(EventState, bell_owners) == 24);
    assert!(size_of::<EventState>() == 576);
};

// SAFETY: repr(C), align 64, atomics only.
unsafe impl State for EventState {
    const KIND: PrimitiveKind = PrimitiveKind::Event;
}

impl EventState {
    #[cfg(all(test, ipcx_loom))]
    pub(crate) fn new(mode: EventMode) -> EventState {
        EventState {
            set: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
            auto: AtomicU32::new(u32::from(mode == EventMode::Auto)),
            armed: AtomicU64::new(0),
            bell_owners: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn mode(&self) -> EventMode {
        if self.auto.load(Ordering::Relaxed) != 0 {
            EventMode::Auto
        } else {
            EventMode::Manual
        }
    }

    /// Sets the event and wakes futex sleepers; returns the doorbells to
    /// ring (async waiters that sleep).
    pub(crate) fn set(&self) -> u64 {
        self.set.store(1, Ordering::SeqCst);
        // Dekker with `wait` and `arm`: either they see the store, or we
        // see them waiting.
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) != 0 {
            let n = match self.mode() {
                EventMode::Manual => futex::ALL,
                EventMode::Auto => 1,
            };
            let _ = futex::wake(&self.set, n);
        }
        self.armed.load(Ordering::Relaxed)
    }

    /// Claims a doorbell number for this process (a free one, or one a
    /// dead process held).
    pub(crate) fn claim_bell(&self) -> Option<usize> {
        let me = this_process();
        self.bell_owners.iter().position(|o| {
            let who = o.load(Ordering::Acquire);
            (who == 0 || process_dead(who))
                && o.compare_exchange(who, me, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
        })
    }

    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn release_bell(&self, k: usize) {
        self.disarm(k);
        self.bell_owners[k].store(0, Ordering::Release);
    }

    /// Asks `set` to ring doorbell `k`; fences, so a `set` before
    /// this is seen by the check that follows, or `set` sees the bit.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn arm(&self, k: usize) {
        self.armed.fetch_or(1 << k, Ordering::AcqRel);
        fence(Ordering::SeqCst);
    }

    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn disarm(&self, k: usize) {
        self.armed.fetch_and(!(1 << k), Ordering::AcqRel);
    }

    pub(crate) fn reset(&self) {
        self.set.store(0, Ordering::Release);
    }

    /// Consumes (auto) or observes (manual) a set event.
    pub(crate) fn try_take(&self) -> bool {
        match self.mode() {
            EventMode::Manual => self.set.load(Ordering::Acquire) != 0,
            // Any value but 0 is set (another process may have written 2).
            EventMode::Auto => {
                let v = self.set.load(Ordering::Relaxed);
                v != 0
                    && self
                        .set
                        .compare_exchange(v, 0, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
            }
        }
    }

    pub(crate) fn wait(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.try_take() {
                return true;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            self.waiting.fetch_add(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let left = deadline.map(|d| d.saturating_duration_since(now));
            let _ = futex::wait(&self.set, 0, left);
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            // An auto event woke us, but another waiter may take it first:
            // then sleep again (the set that woke us was consumed once).
        }
    }
}

/// A notification shared between processes: [`Event::set`] releases
/// waiters; [`EventMode::Manual`] stays set until [`Event::reset`],
/// [`EventMode::Auto`] releases one waiter per set.
///
/// ```no_run
/// use std::time::Duration;
/// use ipcx::sync::{Event, EventMode};
/// # fn main() -> ipcx::Result<()> {
/// let ready = Event::create("cache-warm", EventMode::Manual)?;
/// // Other processes: Event::open("cache-warm")?.wait()?;
/// ready.set();
/// assert!(ready.wait_timeout(Duration::ZERO)?);
/// # Ok(()) }
/// ```
///
/// On tokio, `ipcx::tokio::AsyncEvent` awaits it without a thread (feature
/// `async`).
#[derive(Debug)]
pub struct Event {
    place: Place<EventState>,
    /// The async waiters' doorbells this handle rang, kept open.
    ringer: crate::wait::doorbell::Ringer,
}

impl Event {
    /// Creates the event `NAME`, not set.
    pub fn create(name: &str, mode: EventMode) -> Result<Event> {
        Ok(Event {
            place: Place::create_named(name, ValueLayout::NONE, 0, initializer(mode))?,
            ringer: Default::default(),
        })
    }

    /// Opens the event `NAME`, waiting up to `?timeout=` for it.
    pub fn open(name: &str) -> Result<Event> {
        Event::open_until(name, None)
    }

    /// [`Event::open`], waiting until `deadline` (the URL's `?timeout=`
    /// with `None`).
    pub(crate) fn open_until(name: &str, deadline: Option<std::time::Instant>) -> Result<Event> {
        Ok(Event {
            place: Place::open_named_until(name, ValueLayout::NONE, deadline)?,
            ringer: Default::default(),
        })
    }

    /// Creates one at `offset` in `seg` ([`Event::footprint`] bytes).
    ///
    /// # Safety
    #[doc = create_in_safety!()]
    pub unsafe fn create_in(seg: &Arc<Segment>, offset: usize, mode: EventMode) -> Result<Event> {
        Ok(Event {
            // SAFETY: forwarded to the caller.
            place: unsafe {
                Place::create_in(seg, offset, ValueLayout::NONE, 0, initializer(mode))?
            },
            ringer: Default::default(),
        })
    }

    /// Opens the one created at `offset` in `seg`.
    pub fn open_in(seg: &Arc<Segment>, offset: usize) -> Result<Event> {
        Ok(Event {
            place: Place::open_in(seg, offset, ValueLayout::NONE)?,
            ringer: Default::default(),
        })
    }

    /// Bytes an `Event` takes in a segment.
    pub const fn footprint() -> usize {
        footprint::<EventState>(0)
    }

    /// Sets the event, waking every waiter (manual) or one (auto).
    pub fn set(&self) {
        let bells = self.place.state().set();
        if bells != 0 {
            self.ringer.ring(self.place.name(), bells);
        }
    }

    /// Claims a doorbell for an async waiter (see
    /// `ipcx::tokio::AsyncEvent`): the segment and the doorbell's number.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn claim_bell(&self) -> Result<(&crate::shm::Segment, usize)> {
        if !self.place.is_named_whole() {
            return Err(Error::new(
                ErrorKind::InvalidArgument(
                    "awaiting an event on tokio needs a named event (Event::create), not one placed in a segment".into(),
                ),
                "open",
            ));
        }
        let k = self.place.state().claim_bell().ok_or_else(|| {
            Error::new(
                ErrorKind::LimitReached(format!(
                    "the event already has {MAX_ASYNC_WAITERS} async waiters; share one AsyncEvent per process"
                )),
                "open",
            )
        })?;
        Ok((self.place.segment(), k))
    }

    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn state(&self) -> &EventState {
        self.place.state()
    }

    /// Clears a manual event.
    pub fn reset(&self) {
        self.place.state().reset();
    }

    /// Whether it is set now.
    pub fn is_set(&self) -> bool {
        self.place.state().set.load(Ordering::Acquire) != 0
    }

    /// The event's mode.
    pub fn mode(&self) -> EventMode {
        self.place.state().mode()
    }

    /// Waits until the event is set (and, auto, takes it).
    pub fn wait(&self) -> Result<()> {
        self.place.state().wait(None);
        Ok(())
    }

    /// [`Event::wait`] for at most `timeout`; `false` if it was not set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        Ok(self.place.state().wait(crate::deadline::after(timeout)))
    }
}

fn initializer(mode: EventMode) -> impl FnOnce(&EventState, *mut u8) -> Result<()> {
    move |s, _| {
        s.auto
            .store(u32::from(mode == EventMode::Auto), Ordering::Relaxed);
        Ok(())
    }
}

/// `ipcx ls`'s view.
pub(crate) fn describe(place: &Place<EventState>) -> String {
    let s = place.state();
    let mode = match s.mode() {
        EventMode::Manual => "manual",
        EventMode::Auto => "auto",
    };
    let set = if s.set.load(Ordering::Relaxed) != 0 {
        "set"
    } else {
        "not set"
    };
    format!("{mode}, {set}")
}
