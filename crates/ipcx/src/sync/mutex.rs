//! [`Mutex`]: a robust, process-shared pthread mutex guarding a value in
//! shared memory.
//!
//! Why pthread and not our own futex lock: glibc already registers a robust
//! list for every thread, and the kernel walks it when a thread dies,
//! marking each mutex it held (`FUTEX_OWNER_DIED`) and waking a waiter. So
//! the next locker learns of the death *at once*, from the kernel, with no
//! polling of `/proc` and no doubt about reused thread ids; and C programs
//! can share the mutex. The cost: a lock and an unlock each also link and
//! unlink the mutex on that list (about 2x a private futex mutex, see
//! `docs/BENCHMARKS.md`).
//!
//! The trust boundary: the robust list links live in the shared mutex, and
//! glibc writes through them, so a process that can write the segment can
//! corrupt the memory of the process holding the lock. Share a mutex only
//! with processes you trust as much as your own threads (the segment's
//! `?mode=` decides who can).

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::mem::size_of;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use zerocopy::FromBytes;

use super::error::{LockError, LockResult};
use super::place::{Place, PrimitiveKind, State, ValueLayout, footprint, value_constructors};
use crate::error::{Error, Result};
use crate::shm::Segment;
use crate::sys::pthread::{self, Locked};

/// A robust pthread mutex, on a cache line of its own.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct MutexState {
    raw: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: repr(C), align 64; a process-shared pthread mutex is made to be
// used through a pointer by many threads and processes at once.
unsafe impl State for MutexState {
    const KIND: PrimitiveKind = PrimitiveKind::Mutex;
}

#[cfg(not(ipcx_loom))]
const _: () = assert!(size_of::<MutexState>() == 64);

impl MutexState {
    pub(crate) fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.raw.get()
    }

    pub(crate) fn init(&self) -> Result<()> {
        // SAFETY: the state is not yet published to any process; the
        // pointer is valid and aligned (it lives in the mapped segment).
        unsafe { pthread::init_robust(self.raw()) }.map_err(|e| Error::io("create", e))
    }
}

/// A mutual-exclusion lock shared between processes, guarding a `T`.
///
/// `T` must be plain data ([`FromBytes`]): another process may have written
/// any bytes into it. When the holder dies, the next [`Mutex::lock`] returns
/// [`LockError::OwnerDied`] holding the lock; call
/// [`MutexGuard::make_consistent`] once the data is repaired.
///
/// ```no_run
/// use ipcx::sync::{LockError, Mutex};
/// # fn main() -> ipcx::Result<()> {
/// let counter = Mutex::<u64>::create("orders-count", 0)?;
/// // In another process: Mutex::<u64>::open("orders-count")?
/// let mut n = match counter.lock() {
///     Ok(guard) => guard,
///     Err(LockError::OwnerDied(mut guard)) => {
///         // A holder died mid-update: repair, then say so.
///         guard.make_consistent()?;
///         guard
///     }
///     Err(e) => panic!("{e}"),
/// };
/// *n += 1;
/// # Ok(()) }
/// ```
pub struct Mutex<T> {
    place: Place<MutexState>,
    /// The pthread mutex and the value, both in `place`: computed once, as
    /// every lock needs them.
    raw: *mut libc::pthread_mutex_t,
    value: *mut T,
    _value: PhantomData<T>,
}

// SAFETY: the value is reached only under the lock, which excludes every
// thread of every process; `T: Send` as with `std::sync::Mutex`.
unsafe impl<T: Send> Send for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Mutex<T> {}

impl<T> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mutex")
            .field("name", &self.place.name())
            .finish_non_exhaustive()
    }
}

impl<T> Drop for Mutex<T> {
    /// A guard this process forgot (`mem::forget`) leaves the mutex on its
    /// thread's robust list, which glibc and the kernel write through: then
    /// the mapping is kept for the life of the process instead of unmapped.
    fn drop(&mut self) {
        // SAFETY: the first 4 bytes of the mutex, aligned, read atomically.
        let word = unsafe { &*self.raw.cast::<std::sync::atomic::AtomicU32>() }
            .load(std::sync::atomic::Ordering::Relaxed)
            & 0x3fff_ffff;
        let ours = word != 0
            && (word == crate::sys::process::tid()
                || crate::sys::process::thread_group(word) == Some(crate::sys::process::pid()));
        if ours {
            tracing::warn!(
                "a shared mutex dropped while this process holds it: its mapping is kept"
            );
            self.place.leak_mapping();
        }
    }
}

impl<T: FromBytes + Send> Mutex<T> {
    value_constructors!("mutex", MutexState, Self::initializer);

    pub(crate) fn initializer(init: T) -> impl FnOnce(&MutexState, *mut u8) -> Result<()> {
        move |state, value| {
            // SAFETY: `value` is 64-byte aligned room for a T (the footprint
            // covers it; alignment above 64 is refused), not yet shared.
            unsafe { value.cast::<T>().write(init) };
            state.init()
        }
    }

