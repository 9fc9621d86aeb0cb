//! [`SpinLock`]: an [`OwnerLock`] that never sleeps in the kernel.

use std::marker::PhantomData;
use std::mem::size_of;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use zerocopy::FromBytes;

use super::error::{LockResult, from_owner};
use super::owner::{Acquired, NotAcquired, OwnerLock, Spinning};
use super::place::{
    Place, PrimitiveKind, State, ValueLayout, footprint, value_constructors, write_value,
};
use crate::error::Result;
use crate::shm::Segment;

#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct SpinState {
    lock: OwnerLock,
}

#[cfg(not(ipcx_loom))]
const _: () = assert!(std::mem::size_of::<SpinState>() == 64);

// SAFETY: repr(C), align 64, atomics only.
unsafe impl State for SpinState {
    const KIND: PrimitiveKind = PrimitiveKind::SpinLock;
}

/// A spin lock shared between processes, guarding a `T`, for critical
/// sections of a few hundred nanoseconds.
///
/// A locker spins with exponential backoff, then yields its CPU between
/// attempts; it never sleeps in the kernel, so on a busy machine a
/// [`super::Mutex`] is kinder. A holder that dies is detected by a waiter
/// every 20 ms and reported as [`super::LockError::OwnerDied`].
///
/// ```no_run
/// use ipcx::sync::{LockError, SpinLock};
/// # fn main() -> ipcx::Result<()> {
/// let head = SpinLock::<u64>::create("ring-head", 0)?;
/// // `?` needs a decision about a dead holder: here, give the lock up.
/// *head.lock().map_err(LockError::into_error)? += 1;
/// # Ok(()) }
/// ```
pub struct SpinLock<T> {
    place: Place<SpinState>,
    _value: PhantomData<T>,
}

// SAFETY: the value is reached only under the lock; `T: Send` as with
// `std::sync::Mutex`.
unsafe impl<T: Send> Send for SpinLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> std::fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpinLock")
            .field("name", &self.place.name())
            .finish_non_exhaustive()
    }
}

impl<T: FromBytes + Send> SpinLock<T> {
    value_constructors!("spin lock", SpinState, write_value);

    fn from_place(place: Place<SpinState>) -> SpinLock<T> {
        SpinLock {
            place,
            _value: PhantomData,
        }
    }

    fn guard(
        &self,
        r: std::result::Result<Acquired, NotAcquired>,
    ) -> LockResult<SpinLockGuard<'_, T>> {
        from_owner(r, || SpinLockGuard {
            lock: self,
            _thread: PhantomData,
        })
    }

    /// Locks, spinning (then yielding) as long as it takes.
    pub fn lock(&self) -> LockResult<SpinLockGuard<'_, T>> {
        self.guard(self.place.state().lock.lock(Spinning::Only, None))
    }

    /// Locks if free (or held by a thread that died).
    pub fn try_lock(&self) -> LockResult<SpinLockGuard<'_, T>> {
        self.guard(self.place.state().lock.try_lock())
    }

    /// Locks, trying for at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<SpinLockGuard<'_, T>> {
        let deadline = crate::deadline::after(timeout);
        self.guard(self.place.state().lock.lock(Spinning::Only, deadline))
    }
}

/// Holds a [`SpinLock`]; unlocks when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct SpinLockGuard<'a, T: FromBytes + Send> {
    lock: &'a SpinLock<T>,
    /// Not `Send`: the lock word names the locking thread, whose death
    /// frees it.
    _thread: PhantomData<*const ()>,
}

impl<T: FromBytes + Send> SpinLockGuard<'_, T> {
    /// Marks the data repaired after [`super::LockError::OwnerDied`]. Without it,
    /// dropping this guard makes the lock [`super::LockError::NotRecoverable`].
    pub fn make_consistent(&mut self) {
        self.lock.place.state().lock.make_consistent();
    }
}

impl<T: FromBytes + Send> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: any bytes are a valid T; only reached under the lock.
        unsafe { &*self.lock.place.value().cast::<T>() }
    }
}

impl<T: FromBytes + Send> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; the lock excludes every other thread.
        unsafe { &mut *self.lock.place.value().cast::<T>() }
    }
}

impl<T: FromBytes + Send> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.place.state().lock.unlock();
    }
}

impl<T: FromBytes + Send> std::fmt::Debug for SpinLockGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpinLockGuard")
    }
}

/// `ipcx ls`'s view.
pub(crate) fn describe(place: &Place<SpinState>) -> String {
    place.state().lock.describe()
}
