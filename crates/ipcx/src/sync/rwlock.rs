//! [`RwLock`]: many readers or one writer, writer-preferring, across
//! processes.
//!
//! The writer's side is an [`OwnerLock`]; each process has its own reader
//! count (a [`Slots`] entry on a cache line of its own), so readers of
//! different processes never write a shared line. A reader counts itself
//! in, then checks the writer word; a writer takes the word, then waits for
//! every count to reach 0. Both sides use sequentially consistent
//! operations, so one of them always sees the other (Dekker). A reader that
//! finds the writer word taken backs out and waits: once a writer asks,
//! no new reader gets in, so writers never starve.
//!
//! Death: a dead writer's word is freed by whoever notices (readers check
//! every 20 ms while they wait), and the lock is marked owner-died until a
//! writer repairs it; a dead process's reader count is cleared by the
//! waiting writer.

use std::marker::PhantomData;
use std::mem::size_of;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zerocopy::FromBytes;

use super::error::{LockError, LockResult, from_owner};
use super::owner::{Acquired, Consistency, NotAcquired, OwnerLock, SlotCache, Slots, Spinning};
use super::place::{
    Place, PrimitiveKind, State, ValueLayout, footprint, value_constructors, write_value,
};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::Segment;
use crate::wait::EventCount;
use crate::wait::primitive::{Ordering, fence, futex};
use crate::wait::{Liveness, sleep_slice};

#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct RwState {
    /// Held (or wanted) by the writer.
    writer: OwnerLock,
    /// Bumped when a writer leaves: readers wait on it.
    gate: EventCount,
    /// Bumped when a reader leaves while a writer waits.
    drain: EventCount,
    readers: Slots,
}

#[cfg(not(ipcx_loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(RwState, gate) == 16);
    assert!(offset_of!(RwState, drain) == 24);
    assert!(offset_of!(RwState, readers) == 64);
    assert!(size_of::<RwState>() == 64 + 64 * 64);
};

// SAFETY: repr(C), align 64, atomics only.
unsafe impl State for RwState {
    const KIND: PrimitiveKind = PrimitiveKind::RwLock;
}

/// How a lock attempt waits.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Patience {
    Try,
    Until(Option<Instant>),
}

impl RwState {
    #[cfg(all(test, ipcx_loom))]
    pub(crate) fn new() -> RwState {
        RwState {
            writer: OwnerLock::new(),
            gate: EventCount::zero(),
            drain: EventCount::zero(),
            readers: Slots::new(),
        }
    }

    /// Takes a read hold for the process of `slot`; `Ok(true)` when a
    /// writer died and nobody repaired yet.
    pub(crate) fn read(&self, slot: usize, how: Patience) -> Result<bool, NotAcquired> {
        let count = &self.readers.get(slot).count;
        let mut liveness = Liveness::new();
        loop {
            count.fetch_add(1, Ordering::SeqCst);
            // Dekker with `write`: either it sees our count, or we see its
            // word. (Fences, not only SeqCst accesses: loom models those.)
            fence(Ordering::SeqCst);
            if self.writer.is_free() {
                match self.writer.consistency() {
                    Consistency::Consistent => return Ok(false),
                    Consistency::OwnerDied => return Ok(true),
                    Consistency::NotRecoverable => {
                        self.read_unlock(slot);
                        return Err(NotAcquired::NotRecoverable);
                    }
                }
            }
            self.read_unlock(slot);
            let deadline = match how {
                Patience::Try => return Err(NotAcquired::WouldBlock),
                Patience::Until(d) => d,
            };
            let seen = self.gate.prepare();
            if self.writer.is_free() {
                self.gate.cancel();
                continue;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                self.gate.cancel();
                return Err(NotAcquired::TimedOut);
            }
            self.gate.sleep(seen, Some(sleep_slice(deadline)));
            if liveness.due() {
                self.writer.retire_dead();
            }
        }
    }

