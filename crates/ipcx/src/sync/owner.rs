//! Who holds a lock, and what happens when they die.
//!
//! [`OwnerLock`] is a futex lock whose word holds the holder's thread id,
//! with a waiters bit, as the kernel's robust futexes do (`futex(2)`,
//! "Robust futexes"), but without the robust list: a waiter that has waited
//! a while checks in `/proc` whether the holder still lives, and if not,
//! takes the lock over and reports [`Acquired::OwnerDied`]. A side record
//! of the holder's start time tells a dead holder from a new thread that
//! got its id.
//!
//! [`Slots`] is a table of processes, each with a count (reader holds,
//! permits), that a survivor can clear when the process is gone.

mod slots;

pub(crate) use slots::{SLOTS, SlotCache, Slots, describe_holders};

use std::time::Instant;

use crate::wait::primitive::{AtomicU32, AtomicU64, Ordering, futex, spin_hint, tid};
use crate::wait::{Liveness, sleep_slice};

const TID_MASK: u32 = 0x3fff_ffff;
const WAITERS: u32 = 0x8000_0000;

/// `consistency`: the data is sound.
const CONSISTENT: u32 = 0;
/// `consistency`: a holder died; its successor has not repaired yet.
const INCONSISTENT: u32 = 1;
/// `consistency`: a successor released without repairing: closed for good.
const NOT_RECOVERABLE: u32 = 2;

pub(crate) use crate::sys::process::{pack_identity as pack, unpack_identity as unpack};

#[cfg(not(ipcx_loom))]
fn this_thread() -> u64 {
    pack(tid(), crate::sys::process::thread_start_time())
}

#[cfg(ipcx_loom)]
fn this_thread() -> u64 {
    pack(tid(), 1)
}

/// Whether the holder `word_tid`, recorded as `record`, has died.
#[cfg(not(ipcx_loom))]
fn holder_dead(word_tid: u32, record: u64) -> bool {
    let (rec_tid, start) = unpack(record);
    // A record of another thread: the holder has not written its own yet;
    // only its id can be checked.
    let start = (rec_tid == word_tid).then_some(start);
    !crate::sys::process::thread_alive(word_tid, start)
}

#[cfg(ipcx_loom)]
fn holder_dead(_: u32, _: u64) -> bool {
    false
}

/// The identity of this process, as [`Slots`] record it.
#[cfg(not(ipcx_loom))]
pub(crate) fn this_process() -> u64 {
    use std::sync::atomic::AtomicU64 as StdU64;
    // Cached per fork epoch: a forked child is another process.
    static ME: StdU64 = StdU64::new(0);
    static ME_EPOCH: StdU64 = StdU64::new(u64::MAX);
    let epoch = crate::sys::process::fork_epoch();
    if ME_EPOCH.load(Ordering::Acquire) == epoch {
        return ME.load(Ordering::Relaxed);
    }
    let me = crate::sys::process::identity();
    // An unknown start time (0) is not kept: the next call tries again.
    if unpack(me).1 != 0 {
        ME.store(me, Ordering::Relaxed);
        ME_EPOCH.store(epoch, Ordering::Release);
    }
    me
}

#[cfg(ipcx_loom)]
pub(crate) fn this_process() -> u64 {
    pack(tid(), 1)
}

/// Whether the process recorded as `who` (see [`pack`]) has died.
#[cfg(not(ipcx_loom))]
pub(crate) fn process_dead(who: u64) -> bool {
    !crate::sys::process::identity_alive(who)
}

#[cfg(ipcx_loom)]
pub(crate) fn process_dead(_: u64) -> bool {
    false
}

/// Whether a lock's data can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Consistency {
    Consistent,
    /// A holder died; nobody has repaired the data yet.
    OwnerDied,
    NotRecoverable,
}

/// The lock was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    Yes,
    /// Taken over from a holder that died.
    OwnerDied,
}

/// The lock was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotAcquired {
    WouldBlock,
    TimedOut,
    NotRecoverable,
}

/// How a locker waits for a held lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spinning {
    /// Spin with backoff, then yield the CPU; never sleep in the kernel.
    Only,
    /// Spin briefly, then sleep on the futex.
    ThenSleep,
}

