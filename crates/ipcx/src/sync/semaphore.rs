//! [`Semaphore`]: a counting semaphore on a futex word, optionally tracking
//! which process holds which permits.
//!
//! Untracked, it is the classic futex semaphore (as glibc's `sem_t`): the
//! count is the futex word; `acquire` decrements it with a compare-and-swap
//! or sleeps while it is 0, announced in `waiting` so `release` makes a
//! system call only when someone sleeps.
//!
//! Tracked, every change of the count also changes the holder's entry in a
//! per-process table, both under a small [`OwnerLock`]; a waiter that has
//! waited a while returns the permits of dead processes. A process that
//! dies inside that lock is repaired by recounting: permits = limit - what
//! live processes hold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::named::{NamedSemaphore, SysVSemaphoreSet};
use super::owner::{Acquired, NotAcquired, OwnerLock, SlotCache, Slots, Spinning};
use super::place::{Place, PrimitiveKind, State, ValueLayout, footprint};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::Segment;
use crate::wait::primitive::{AtomicU32, Ordering, fence, futex};
use crate::wait::{Liveness, sleep_slice};

#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct SemState {
    /// Permits available: the futex word.
    count: AtomicU32,
    /// Sleepers (or about to).
    waiting: AtomicU32,
    /// 1 when tracked.
    tracked: AtomicU32,
    /// Tracked: the permits there are in all.
    limit: AtomicU32,
    /// Tracked: guards `count` together with `holders`.
    lock: OwnerLock,
    /// Tracked: who holds how many.
    holders: Slots,
}

#[cfg(not(ipcx_loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(SemState, waiting) == 4);
    assert!(offset_of!(SemState, tracked) == 8);
    assert!(offset_of!(SemState, limit) == 12);
    assert!(offset_of!(SemState, lock) == 16);
    assert!(offset_of!(SemState, holders) == 64);
    assert!(size_of::<SemState>() == 64 + 64 * 64);
};

// SAFETY: repr(C), align 64, atomics only.
unsafe impl State for SemState {
    const KIND: PrimitiveKind = PrimitiveKind::Semaphore;
}

impl SemState {
    #[cfg(all(test, ipcx_loom))]
    pub(crate) fn new(permits: u32, tracked: bool) -> SemState {
        SemState {
            count: AtomicU32::new(permits),
            waiting: AtomicU32::new(0),
            tracked: AtomicU32::new(u32::from(tracked)),
            limit: AtomicU32::new(permits),
            lock: OwnerLock::new(),
            holders: Slots::new(),
        }
    }

    fn tracked(&self) -> bool {
        self.tracked.load(Ordering::Relaxed) != 0
    }

    /// Takes a permit if one is free, without waiting for one (tracked:
    /// waiting at most until `deadline` for the tracking lock).
    pub(crate) fn try_take(&self, slot: Option<usize>, deadline: Option<Instant>) -> Result<bool> {
        if !self.tracked() {
            let mut c = self.count.load(Ordering::Relaxed);
            while c > 0 {
                match self.count.compare_exchange_weak(
                    c,
                    c - 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(true),
                    Err(now) => c = now,
                }
            }
            return Ok(false);
        }
        let slot = slot.ok_or_else(table_full)?;
        let took = self.locked(deadline, || {
            let c = self.count.load(Ordering::Relaxed);
            if c == 0 {
                return false;
            }
            self.count.store(c - 1, Ordering::Release);
            self.holders.get(slot).count.fetch_add(1, Ordering::Relaxed);
            true
        })?;
        Ok(took == Some(true))
    }

