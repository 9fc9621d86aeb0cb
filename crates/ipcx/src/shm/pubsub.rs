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

use std::cell::Cell;
use std::marker::PhantomData;
use std::mem::size_of;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::event::{Event, Line, WaitEnd, Waiting, notify, wait};
use super::primitive::{AtomicU32, AtomicU64, Ordering, fence};
use super::segment::Segment;
use crate::endpoint::{Endpoint, Overflow, Scheme, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

const MAGIC: u64 = u64::from_le_bytes(*b"IPCXPUB1");
const VERSION: u32 = 1;

/// Most subscribers of one channel (one mask bit each).
pub const MAX_SUBSCRIBERS: usize = 62;
const LOANED: u64 = 1 << 62;
const IN_RING: u64 = 1 << 63;
/// A ring slot whose chunk was already given back.
const NO_CHUNK: u32 = u32::MAX;
/// Chunks beyond one per slot: samples held by subscribers, and loans.
const SPARE_CHUNKS: usize = 64;
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
    publisher_pid: AtomicU32,
    publisher_start: AtomicU64,
    publisher_gone: AtomicU32,
    /// One bit per attached subscriber, so the publisher visits only those.
    active: AtomicU64,
}

/// The head of a channel segment: facts, the publish count, two events.
#[repr(C)]
#[derive(Debug)]
pub struct ChannelHeader {
    info: Line<Info>,
    /// Messages published so far (the next sequence number).
    tail: Line<AtomicU64>,
    /// Subscribers sleep here for messages.
    data: Line<Event>,
    /// The publisher sleeps here for a free slot or chunk.
    space: Line<Event>,
}

