//! Synchronization across processes: locks, semaphores, condition
//! variables, barriers and events that live in shared memory and survive
//! the death of a holder.
//!
//! Every primitive is created by name (a small segment `shm:NAME` of its
//! own, in the registry, so `ipcx ls` shows it and its state) or placed at
//! an offset inside a [`Segment`] the application already shares
//! (`create_in` / `open_in`, with [`Mutex::footprint`] and friends telling
//! how many bytes it takes).
//!
//! | primitive | algorithm | a holder dies |
//! |---|---|---|
//! | [`Mutex`] | robust process-shared pthread mutex | next `lock` gets [`LockError::OwnerDied`] at once (the kernel marks it) |
//! | [`Condvar`], [`Monitor`] | futex sequence word | nothing to recover: waiters hold nothing |
//! | [`Semaphore`] | futex counter; tracked mode: per-process permit table | tracked: the dead process's permits return |
//! | [`RwLock`] | writer word + per-process reader counts | dead writer: [`LockError::OwnerDied`]; dead reader: hold released |
//! | [`Barrier`] | futex word (generation, arrivals) + party table | waiters get [`crate::ErrorKind::BarrierBroken`] |
//! | [`SpinLock`] | owner word, bounded spin then yield | [`LockError::OwnerDied`] |
//! | [`Event`] | futex word, manual or auto reset | nothing to recover |
//! | [`NamedSemaphore`], [`SysVSemaphoreSet`] | the OS's own, for other languages | POSIX: permits lost; SysV: undone by `SEM_UNDO` |
//! | [`EventFd`] | the kernel's `eventfd(2)` counter, passed as a descriptor | nothing to recover: the kernel holds the count |
//!
//! Liveness of a holder comes from its thread (or process) id and start
//! time, read from `/proc`, checked only by a waiter that has waited a
//! while (every 20 ms), never on an uncontended path. Guards are not
//! `Send`: the thread that locks unlocks.
//!
//! The process that creates a named primitive owns the name, as with every
//! ipcx object: it is removed when the creator's handle drops (processes
//! that have it open keep using it), unless the name is given as
//! `shm:NAME?persist`; a name left by a dead creator is reclaimed by the
//! next `create`.
//!
//! As with `std`, a thread that locks a lock it holds deadlocks, and a
//! thread that takes a second read hold while a writer waits does too
//! (writers are preferred).
//!
//! [`Segment`]: crate::shm::Segment

/// The contract of every `create_in`, as a doc string (a macro, so that
/// each constructor's `# Safety` carries it).
macro_rules! create_in_safety {
    () => {
        "The [`footprint`](Self::footprint) bytes at `offset` belong to this \
         primitive alone for as long as any process uses it: no other \
         primitive overlaps them, and no process reads or writes them but \
         through this primitive's handles (not with `Segment::write_at`, \
         not through a loan). Creating it zeroes them, so anything still \
         using them would see its memory change under a live reference. A \
         second `create_in` at the same offset is caught (it returns \
         [`ErrorKind::InUse`](crate::ErrorKind::InUse)); an overlap \
         at another offset is not."
    };
}

mod barrier;
pub(crate) mod baseline;
mod condvar;
mod error;
pub(crate) mod event;
mod eventfd;
mod monitor;
mod mutex;
mod named;
mod owner;
mod place;
mod rwlock;
mod semaphore;
mod spin;
mod value;

#[cfg(all(test, ipcx_loom))]
mod model;

pub use barrier::{Barrier, BarrierWaitResult, MAX_PARTIES};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use error::{LockError, LockResult};
pub use event::{Event, EventMode};
pub use eventfd::{EventFd, EventFdMode};
pub use monitor::Monitor;
pub use mutex::{Mutex, MutexGuard};
pub use named::{NamedSemaphore, SysVSemaphoreSet, SysVSetState};
pub use place::{PrimitiveKind, SyncHeader, describe};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{Permit, Semaphore};
pub use spin::{SpinLock, SpinLockGuard};
pub use value::{SharedAtomicI64, SharedAtomicU32, SharedAtomicU64};