    /// Takes a permit, waiting until `deadline` (forever with `None`).
    pub(crate) fn take(&self, slot: Option<usize>, deadline: Option<Instant>) -> Result<bool> {
        let mut liveness = Liveness::new();
        loop {
            if self.try_take(slot, deadline)? {
                return Ok(true);
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(false);
            }
            // Dekker with `give`: either its fence sees us waiting, or our
            // futex sees its new count.
            self.waiting.fetch_add(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if self.tracked() {
                let _ = futex::wait(&self.count, 0, Some(sleep_slice(deadline)));
            } else {
                let left = deadline.map(|d| d.saturating_duration_since(now));
                let _ = futex::wait(&self.count, 0, left);
            }
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            // Reading /proc costs microseconds: once per interval.
            if self.tracked() && liveness.due() {
                self.recover()?;
            }
        }
    }

    /// Returns a permit.
    pub(crate) fn give(&self, slot: Option<usize>) -> Result<()> {
        if self.tracked() {
            let slot = slot.ok_or_else(table_full)?;
            let held = self.locked(None, || {
                let held = &self.holders.get(slot).count;
                if held.load(Ordering::Relaxed) == 0 {
                    return false;
                }
                held.fetch_sub(1, Ordering::Relaxed);
                self.count.fetch_add(1, Ordering::Release);
                true
            })?;
            if held != Some(true) {
                return Err(Error::new(
                    ErrorKind::InvalidArgument(
                        "this process holds no permit of this tracked semaphore; release only what you acquired"
                            .into(),
                    ),
                    "release",
                ));
            }
        } else if self.count.fetch_add(1, Ordering::Release) == u32::MAX {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::new(
                ErrorKind::InvalidArgument(
                    "the semaphore's count would pass 2^32 - 1: each release must match an acquire"
                        .into(),
                ),
                "release",
            ));
        }
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::Relaxed) != 0 {
            let _ = futex::wake(&self.count, 1);
        }
        Ok(())
    }

    /// Tracked: returns the permits of dead processes; how many.
    pub(crate) fn recover(&self) -> Result<u32> {
        if !self.tracked() {
            return Ok(0);
        }
        let mut freed = 0;
        self.locked(None, || {
            self.holders.reclaim_dead(|n| freed += n);
            self.count.fetch_add(freed, Ordering::Release);
        })?;
        if freed > 0 {
            tracing::warn!(permits = freed, "returned the permits of dead processes");
            let _ = futex::wake(&self.count, freed);
        }
        Ok(freed)
    }

    /// Runs `f` under the tracking lock, recounting first if a process
    /// died inside it; `None` if the lock was not had by `deadline`.
    fn locked<R>(&self, deadline: Option<Instant>, f: impl FnOnce() -> R) -> Result<Option<R>> {
        match self.lock.lock(Spinning::ThenSleep, deadline) {
            Ok(Acquired::Yes) => {}
            Ok(Acquired::OwnerDied) => {
                self.holders.reclaim_dead(|_| {});
                let held = self.holders.total().min(u64::from(u32::MAX)) as u32;
                let limit = self.limit.load(Ordering::Relaxed);
                self.count
                    .store(limit.saturating_sub(held), Ordering::Release);
                self.lock.make_consistent();
            }
            Err(NotAcquired::NotRecoverable) => {
                return Err(Error::new(ErrorKind::NotRecoverable, "semaphore"));
            }
            Err(NotAcquired::WouldBlock | NotAcquired::TimedOut) => return Ok(None),
        }
        let r = f();
        self.lock.unlock();
        Ok(Some(r))
    }
}

fn table_full() -> Error {
    Error::new(
        ErrorKind::LimitReached(format!(
            "the semaphore's holder table is full ({} live processes); close it in a process that is done with it, or use an untracked semaphore",
            super::owner::SLOTS
        )),
        "semaphore",
    )
}

/// A counting semaphore shared between processes.
///
/// Created *tracked* ([`Semaphore::create_tracked`]), it records which
/// process holds which permits, so that those of a process that died are
/// returned (by the next waiter that has waited a while, or by
/// [`Semaphore::recover`]); a process may then release only permits it
/// acquired. Untracked, it is as fast as a bare futex semaphore, and a dead
/// process's permits are lost, as with `sem_t`.
///
/// ```no_run
/// use std::time::Duration;
/// use ipcx::sync::Semaphore;
/// # fn main() -> ipcx::Result<()> {
/// // At most 4 processes in the section at once; permits of a killed one
/// // come back.
/// let slots = Semaphore::create_tracked("gpu-slots", 4)?;
/// if slots.acquire_timeout(Duration::from_secs(1))? {
///     // ... use the GPU ...
///     slots.release()?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Semaphore {
    place: Place<SemState>,
    /// This process's entry in the holder table (tracked only).
    slot: SlotCache,
}

impl Semaphore {
    /// Creates the untracked semaphore `NAME` with `permits`.
    pub fn create(name: &str, permits: u32) -> Result<Semaphore> {
        Semaphore::create_named(name, permits, false)
    }

    /// Creates the tracked semaphore `NAME` with `permits` (see above).
    pub fn create_tracked(name: &str, permits: u32) -> Result<Semaphore> {
        Semaphore::create_named(name, permits, true)
    }

    fn create_named(name: &str, permits: u32, tracked: bool) -> Result<Semaphore> {
        Ok(Semaphore::from_place(Place::create_named(
            name,
            ValueLayout::NONE,
            permits,
            initializer(permits, tracked),
        )?))
    }

    /// Opens the semaphore `NAME`, waiting up to `?timeout=` for it.
    pub fn open(name: &str) -> Result<Semaphore> {
        Ok(Semaphore::from_place(Place::open_named(
            name,
            ValueLayout::NONE,
        )?))
    }

    /// Creates one at `offset` in `seg` ([`Semaphore::footprint`] bytes).
    ///
    /// # Safety
    #[doc = create_in_safety!()]
    pub unsafe fn create_in(
        seg: &Arc<Segment>,
        offset: usize,
        permits: u32,
        tracked: bool,
    ) -> Result<Semaphore> {
        // SAFETY: forwarded to the caller.
        Ok(Semaphore::from_place(unsafe {
            Place::create_in(
                seg,
                offset,
                ValueLayout::NONE,
                permits,
                initializer(permits, tracked),
            )
        }?))
    }

    /// Opens the one created at `offset` in `seg`.
    pub fn open_in(seg: &Arc<Segment>, offset: usize) -> Result<Semaphore> {
        Ok(Semaphore::from_place(Place::open_in(
            seg,
            offset,
            ValueLayout::NONE,
        )?))
    }