/// A lock word with its holder's thread id (see the module docs).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct OwnerLock {
    word: AtomicU32,
    consistency: AtomicU32,
    /// [`pack`]ed id and start time of the holder (written just after
    /// taking the word).
    owner: AtomicU64,
}

#[cfg(not(ipcx_loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<OwnerLock>() == 16);
    assert!(offset_of!(OwnerLock, consistency) == 4);
    assert!(offset_of!(OwnerLock, owner) == 8);
};

impl OwnerLock {
    #[cfg(all(test, ipcx_loom))]
    pub(crate) fn new() -> OwnerLock {
        OwnerLock {
            word: AtomicU32::new(0),
            consistency: AtomicU32::new(CONSISTENT),
            owner: AtomicU64::new(0),
        }
    }

    /// `ipcx ls`'s view: free, or held by which thread, and whether a
    /// holder died.
    pub(crate) fn describe(&self) -> String {
        let word = self.word.load(Ordering::Relaxed);
        let held = super::mutex::lock_word_state(word & !WAITERS);
        match self.consistency() {
            Consistency::Consistent => held,
            Consistency::OwnerDied => format!("{held}, a holder died (not yet repaired)"),
            Consistency::NotRecoverable => format!("{held}, not recoverable"),
        }
    }

    fn took(&self) -> Acquired {
        self.owner.store(this_thread(), Ordering::Relaxed);
        if self.consistency.load(Ordering::Relaxed) == INCONSISTENT {
            Acquired::OwnerDied
        } else {
            Acquired::Yes
        }
    }

    /// Takes the lock if it is free, or held by a thread that died.
    pub(crate) fn try_lock(&self) -> Result<Acquired, NotAcquired> {
        self.attempt(0, true)
    }

