//! Publish/subscribe over shared memory, without copying.
//!
//! One [`Publisher`] creates the segment `shm:name`; any number of
//! [`Subscriber`]s (up to [`MAX_SUBSCRIBERS`]) open it. The publisher loans
//! a chunk of the segment ([`Publisher::loan`]), writes the message in
//! place and sends it: only the chunk's index goes into the ring. A
//! subscriber's [`Sample`] borrows the chunk where it lies.
//!
//! The design follows iceoryx's: a ring of `?slots=` entries (sequence
//! number, chunk, length), one cursor per subscriber, and a pool of
//! fixed-size chunks. Who holds a chunk is a bit mask per chunk: one bit per
//! subscriber holding a sample of it, one for "in the ring", one for "loaned
//! to the publisher"; the chunk is free when the mask is zero. Bits make
//! crash recovery exact: retiring a dead subscriber clears its bit from
//! every mask, whatever it held.
//!
//! A ring slot is rewritten as a seqlock (sequence zeroed, fence, chunk and
//! length, new sequence with release), so a subscriber racing an overwrite
//! (`?overflow=drop_oldest`) either sees a consistent slot or retries, and it
//! takes a chunk by setting its bit and then re-checking the slot: if the
//! publisher moved on meanwhile, it gives the chunk back and counts the
//! message as lost. What a full ring does is `?overflow=`: `block` waits
//! for the slowest live subscriber (retiring dead ones, found through their
//! pid and start time), `drop_oldest` overwrites, `fail` refuses.

use std::mem::size_of;

use super::segment::Segment;
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::stamp::Stamp;
use crate::sys;
use crate::wait::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::wait::{EventCount, Line};

const MAGIC: u64 = u64::from_le_bytes(*b"IPCXPUB1");
const VERSION: u32 = 4;

/// Most publishers of one channel.
pub const MAX_PUBLISHERS: usize = 4;

/// Most subscribers of one channel (one mask bit each).
pub const MAX_SUBSCRIBERS: usize = 62;
const LOANED: u64 = 1 << 62;
const IN_RING: u64 = 1 << 63;
/// A ring slot whose chunk was already given back.
const NO_CHUNK: u32 = u32::MAX;
/// Chunks beyond one per slot: samples held by subscribers, and loans.
/// (Two under loom, whose model explores every chunk's mask.)
const SPARE_CHUNKS: usize = if cfg!(ipcx_loom) { 2 } else { 64 };
/// Bytes between two subscriber entries, and between two chunk masks: a
/// cache line each (more under loom, whose atomics are larger).
const ENTRY_STRIDE: usize = size_of::<Line<SubscriberEntry>>();
const MASK_STRIDE: usize = size_of::<Line<AtomicU64>>();
/// Publishes between two passes over the subscribers' cursors.
const RELEASE_BATCH: u64 = 8;
/// Chunk size when the URL does not set `?max_msg=`.
const DEFAULT_CHUNK: usize = 64 << 10;

const FREE: u32 = 0;
const CLAIMING: u32 = 1;
const ACTIVE: u32 = 2;
const RETIRING: u32 = 3;

/// Fixed facts about a channel, written once by the publisher.
#[repr(C)]
#[derive(Debug)]
struct Info {
    magic: AtomicU64,
    version: AtomicU32,
    overflow: AtomicU32,
    slots: AtomicU32,
    chunks: AtomicU32,
    chunk_size: AtomicU32,
    /// Set when the last publisher left.
    publisher_gone: AtomicU32,
    /// One bit per attached subscriber, so the publisher visits only those.
    active: AtomicU64,
    /// One bit per subscriber that awaits on tokio: the publisher rings its
    /// doorbell (a FIFO) after each message.
    doorbells: AtomicU64,
}

/// The head of a channel segment: facts, the publish count, two events.
#[repr(C)]
#[derive(Debug)]
pub struct ChannelHeader {
    info: Line<Info>,
    /// Messages published so far (the next sequence number).
    tail: Line<AtomicU64>,
    /// Subscribers sleep here for messages.
    data: Line<EventCount>,
    /// The publisher sleeps here for a free slot or chunk.
    space: Line<EventCount>,
    publishers: Line<Publishers>,
    /// What the channel carries, if it is typed.
    schema: Line<schema::SchemaField>,
}

