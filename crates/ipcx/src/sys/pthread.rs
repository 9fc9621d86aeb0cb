//! Robust, process-shared pthread mutexes: the kernel marks a mutex whose
//! holder died (through the robust list glibc registers for every thread),
//! so the next locker learns of it at once instead of waiting forever.

use std::io;
use std::time::{Duration, SystemTime};

/// How an attempt to lock ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    /// Locked.
    Yes,
    /// Locked, but the previous holder died holding it: the data it guards
    /// may be half-updated. See `pthread_mutex_consistent(3)`.
    OwnerDied,
    /// Not locked: someone holds it (try) or the deadline passed (timed).
    Busy,
    /// Not locked, ever again: a holder died and the next one unlocked it
    /// without marking it consistent.
    NotRecoverable,
}

#[inline]
fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[inline]
fn locked(rc: libc::c_int) -> io::Result<Locked> {
    match rc {
        0 => Ok(Locked::Yes),
        libc::EOWNERDEAD => Ok(Locked::OwnerDied),
        libc::EBUSY | libc::ETIMEDOUT => Ok(Locked::Busy),
        libc::ENOTRECOVERABLE => Ok(Locked::NotRecoverable),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// Initializes a robust, process-shared mutex at `m`.
///
/// # Safety
/// `m` must be valid for writes of a `pthread_mutex_t`, suitably aligned,
/// and no process may use the mutex until this returns.
/// See `pthread_mutexattr_setrobust(3)`, `pthread_mutexattr_setpshared(3)`.
pub unsafe fn init_robust(m: *mut libc::pthread_mutex_t) -> io::Result<()> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
    // SAFETY: `attr` is initialized by `pthread_mutexattr_init` before any
    // other use and destroyed once the mutex is initialized; `m` is valid
    // (caller's contract).
    unsafe {
        check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
        let result = (|| {
            check(libc::pthread_mutexattr_setpshared(
                attr.as_mut_ptr(),
                libc::PTHREAD_PROCESS_SHARED,
            ))?;
            check(libc::pthread_mutexattr_setrobust(
                attr.as_mut_ptr(),
                libc::PTHREAD_MUTEX_ROBUST,
            ))?;
            check(libc::pthread_mutex_init(m, attr.as_ptr()))
        })();
        libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
        result
    }
}

/// Locks, waiting as long as it takes. See `pthread_mutex_lock(3)`.
///
/// # Safety
/// `m` must point to a mutex initialized by [`init_robust`] that stays
/// mapped for the duration of the call.
#[inline]
pub unsafe fn lock(m: *mut libc::pthread_mutex_t) -> io::Result<Locked> {
    // SAFETY: the caller's contract.
    locked(unsafe { libc::pthread_mutex_lock(m) })
}

/// Locks if nobody holds it. See `pthread_mutex_trylock(3)`.
///
/// # Safety
/// As for [`lock`].
pub unsafe fn try_lock(m: *mut libc::pthread_mutex_t) -> io::Result<Locked> {
    // SAFETY: the caller's contract.
    locked(unsafe { libc::pthread_mutex_trylock(m) })
}

/// Locks, waiting at most `timeout`. See `pthread_mutex_timedlock(3)`
/// (the deadline is on `CLOCK_REALTIME`).
///
/// # Safety
/// As for [`lock`].
pub unsafe fn lock_timeout(m: *mut libc::pthread_mutex_t, timeout: Duration) -> io::Result<Locked> {
    let deadline = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(timeout);
    let ts = libc::timespec {
        tv_sec: super::secs(deadline),
        tv_nsec: deadline.subsec_nanos() as _,
    };
    // SAFETY: the caller's contract; `ts` lives across the call.
    locked(unsafe { libc::pthread_mutex_timedlock(m, &ts) })
}

/// Unlocks. See `pthread_mutex_unlock(3)`.
///
/// # Safety
/// As for [`lock`], and this thread must hold the mutex.
#[inline]
pub unsafe fn unlock(m: *mut libc::pthread_mutex_t) -> io::Result<()> {
    // SAFETY: the caller's contract.
    check(unsafe { libc::pthread_mutex_unlock(m) })
}

/// Marks a mutex whose holder died as consistent again.
/// See `pthread_mutex_consistent(3)`.
///
/// # Safety
/// As for [`unlock`], after a lock that returned [`Locked::OwnerDied`].
pub unsafe fn make_consistent(m: *mut libc::pthread_mutex_t) -> io::Result<()> {
    // SAFETY: the caller's contract.
    check(unsafe { libc::pthread_mutex_consistent(m) })
}