    /// One attempt; `keep` is the waiters bit to keep set when taking it.
    fn attempt(&self, keep: u32, check_holder: bool) -> Result<Acquired, NotAcquired> {
        if self.consistency.load(Ordering::Acquire) == NOT_RECOVERABLE {
            return Err(NotAcquired::NotRecoverable);
        }
        let me = tid();
        // SeqCst, not just Acquire: a reader-writer lock pairs this store
        // with its readers' counts (Dekker), which needs a total order.
        let cas = |from: u32| {
            self.word.compare_exchange(
                from,
                me | keep | (from & WAITERS),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
        };
        let taken = match cas(0) {
            // No holder, but stray bits (the waiters bit left alone, or
            // bytes another process scribbled): free all the same.
            Err(w) if w & TID_MASK == 0 => cas(w),
            other => other,
        };
        match taken {
            Ok(_) => {
                // A holder that had taken over from a dead one may have
                // closed the lock for good between our check and our swap.
                if self.consistency.load(Ordering::Acquire) == NOT_RECOVERABLE {
                    self.unlock_unchanged();
                    return Err(NotAcquired::NotRecoverable);
                }
                Ok(self.took())
            }
            Err(w) if check_holder => self.take_over(w, me),
            Err(_) => Err(NotAcquired::WouldBlock),
        }
    }

    /// Takes the lock from a dead holder (the word still as `seen`).
    fn take_over(&self, seen: u32, me: u32) -> Result<Acquired, NotAcquired> {
        if !self.seize_from_dead(seen, me | (seen & WAITERS)) {
            return Err(NotAcquired::WouldBlock);
        }
        self.owner.store(this_thread(), Ordering::Relaxed);
        Ok(Acquired::OwnerDied)
    }

    /// If the holder in `seen` is dead, swaps the word to `new` and marks
    /// the data inconsistent (the dead holder may have been the one
    /// repairing: then it stays so). True if it did.
    fn seize_from_dead(&self, seen: u32, new: u32) -> bool {
        let holder = seen & TID_MASK;
        if holder == 0 || !holder_dead(holder, self.owner.load(Ordering::Relaxed)) {
            return false;
        }
        if self
            .word
            .compare_exchange(seen, new, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let _ = self.consistency.compare_exchange(
            CONSISTENT,
            INCONSISTENT,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        tracing::warn!(dead = holder, "a lock's holder died holding it");
        true
    }

    /// Frees the lock if its holder died, leaving the data marked
    /// inconsistent for the next taker. True if it did.
    pub(crate) fn retire_dead(&self) -> bool {
        let seen = self.word.load(Ordering::Acquire);
        if !self.seize_from_dead(seen, 0) {
            return false;
        }
        let _ = futex::wake(&self.word, futex::ALL);
        true
    }

    /// Takes the lock, waiting until `deadline` (forever with `None`).
    pub(crate) fn lock(
        &self,
        how: Spinning,
        deadline: Option<Instant>,
    ) -> Result<Acquired, NotAcquired> {
        // Spin with exponential backoff first: a holder of a short critical
        // section leaves within a microsecond.
        for round in 0..spin_rounds(how) {
            match self.attempt(0, false) {
                Err(NotAcquired::WouldBlock) => {}
                done => return done,
            }
            for _ in 0..(1u32 << round) {
                spin_hint();
            }
        }
        // A holder's liveness costs a /proc read: not before it has kept
        // us waiting for an interval.
        let mut liveness = Liveness::new();
        loop {
            // After sleeping, others may sleep too: keep the waiters bit.
            let keep = if how == Spinning::ThenSleep {
                WAITERS
            } else {
                0
            };
            let now = Instant::now();
            match self.attempt(keep, liveness.due()) {
                Err(NotAcquired::WouldBlock) => {}
                done => return done,
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(NotAcquired::TimedOut);
            }
            match how {
                Spinning::Only => yield_now(),
                Spinning::ThenSleep => {
                    let w = self.word.load(Ordering::Relaxed);
                    if w == 0 {
                        continue;
                    }
                    if w & WAITERS == 0
                        && self
                            .word
                            .compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                            .is_err()
                    {
                        continue;
                    }
                    let _ = futex::wait(&self.word, w | WAITERS, Some(sleep_slice(deadline)));
                }
            }
        }
    }

    /// Releases the lock. A holder that took it from a dead one and did not
    /// call [`OwnerLock::make_consistent`] closes it for good.
    pub(crate) fn unlock(&self) {
        let n = if self.consistency.load(Ordering::Relaxed) == INCONSISTENT {
            self.consistency.store(NOT_RECOVERABLE, Ordering::Release);
            futex::ALL
        } else {
            1
        };
        // No stale record for the next holder's waiters to compare with (a
        // new thread with our id would look like us, dead).
        self.owner.store(0, Ordering::Relaxed);
        if self.word.swap(0, Ordering::Release) & WAITERS != 0 || n != 1 {
            let _ = futex::wake(&self.word, n);
        }
    }

    /// Releases the lock and leaves the consistency as it is (a taker
    /// that gives up without having touched the data).
    pub(crate) fn unlock_unchanged(&self) {
        self.owner.store(0, Ordering::Relaxed);
        if self.word.swap(0, Ordering::Release) & WAITERS != 0 {
            let _ = futex::wake(&self.word, 1);
        }
    }

    /// Whether the lock is free (a sequentially consistent read, for
    /// Dekker-style checks against other counters).
    pub(crate) fn is_free(&self) -> bool {
        self.word.load(Ordering::SeqCst) & TID_MASK == 0
    }

    /// [`CONSISTENT`], [`INCONSISTENT`] or [`NOT_RECOVERABLE`], as a
    /// [`Consistency`].
    pub(crate) fn consistency(&self) -> Consistency {
        match self.consistency.load(Ordering::Acquire) {
            CONSISTENT => Consistency::Consistent,
            INCONSISTENT => Consistency::OwnerDied,
            _ => Consistency::NotRecoverable,
        }
    }

    /// Marks the data repaired after [`Acquired::OwnerDied`].
    pub(crate) fn make_consistent(&self) {
        self.consistency.store(CONSISTENT, Ordering::Relaxed);
    }
}

/// Rounds of exponential backoff before yielding or sleeping. Under loom
/// one: every spin there is a scheduling point the model explores.
fn spin_rounds(how: Spinning) -> u32 {
    if cfg!(ipcx_loom) {
        1
    } else if how == Spinning::Only {
        10
    } else {
        6
    }
}

fn yield_now() {
    #[cfg(not(ipcx_loom))]
    std::thread::yield_now();
    #[cfg(ipcx_loom)]
    loom::thread::yield_now();
}
