//! A bounded multi-producer multi-consumer queue in shared memory, for work
//! queues: any number of processes push, any number pop, each message goes
//! to exactly one of them.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue: an array of cells,
//! each with a sequence number. A producer claims position `p` by
//! compare-and-swap on `enqueue` once cell `p % n` reads sequence `p` (free
//! for this lap), writes the message, and publishes it by storing `p + 1`
//! with release. A consumer claims position `p` on `dequeue` once the cell
//! reads `p + 1`, copies the message out, and frees the cell for the next
//! lap by storing `p + n`. Waiting uses the same event counts as the other
//! shared-memory queues. Messages are copied in and out (up to the cell
//! size, `?max_msg=`, 4 KiB by default).
//!
//! Crash recovery: right after its claim, a process records in the cell
//! the position it claimed and who it is. A process killed between claim
//! and release leaves the cell at the head of the queue stuck: a producer's
//! unpublished, a consumer's unfreed. Waiters (and [`Queue::recover`]) look
//! at the head cells once per liveness interval; one claimed by a dead
//! process is released — an unpublished cell is published as a skip
//! marker consumers step over (never a half-written message), an unfreed
//! one is freed (the message its consumer died holding is lost, as any
//! work a killed worker took). A claimer killed in the few instructions
//! between its claim and its record cannot be told from a slow one, so
//! that cell still waits for it.

use std::mem::size_of;
use std::time::{Duration, Instant};

use super::event::{Event, Line, Waiting, notify, wait};
use super::primitive::{AtomicU32, AtomicU64, Ordering, spin_hint};
use super::segment::Segment;
use crate::endpoint::{Endpoint, Overflow, Scheme, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};

const MAGIC: u64 = u64::from_le_bytes(*b"IPCXMPQ1");
const VERSION: u32 = 2;
/// The length of a cell whose dead producer never published it.
const SKIP: u32 = u32::MAX;
/// In a cell's `claim` record: a survivor is releasing this claim.
#[cfg_attr(ipcx_loom, allow(dead_code))]
const RECOVERING: u64 = 1 << 63;

/// The record a claimer of `pos` writes: the position, and its role (`lag`
/// 0 producer, 1 consumer), so that one side's record is never taken for
/// the other's.
fn claim_tag(pos: u64, lag: u64) -> u64 {
    ((pos + 1) << 1) | lag
}
const DEFAULT_CELL: usize = 4 << 10;
/// Bytes before a cell's payload (32 with real atomics; loom's are larger).
const CELL_HEADER: usize = size_of::<CellHeader>();

#[repr(C)]
#[derive(Debug)]
struct QueueInfo {
    magic: AtomicU64,
    version: AtomicU32,
    cells: AtomicU32,
    cell_size: AtomicU32,
}

/// The head of a queue segment.
#[repr(C)]
#[derive(Debug)]
pub struct QueueHeader {
    info: Line<QueueInfo>,
    enqueue: Line<AtomicU64>,
    dequeue: Line<AtomicU64>,
    /// Consumers wait here for messages.
    data: Line<Event>,
    /// Producers wait here for free cells.
    space: Line<Event>,
}

#[repr(C)]
#[derive(Debug)]
struct CellHeader {
    seq: AtomicU64,
    len: AtomicU32,
    _pad: u32,
    /// [`claim_tag`] of the last claim, written (after `owner`) by the
    /// claimer: `owner` is the claimer of that position in that role.
    claim: AtomicU64,
    /// Packed pid and start time of the last claimer.
    owner: AtomicU64,
}

#[cfg(not(ipcx_loom))]
const _: () = {
    assert!(size_of::<QueueHeader>() == 320);
    assert!(size_of::<QueueInfo>() == 24);
    assert!(std::mem::offset_of!(QueueHeader, enqueue) == 64);
    assert!(size_of::<CellHeader>() == CELL_HEADER);
    assert!(CELL_HEADER == 32);
    assert!(std::mem::offset_of!(CellHeader, claim) == 16);
};

