//! [`Condvar`]: a condition variable for [`Mutex`], on a futex sequence
//! word.
//!
//! A waiter reads the word while it still holds the mutex, unlocks, and
//! sleeps unless the word moved; a notifier bumps the word and wakes. A
//! waiter that dies leaves nothing behind but a waiter count that costs the
//! next notify one needless system call: unlike glibc's condition variable,
//! whose group bookkeeping a dead waiter can leave waiting forever, nothing
//! here can hang.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zerocopy::FromBytes;

use super::error::LockResult;
use super::mutex::{Mutex, MutexGuard};
use super::place::{Place, PrimitiveKind, State, ValueLayout, footprint};
use crate::error::Result;
use crate::shm::Segment;
use crate::sys::pthread;
use crate::wait::EventCount;
use crate::wait::primitive::futex;

/// A condition variable's state: one [`EventCount`].
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct CondState {
    signal: EventCount,
}

#[cfg(not(ipcx_loom))]
const _: () = assert!(std::mem::size_of::<CondState>() == 64);

// SAFETY: repr(C), align 64, atomics only.
unsafe impl State for CondState {
    const KIND: PrimitiveKind = PrimitiveKind::Condvar;
}

/// Whether a timed wait ended because time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    pub(crate) fn new(timed_out: bool) -> WaitTimeoutResult {
        WaitTimeoutResult(timed_out)
    }

    /// True if the wait ran out of time (not notified).
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// A condition variable shared between processes, used with a [`Mutex`]
/// (see [`super::Monitor`] for the two in one object).
///
/// ```no_run
/// use ipcx::sync::{Condvar, LockError, Mutex};
/// # fn main() -> ipcx::Result<()> {
/// let ready = Mutex::<u32>::open("jobs-ready")?;
/// let cond = Condvar::open("jobs-cond")?;
/// // A count needs no repair after a holder died, so `OwnerDied` may end
/// // this program (leaving the lock not recoverable) through `into_error`.
/// let guard = ready.lock().map_err(LockError::into_error)?;
/// let guard = cond.wait_while(guard, |n| *n == 0).map_err(LockError::into_error)?;
/// println!("{} jobs", *guard);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Condvar {
    place: Place<CondState>,
}

impl Condvar {
    /// Creates the condition variable `NAME` (a segment `shm:NAME`).
    pub fn create(name: &str) -> Result<Condvar> {
        Ok(Condvar {
            place: Place::create_named(name, ValueLayout::NONE, 0, |_, _| Ok(()))?,
        })
    }

    /// Opens the condition variable `NAME`, waiting up to `?timeout=`.
    pub fn open(name: &str) -> Result<Condvar> {
        Ok(Condvar {
            place: Place::open_named(name, ValueLayout::NONE)?,
        })
    }

    /// Creates one at `offset` in `seg` ([`Condvar::footprint`] bytes).
    ///
    /// # Safety
    #[doc = create_in_safety!()]
    pub unsafe fn create_in(seg: &Arc<Segment>, offset: usize) -> Result<Condvar> {
        Ok(Condvar {
            // SAFETY: forwarded to the caller.
            place: unsafe { Place::create_in(seg, offset, ValueLayout::NONE, 0, |_, _| Ok(()))? },
        })
    }

    /// Opens the one created at `offset` in `seg`.
    pub fn open_in(seg: &Arc<Segment>, offset: usize) -> Result<Condvar> {
        Ok(Condvar {
            place: Place::open_in(seg, offset, ValueLayout::NONE)?,
        })
    }

    /// Bytes a `Condvar` takes in a segment.
    pub const fn footprint() -> usize {
        footprint::<CondState>(0)
    }

    /// Unlocks, sleeps until notified (or spuriously), and locks again.
    /// [`super::LockError::OwnerDied`] if a holder of the mutex died meanwhile.
    pub fn wait<'a, T: FromBytes + Send>(
        &self,
        guard: MutexGuard<'a, T>,
    ) -> LockResult<MutexGuard<'a, T>> {
        self.wait_inner(guard, None)
    }

    /// [`Condvar::wait`] for at most `timeout`.
    pub fn wait_timeout<'a, T: FromBytes + Send>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let start = Instant::now();
        self.wait_inner(guard, Some(timeout))
            .map(|g| (g, WaitTimeoutResult(start.elapsed() >= timeout)))
            .map_err(|e| e.map(|g| (g, WaitTimeoutResult(false))))
    }

    /// Waits while `condition` holds, re-checking after every wake-up.
    pub fn wait_while<'a, T: FromBytes + Send>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<MutexGuard<'a, T>> {
        while condition(&mut guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// [`Condvar::wait_while`] for at most `timeout` in all.
    pub fn wait_timeout_while<'a, T: FromBytes + Send>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let deadline = crate::deadline::after(timeout);
        while condition(&mut guard) {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Ok((guard, WaitTimeoutResult(true)));
            }
            guard = self
                .wait_inner(guard, left)
                .map_err(|e| e.map(|g| (g, WaitTimeoutResult(false))))?;
        }
        Ok((guard, WaitTimeoutResult(false)))
    }

    fn wait_inner<'a, T: FromBytes + Send>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Option<Duration>,
    ) -> LockResult<MutexGuard<'a, T>> {
        let state = &self.place.state().signal;
        let mutex: &'a Mutex<T> = guard.mutex();
        let seen = state.prepare();
        // The guard's unlock happens here, by hand, so that relocking
        // hands back a new guard.
        std::mem::forget(guard);
        // SAFETY: this thread held the mutex (the guard proved it).
        if let Err(e) = unsafe { pthread::unlock(mutex.raw()) } {
            tracing::error!(error = %e, "unlocking a shared mutex failed");
        }
        state.sleep(seen, timeout);
        // SAFETY: the mutex stays mapped while `mutex` lives.
        mutex.guard(unsafe { pthread::lock(mutex.raw()) }, false)
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.place.state().signal.wake(1);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.place.state().signal.wake(futex::ALL);
    }
}
