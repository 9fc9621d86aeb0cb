//! What a lock attempt can end in.

use super::owner::{Acquired, NotAcquired};
use crate::error::{Error, ErrorKind};

/// Why a lock was not simply granted.
///
/// `G` is the guard: with [`LockError::OwnerDied`] the lock *is* held, and
/// the guard comes with the error.
#[derive(Debug)]
pub enum LockError<G> {
    /// The previous holder died holding the lock, which is now yours; the
    /// data it guards may be half-updated. Repair it and call the guard's
    /// `make_consistent()`; dropping the guard without doing so makes the
    /// lock [`LockError::NotRecoverable`] for everyone.
    OwnerDied(G),
    /// A holder died and its successor gave up without repairing: the lock
    /// can never be taken again. Remove and recreate it.
    NotRecoverable,
    /// `try_` found it held.
    WouldBlock,
    /// A timed form ran out of time.
    TimedOut,
    /// The OS refused (corrupt shared memory, for instance).
    Failed(Error),
}

impl<G> LockError<G> {
    /// The guard, when the lock is held despite the error
    /// ([`LockError::OwnerDied`]).
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            _ => None,
        }
    }

    /// This error as an [`Error`], for `?` in code that cannot repair the
    /// data: `lock().map_err(LockError::into_error)?`.
    ///
    /// With [`LockError::OwnerDied`] the guard is dropped unrepaired, which
    /// makes the lock [`LockError::NotRecoverable`] for every process, for
    /// good; that is why there is no `From` that `?` would use silently:
    ///
    /// ```compile_fail
    /// fn bump(m: &ipcx::sync::Mutex<u64>) -> ipcx::Result<()> {
    ///     *m.lock()? += 1; // OwnerDied must be handled, not `?`-ed away
    ///     Ok(())
    /// }
    /// ```
    ///
    /// ```
    /// fn bump(m: &ipcx::sync::Mutex<u64>) -> ipcx::Result<()> {
    ///     use ipcx::sync::LockError;
    ///     let mut g = match m.lock() {
    ///         Ok(g) => g,
    ///         Err(LockError::OwnerDied(mut g)) => {
    ///             *g = 0; // repair: a counter may restart
    ///             g.make_consistent()?;
    ///             g
    ///         }
    ///         Err(e) => return Err(e.into_error()),
    ///     };
    ///     *g += 1;
    ///     Ok(())
    /// }
    /// ```
    pub fn into_error(self) -> Error {
        let kind = match self {
            LockError::OwnerDied(_) => ErrorKind::OwnerDied,
            LockError::NotRecoverable => ErrorKind::NotRecoverable,
            LockError::WouldBlock => ErrorKind::WouldBlock,
            LockError::TimedOut => ErrorKind::TimedOut,
            LockError::Failed(e) => return e,
        };
        Error::new(kind, "lock")
    }

    /// The same error with its guard mapped.
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::NotRecoverable => LockError::NotRecoverable,
            LockError::WouldBlock => LockError::WouldBlock,
            LockError::TimedOut => LockError::TimedOut,
            LockError::Failed(e) => LockError::Failed(e),
        }
    }
}

impl<G> std::fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str(
                "the previous holder died holding the lock; repair the data, then call make_consistent()",
            ),
            LockError::NotRecoverable => f.write_str(
                "the lock is not recoverable (a holder died and was never repaired); remove and recreate it",
            ),
            LockError::WouldBlock => f.write_str("the lock is held"),
            LockError::TimedOut => f.write_str("timed out waiting for the lock"),
            LockError::Failed(e) => write!(f, "{e}"),
        }
    }
}

// Not `std::error::Error` either, for the same reason as below: `?` into a
// `Box<dyn Error>` would carry an unrepaired guard away, to be dropped later
// with the same effect.

/// The result of a lock attempt.
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

// No `From<LockError<G>> for Error`: `m.lock()?` on `OwnerDied` would drop
// the guard unrepaired and make the lock `NotRecoverable` for every
// process, for good, without a word. Callers match `OwnerDied` (repair, then
// `make_consistent`), or give the lock up on purpose with
// `LockError::into_error`.

/// The result of an [`super::owner::OwnerLock`]-based lock attempt, with
/// `guard` made when the lock was taken.
pub(crate) fn from_owner<G>(
    r: std::result::Result<Acquired, NotAcquired>,
    guard: impl FnOnce() -> G,
) -> LockResult<G> {
    match r {
        Ok(Acquired::Yes) => Ok(guard()),
        Ok(Acquired::OwnerDied) => Err(LockError::OwnerDied(guard())),
        Err(NotAcquired::WouldBlock) => Err(LockError::WouldBlock),
        Err(NotAcquired::TimedOut) => Err(LockError::TimedOut),
        Err(NotAcquired::NotRecoverable) => Err(LockError::NotRecoverable),
    }
}
