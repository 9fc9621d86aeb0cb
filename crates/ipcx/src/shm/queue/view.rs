//! The queue's lock-free protocol over raw memory (Vyukov's bounded MPMC
//! queue with claim records), shared by the real queue and the loom model.

use super::*;

/// This process's packed identity, with the fork epoch it is valid for (a
/// forked child is another process); shared by the threads using a queue.
#[derive(Debug)]
pub(super) struct Me {
    epoch: std::sync::atomic::AtomicU64,
    id: std::sync::atomic::AtomicU64,
}

impl Me {
    /// Already known (the loom model's stand-in identity).
    #[cfg(ipcx_loom)]
    pub(super) fn known(epoch: u64, id: u64) -> Me {
        Me {
            epoch: std::sync::atomic::AtomicU64::new(epoch),
            id: std::sync::atomic::AtomicU64::new(id),
        }
    }

    pub(super) fn unknown() -> Me {
        Me {
            epoch: std::sync::atomic::AtomicU64::new(u64::MAX),
            id: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// The queue protocol over raw memory, so the loom model runs the same code.
#[derive(Debug)]
pub(super) struct View {
    pub(super) hdr: *const QueueHeader,
    pub(super) cells: *mut u8,
    pub(super) n: u64,
    pub(super) cell_size: usize,
    /// This process's packed identity, recorded in each cell it claims,
    /// with the fork epoch it is valid for (a forked child is another
    /// process).
    pub(super) me: Me,
}

// SAFETY: pointers into a mapping the owner keeps alive; shared state is
// reached through atomics, and a cell's bytes are written only by the one
// producer that claimed it and read only by the one consumer that claimed it.
unsafe impl Send for View {}

// SAFETY: the protocol is multi-producer multi-consumer: threads of one
// process are more producers and consumers, each claiming a cell by
// compare-and-swap on the shared counters before touching its bytes; this
// process's identity (`me`) is atomics.
unsafe impl Sync for View {}

impl View {
    pub(super) fn hdr(&self) -> &QueueHeader {
        // SAFETY: `View` is built over a header that lives as long as it.
        unsafe { &*self.hdr }
    }

    pub(super) fn cell(&self, pos: u64) -> (&CellHeader, *mut u8) {
        let i = (pos % self.n) as usize;
        // SAFETY: i < n, and the owner mapped n cells of `stride` bytes.
        unsafe {
            let at = self.cells.add(i * stride(self.cell_size));
            (&*at.cast::<CellHeader>(), at.add(CELL_HEADER))
        }
    }

    /// Claims the next position on `counter` whose cell reads `pos + lag`
    /// (0: free for producers; 1: published, for consumers). `None` when
    /// the cell is a lap behind: the queue is full (or empty).
    pub(super) fn claim(
        &self,
        counter: &AtomicU64,
        lag: u64,
    ) -> Option<(u64, &CellHeader, *mut u8)> {
        let mut pos = counter.load(Ordering::Relaxed);
        loop {
            let (cell, data) = self.cell(pos);
            let seq = cell.seq.load(Ordering::Acquire);
            match seq.cmp(&(pos + lag)) {
                std::cmp::Ordering::Equal => {
                    match counter.compare_exchange(
                        pos,
                        pos + 1,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => {
                            cell.owner.store(self.me(), Ordering::Relaxed);
                            cell.claim.store(claim_tag(pos, lag), Ordering::Release);
                            return Some((pos, cell, data));
                        }
                        Err(now) => pos = now,
                    }
                }
                std::cmp::Ordering::Less => return None,
                // Another process moved on: read the newest position (a
                // read-modify-write cannot return a stale value). A cell
                // ahead of a counter that did not move was scribbled on
                // (claims move the counter before the cell): nothing to
                // claim, rather than spinning forever.
                std::cmp::Ordering::Greater => {
                    let now = counter.fetch_add(0, Ordering::Relaxed);
                    if now == pos {
                        return None;
                    }
                    pos = now;
                }
            }
            spin_hint();
        }
    }

    /// Pushes if a cell is free; `false` when the queue is full.
    pub(super) fn try_push(&self, msg: &[u8]) -> bool {
        let h = self.hdr();
        let Some((pos, cell, data)) = self.claim(&h.enqueue.0, 0) else {
            return false;
        };
        // SAFETY: this cell is ours until we publish it; `msg` fits (checked
        // by the caller).
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), data, msg.len()) };
        cell.len.store(msg.len() as u32, Ordering::Relaxed);
        cell.seq.store(pos + 1, Ordering::Release);
        notify(&h.data.0);
        true
    }

    /// Pops into `out` if a message is ready; `false` when empty.
    pub(super) fn try_pop(&self, out: &mut Vec<u8>) -> bool {
        let h = self.hdr();
        loop {
            let Some((pos, cell, data)) = self.claim(&h.dequeue.0, 1) else {
                return false;
            };
            if self.take(pos, cell, data, out) {
                return true;
            }
        }
    }

