//! [`Monitor`]: a [`Mutex`] and a [`Condvar`] in one named object.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zerocopy::FromBytes;

use super::condvar::{CondState, Condvar, WaitTimeoutResult};
use super::error::LockResult;
use super::mutex::{Mutex, MutexGuard, MutexState};
use super::place::{Place, ValueLayout, named_segment, open_segment};
use crate::error::Result;
use crate::shm::Segment;

/// State shared between processes, with a lock and a condition to wait for
/// on it: `wait_until(|state| ...)` sleeps until another process changes
/// the state so that the predicate holds and notifies.
///
/// ```no_run
/// use ipcx::sync::{LockError, Monitor};
/// # fn main() -> ipcx::Result<()> {
/// let jobs = Monitor::<u32>::create("pending-jobs", 0)?;
/// // A producer process:   *jobs.lock().map_err(LockError::into_error)? += 1;
/// //                       jobs.notify_all();
/// // A consumer process:
/// let mut pending = jobs.wait_until(|n| *n > 0).map_err(LockError::into_error)?;
/// *pending -= 1;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Monitor<T> {
    mutex: Mutex<T>,
    cond: Condvar,
}

impl<T: FromBytes + Send> Monitor<T> {
    /// Creates the monitor `NAME` (a segment `shm:NAME`) holding `init`.
    pub fn create(name: &str, init: T) -> Result<Monitor<T>> {
        let seg = named_segment(name, Monitor::<T>::footprint(), |seg| {
            // SAFETY: the segment is new and nobody else can open it yet;
            // the mutex and the condvar split it.
            unsafe {
                Place::<MutexState>::init_at(
                    seg,
                    0,
                    ValueLayout::of::<T>(),
                    0,
                    Mutex::initializer(init),
                )?;
                Place::<CondState>::init_at(
                    seg,
                    Mutex::<T>::footprint(),
                    ValueLayout::NONE,
                    0,
                    |_, _| Ok(()),
                )
            }
        })?;
        Monitor::open_in(&seg, 0)
    }

    /// Opens the monitor `NAME`, waiting up to `?timeout=` for it.
    pub fn open(name: &str) -> Result<Monitor<T>> {
        let (seg, ep) = open_segment(name, None)?;
        Monitor::open_in(&seg, 0).map_err(|e| e.at(&ep))
    }

    /// Creates one at `offset` in `seg` ([`Monitor::footprint`] bytes).
    ///
    /// # Safety
    #[doc = create_in_safety!()]
    pub unsafe fn create_in(seg: &Arc<Segment>, offset: usize, init: T) -> Result<Monitor<T>> {
        Ok(Monitor {
            // SAFETY: the mutex takes the first part of the footprint the
            // caller vouched for (unused, at a place it may create in).
            mutex: unsafe { Mutex::create_in(seg, offset, init)? },
            // SAFETY: the condvar takes the rest of that footprint, after
            // the mutex.
            cond: unsafe { Condvar::create_in(seg, offset + Mutex::<T>::footprint())? },
        })
    }

    /// Opens the one created at `offset` in `seg`.
    pub fn open_in(seg: &Arc<Segment>, offset: usize) -> Result<Monitor<T>> {
        Ok(Monitor {
            mutex: Mutex::open_in(seg, offset)?,
            cond: Condvar::open_in(seg, offset + Mutex::<T>::footprint())?,
        })
    }

    /// Bytes a `Monitor<T>` takes in a segment.
    pub const fn footprint() -> usize {
        Mutex::<T>::footprint() + Condvar::footprint()
    }

    /// Locks the state (see [`Mutex::lock`]).
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        self.mutex.lock()
    }

    /// Locks the state, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<MutexGuard<'_, T>> {
        self.mutex.lock_timeout(timeout)
    }

    /// Locks the state and waits until `ready(&state)` holds; returns it
    /// locked.
    pub fn wait_until(&self, mut ready: impl FnMut(&T) -> bool) -> LockResult<MutexGuard<'_, T>> {
        self.cond.wait_while(self.mutex.lock()?, |t| !ready(t))
    }

    /// [`Monitor::wait_until`] for at most `timeout` in all (locking
    /// included); the state comes back locked either way.
    pub fn wait_until_timeout(
        &self,
        mut ready: impl FnMut(&T) -> bool,
        timeout: Duration,
    ) -> LockResult<(MutexGuard<'_, T>, WaitTimeoutResult)> {
        let start = Instant::now();
        let guard = self
            .mutex
            .lock_timeout(timeout)
            .map_err(|e| e.map(|g| (g, WaitTimeoutResult::new(false))))?;
        let left = timeout.saturating_sub(start.elapsed());
        self.cond.wait_timeout_while(guard, left, |t| !ready(t))
    }

    /// Wakes one waiter (after changing the state).
    pub fn notify_one(&self) {
        self.cond.notify_one();
    }

    /// Wakes every waiter (after changing the state).
    pub fn notify_all(&self) {
        self.cond.notify_all();
    }
}