/// One subscriber's place (a cache line each).
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
    assert!(size_of::<ChannelHeader>() == 256);
    assert!(size_of::<Line<SubscriberEntry>>() == 64);
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
        let ring = subscribers + MAX_SUBSCRIBERS * 64;
        let masks = ring + round64(slots * size_of::<Slot>());
        // One cache line per mask: the publisher claiming one chunk and a
        // subscriber releasing another must not fight over a line.
        let data = masks + chunks * 64;
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
        debug_assert!(offset + size_of::<T>() <= self.seg.len() && offset % 8 == 0);
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

    fn subscriber(&self, i: usize) -> &SubscriberEntry {
        &self
            .at::<Line<SubscriberEntry>>(self.layout.subscribers + i * 64)
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
        self.at(self.layout.masks + chunk as usize * 64)
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

    /// Whether the publisher left or died (reads /proc: not per message).
    fn publisher_gone(&self) -> bool {
        let i = self.info();
        self.publisher_left()
            || !sys::process::is_alive(
                i.publisher_pid.load(Ordering::Relaxed),
                i.publisher_start.load(Ordering::Relaxed),
            )
    }

    /// Attached subscribers, as indices.
    fn active(&self) -> impl Iterator<Item = usize> {
        let mut bits = self.info().active.load(Ordering::Acquire);
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

    /// Detaches subscriber `i` if, once its place is locked (RETIRING),
    /// `still` holds of it: the place may have changed hands between a
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

fn chunk_size_for(ep: &Endpoint) -> usize {
    let o = ep.options();
    if o.max_msg_given {
        o.max_msg
    } else {
        DEFAULT_CHUNK
    }
}

fn need_shm(ep: &Endpoint, op: &'static str) -> Result<()> {
    if ep.scheme() != Scheme::Shm {
        return Err(Error::new(
            ErrorKind::InvalidEndpoint("publish/subscribe needs an shm:NAME endpoint".into()),
            op,
        )
        .at(ep));
    }
    Ok(())
}

/// The one writer of a channel.
///
/// ```no_run
/// use ipcx::shm::{Publisher, Subscriber};
/// # fn main() -> ipcx::Result<()> {
/// let mut publisher = Publisher::create("shm:prices?slots=1024&max_msg=4KiB")?;
/// let subscriber = Subscriber::open("shm:prices")?;
/// let mut loan = publisher.loan(5)?;
/// loan.copy_from_slice(b"hello"); // written in place, in shared memory
/// loan.send()?;
/// let sample = subscriber.recv()?; // read in place, no copy
/// assert_eq!(&*sample, b"hello");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Publisher {
    ch: Channel,
    overflow: Overflow,
    wait: WaitStrategy,
    spin: Duration,
    /// Ring slots below this sequence number gave their chunk back.
    released: u64,
}

impl Publisher {
    /// Creates the channel `url` (`shm:name?slots=256&max_msg=64KiB&overflow=block`).
    pub fn create(url: &str) -> Result<Publisher> {
        Publisher::create_endpoint(&Endpoint::parse(url)?)
    }

    /// [`Publisher::create`] with a parsed endpoint.
    pub fn create_endpoint(ep: &Endpoint) -> Result<Publisher> {
        need_shm(ep, "create")?;
        let o = ep.options();
        if chunk_size_for(ep) > u32::MAX as usize / 2 {
            return Err(Error::new(
                ErrorKind::InvalidOption {
                    scheme: "shm",
                    option: "max_msg".into(),
                    reason: "must be under 2 GiB for publish/subscribe chunks".into(),
                },
                "create",
            )
            .at(ep));
        }
        let layout = Layout::new(o.slots, chunk_size_for(ep));
        let mut sized = ep.clone();
        sized.options_mut().size = layout.total;
        let ch = Channel {
            seg: Segment::create_endpoint(&sized)?,
            layout,
        };
        let i = ch.info();
        let pid = sys::process::pid();
        i.version.store(VERSION, Ordering::Relaxed);
        i.overflow.store(o.overflow as u32, Ordering::Relaxed);
        i.slots.store(layout.slots as u32, Ordering::Relaxed);
        i.chunks.store(layout.chunks as u32, Ordering::Relaxed);
        i.chunk_size
            .store(layout.chunk_size as u32, Ordering::Relaxed);
        i.publisher_pid.store(pid, Ordering::Relaxed);
        i.publisher_start.store(
            sys::process::start_time(pid).unwrap_or(0),
            Ordering::Relaxed,
        );
        // The segment is fresh (all zero): every subscriber place is FREE,
        // every chunk free, every slot empty.
        i.magic.store(MAGIC, Ordering::Release);
        Ok(Publisher {
            ch,
            overflow: o.overflow,
            wait: o.wait,
            spin: o.spin,
            released: 0,
        })
    }

    /// The largest message (the chunk size).
    pub fn max_msg(&self) -> usize {
        self.ch.layout.chunk_size
    }

    /// Subscribers attached now.
    pub fn subscribers(&self) -> usize {
        self.ch.active().count()
    }

    /// Waits until at least `n` subscribers are attached (so that nothing
    /// is sent into the void), or `timeout` passes ([`ErrorKind::TimedOut`]).
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.subscribers() < n {
            if Instant::now() >= deadline {
                return Err(Error::new(ErrorKind::TimedOut, "wait_for_subscribers"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Chunks no one holds (free for loans).
    pub fn free_chunks(&self) -> usize {
        (0..self.ch.layout.chunks as u32)
            .filter(|&c| self.ch.mask(c).load(Ordering::Acquire) == 0)
            .count()
    }

    /// Loans `len` bytes of shared memory to write a message into.
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>> {
        if len > self.max_msg() {
            return Err(Error::new(
                ErrorKind::MessageTooLarge {
                    len: len as u64,
                    max: self.max_msg() as u64,
                },
                "loan",
            ));
        }
        let chunk = loop {
            if let Some(c) = self.alloc() {
                break c;
            }
            if self.release_consumed() {
                continue;
            }
            if self.overflow == Overflow::Fail {
                return Err(Error::new(ErrorKind::Full, "loan"));
            }
            // Subscribers hold every spare chunk: wait for one to come back,
            // or for the ring to hold chunks everyone has read.
            self.wait_space(|p| p.free_chunks() > 0 || p.releasable())?;
        };
        Ok(Loan {
            publisher: self,
            chunk: Some(chunk),
            len,
        })
    }

    /// Loans memory for one `T`, a plain-data type (zerocopy's traits: any
    /// bit pattern is valid, no padding, no references), to fill in place.
    ///
    /// ```no_run
    /// # fn main() -> ipcx::Result<()> {
    /// let mut publisher = ipcx::shm::Publisher::create("shm:ticks?max_msg=64")?;
    /// let mut tick = publisher.loan_as::<[u64; 2]>()?;
    /// *tick = [1_700_000_000, 4242]; // written straight into shared memory
    /// tick.send()?;
    /// # Ok(()) }
    /// ```
    pub fn loan_as<T: FromBytes + IntoBytes + KnownLayout + Immutable>(
        &mut self,
    ) -> Result<TypedLoan<'_, T>> {
        if std::mem::align_of::<T>() > 64 {
            return Err(Error::new(
                ErrorKind::Unsupported(format!(
                    "{} needs {}-byte alignment; chunks are 64-byte aligned",
                    std::any::type_name::<T>(),
                    std::mem::align_of::<T>()
                )),
                "loan",
            ));
        }
        let loan = self.loan(size_of::<T>())?;
        Ok(TypedLoan {
            loan,
            _type: PhantomData,
        })
    }

    /// Sends a copy of `msg` (a loan filled from it).
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        let mut loan = self.loan(msg.len())?;
        loan.copy_from_slice(msg);
        loan.send()
    }

    /// Takes the lowest free chunk: recently used chunks come back first,
    /// so the memory a busy channel touches stays small and in cache.
    fn alloc(&mut self) -> Option<u32> {
        (0..self.ch.layout.chunks as u32).find(|&c| {
            let mask = self.ch.mask(c);
            // Acquire: readers' last bit clears (release) happen before we
            // overwrite the chunk.
            mask.load(Ordering::Relaxed) == 0
                && mask
                    .compare_exchange(0, LOANED, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
        })
    }

    /// Gives back the ring's hold on chunks every subscriber has read
    /// (new subscribers start at the tail, so nobody will read them again).
    /// True if any chunk came free.
    fn release_consumed(&mut self) -> bool {
        let tail = self.ch.header().tail.0.load(Ordering::Relaxed);
        let upto = self.slowest().unwrap_or(tail).min(tail);
        let mut freed = false;
        while self.released < upto {
            let slot = self.ch.slot(self.released);
            let chunk = slot.chunk.swap(NO_CHUNK, Ordering::Relaxed);
            if chunk != NO_CHUNK {
                freed |= self.ch.mask(chunk).fetch_and(!IN_RING, Ordering::AcqRel) == IN_RING;
            }
            self.released += 1;
        }
        freed
    }

    fn publish(&mut self, chunk: u32, len: usize) -> Result<()> {
        let h = self.ch.header();
        let s = h.tail.0.load(Ordering::Relaxed);
        let n = self.ch.layout.slots as u64;
        if s >= n && self.overflow != Overflow::DropOldest {
            // Slot s % n still holds message s - n: every subscriber must be past it.
            let free = |p: &Publisher| p.slowest().is_none_or(|c| c > s - n);
            if !free(self) {
                // A dead subscriber must not make `fail` refuse forever.
                if self.overflow == Overflow::Fail && !(self.retire_dead() && free(self)) {
                    self.ch.mask(chunk).fetch_and(!LOANED, Ordering::Release);
                    return Err(Error::new(ErrorKind::Full, "send"));
                }
                self.wait_space(free)?;
            }
        }
        let slot = self.ch.slot(s);
        // Under drop_oldest, the message overwritten may still hold its chunk.
        let old = Some(slot.chunk.load(Ordering::Relaxed))
            .filter(|&c| s >= n && (c as usize) < self.ch.layout.chunks);
        // Seqlock write: readers that see the new sequence see the new chunk.
        slot.seq.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.chunk.store(chunk, Ordering::Relaxed);
        slot.len.store(len as u32, Ordering::Relaxed);
        slot.seq.store(s + 1, Ordering::Release);
        let mask = self.ch.mask(chunk);
        mask.fetch_or(IN_RING, Ordering::AcqRel);
        mask.fetch_and(!LOANED, Ordering::AcqRel);
        if let Some(old) = old {
            self.ch.mask(old).fetch_and(!IN_RING, Ordering::AcqRel);
        }
        h.tail.0.store(s + 1, Ordering::Release);
        notify(&h.data.0);
        // Slots overwritten (drop_oldest) gave their chunk back above.
        self.released = self.released.max((s + 1).saturating_sub(n));
        // Reading every cursor moves their cache lines here: do it in
        // batches (and whenever a loan finds no free chunk).
        if (s + 1) % RELEASE_BATCH == 0 {
            self.release_consumed();
        }
        Ok(())
    }

    /// Whether ring slots every subscriber passed still hold their chunks.
    fn releasable(&self) -> bool {
        let tail = self.ch.header().tail.0.load(Ordering::Relaxed);
        self.slowest().unwrap_or(tail).min(tail) > self.released
    }

    /// The lowest cursor among attached subscribers.
    fn slowest(&self) -> Option<u64> {
        self.ch
            .active()
            .map(|i| self.ch.subscriber(i).cursor.load(Ordering::Acquire))
            .min()
    }

    /// Sleeps until `ready`, retiring dead subscribers on the way.
    fn wait_space(&self, ready: impl Fn(&Publisher) -> bool) -> Result<()> {
        loop {
            let how = Waiting {
                strategy: self.wait,
                spin: self.spin,
                deadline: None,
                peer_gone: &|| self.retire_dead(),
            };
            match wait(&self.ch.header().space.0, || ready(self), &how) {
                Ok(()) => return Ok(()),
                // A dead subscriber was retired: look again.
                Err(WaitEnd::PeerGone) | Err(WaitEnd::TimedOut) => {}
            }
        }
    }

    /// Retires subscribers whose process died; true if any was.
    fn retire_dead(&self) -> bool {
        let mut any = false;
        for i in self.ch.active() {
            let e = self.ch.subscriber(i);
            let dead = |e: &SubscriberEntry| {
                !sys::process::is_alive(
                    e.pid.load(Ordering::Acquire),
                    e.start.load(Ordering::Acquire),
                )
            };
            if dead(e) && self.ch.detach_if(i, dead) {
                tracing::info!(
                    pid = e.pid.load(Ordering::Relaxed),
                    "retired dead subscriber"
                );
                any = true;
            }
        }
        any
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let h = self.ch.header();
        h.info.0.publisher_gone.store(1, Ordering::Release);
        h.data.0.wake_all();
    }
}

/// Shared memory loaned to the publisher: write the message, then
/// [`Loan::send`]. Dropped unsent, the chunk goes back to the pool and
/// nothing is delivered.
#[derive(Debug)]
pub struct Loan<'a> {
    publisher: &'a mut Publisher,
    chunk: Option<u32>,
    len: usize,
}

impl Loan<'_> {
    /// Where the loaned memory lies in the segment's data region (the same
    /// place the subscribers' samples will show).
    pub fn offset(&self) -> usize {
        let c = self.chunk.expect("a live loan has its chunk");
        self.publisher.ch.layout.data + c as usize * self.publisher.ch.layout.chunk_size
    }

    /// Publishes the message to every subscriber.
    pub fn send(mut self) -> Result<()> {
        let chunk = self.chunk.take().expect("a loan is sent once");
        self.publisher.publish(chunk, self.len)
    }
}

impl Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let c = self.chunk.expect("a live loan has its chunk");
        // SAFETY: the chunk is loaned (its LOANED bit keeps it from anyone
        // else) and `len` fits in it (checked by `loan`).
        unsafe { std::slice::from_raw_parts(self.publisher.ch.chunk_ptr(c), self.len) }
    }
}

