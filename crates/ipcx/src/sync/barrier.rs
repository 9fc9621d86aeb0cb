//! [`Barrier`]: `n` parties meet, again and again, across processes.
//!
//! One futex word holds the generation and the arrivals, so a party's
//! arrival and the last party's opening of the next generation are each a
//! single compare-and-swap: bits 0-15 count arrivals, bits 16-30 the
//! generation (it only has to differ from the one a sleeper saw), bit 31
//! marks the barrier broken. Each party holds an entry in a member table;
//! a waiter that has waited a while checks the members, and a dead one
//! breaks the barrier for everyone, at once, instead of a wait forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::owner::{process_dead, this_process};
use super::place::{Place, PrimitiveKind, State, ValueLayout, footprint};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::Segment;
use crate::wait::primitive::{AtomicU32, AtomicU64, Ordering, futex};
use crate::wait::{Liveness, sleep_slice};

const ARRIVED: u32 = 0xffff;
const GEN_SHIFT: u32 = 16;
const GEN_MASK: u32 = 0x7fff;
const BROKEN: u32 = 1 << 31;

/// Parties a barrier can have (its member table's size).
pub const MAX_PARTIES: u32 = 64;

#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct BarrierState {
    word: AtomicU32,
    parties: AtomicU32,
    members: [AtomicU64; MAX_PARTIES as usize],
}

#[cfg(not(ipcx_loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(BarrierState, parties) == 4);
    assert!(offset_of!(BarrierState, members) == 8);
    assert!(size_of::<BarrierState>() == 576);
};

// SAFETY: repr(C), align 64, atomics only.
unsafe impl State for BarrierState {
    const KIND: PrimitiveKind = PrimitiveKind::Barrier;
}

fn generation(w: u32) -> u32 {
    (w >> GEN_SHIFT) & GEN_MASK
}

/// How a completed wait ended for this party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult {
    leader: bool,
    generation: u32,
}

impl BarrierWaitResult {
    /// True for exactly one party per generation: the last to arrive.
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// The generation this wait completed (modulo 2^15).
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

fn broken() -> Error {
    Error::new(ErrorKind::BarrierBroken, "barrier wait")
}

impl BarrierState {
    #[cfg(all(test, ipcx_loom))]
    pub(crate) fn new(parties: u32) -> BarrierState {
        BarrierState {
            word: AtomicU32::new(0),
            parties: AtomicU32::new(parties),
            members: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Parties, as written at creation; clamped to the table (another
    /// process may have written anything there).
    fn parties(&self) -> u32 {
        self.parties.load(Ordering::Relaxed).clamp(1, MAX_PARTIES)
    }

    /// Claims a member entry for a new party.
    pub(crate) fn join(&self) -> Result<usize> {
        let n = self.parties() as usize;
        let me = this_process();
        for (i, m) in self.members[..n].iter().enumerate() {
            if m.compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(i);
            }
        }
        self.check_members();
        Err(Error::new(
            ErrorKind::LimitReached(format!(
                "the barrier already has its {n} parties; drop a party's handle first, or create it with more parties"
            )),
            "barrier",
        ))
    }

    pub(crate) fn leave(&self, member: usize) {
        self.members[member].store(0, Ordering::Release);
    }

    /// Breaks the barrier if a member died; true if broken.
    fn check_members(&self) -> bool {
        let n = self.parties() as usize;
        let dead = self.members[..n].iter().any(|m| {
            let who = m.load(Ordering::Acquire);
            who != 0 && process_dead(who)
        });
        if dead {
            self.break_it();
        }
        self.word.load(Ordering::Acquire) & BROKEN != 0
    }

    fn break_it(&self) {
        if self.word.fetch_or(BROKEN, Ordering::AcqRel) & BROKEN == 0 {
            tracing::warn!("a barrier party died: the barrier is broken");
        }
        let _ = futex::wake(&self.word, futex::ALL);
    }

    /// Arrives and waits for the generation to complete.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> Result<BarrierWaitResult> {
        let n = self.parties();
        let mut w = self.word.load(Ordering::Acquire);
        let seen_gen = loop {
            if w & BROKEN != 0 {
                return Err(broken());
            }
            let seen_gen = generation(w);
            let last = (w & ARRIVED) + 1 >= n;
            let next = if last {
                ((seen_gen + 1) & GEN_MASK) << GEN_SHIFT
            } else {
                w + 1
            };
            match self
                .word
                .compare_exchange(w, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if last => {
                    let _ = futex::wake(&self.word, futex::ALL);
                    return Ok(BarrierWaitResult {
                        leader: true,
                        generation: seen_gen,
                    });
                }
                Ok(_) => break seen_gen,
                Err(now) => w = now,
            }
        };
        let mut liveness = Liveness::new();
        loop {
            let w = self.word.load(Ordering::Acquire);
            if generation(w) != seen_gen {
                return Ok(BarrierWaitResult {
                    leader: false,
                    generation: seen_gen,
                });
            }
            if w & BROKEN != 0 {
                return Err(broken());
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) && self.withdraw(w) {
                return Err(Error::new(ErrorKind::TimedOut, "barrier wait"));
            }
            let _ = futex::wait(&self.word, w, Some(sleep_slice(deadline)));
            // Broken only if our generation has not completed first.
            if liveness.due()
                && self.check_members()
                && generation(self.word.load(Ordering::Acquire)) == seen_gen
            {
                return Err(broken());
            }
        }
    }

    /// Takes back this party's arrival (a timed-out wait), unless the
    /// generation completed meanwhile; true if taken back.
    fn withdraw(&self, mut w: u32) -> bool {
        loop {
            // No arrival to take back (only scribbled memory gets here).
            if w & ARRIVED == 0 {
                return true;
            }
            match self
                .word
                .compare_exchange(w, w - 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) if generation(now) == generation(w) && now & BROKEN == 0 => w = now,
                Err(_) => return false,
            }
        }
    }
}

/// A reusable barrier for `n` parties in any processes.
///
/// Each `Barrier` handle is one party (a process can hold several). If a
/// party's process dies, every waiter gets [`ErrorKind::BarrierBroken`]
/// within 20 ms instead of waiting forever; the barrier stays broken
/// (recreate it).
///
/// ```no_run
/// use ipcx::sync::Barrier;
/// # fn main() -> ipcx::Result<()> {
/// // Four worker processes each run:
/// let barrier = Barrier::open("phase")?; // created with Barrier::create("phase", 4)
/// for _step in 0..100 {
///     // ... compute this step ...
///     barrier.wait()?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Barrier {
    place: Place<BarrierState>,
    member: usize,
}