fn stride(cell_size: usize) -> usize {
    (CELL_HEADER + cell_size).div_ceil(64) * 64
}

/// The queue protocol over raw memory, so the loom model runs the same code.
#[derive(Debug)]
struct View {
    hdr: *const QueueHeader,
    cells: *mut u8,
    n: u64,
    cell_size: usize,
    /// This process's packed identity, recorded in each cell it claims,
    /// with the fork epoch it is valid for (a forked child is another
    /// process).
    me: std::cell::Cell<(u64, u64)>,
}

// SAFETY: pointers into a mapping the owner keeps alive; shared state is
// reached through atomics, and a cell's bytes are written only by the one
// producer that claimed it and read only by the one consumer that claimed it.
unsafe impl Send for View {}

impl View {
    fn hdr(&self) -> &QueueHeader {
        // SAFETY: `View` is built over a header that lives as long as it.
        unsafe { &*self.hdr }
    }

    fn cell(&self, pos: u64) -> (&CellHeader, *mut u8) {
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
    fn claim(&self, counter: &AtomicU64, lag: u64) -> Option<(u64, &CellHeader, *mut u8)> {
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
    fn try_push(&self, msg: &[u8]) -> bool {
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
    fn try_pop(&self, out: &mut Vec<u8>) -> bool {
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
    fn take(&self, pos: u64, cell: &CellHeader, data: *mut u8, out: &mut Vec<u8>) -> bool {
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
    fn recover(&self) -> bool {
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
    fn take_dead_claim(&self, cell: &CellHeader, tag: u64) -> bool {
        cell.claim.load(Ordering::Acquire) == tag
            && !crate::sys::process::identity_alive(cell.owner.load(Ordering::Relaxed))
            && cell
                .claim
                .compare_exchange(tag, tag | RECOVERING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Under loom nobody dies.
    #[cfg(ipcx_loom)]
    fn take_dead_claim(&self, _: &CellHeader, _: u64) -> bool {
        false
    }

    /// This process's identity, renewed after a fork.
    fn me(&self) -> u64 {
        let epoch = crate::sys::process::fork_epoch();
        match self.me.get() {
            (e, id) if e == epoch => id,
            _ => {
                let id = crate::sys::process::identity();
                self.me.set((epoch, id));
                id
            }
        }
    }

    // The waits' conditions read the newest position (read-modify-write),
    // so a stale one cannot make a waiter spin on a condition that is
    // already false for `try_*`.
    fn has_data(&self) -> bool {
        let pos = self.hdr().dequeue.0.fetch_add(0, Ordering::Relaxed);
        self.cell(pos).0.seq.load(Ordering::Acquire) > pos
    }

    fn has_room(&self) -> bool {
        let pos = self.hdr().enqueue.0.fetch_add(0, Ordering::Relaxed);
        self.cell(pos).0.seq.load(Ordering::Acquire) >= pos
    }
}

/// A handle on a shared work queue; every process that pushes or pops
/// holds one.
///
/// ```no_run
/// use ipcx::shm::Queue;
/// # fn main() -> ipcx::Result<()> {
/// let jobs = Queue::create("shm:jobs?slots=1024&max_msg=512")?;   // once
/// let worker = Queue::open("shm:jobs")?;                           // in each worker
/// jobs.push(b"resize photo 17")?;
/// assert_eq!(worker.pop()?, b"resize photo 17");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Queue {
    view: View,
    _seg: Segment,
    overflow: Overflow,
    wait: WaitStrategy,
    spin: Duration,
    /// When a waiter next looks for cells dead processes hold (it reads
    /// `/proc`: once per liveness interval, not after every wake-up).
    next_recovery: std::cell::Cell<Instant>,
}

fn cell_size_for(ep: &Endpoint) -> usize {
    let o = ep.options();
    if o.max_msg_given {
        o.max_msg
    } else {
        DEFAULT_CELL
    }
}

impl Queue {
    /// Creates the queue `url` (`shm:name?slots=1024&max_msg=4KiB&overflow=block`).
    pub fn create(url: &str) -> Result<Queue> {
        let ep = Endpoint::parse(url)?;
        check(&ep, "create")?;
        let o = ep.options();
        if o.slots < 2 {
            // With one cell, "published" and "free for the next lap" would be
            // the same sequence number.
            return Err(Error::new(
                ErrorKind::InvalidOption {
                    scheme: "shm",
                    option: "slots".into(),
                    reason: "a queue needs at least 2".into(),
                },
                "create",
            )
            .at(&ep));
        }
        let cell_size = cell_size_for(&ep);
        if cell_size > u32::MAX as usize / 2 {
            return Err(Error::new(
                ErrorKind::MessageTooLarge {
                    len: cell_size as u64,
                    max: u32::MAX as u64 / 2,
                },
                "create",
            )
            .at(&ep));
        }
        let mut sized = ep.clone();
        sized.options_mut().size = size_of::<QueueHeader>() + o.slots * stride(cell_size);
        let seg = Segment::create_endpoint(&sized)?;
        let q = Queue::over(seg, o.slots, cell_size, &ep);
        for p in 0..o.slots as u64 {
            q.view.cell(p).0.seq.store(p, Ordering::Relaxed);
        }
        let i = &q.view.hdr().info.0;
        i.version.store(VERSION, Ordering::Relaxed);
        i.cells.store(o.slots as u32, Ordering::Relaxed);
        i.cell_size.store(cell_size as u32, Ordering::Relaxed);
        i.magic.store(MAGIC, Ordering::Release);
        Ok(q)
    }

    /// Opens the queue `url`, waiting up to `?timeout=` for it.
    pub fn open(url: &str) -> Result<Queue> {
        let ep = Endpoint::parse(url)?;
        check(&ep, "open")?;
        let deadline = crate::deadline::far_after(ep.options().timeout);
        let seg = Segment::open_endpoint(&ep)?;
        let bad = |why: &str| Error::new(ErrorKind::Foreign(why.into()), "open").at(&ep);
        if seg.len() < size_of::<QueueHeader>() {
            return Err(bad("the segment is not a queue"));
        }
        let hdr = seg.as_ptr().cast::<QueueHeader>();
        // SAFETY: the segment holds the header (checked above), its data
        // region is cache-line aligned, and the header is atomics only.
        let info = unsafe { &(*hdr).info.0 };
        while info.magic.load(Ordering::Acquire) != MAGIC {
            if Instant::now() >= deadline {
                return Err(bad("the segment is not (yet) a queue"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let n = info.cells.load(Ordering::Relaxed) as usize;
        let cell_size = info.cell_size.load(Ordering::Relaxed) as usize;
        if info.version.load(Ordering::Relaxed) != VERSION
            || n == 0
            || size_of::<QueueHeader>().checked_add(n.saturating_mul(stride(cell_size)))
                != Some(seg.len())
        {
            return Err(bad(
                "the queue header disagrees with the segment (or another ipcx version made it)",
            ));
        }
        Ok(Queue::over(seg, n, cell_size, &ep))
    }

    fn over(seg: Segment, n: usize, cell_size: usize, ep: &Endpoint) -> Queue {
        let base = seg.as_ptr();
        let o = ep.options();
        Queue {
            view: View {
                hdr: base.cast(),
                // SAFETY: the segment holds the header and n cells after it.
                cells: unsafe { base.add(size_of::<QueueHeader>()) },
                n: n as u64,
                cell_size,
                me: std::cell::Cell::new((u64::MAX, 0)),
            },
            _seg: seg,
            overflow: o.overflow,
            wait: o.wait,
            spin: o.spin,
            next_recovery: std::cell::Cell::new(Instant::now()),
        }
    }

    /// The largest message (the cell size).
    pub fn max_msg(&self) -> usize {
        self.view.cell_size
    }

    /// Adds a message; with `?overflow=block` (the default) waits while the
    /// queue is full, with `fail` returns [`ErrorKind::Full`].
    pub fn push(&self, msg: &[u8]) -> Result<()> {
        if msg.len() > self.max_msg() {
            return Err(Error::new(
                ErrorKind::MessageTooLarge {
                    len: msg.len() as u64,
                    max: self.max_msg() as u64,
                },
                "push",
            ));
        }
        while !self.view.try_push(msg) {
            if self.overflow != Overflow::Block {
                return Err(Error::new(ErrorKind::Full, "push"));
            }
            let recover = || self.recover_if_due();
            let how = self.waiting(None, &recover);
            let _ = wait(&self.view.hdr().space.0, || self.view.has_room(), &how);
        }
        Ok(())
    }

    /// Takes the oldest message, waiting while the queue is empty.
    pub fn pop(&self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.pop_into(&mut v, None)?;
        Ok(v)
    }

    /// [`Queue::pop`], waiting at most `timeout` ([`ErrorKind::TimedOut`]).
    pub fn pop_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.pop_into(&mut v, crate::deadline::after(timeout))?;
        Ok(v)
    }

    /// Takes the oldest message into `out`, reusing its allocation.
    pub fn pop_into(&self, out: &mut Vec<u8>, deadline: Option<Instant>) -> Result<()> {
        loop {
            if self.view.try_pop(out) {
                return Ok(());
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(ErrorKind::TimedOut, "pop"));
            }
            let recover = || self.recover_if_due();
            let how = self.waiting(deadline, &recover);
            let _ = wait(&self.view.hdr().data.0, || self.view.has_data(), &how);
        }
    }

    /// How to wait; every liveness interval, `recover` looks for cells
    /// dead processes hold (it returns false: the wait goes on).
    fn waiting<'a>(&self, deadline: Option<Instant>, recover: &'a dyn Fn() -> bool) -> Waiting<'a> {
        Waiting {
            strategy: self.wait,
            spin: self.spin,
            deadline,
            peer_gone: recover,
        }
    }

    fn recover_if_due(&self) -> bool {
        let now = Instant::now();
        if now >= self.next_recovery.get() {
            self.next_recovery
                .set(now + super::event::LIVENESS_INTERVAL);
            self.view.recover();
        }
        false
    }

    /// Claims a cell for a push and never publishes it, as a producer
    /// killed there would: for crash tests.
    #[doc(hidden)]
    pub fn abandon_push(&self) -> bool {
        self.view.claim(&self.view.hdr().enqueue.0, 0).is_some()
    }

    /// Claims a message and never frees its cell, as a consumer killed
    /// there would: for crash tests.
    #[doc(hidden)]
    pub fn abandon_pop(&self) -> bool {
        self.view.claim(&self.view.hdr().dequeue.0, 1).is_some()
    }

    /// Releases the cells at the head of the queue that a dead process
    /// claimed and never let go (waiters do this every liveness interval by
    /// themselves); true if one was.
    pub fn recover(&self) -> bool {
        self.view.recover()
    }
}

/// `ipcx ls`'s view of a queue segment: messages waiting, and cells.
pub(crate) fn describe(seg: &Segment) -> Option<String> {
    if seg.len() < size_of::<QueueHeader>() {
        return None;
    }
    // SAFETY: the segment holds at least a header (checked); it is atomics
    // only, valid for any bits.
    let h = unsafe { &*seg.as_ptr().cast::<QueueHeader>() };
    if h.info.0.magic.load(Ordering::Acquire) != MAGIC {
        return None;
    }
    let (enq, deq) = (
        h.enqueue.0.load(Ordering::Relaxed),
        h.dequeue.0.load(Ordering::Relaxed),
    );
    Some(format!(
        "queue: {} waiting of {} cells",
        enq.saturating_sub(deq),
        h.info.0.cells.load(Ordering::Relaxed)
    ))
}

fn check(ep: &Endpoint, op: &'static str) -> Result<()> {
    if ep.scheme() != Scheme::Shm {
        return Err(Error::new(
            ErrorKind::InvalidEndpoint("a queue needs an shm:NAME endpoint".into()),
            op,
        )
        .at(ep));
    }
    if ep.options().overflow == Overflow::DropOldest {
        return Err(Error::new(
            ErrorKind::InvalidOption {
                scheme: "shm",
                option: "overflow".into(),
                reason: "drop_oldest does not apply to a work queue (each message goes to one consumer); use block or fail".into(),
            },
            op,
        )
        .at(ep));
    }
    Ok(())
}

/// Loom models of the queue protocol over two cells: producers racing for
/// cells, and a producer that must sleep until the consumer frees one.
/// Every interleaving must deliver each message once, whole, with no lost
/// wake-up. (With one cell, "published" and "free for the next lap" would
/// be the same sequence number, which is why a queue needs two.) Run with
/// `scripts/loom`.
#[cfg(all(test, ipcx_loom))]
mod model {
    use super::*;
    use crate::shm::event::Event;

    #[repr(C, align(64))]
    struct ModelCell {
        hdr: CellHeader,
        data: [u8; 48],
    }

    /// Runs `producers` (each a list of messages) against one consumer.
    fn run(producers: &'static [&'static [&'static [u8]]]) {
        loom::model(move || {
            let hdr = Box::into_raw(Box::new(QueueHeader {
                info: Line(QueueInfo {
                    magic: AtomicU64::new(MAGIC),
                    version: AtomicU32::new(VERSION),
                    cells: AtomicU32::new(2),
                    cell_size: AtomicU32::new(48),
                }),
                enqueue: Line(AtomicU64::new(0)),
                dequeue: Line(AtomicU64::new(0)),
                data: Line(Event::new(AtomicU32::new(0), AtomicU32::new(0))),
                space: Line(Event::new(AtomicU32::new(0), AtomicU32::new(0))),
            }));
            let cells = Box::into_raw(Box::new([0u64, 1].map(|seq| ModelCell {
                hdr: CellHeader {
                    seq: AtomicU64::new(seq),
                    len: AtomicU32::new(0),
                    _pad: 0,
                    claim: AtomicU64::new(0),
                    owner: AtomicU64::new(0),
                },
                data: [0; 48],
            })));
            let (h, c) = (hdr as usize, cells as usize);
            let view = move || View {
                hdr: h as *const QueueHeader,
                cells: c as *mut u8,
                n: 2,
                cell_size: 48,
                me: std::cell::Cell::new((crate::sys::process::fork_epoch(), 1)),
            };
            let how = || Waiting {
                strategy: WaitStrategy::Block,
                spin: Duration::ZERO,
                deadline: None,
                peer_gone: &|| false,
            };
            let threads: Vec<_> = producers
                .iter()
                .map(|&msgs| {
                    loom::thread::spawn(move || {
                        let v = view();
                        for &m in msgs {
                            while !v.try_push(m) {
                                let _ = wait(&v.hdr().space.0, || v.has_room(), &how());
                            }
                        }
                    })
                })
                .collect();
            let v = view();
            let mut want: Vec<Vec<u8>> = producers
                .iter()
                .flat_map(|ms| ms.iter().map(|m| m.to_vec()))
                .collect();
            let mut got = Vec::new();
            for _ in 0..want.len() {
                let mut out = Vec::new();
                while !v.try_pop(&mut out) {
                    let _ = wait(&v.hdr().data.0, || v.has_data(), &how());
                }
                got.push(out);
            }
            for t in threads {
                t.join().unwrap();
            }
            got.sort();
            want.sort();
            assert_eq!(got, want);
            // SAFETY: all threads joined; both came from Box::into_raw.
            unsafe {
                drop(Box::from_raw(hdr));
                drop(Box::from_raw(cells));
            }
        });
    }

    #[test]
    fn producers_race_for_cells() {
        run(&[&[b"a"], &[b"b"]]);
    }

    #[test]
    fn a_producer_sleeps_until_a_cell_is_free() {
        run(&[&[b"1", b"2", b"3"]]);
    }
}
