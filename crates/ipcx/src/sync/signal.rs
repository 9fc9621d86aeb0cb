//! [`Signal`]: an event count — a futex sequence word and a count of
//! sleepers — for "sleep until something changed" with no system call on
//! the notifier's side while nobody sleeps.
//!
//! The sleeper announces itself and reads the word *before* it lets go of
//! what it waits on (a mutex, a reader hold); the notifier changes the
//! shared state, bumps the word, and wakes only if someone announced. The
//! fences on both sides are Dekker's pattern: either the sleeper's futex
//! sees the bumped word, or the notifier sees the sleeper.

use std::time::Duration;

use crate::shm::primitive::{AtomicU32, Ordering, fence, futex};

#[repr(C)]
#[derive(Debug)]
pub(crate) struct Signal {
    seq: AtomicU32,
    waiting: AtomicU32,
}

#[cfg(not(ipcx_loom))]
const _: () = {
    assert!(std::mem::size_of::<Signal>() == 8);
    assert!(std::mem::offset_of!(Signal, waiting) == 4);
};

impl Signal {
    #[cfg(all(test, ipcx_loom))]
    pub(crate) fn new() -> Signal {
        Signal {
            seq: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
        }
    }

    /// Announces a sleeper; returns the word to pass to [`Signal::sleep`].
    pub(crate) fn prepare(&self) -> u32 {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.seq.load(Ordering::SeqCst)
    }

    /// Sleeps unless notified since [`Signal::prepare`] returned `seen`
    /// (or until `timeout`), then withdraws the announcement.
    pub(crate) fn sleep(&self, seen: u32, timeout: Option<Duration>) {
        let _ = futex::wait(&self.seq, seen, timeout);
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Withdraws an announcement without sleeping.
    pub(crate) fn cancel(&self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Wakes up to `n` sleepers (after the caller changed the state).
    pub(crate) fn notify(&self, n: u32) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) != 0 {
            let _ = futex::wake(&self.seq, n);
        }
    }
}
