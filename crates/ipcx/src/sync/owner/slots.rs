//! [`Slots`]: a table of processes, each with a count (reader holds,
//! permits), that a survivor can clear when the process is gone.

use super::{process_dead, this_process, unpack};
use crate::wait::primitive::{AtomicU32, AtomicU64, Ordering};

/// How many processes a [`Slots`] table holds.
pub(crate) const SLOTS: usize = if cfg!(ipcx_loom) { 2 } else { 64 };

/// One process's entry: who, and how many it holds; a cache line each, so
/// processes counting in their own never contend.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct Slot {
    /// [`pack`](super::pack)ed pid and start time; 0 free, [`RECLAIMING`] being cleared.
    who: AtomicU64,
    pub(crate) count: AtomicU32,
}

const RECLAIMING: u64 = u64::MAX;

// The layout other processes see.
#[cfg(not(ipcx_loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<Slot>() == 64);
    assert!(offset_of!(Slot, count) == 8);
    assert!(size_of::<Slots>() == 64 * 64);
};

/// A table of processes with a count each (see the module docs).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Slots {
    slots: [Slot; SLOTS],
}

impl Slots {
    #[cfg(all(test, ipcx_loom))]
    pub(crate) fn new() -> Slots {
        Slots {
            slots: std::array::from_fn(|_| Slot {
                who: AtomicU64::new(0),
                count: AtomicU32::new(0),
            }),
        }
    }

    /// This process's slot, claiming a free one (or a dead process's) if
    /// it has none; `None` when all are taken by live processes.
    ///
    /// Only free slots are claimed: a dead process's count means something
    /// (permits to return, holds to release), so its slot is cleared only
    /// by its owner's recovery ([`Slots::reclaim_dead`]); call that and
    /// try again when this finds none.
    pub(crate) fn mine(&self) -> Option<usize> {
        // One claimer at a time in this process, so that two threads that
        // both find no slot do not claim two: the process counts in one.
        static CLAIMING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = CLAIMING.lock().unwrap_or_else(|e| e.into_inner());
        let me = this_process();
        if let Some(i) = self
            .slots
            .iter()
            .position(|s| s.who.load(Ordering::Acquire) == me)
        {
            return Some(i);
        }
        self.slots.iter().position(|s| {
            s.who
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
    }

    pub(crate) fn get(&self, i: usize) -> &Slot {
        &self.slots[i]
    }

    /// Clears slot `i` of the dead process `who`; returns the count it held
    /// (0 if someone else cleared it first).
    pub(crate) fn reclaim(&self, i: usize, who: u64) -> u32 {
        let s = &self.slots[i];
        if s.who
            .compare_exchange(who, RECLAIMING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return 0;
        }
        let held = s.count.swap(0, Ordering::AcqRel);
        s.who.store(0, Ordering::Release);
        held
    }

    /// Clears every dead process's slot; calls `freed` with each count
    /// returned. Reads `/proc` once per occupied slot.
    pub(crate) fn reclaim_dead(&self, mut freed: impl FnMut(u32)) {
        for i in 0..SLOTS {
            let who = self.slots[i].who.load(Ordering::Acquire);
            if who != 0 && who != RECLAIMING && process_dead(who) {
                let held = self.reclaim(i, who);
                if held > 0 {
                    freed(held);
                }
            }
        }
    }

    /// The sum of all counts.
    pub(crate) fn total(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| u64::from(s.count.load(Ordering::SeqCst)))
            .sum()
    }

    /// Occupied slots with a count, as (who, count).
    pub(crate) fn holders(&self) -> Vec<(u64, u32)> {
        self.slots
            .iter()
            .filter_map(|s| {
                let who = s.who.load(Ordering::Relaxed);
                let n = s.count.load(Ordering::Relaxed);
                (who != 0 && who != RECLAIMING && n > 0).then_some((who, n))
            })
            .collect()
    }
}

/// `, pid 12 holds 2, pid 40 (dead) holds 1` for `ipcx ls`.
pub(crate) fn describe_holders(slots: &Slots, verb: &str) -> String {
    slots
        .holders()
        .into_iter()
        .map(|(who, n)| {
            let dead = if process_dead(who) { " (dead)" } else { "" };
            format!(", pid {}{dead} {verb} {n}", unpack(who).0)
        })
        .collect()
}

/// A handle's cached slot in a [`Slots`] table, valid for one fork epoch
/// (a forked child is another process and needs its own).
#[derive(Debug, Default)]
pub(crate) struct SlotCache(std::sync::atomic::AtomicU64);

impl SlotCache {
    /// This process's slot; when the table is full, `recover` runs (to
    /// clear dead processes' slots) and the claim is tried once more.
    /// Only a slot found is cached.
    pub(crate) fn get(&self, slots: &Slots, recover: impl FnOnce()) -> Option<usize> {
        #[cfg(not(ipcx_loom))]
        let epoch = crate::sys::process::fork_epoch();
        #[cfg(ipcx_loom)]
        let epoch = 0;
        let cached = self.0.load(std::sync::atomic::Ordering::Relaxed);
        if cached != 0 && cached >> 8 == epoch {
            return Some((cached & 0xff) as usize - 1);
        }
        let slot = slots.mine().or_else(|| {
            recover();
            slots.mine()
        })?;
        self.0.store(
            (epoch << 8) | (slot as u64 + 1),
            std::sync::atomic::Ordering::Relaxed,
        );
        Some(slot)
    }
}
