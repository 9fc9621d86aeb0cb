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

use super::segment::Segment;
use crate::endpoint::{Endpoint, Overflow, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::stamp::Stamp;
use crate::wait::primitive::{AtomicU32, AtomicU64, Ordering, spin_hint};
use crate::wait::{EventCount, Line, Liveness, Waiting, notify, wait};

#[cfg(all(test, ipcx_loom))]
mod model;
mod view;

use view::View;

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
    data: Line<EventCount>,
    /// Producers wait here for free cells.
    space: Line<EventCount>,
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
    recovery: std::sync::Mutex<Liveness>,
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
        Stamp::wait_ready(
            || info.stamp(),
            VERSION,
            deadline,
            "the segment is not (yet) a queue",
        )
        .map_err(|kind| crate::stamp::open_error(kind, &ep, "queue"))?;
        let n = info.cells.load(Ordering::Relaxed) as usize;
        let cell_size = info.cell_size.load(Ordering::Relaxed) as usize;
        if n == 0
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
                me: view::Me::unknown(),
            },
            _seg: seg,
            overflow: o.overflow,
            wait: o.wait,
            spin: o.spin,
            recovery: std::sync::Mutex::new(Liveness::due_now()),
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
        // One thread looks at a time; a locked clock means another does.
        let due = self.recovery.try_lock().is_ok_and(|mut r| r.due());
        if due {
            self.view.recover();
        }
        false
    }

    /// Claims a cell for a push and never publishes it, as a producer
    /// killed there would: for crash tests (`bench_support`).
    pub(crate) fn abandon_push(&self) -> bool {
        self.view.claim(&self.view.hdr().enqueue.0, 0).is_some()
    }

    /// Claims a message and never frees its cell, as a consumer killed
    /// there would: for crash tests (`bench_support`).
    pub(crate) fn abandon_pop(&self) -> bool {
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
    // SAFETY: a queue header is atomics only, valid for any bits.
    let h = unsafe { seg.data_header::<QueueHeader>() }?;
    if h.info.0.stamp() != Stamp::Ready {
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
    ep.shm_name("a queue", op)?;
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

impl QueueInfo {
    /// What the queue's magic and layout version say.
    fn stamp(&self) -> Stamp {
        let magic = self.magic.load(Ordering::Acquire);
        Stamp::of(magic, MAGIC, self.version.load(Ordering::Relaxed), VERSION)
    }
}