    /// Copies a claimed cell's message into `out` and frees the cell;
    /// `false` for a skip marker (nothing to deliver).
    pub(super) fn take(
        &self,
        pos: u64,
        cell: &CellHeader,
        data: *mut u8,
        out: &mut Vec<u8>,
    ) -> bool {
        let raw = cell.len.load(Ordering::Relaxed);
        if raw == SKIP {
            cell.seq.store(pos + self.n, Ordering::Release);
            notify(&self.hdr().space.0);
            return false;
        }
        // A length from shared memory: clamp it to the cell.
        let len = (raw as usize).min(self.cell_size);
        out.clear();
        out.reserve(len);
        // SAFETY: the cell is ours until we free it; `out` has room for `len`
        // bytes, which we initialize.
        unsafe {
            std::ptr::copy_nonoverlapping(data, out.as_mut_ptr(), len);
            out.set_len(len);
        }
        cell.seq.store(pos + self.n, Ordering::Release);
        notify(&self.hdr().space.0);
        true
    }

    /// Releases the head cells if a dead process claimed them and never
    /// let go (see the module docs); true if it released one.
    pub(super) fn recover(&self) -> bool {
        let h = self.hdr();
        // The producer's side: the consumers' next cell, claimed but never
        // published.
        let d = h.dequeue.0.fetch_add(0, Ordering::Relaxed);
        let (cell, _) = self.cell(d);
        let mut released = false;
        if cell.seq.load(Ordering::Acquire) == d
            && h.enqueue.0.fetch_add(0, Ordering::Relaxed) > d
            && self.take_dead_claim(cell, claim_tag(d, 0))
        {
            // Ours alone now: publish the cell as a skip.
            cell.len.store(SKIP, Ordering::Relaxed);
            cell.seq.store(d + 1, Ordering::Release);
            released = true;
            notify(&h.data.0);
        }
        // The consumer's side: the producers' next cell, still holding the
        // message a consumer claimed a lap ago and never freed.
        let e = h.enqueue.0.fetch_add(0, Ordering::Relaxed);
        if let Some(prev) = e.checked_sub(self.n) {
            let (cell, _) = self.cell(e);
            if cell.seq.load(Ordering::Acquire) == prev + 1
                && h.dequeue.0.fetch_add(0, Ordering::Relaxed) > prev
                && self.take_dead_claim(cell, claim_tag(prev, 1))
            {
                cell.seq.store(e, Ordering::Release);
                released = true;
                notify(&h.space.0);
            }
        }
        if released {
            tracing::warn!("released a queue cell a dead process had claimed");
        }
        released
    }

    /// If `cell`'s claim record is `tag` and its claimer died, takes the
    /// claim over (one survivor wins: the record gets [`RECOVERING`]); true
    /// if this one did.
    #[cfg(not(ipcx_loom))]
    pub(super) fn take_dead_claim(&self, cell: &CellHeader, tag: u64) -> bool {
        cell.claim.load(Ordering::Acquire) == tag
            && !crate::sys::process::identity_alive(cell.owner.load(Ordering::Relaxed))
            && cell
                .claim
                .compare_exchange(tag, tag | RECOVERING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Under loom nobody dies.
    #[cfg(ipcx_loom)]
    pub(super) fn take_dead_claim(&self, _: &CellHeader, _: u64) -> bool {
        false
    }

    /// This process's identity, renewed after a fork.
    pub(super) fn me(&self) -> u64 {
        let epoch = crate::sys::process::fork_epoch();
        if self.me.epoch.load(std::sync::atomic::Ordering::Acquire) == epoch {
            return self.me.id.load(std::sync::atomic::Ordering::Relaxed);
        }
        let id = crate::sys::process::identity();
        // The id first: whoever sees the epoch sees an id of that epoch
        // (every thread of a process computes the same one).
        self.me.id.store(id, std::sync::atomic::Ordering::Relaxed);
        self.me
            .epoch
            .store(epoch, std::sync::atomic::Ordering::Release);
        id
    }

    // The waits' conditions read the newest position (read-modify-write),
    // so a stale one cannot make a waiter spin on a condition that is
    // already false for `try_*`.
    pub(super) fn has_data(&self) -> bool {
        let pos = self.hdr().dequeue.0.fetch_add(0, Ordering::Relaxed);
        self.cell(pos).0.seq.load(Ordering::Acquire) > pos
    }

    pub(super) fn has_room(&self) -> bool {
        let pos = self.hdr().enqueue.0.fetch_add(0, Ordering::Relaxed);
        self.cell(pos).0.seq.load(Ordering::Acquire) >= pos
    }
}