impl DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        let c = self.chunk.expect("a live loan has its chunk");
        // SAFETY: as in `deref`; the loan is the only writer of the chunk,
        // and `&mut self` makes this the only reference to it in-process.
        unsafe { std::slice::from_raw_parts_mut(self.publisher.ch.chunk_ptr(c), self.len) }
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.chunk.take() {
            self.publisher
                .ch
                .mask(c)
                .fetch_and(!LOANED, Ordering::Release);
        }
    }
}

/// A [`Loan`] seen as one `T` (see [`Publisher::loan_as`]).
#[derive(Debug)]
pub struct TypedLoan<'a, T> {
    loan: Loan<'a>,
    _type: PhantomData<T>,
}

impl<T> TypedLoan<'_, T> {
    /// Publishes the value to every subscriber.
    pub fn send(self) -> Result<()> {
        self.loan.send()
    }
}

impl<T: FromBytes + KnownLayout + Immutable> Deref for TypedLoan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Chunks are 64-byte aligned and exactly size_of::<T>() long here.
        T::ref_from_bytes(&self.loan).expect("a loan sized and aligned for T")
    }
}

impl<T: FromBytes + IntoBytes + KnownLayout + Immutable> DerefMut for TypedLoan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        T::mut_from_bytes(&mut self.loan).expect("a loan sized and aligned for T")
    }
}