    pub(crate) fn read_unlock(&self, slot: usize) {
        self.readers.get(slot).count.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !self.writer.is_free() {
            self.drain.wake(1);
        }
    }

    /// Takes the write lock.
    pub(crate) fn write(&self, how: Patience) -> Result<Acquired, NotAcquired> {
        let (got, deadline) = match how {
            Patience::Try => (self.writer.try_lock()?, None),
            Patience::Until(d) => (self.writer.lock(Spinning::ThenSleep, d)?, d),
        };
        fence(Ordering::SeqCst);
        let mut liveness = Liveness::new();
        loop {
            if self.readers.total() == 0 {
                return Ok(got);
            }
            if matches!(how, Patience::Try) {
                self.give_up_write();
                return Err(NotAcquired::WouldBlock);
            }
            let seen = self.drain.prepare();
            if self.readers.total() == 0 {
                self.drain.cancel();
                return Ok(got);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                self.drain.cancel();
                self.give_up_write();
                return Err(NotAcquired::TimedOut);
            }
            self.drain.sleep(seen, Some(sleep_slice(deadline)));
            if liveness.due() {
                self.readers.reclaim_dead(|n| {
                    tracing::warn!(holds = n, "released the read holds of a dead process");
                });
            }
        }
    }

    /// Leaves without having written: consistency unchanged.
    fn give_up_write(&self) {
        self.writer.unlock_unchanged();
        self.gate.wake(futex::ALL);
    }

    pub(crate) fn write_unlock(&self) {
        self.writer.unlock();
        self.gate.wake(futex::ALL);
    }

    pub(crate) fn make_consistent(&self) {
        self.writer.make_consistent();
    }

    pub(crate) fn writer_free(&self) -> bool {
        self.writer.is_free()
    }
}

/// A reader-writer lock shared between processes, guarding a `T`.
///
/// Writer-preferring: once a writer asks, new readers wait, so a writer
/// gets in after at most one read per reading thread already inside. A
/// writer that dies is reported to the next locker as
/// [`LockError::OwnerDied`] (a writer can repair and call
/// [`RwLockWriteGuard::make_consistent`]; readers only learn of it); a
/// reader process that dies has its holds released.
///
/// ```no_run
/// use ipcx::sync::{LockError, RwLock};
/// # fn main() -> ipcx::Result<()> {
/// let config = RwLock::<[u8; 256]>::create("config", [0; 256])?;
/// config.write().map_err(LockError::into_error)?[0] = 1;
/// assert_eq!(config.read().map_err(LockError::into_error)?[0], 1);
/// # Ok(()) }
/// ```
pub struct RwLock<T> {
    place: Place<RwState>,
    slot: SlotCache,
    _value: PhantomData<T>,
}

// SAFETY: readers share `&T` (so `T: Sync`), a writer gets `&mut T`
// exclusively (so `T: Send`), as with `std::sync::RwLock`.
unsafe impl<T: Send> Send for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for RwLock<T> {}

impl<T> std::fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock")
            .field("name", &self.place.name())
            .finish_non_exhaustive()
    }
}

impl<T: FromBytes + Send + Sync> RwLock<T> {
    value_constructors!("reader-writer lock", RwState, write_value);

    fn from_place(place: Place<RwState>) -> RwLock<T> {
        RwLock {
            place,
            slot: SlotCache::default(),
            _value: PhantomData,
        }
    }