/// One publisher's entry.
#[repr(C)]
#[derive(Debug)]
struct PublisherEntry {
    /// 0 when free; [`RECLAIMING`] while a survivor frees it.
    pid: AtomicU32,
    /// The chunk on loan to this publisher, plus 1 (0: none); a publisher
    /// has one loan at a time (`loan` takes `&mut self`).
    loaned: AtomicU32,
    start: AtomicU64,
}

/// A publisher entry being freed by a survivor.
const RECLAIMING: u32 = u32::MAX;
/// A publisher entry being taken (its start time not yet written).
const CLAIMING_PLACE: u32 = u32::MAX - 1;

/// What the publishers share: who they are, the lock each takes to
/// publish, and how far the ring has given its chunks back.
#[repr(C)]
#[derive(Debug)]
struct Publishers {
    /// Pid of the publisher inside its publish step, or 0.
    lock: AtomicU32,
    count: AtomicU32,
    released: AtomicU64,
    entries: [PublisherEntry; MAX_PUBLISHERS],
}

/// One subscriber's entry (a cache line each).
#[repr(C)]
#[derive(Debug)]
struct SubscriberEntry {
    state: AtomicU32,
    pid: AtomicU32,
    start: AtomicU64,
    /// The next sequence number it will read.
    cursor: AtomicU64,
    /// Messages it missed (overwritten before it read them).
    lost: AtomicU64,
}

/// One ring entry.
#[repr(C)]
#[derive(Debug)]
struct Slot {
    /// Sequence number + 1 of the message here; 0 while being rewritten.
    seq: AtomicU64,
    chunk: AtomicU32,
    len: AtomicU32,
}

#[cfg(not(ipcx_loom))]
const _: () = {
    assert!(size_of::<Info>() <= 64);
    assert!(size_of::<ChannelHeader>() == 576);
    assert!(size_of::<schema::SchemaField>() == 144);
    assert!(size_of::<PublisherEntry>() == 16);
    assert!(size_of::<Publishers>() == 16 + 16 * MAX_PUBLISHERS);
    assert!(std::mem::offset_of!(Publishers, entries) == 16);
    assert!(std::mem::offset_of!(Info, active) == 32);
    assert!(std::mem::offset_of!(Info, doorbells) == 40);
    assert!(std::mem::offset_of!(ChannelHeader, publishers) == 256);
    assert!(ENTRY_STRIDE == 64 && MASK_STRIDE == 64);
    assert!(size_of::<Slot>() == 16);
    assert!(std::mem::offset_of!(ChannelHeader, tail) == 64);
};

/// Where each part of a channel segment starts.
#[derive(Debug, Clone, Copy)]
struct Layout {
    slots: usize,
    chunks: usize,
    chunk_size: usize,
    subscribers: usize,
    ring: usize,
    masks: usize,
    data: usize,
    total: usize,
}

fn round64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

impl Layout {
    fn new(slots: usize, chunk_size: usize) -> Layout {
        let chunks = slots + SPARE_CHUNKS;
        let chunk_size = round64(chunk_size.max(1));
        let subscribers = size_of::<ChannelHeader>();
        let ring = subscribers + MAX_SUBSCRIBERS * ENTRY_STRIDE;
        let masks = ring + round64(slots * size_of::<Slot>());
        // One cache line per mask: the publisher claiming one chunk and a
        // subscriber releasing another must not fight over a line.
        let data = masks + chunks * MASK_STRIDE;
        Layout {
            slots,
            chunks,
            chunk_size,
            subscribers,
            ring,
            masks,
            data,
            total: data + chunks * chunk_size,
        }
    }
}

/// A mapped channel segment and typed access to its parts.
#[derive(Debug)]
struct Channel {
    seg: Segment,
    layout: Layout,
}

impl Channel {
    fn at<T>(&self, offset: usize) -> &T {
        debug_assert!(offset + size_of::<T>() <= self.seg.len() && offset.is_multiple_of(8));
        // SAFETY: every offset comes from `Layout`, checked against the
        // segment's length at create/open; the data region is cache-line
        // aligned and each part 8-aligned; the types hold only atomics,
        // valid for any bit pattern.
        unsafe { &*self.seg.as_ptr().add(offset).cast::<T>() }
    }

    fn header(&self) -> &ChannelHeader {
        self.at(0)
    }

    fn info(&self) -> &Info {
        &self.header().info.0
    }

    fn schema(&self) -> &schema::SchemaField {
        &self.header().schema.0
    }