    fn from_place(place: Place<MutexState>) -> Mutex<T> {
        Mutex {
            raw: place.state().raw(),
            value: place.value().cast::<T>(),
            place,
            _value: PhantomData,
        }
    }

    /// Locks, waiting as long as it takes.
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        // SAFETY: the mutex was initialized before it was published and
        // stays mapped while `self` lives.
        self.guard(unsafe { pthread::lock(self.raw()) }, false)
    }

    /// Locks if nobody holds it; [`LockError::WouldBlock`] otherwise.
    pub fn try_lock(&self) -> LockResult<MutexGuard<'_, T>> {
        // SAFETY: as in `lock`.
        self.guard(unsafe { pthread::try_lock(self.raw()) }, false)
    }

    /// Locks, waiting at most `timeout`; [`LockError::TimedOut`] after.
    /// The deadline is on the wall clock (`pthread_mutex_timedlock` takes
    /// `CLOCK_REALTIME`): a clock step shortens or stretches the wait.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<MutexGuard<'_, T>> {
        // SAFETY: as in `lock`.
        self.guard(unsafe { pthread::lock_timeout(self.raw(), timeout) }, true)
    }

    #[inline]
    pub(crate) fn guard(
        &self,
        r: std::io::Result<Locked>,
        timed: bool,
    ) -> LockResult<MutexGuard<'_, T>> {
        let guard = MutexGuard {
            mutex: self,
            _thread: PhantomData,
        };
        match r {
            Ok(Locked::Yes) => Ok(guard),
            Ok(Locked::OwnerDied) => Err(LockError::OwnerDied(guard)),
            Ok(Locked::Busy) => {
                std::mem::forget(guard);
                Err(if timed {
                    LockError::TimedOut
                } else {
                    LockError::WouldBlock
                })
            }
            Ok(Locked::NotRecoverable) => {
                std::mem::forget(guard);
                Err(LockError::NotRecoverable)
            }
            Err(e) => {
                std::mem::forget(guard);
                Err(LockError::Failed(Error::io("lock", e)))
            }
        }
    }

    #[inline]
    pub(crate) fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.raw
    }
}

/// Holds a [`Mutex`] locked; unlocks when dropped, on the thread that
/// locked it:
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// let m = ipcx::sync::Mutex::<u64>::create("doc-not-send", 0).unwrap();
/// send(m.lock().unwrap()); // a guard cannot move to another thread
/// ```
#[must_use = "the mutex unlocks when the guard is dropped"]
pub struct MutexGuard<'a, T: FromBytes + Send> {
    mutex: &'a Mutex<T>,
    /// Not `Send`: only the locking thread may unlock (the kernel's robust
    /// list is per thread).
    _thread: PhantomData<*const ()>,
}

impl<'a, T: FromBytes + Send> MutexGuard<'a, T> {
    /// Marks the data repaired after [`LockError::OwnerDied`]. Without it,
    /// dropping this guard makes the mutex [`LockError::NotRecoverable`].
    pub fn make_consistent(&mut self) -> Result<()> {
        // SAFETY: this thread holds the mutex (the guard proves it).
        unsafe { pthread::make_consistent(self.mutex.raw()) }
            .map_err(|e| Error::io("make_consistent", e))
    }

    pub(crate) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}

impl<T: FromBytes + Send> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the value is a valid `T` for any bytes (`FromBytes`),
        // aligned, and only reached under the lock this guard holds.
        unsafe { &*self.mutex.value }
    }
}

impl<T: FromBytes + Send> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; the lock excludes every other thread.
        unsafe { &mut *self.mutex.value }
    }
}

impl<T: FromBytes + Send> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this thread holds the mutex (the guard proves it).
        if let Err(e) = unsafe { pthread::unlock(self.mutex.raw()) } {
            tracing::error!(error = %e, "unlocking a shared mutex failed");
        }
    }
}

impl<T: FromBytes + Send + std::fmt::Debug> std::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("MutexGuard").field(&**self).finish()
    }
}

/// `ipcx ls`'s view: the kernel's robust-futex word is the first field of a
/// glibc mutex, holding the owner's thread id and the owner-died bit.
pub(crate) fn describe(place: &Place<MutexState>) -> String {
    // SAFETY: the first 4 bytes of the mutex, aligned; read atomically
    // (another process may change them at any time).
    let word = unsafe { &*place.state().raw().cast::<std::sync::atomic::AtomicU32>() }
        .load(std::sync::atomic::Ordering::Relaxed);
    lock_word_state(word)
}

/// Describes a robust-futex lock word (`futex(2)`: thread id in the low 30
/// bits, bit 30 owner died, bit 31 waiters).
pub(crate) fn lock_word_state(word: u32) -> String {
    let tid = word & 0x3fff_ffff;
    if tid == 0 {
        return if word & 0x4000_0000 != 0 {
            "free (a holder died)".into()
        } else {
            "free".into()
        };
    }
    match crate::sys::process::thread_group(tid) {
        Some(pid) if crate::sys::process::thread_alive(tid, None) => {
            format!("locked by live pid {pid} (thread {tid})")
        }
        _ => format!("locked by dead thread {tid}"),
    }
}