    /// Bytes a `Semaphore` takes in a segment.
    pub const fn footprint() -> usize {
        footprint::<SemState>(0)
    }

    fn from_place(place: Place<SemState>) -> Semaphore {
        Semaphore {
            place,
            slot: SlotCache::default(),
        }
    }

    fn slot(&self) -> Option<usize> {
        let state = self.place.state();
        if !state.tracked() {
            return None;
        }
        // A full table: the dead's slots are cleared by recovery, which
        // returns their permits.
        self.slot.get(&state.holders, || {
            let _ = state.recover();
        })
    }

    /// Takes a permit, waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        self.place.state().take(self.slot(), None).map(drop)
    }

    /// Takes a permit if one is free; `false` if none is.
    pub fn try_acquire(&self) -> Result<bool> {
        self.place
            .state()
            .try_take(self.slot(), Some(Instant::now()))
    }

    /// Takes a permit, waiting at most `timeout`; `false` if none came.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.place
            .state()
            .take(self.slot(), crate::deadline::after(timeout))
    }

    /// Returns a permit, waking one waiter.
    pub fn release(&self) -> Result<()> {
        self.place.state().give(self.slot())
    }

    /// Takes a permit, waiting as long as it takes, as a guard that
    /// returns it when dropped.
    ///
    /// ```no_run
    /// # fn main() -> ipcx::Result<()> {
    /// let printers = ipcx::sync::Semaphore::open("printers")?;
    /// {
    ///     let _permit = printers.permit()?;
    ///     // ... at most N processes print here at once ...
    /// } // returned here, also on an early return or a panic
    /// # Ok(()) }
    /// ```
    pub fn permit(&self) -> Result<Permit<'_>> {
        self.acquire()?;
        Ok(Permit::of(Held::Shared(self)))
    }

    /// [`Semaphore::permit`] if one is free now.
    pub fn try_permit(&self) -> Result<Option<Permit<'_>>> {
        // `then`, not `then_some`: a permit made and dropped would release.
        Ok(self.try_acquire()?.then(|| Permit::of(Held::Shared(self))))
    }

    /// [`Semaphore::permit`], waiting at most `timeout`.
    pub fn permit_timeout(&self, timeout: Duration) -> Result<Option<Permit<'_>>> {
        Ok(self
            .acquire_timeout(timeout)?
            .then(|| Permit::of(Held::Shared(self))))
    }

    /// Permits free now.
    pub fn value(&self) -> u32 {
        self.place.state().count.load(Ordering::Relaxed)
    }

    /// Whether holders are tracked.
    pub fn is_tracked(&self) -> bool {
        self.place.state().tracked()
    }

    /// Tracked: returns the permits of processes that died; how many.
    pub fn recover(&self) -> Result<u32> {
        self.place.state().recover()
    }
}

fn initializer(permits: u32, tracked: bool) -> impl FnOnce(&SemState, *mut u8) -> Result<()> {
    move |s, _| {
        s.count.store(permits, Ordering::Relaxed);
        s.limit.store(permits, Ordering::Relaxed);
        s.tracked.store(u32::from(tracked), Ordering::Relaxed);
        Ok(())
    }
}

/// `ipcx ls`'s view: the value, and who holds permits when tracked.
pub(crate) fn describe(place: &Place<SemState>) -> String {
    let s = place.state();
    let mut out = format!("value {}", s.count.load(Ordering::Relaxed));
    if s.tracked() {
        out += &format!(" of {}", s.limit.load(Ordering::Relaxed));
        out += &super::owner::describe_holders(&s.holders, "holds");
    }
    out
}

/// A permit of a semaphore ([`Semaphore`], [`NamedSemaphore`] or one of a
/// [`SysVSemaphoreSet`]), returned when dropped.
#[derive(Debug)]
#[must_use = "the permit is returned at once if it is not kept"]
pub struct Permit<'a> {
    held: Held<'a>,
}

/// Where a [`Permit`] goes back to.
#[derive(Debug)]
pub(crate) enum Held<'a> {
    Shared(&'a Semaphore),
    Named(&'a NamedSemaphore),
    SysV(&'a SysVSemaphoreSet, u16),
}

impl<'a> Permit<'a> {
    /// A permit already taken from `held`.
    pub(crate) fn of(held: Held<'a>) -> Permit<'a> {
        Permit { held }
    }
}

impl Permit<'_> {
    /// Keeps the permit taken: it is not returned on drop (a permit handed
    /// to another process, which releases it). A [`SysVSemaphoreSet`]
    /// with `SEM_UNDO` on (its default) still gets it back from the kernel
    /// when this process exits: turn undo off
    /// ([`SysVSemaphoreSet::set_undo`]) before taking a permit to hand over.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let returned = match self.held {
            Held::Shared(s) => s.release(),
            Held::Named(s) => s.release(),
            Held::SysV(s, n) => s.release(n),
        };
        if let Err(e) = returned {
            tracing::warn!(error = %e, "cannot return a semaphore permit");
        }
    }
}