    fn subscriber(&self, i: usize) -> &SubscriberEntry {
        &self
            .at::<Line<SubscriberEntry>>(self.layout.subscribers + i * ENTRY_STRIDE)
            .0
    }

    fn slot(&self, seq: u64) -> &Slot {
        let i = (seq % self.layout.slots as u64) as usize;
        self.at(self.layout.ring + i * size_of::<Slot>())
    }

    /// The ownership mask of `chunk`. Indices come from shared memory, so
    /// an out-of-range one (a corrupt slot) gets a harmless stand-in.
    fn mask(&self, chunk: u32) -> &AtomicU64 {
        #[cfg(not(ipcx_loom))]
        if chunk as usize >= self.layout.chunks {
            static NOBODY: AtomicU64 = AtomicU64::new(0);
            return &NOBODY;
        }
        self.at(self.layout.masks + chunk as usize * MASK_STRIDE)
    }

    fn chunk_ptr(&self, chunk: u32) -> *mut u8 {
        // SAFETY: chunk < chunks (from the ring or the allocator), so the
        // chunk lies inside the data part of the segment.
        unsafe {
            self.seg
                .as_ptr()
                .add(self.layout.data + chunk as usize * self.layout.chunk_size)
        }
    }

    /// Whether the publisher left normally (one load).
    fn publisher_left(&self) -> bool {
        self.info().publisher_gone.load(Ordering::Acquire) != 0
    }

    /// Whether every publisher left or died (reads /proc: not per message).
    fn publisher_gone(&self) -> bool {
        self.publisher_left()
            || !self.publishers().entries.iter().any(|e| {
                sys::process::is_alive(
                    e.pid.load(Ordering::Acquire),
                    e.start.load(Ordering::Acquire),
                )
            })
    }

    fn publishers(&self) -> &Publishers {
        &self.header().publishers.0
    }

    /// Frees publisher entry `k` if its process died, giving back the chunk
    /// it had on loan (never to be sent); true if it did.
    fn reclaim_publisher(&self, k: usize) -> bool {
        let p = self.publishers();
        let e = &p.entries[k];
        let pid = e.pid.load(Ordering::Acquire);
        if pid == 0
            || pid == RECLAIMING
            || pid == CLAIMING_PLACE
            || sys::process::is_alive(pid, e.start.load(Ordering::Acquire))
        {
            return false;
        }
        if e.pid
            .compare_exchange(pid, RECLAIMING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let loaned = e.loaned.swap(0, Ordering::AcqRel);
        if loaned != 0 {
            self.mask(loaned - 1).fetch_and(!LOANED, Ordering::Release);
        }
        p.count.fetch_sub(1, Ordering::AcqRel);
        e.pid.store(0, Ordering::Release);
        tracing::info!(pid, "freed the entry of a dead publisher");
        true
    }

    /// Whether the publisher `pid` is attached and alive.
    fn publisher_alive(&self, pid: u32) -> bool {
        self.publishers().entries.iter().any(|e| {
            e.pid.load(Ordering::Acquire) == pid
                && sys::process::is_alive(pid, e.start.load(Ordering::Acquire))
        })
    }

    /// Attached subscribers, as indices.
    fn active(&self) -> impl Iterator<Item = usize> {
        // Bits past the table (corrupt memory) are not subscribers.
        let mut bits = self.info().active.load(Ordering::Acquire) & ((1u64 << MAX_SUBSCRIBERS) - 1);
        std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                i
            })
        })
    }

    /// Detaches subscriber `i` and gives back every chunk it held.
    fn detach(&self, i: usize) {
        self.detach_if(i, |_| true);
    }

    /// Detaches subscriber `i` if, once its entry is locked (RETIRING),
    /// `still` holds of it: the entry may have changed hands between a
    /// caller's check and the lock.
    fn detach_if(&self, i: usize, still: impl Fn(&SubscriberEntry) -> bool) -> bool {
        let e = self.subscriber(i);
        if e.state
            .compare_exchange(ACTIVE, RETIRING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        if !still(e) {
            e.state.store(ACTIVE, Ordering::Release);
            return false;
        }
        {
            self.info().active.fetch_and(!(1u64 << i), Ordering::AcqRel);
            self.release_all(i);
            e.state.store(FREE, Ordering::Release);
        }
        true
    }

    /// Clears subscriber `i`'s bit from every chunk; true if a chunk came free.
    fn release_all(&self, i: usize) -> bool {
        let bit = 1u64 << i;
        let mut freed = false;
        for c in 0..self.layout.chunks as u32 {
            let before = self.mask(c).fetch_and(!bit, Ordering::AcqRel);
            freed |= before == bit;
        }
        freed
    }
}