    fn slot(&self) -> std::result::Result<usize, Error> {
        let state = self.place.state();
        // A full table: the dead's slots are cleared, their holds released.
        self.slot
            .get(&state.readers, || state.readers.reclaim_dead(|_| {}))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::LimitReached(format!(
                        "the lock's reader table is full ({} live processes); close it in a process that is done with it",
                        super::owner::SLOTS
                    )),
                    "read",
                )
            })
    }

    fn read_with(&self, how: Patience) -> LockResult<RwLockReadGuard<'_, T>> {
        let slot = self.slot().map_err(LockError::Failed)?;
        let r = self.place.state().read(slot, how).map(|died| {
            if died {
                Acquired::OwnerDied
            } else {
                Acquired::Yes
            }
        });
        from_owner(r, || RwLockReadGuard {
            lock: self,
            slot,
            _thread: PhantomData,
        })
    }

    fn write_with(&self, how: Patience) -> LockResult<RwLockWriteGuard<'_, T>> {
        from_owner(self.place.state().write(how), || RwLockWriteGuard {
            lock: self,
            _thread: PhantomData,
        })
    }

    /// Takes a read hold, waiting while a writer holds or wants the lock.
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_with(Patience::Until(None))
    }

    /// Takes a read hold if no writer holds or wants the lock.
    pub fn try_read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_with(Patience::Try)
    }

    /// [`RwLock::read`], waiting at most `timeout`.
    pub fn read_timeout(&self, timeout: Duration) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_with(Patience::Until(crate::deadline::after(timeout)))
    }

    /// Takes the write lock, waiting for every reader to leave.
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_with(Patience::Until(None))
    }

    /// Takes the write lock if nobody holds the lock.
    pub fn try_write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_with(Patience::Try)
    }

    /// [`RwLock::write`], waiting at most `timeout`.
    pub fn write_timeout(&self, timeout: Duration) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_with(Patience::Until(crate::deadline::after(timeout)))
    }

    /// Whether a writer holds the lock or waits for readers to leave
    /// (while it does, no new reader gets in).
    pub fn writer_waiting(&self) -> bool {
        !self.place.state().writer_free()
    }

    fn value(&self) -> *mut T {
        self.place.value().cast::<T>()
    }
}

/// A read hold on an [`RwLock`]; released when dropped.
#[must_use = "the hold is released when the guard is dropped"]
pub struct RwLockReadGuard<'a, T: FromBytes + Send + Sync> {
    lock: &'a RwLock<T>,
    slot: usize,
    /// Not `Send`, like the write guard.
    _thread: PhantomData<*const ()>,
}

impl<T: FromBytes + Send + Sync> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: any bytes are a valid T; while a read hold exists no
        // writer is inside (the protocol above), so nobody writes it.
        unsafe { &*self.lock.value() }
    }
}

impl<T: FromBytes + Send + Sync> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.place.state().read_unlock(self.slot);
    }
}

impl<T: FromBytes + Send + Sync> std::fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RwLockReadGuard")
    }
}

/// The write lock on an [`RwLock`]; released when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: FromBytes + Send + Sync> {
    lock: &'a RwLock<T>,
    /// Not `Send`: the writer word names the locking thread, whose death
    /// frees it.
    _thread: PhantomData<*const ()>,
}

impl<T: FromBytes + Send + Sync> RwLockWriteGuard<'_, T> {
    /// Marks the data repaired after [`LockError::OwnerDied`]. Without it,
    /// dropping this guard makes the lock [`LockError::NotRecoverable`].
    pub fn make_consistent(&mut self) {
        self.lock.place.state().make_consistent();
    }
}

impl<T: FromBytes + Send + Sync> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: any bytes are a valid T; the write lock excludes all.
        unsafe { &*self.lock.value() }
    }
}

impl<T: FromBytes + Send + Sync> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`.
        unsafe { &mut *self.lock.value() }
    }
}

impl<T: FromBytes + Send + Sync> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.place.state().write_unlock();
    }
}

impl<T: FromBytes + Send + Sync> std::fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RwLockWriteGuard")
    }
}

/// `ipcx ls`'s view: the writer, and each process's read holds.
pub(crate) fn describe(place: &Place<RwState>) -> String {
    let s = place.state();
    format!(
        "writer {}{}",
        s.writer.describe(),
        super::owner::describe_holders(&s.readers, "reads")
    )
}