/// A reader of a channel.
#[derive(Debug)]
pub struct Subscriber {
    ch: Channel,
    index: usize,
    cursor: Cell<u64>,
    wait: WaitStrategy,
    spin: Duration,
    /// One thread receives: a subscriber is `Send`, not `Sync`.
    _not_sync: PhantomData<Cell<()>>,
}

impl Subscriber {
    /// Attaches to the channel `url`, waiting up to `?timeout=` for the
    /// publisher to create it. Messages published from now on arrive.
    pub fn open(url: &str) -> Result<Subscriber> {
        Subscriber::open_endpoint(&Endpoint::parse(url)?)
    }

    /// [`Subscriber::open`] with a parsed endpoint.
    pub fn open_endpoint(ep: &Endpoint) -> Result<Subscriber> {
        need_shm(ep, "open")?;
        let deadline = Instant::now() + ep.options().timeout;
        let seg = Segment::open_endpoint(ep)?;
        let bad = |why: &str| Error::new(ErrorKind::Unsupported(why.into()), "open").at(ep);
        if seg.len() < size_of::<ChannelHeader>() {
            return Err(bad("the segment is not a publish/subscribe channel"));
        }
        // SAFETY (of the reads below): checked to hold at least the header.
        let info = Channel {
            layout: Layout::new(1, 64),
            seg,
        };
        while info.info().magic.load(Ordering::Acquire) != MAGIC {
            if Instant::now() >= deadline {
                return Err(bad("the segment is not (yet) a publish/subscribe channel"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let i = info.info();
        if i.version.load(Ordering::Relaxed) != VERSION {
            return Err(bad(
                "channel layout version differs; use the same ipcx on both sides",
            ));
        }
        let slots = i.slots.load(Ordering::Relaxed) as usize;
        let layout = Layout::new(slots, i.chunk_size.load(Ordering::Relaxed) as usize);
        if !slots.is_power_of_two()
            || layout.chunks != i.chunks.load(Ordering::Relaxed) as usize
            || layout.total != info.seg.len()
        {
            return Err(bad("the channel header disagrees with the segment size"));
        }
        let ch = Channel {
            seg: info.seg,
            layout,
        };
        let o = ep.options();
        let pid = sys::process::pid();
        for index in 0..MAX_SUBSCRIBERS {
            let e = ch.subscriber(index);
            if e.state
                .compare_exchange(FREE, CLAIMING, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            e.pid.store(pid, Ordering::Relaxed);
            e.start.store(
                sys::process::start_time(pid).unwrap_or(0),
                Ordering::Relaxed,
            );
            e.lost.store(0, Ordering::Relaxed);
            // Holds the publisher back until we know where we start...
            e.cursor.store(0, Ordering::Relaxed);
            e.state.store(ACTIVE, Ordering::Release);
            ch.info().active.fetch_or(1 << index, Ordering::AcqRel);
            // ...then start at the tail: with the publisher's fence after
            // each publish, it either sees us active or we see its message.
            fence(Ordering::SeqCst);
            let start = ch.header().tail.0.load(Ordering::Acquire);
            e.cursor.store(start, Ordering::Release);
            notify(&ch.header().space.0);
            return Ok(Subscriber {
                ch,
                index,
                cursor: Cell::new(start),
                wait: o.wait,
                spin: o.spin,
                _not_sync: PhantomData,
            });
        }
        Err(Error::new(
            ErrorKind::Unsupported(format!(
                "the channel already has {MAX_SUBSCRIBERS} subscribers"
            )),
            "open",
        )
        .at(ep))
    }

    /// Messages this subscriber missed because they were overwritten
    /// before it read them (`?overflow=drop_oldest`).
    pub fn lost(&self) -> u64 {
        self.entry().lost.load(Ordering::Relaxed)
    }

    fn entry(&self) -> &SubscriberEntry {
        self.ch.subscriber(self.index)
    }

    /// Waits for the next message; the sample borrows it in shared memory.
    /// When the publisher is gone and everything it sent was read, the
    /// error is [`ErrorKind::Closed`].
    pub fn recv(&self) -> Result<Sample<'_>> {
        self.recv_until(None)
    }

    /// Receives one message as a `T` read in place; a message of another
    /// size (or alignment) is an error naming both, and is consumed.
    pub fn recv_as<T: FromBytes + KnownLayout + Immutable>(&self) -> Result<TypedSample<'_, T>> {
        let sample = self.recv()?;
        if T::ref_from_bytes(&sample).is_err() {
            return Err(Error::new(
                ErrorKind::Unsupported(format!(
                    "a message of {} bytes is not a {} ({} bytes)",
                    sample.len(),
                    std::any::type_name::<T>(),
                    size_of::<T>()
                )),
                "recv",
            ));
        }
        Ok(TypedSample {
            sample,
            _type: PhantomData,
        })
    }

    /// [`Subscriber::recv`], waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Sample<'_>> {
        self.recv_until(Some(Instant::now() + timeout))
    }

    /// A message if one is ready.
    pub fn try_recv(&self) -> Result<Option<Sample<'_>>> {
        match self.recv_until(Some(Instant::now())) {
            Ok(s) => Ok(Some(s)),
            Err(e) if *e.kind() == ErrorKind::TimedOut => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<Sample<'_>> {
        let h = self.ch.header();
        let n = self.ch.layout.slots as u64;
        loop {
            let cur = self.cursor.get();
            // The slot itself says whether message `cur` is there: watching
            // it (not `tail`) moves one cache line less per message.
            let seq = self.ch.slot(cur).seq.load(Ordering::Acquire);
            if seq > cur {
                let tail = h.tail.0.load(Ordering::Acquire);
                if seq > cur + 1 && tail.saturating_sub(cur) > n {
                    // Overwritten (drop_oldest) before we got to them.
                    self.skip(tail - n - cur);
                    continue;
                }
                if let Some(sample) = self.take(cur) {
                    return Ok(sample);
                }
                continue;
            }
            if self.ch.publisher_left() && h.tail.0.load(Ordering::Acquire) == cur {
                return Err(Error::new(ErrorKind::Closed, "recv"));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(ErrorKind::TimedOut, "recv"));
            }
            let how = Waiting {
                strategy: self.wait,
                spin: self.spin,
                deadline,
                peer_gone: &|| self.ch.publisher_gone(),
            };
            let ready = || self.ch.slot(cur).seq.load(Ordering::Acquire) > cur;
            match wait(&h.data.0, ready, &how) {
                Err(WaitEnd::PeerGone) if h.tail.0.load(Ordering::Acquire) == cur => {
                    return Err(Error::new(ErrorKind::Closed, "recv"));
                }
                // A message came, the wait timed out, or a dead publisher
                // left messages behind: the loop looks again.
                _ => {}
            }
        }
    }

    fn skip(&self, missed: u64) {
        let e = self.entry();
        e.lost.fetch_add(missed, Ordering::Relaxed);
        self.advance(self.cursor.get() + missed);
    }

    fn advance(&self, to: u64) {
        self.cursor.set(to);
        self.entry().cursor.store(to, Ordering::Release);
        notify(&self.ch.header().space.0);
    }

    /// Takes message `seq` (`None`: it was overwritten; counted as lost).
    fn take(&self, seq: u64) -> Option<Sample<'_>> {
        let slot = self.ch.slot(seq);
        let s1 = slot.seq.load(Ordering::Acquire);
        let chunk = slot.chunk.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed) as usize;
        fence(Ordering::Acquire);
        let s2 = slot.seq.load(Ordering::Relaxed);
        if s1 != seq + 1
            || s2 != s1
            || chunk as usize >= self.ch.layout.chunks
            || len > self.ch.layout.chunk_size
        {
            if (s1 == 0 || s2 == 0) && !self.ch.publisher_gone() {
                // Being rewritten this instant: look again. (A publisher
                // that died mid-rewrite leaves it so: then it is lost.)
                std::hint::spin_loop();
                return None;
            }
            self.skip(1);
            return None;
        }
        let bit = 1u64 << self.index;
        self.ch.mask(chunk).fetch_or(bit, Ordering::AcqRel);
        // If the publisher moved on while we took the chunk, give it back.
        if slot.seq.load(Ordering::Acquire) != seq + 1 {
            self.ch.mask(chunk).fetch_and(!bit, Ordering::Release);
            self.skip(1);
            return None;
        }
        self.advance(seq + 1);
        Some(Sample {
            sub: self,
            chunk,
            len,
        })
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // Samples borrow the subscriber, so none is alive; clear any bit a
        // forgotten sample left behind.
        self.ch.detach(self.index);
        notify(&self.ch.header().space.0);
    }
}