impl Barrier {
    /// Creates the barrier `NAME` for `parties` (at most 64), joining it
    /// as the first party.
    pub fn create(name: &str, parties: u32) -> Result<Barrier> {
        check_parties(parties)?;
        Barrier::join(Place::create_named(
            name,
            ValueLayout::NONE,
            parties,
            initializer(parties),
        )?)
    }

    /// Opens the barrier `NAME` as one more party, waiting up to
    /// `?timeout=` for it to exist.
    pub fn open(name: &str) -> Result<Barrier> {
        Barrier::join(Place::open_named(name, ValueLayout::NONE)?)
    }

    /// Creates one at `offset` in `seg` ([`Barrier::footprint`] bytes).
    ///
    /// # Safety
    #[doc = create_in_safety!()]
    pub unsafe fn create_in(seg: &Arc<Segment>, offset: usize, parties: u32) -> Result<Barrier> {
        check_parties(parties)?;
        // SAFETY: forwarded to the caller.
        Barrier::join(unsafe {
            Place::create_in(
                seg,
                offset,
                ValueLayout::NONE,
                parties,
                initializer(parties),
            )
        }?)
    }

    /// Opens the one created at `offset` in `seg`, as one more party.
    pub fn open_in(seg: &Arc<Segment>, offset: usize) -> Result<Barrier> {
        Barrier::join(Place::open_in(seg, offset, ValueLayout::NONE)?)
    }

    /// Bytes a `Barrier` takes in a segment.
    pub const fn footprint() -> usize {
        footprint::<BarrierState>(0)
    }

    fn join(place: Place<BarrierState>) -> Result<Barrier> {
        let member = place.state().join()?;
        Ok(Barrier { place, member })
    }

    /// Arrives, and waits until all parties have.
    pub fn wait(&self) -> Result<BarrierWaitResult> {
        self.place.state().wait(None)
    }

    /// [`Barrier::wait`] for at most `timeout`; on
    /// [`ErrorKind::TimedOut`] this party's arrival is taken back.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult> {
        self.place.state().wait(crate::deadline::after(timeout))
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.place.param()
    }
}

impl Drop for Barrier {
    fn drop(&mut self) {
        self.place.state().leave(self.member);
    }
}

fn check_parties(parties: u32) -> Result<()> {
    if parties == 0 || parties > MAX_PARTIES {
        return Err(Error::new(
            ErrorKind::InvalidArgument(format!(
                "a barrier has 1 to {MAX_PARTIES} parties, not {parties}"
            )),
            "barrier",
        ));
    }
    Ok(())
}

fn initializer(parties: u32) -> impl FnOnce(&BarrierState, *mut u8) -> Result<()> {
    move |s, _| {
        s.parties.store(parties, Ordering::Relaxed);
        Ok(())
    }
}

/// `ipcx ls`'s view: generation, arrivals, members, broken.
pub(crate) fn describe(place: &Place<BarrierState>) -> String {
    let s = place.state();
    let w = s.word.load(Ordering::Relaxed);
    let n = s.parties();
    let members = s.members[..n as usize]
        .iter()
        .filter(|m| m.load(Ordering::Relaxed) != 0)
        .count();
    format!(
        "generation {}, {} of {n} arrived, {members} joined{}",
        generation(w),
        w & ARRIVED,
        if w & BROKEN != 0 { ", broken" } else { "" }
    )
}