/// `ipcx ls`'s view of a channel segment: publishers, subscribers, and
/// messages published.
pub(crate) fn describe(seg: &Segment) -> Option<String> {
    // SAFETY: a channel header is atomics only, valid for any bits.
    let h = unsafe { seg.data_header::<ChannelHeader>() }?;
    if h.info.0.stamp() != Stamp::Ready {
        return None;
    }
    let publishers: Vec<String> = h
        .publishers
        .0
        .entries
        .iter()
        .filter_map(|e| {
            let pid = e.pid.load(Ordering::Relaxed);
            (pid != 0 && pid < CLAIMING_PLACE).then(|| {
                let alive = sys::process::is_alive(pid, e.start.load(Ordering::Relaxed));
                format!("{pid}{}", if alive { "" } else { " (dead)" })
            })
        })
        .collect();
    let subscribers =
        (h.info.0.active.load(Ordering::Relaxed) & ((1u64 << MAX_SUBSCRIBERS) - 1)).count_ones();
    let carries = h
        .schema
        .0
        .load()
        .map_or_else(String::new, |s| format!(", carries {s}"));
    Some(format!(
        "pub/sub: publisher pid {}, subscribers {subscribers}, published {}{carries}",
        if publishers.is_empty() {
            "none".to_string()
        } else {
            publishers.join(", ")
        },
        h.tail.0.load(Ordering::Relaxed)
    ))
}

fn chunk_size_for(ep: &Endpoint) -> usize {
    let o = ep.options();
    if o.max_msg_given {
        o.max_msg
    } else {
        DEFAULT_CHUNK
    }
}

fn need_shm(ep: &Endpoint, op: &'static str) -> Result<()> {
    ep.shm_name("publish/subscribe", op).map(drop)
}

/// Maps the channel `ep` names, waiting up to its `?timeout=` for it to
/// exist and be initialized, and checks its header.
fn open_channel(ep: &Endpoint) -> Result<Channel> {
    open_channel_until(ep, crate::deadline::far_after(ep.options().timeout))
}

/// [`open_channel`], waiting until `deadline` (the errors name the
/// endpoint's `?timeout=`).
fn open_channel_until(ep: &Endpoint, deadline: std::time::Instant) -> Result<Channel> {
    need_shm(ep, "open")?;
    let seg = Segment::open_until(ep, deadline)?;
    let bad = |why: &str| Error::new(ErrorKind::Foreign(why.into()), "open").at(ep);
    if seg.len() < size_of::<ChannelHeader>() {
        return Err(bad("the segment is not a publish/subscribe channel"));
    }
    // Only the header is read until the layout is known.
    let probe = Channel {
        layout: Layout::new(1, 64),
        seg,
    };
    let i = probe.info();
    Stamp::wait_ready(
        || i.stamp(),
        VERSION,
        deadline,
        "the segment is not (yet) a publish/subscribe channel",
    )
    .map_err(|kind| crate::stamp::open_error(kind, ep, "channel"))?;
    let slots = i.slots.load(Ordering::Relaxed) as usize;
    let layout = Layout::new(slots, i.chunk_size.load(Ordering::Relaxed) as usize);
    if !slots.is_power_of_two()
        || layout.chunks != i.chunks.load(Ordering::Relaxed) as usize
        || layout.total != probe.seg.len()
    {
        return Err(bad("the channel header disagrees with the segment size"));
    }
    Ok(Channel {
        seg: probe.seg,
        layout,
    })
}

mod loan;
#[cfg(all(test, ipcx_loom))]
mod model;
mod publisher;
mod schema;
mod subscriber;

pub use loan::{Loan, TypedLoan};
pub use publisher::Publisher;
pub use schema::{SCHEMA_NAME_MAX, Schema};
pub use subscriber::{Sample, Subscriber, TypedSample};

impl Info {
    /// What the channel's magic and layout version say.
    fn stamp(&self) -> Stamp {
        let magic = self.magic.load(Ordering::Acquire);
        Stamp::of(magic, MAGIC, self.version.load(Ordering::Relaxed), VERSION)
    }
}