/// A received message, read in place in shared memory; the chunk returns
/// to the pool when every subscriber dropped its sample.
#[derive(Debug)]
pub struct Sample<'a> {
    sub: &'a Subscriber,
    chunk: u32,
    len: usize,
}

impl Sample<'_> {
    /// Where the message lies in the segment's data region: the offset the
    /// publisher's [`Loan::offset`] had, since nothing was copied.
    pub fn offset(&self) -> usize {
        self.sub.ch.layout.data + self.chunk as usize * self.sub.ch.layout.chunk_size
    }
}

/// A [`Sample`] seen as one `T` (see [`Subscriber::recv_as`]).
#[derive(Debug)]
pub struct TypedSample<'a, T> {
    sample: Sample<'a>,
    _type: PhantomData<T>,
}

impl<T: FromBytes + KnownLayout + Immutable> Deref for TypedSample<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Checked by `recv_as`.
        T::ref_from_bytes(&self.sample).expect("checked when received")
    }
}

impl Deref for Sample<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: our bit in the chunk's mask keeps the publisher from
        // reusing it until the sample drops; `len` was checked against the
        // chunk size when the sample was taken.
        unsafe { std::slice::from_raw_parts(self.sub.ch.chunk_ptr(self.chunk), self.len) }
    }
}

impl Drop for Sample<'_> {
    fn drop(&mut self) {
        let bit = 1u64 << self.sub.index;
        let before = self
            .sub
            .ch
            .mask(self.chunk)
            .fetch_and(!bit, Ordering::Release);
        if before == bit {
            // The last holder of a chunk no longer in the ring: it is free.
            notify(&self.sub.ch.header().space.0);
        }
    }
}
