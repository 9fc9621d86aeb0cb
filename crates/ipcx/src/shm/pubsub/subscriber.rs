//! A reader of a channel: joining, receiving in place, samples.

use std::marker::PhantomData;
use std::mem::size_of;
use std::ops::Deref;
use std::time::{Duration, Instant};

use zerocopy::{FromBytes, Immutable, KnownLayout};

use super::*;
use crate::endpoint::{Endpoint, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::wait::primitive::{Ordering, fence};
use crate::wait::{Liveness, WaitEnd, Waiting, notify, wait};

/// Marks a receive under way; cleared when dropped.
struct Receiving<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> Receiving<'a> {
    fn take(flag: &'a std::sync::atomic::AtomicBool) -> Option<Receiving<'a>> {
        (!flag.swap(true, std::sync::atomic::Ordering::Acquire)).then_some(Receiving(flag))
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// A reader of a channel. It may be shared between threads (samples are
/// `Send` and can be held anywhere), but one thread receives at a time: a
/// receive that finds another under way is an error.
#[derive(Debug)]
pub struct Subscriber {
    ch: Channel,
    index: usize,
    /// The next message to take (this process's copy; the channel's is
    /// published for the publisher).
    cursor: std::sync::atomic::AtomicU64,
    /// When `/proc` last said the publisher lives (see `publisher_gone`).
    alive_check: std::sync::Mutex<Liveness>,
    /// A receive is under way: one thread at a time takes messages (two
    /// would take the same one, and share its chunk's hold).
    receiving: std::sync::atomic::AtomicBool,
    wait: WaitStrategy,
    spin: Duration,
}

impl Subscriber {
    /// Attaches to the channel `url`, waiting up to `?timeout=` for the
    /// publisher to create it. Messages published from now on arrive.
    pub fn open(url: &str) -> Result<Subscriber> {
        Subscriber::open_endpoint(&Endpoint::parse(url)?)
    }

    /// Attaches to a typed channel (one its publisher made with
    /// [`Publisher::create_typed`]): it must carry `schema`, else
    /// [`ErrorKind::Handshake`] names both.
    pub fn open_typed(url: &str, schema: &Schema) -> Result<Subscriber> {
        Subscriber::open_as(&Endpoint::parse(url)?, Some(schema))
    }

    /// [`Subscriber::open`] with a parsed endpoint.
    pub fn open_endpoint(ep: &Endpoint) -> Result<Subscriber> {
        Subscriber::open_as(ep, None)
    }

    /// [`Subscriber::open_endpoint`], waiting until `deadline` for the
    /// channel (the errors name the endpoint's `?timeout=`).
    #[cfg(feature = "async")]
    pub(crate) fn open_until(ep: &Endpoint, deadline: std::time::Instant) -> Result<Subscriber> {
        let ch = super::open_channel_until(ep, deadline)?;
        let o = ep.options();
        Subscriber::attach(ch, o.wait, o.spin).map_err(|e| e.at(ep))
    }

    fn open_as(ep: &Endpoint, schema: Option<&Schema>) -> Result<Subscriber> {
        let ch = open_channel(ep)?;
        if let Some(want) = schema {
            ch.schema().check(want, "open").map_err(|e| e.at(ep))?;
        }
        let o = ep.options();
        Subscriber::attach(ch, o.wait, o.spin).map_err(|e| e.at(ep))
    }

    /// Takes a free subscriber entry in the channel.
    pub(super) fn attach(ch: Channel, wait: WaitStrategy, spin: Duration) -> Result<Subscriber> {
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
                cursor: std::sync::atomic::AtomicU64::new(start),
                alive_check: std::sync::Mutex::new(Liveness::due_now()),
                receiving: std::sync::atomic::AtomicBool::new(false),
                wait,
                spin,
            });
        }
        Err(Error::new(
            ErrorKind::LimitReached(format!(
                "the channel already has {MAX_SUBSCRIBERS} subscribers; close one, or publish on a second channel"
            )),
            "open",
        ))
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
        TypedSample::of(self.recv()?)
    }

    /// [`Subscriber::recv_as`], waiting at most `timeout`.
    pub fn recv_timeout_as<T: FromBytes + KnownLayout + Immutable>(
        &self,
        timeout: Duration,
    ) -> Result<TypedSample<'_, T>> {
        TypedSample::of(self.recv_timeout(timeout)?)
    }

    /// [`Subscriber::recv_as`] if a message is ready.
    pub fn try_recv_as<T: FromBytes + KnownLayout + Immutable>(
        &self,
    ) -> Result<Option<TypedSample<'_, T>>> {
        self.try_recv()?.map(TypedSample::of).transpose()
    }

    /// [`Subscriber::recv`], waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Sample<'_>> {
        self.recv_until(crate::deadline::after(timeout))
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
        let _one = Receiving::take(&self.receiving).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument(
                    "another thread is receiving on this subscriber; one receives at a time \
                     (open a subscriber per thread)"
                        .into(),
                ),
                "recv",
            )
        })?;
        let h = self.ch.header();
        let n = self.ch.layout.slots as u64;
        loop {
            let cur = self.cursor.load(std::sync::atomic::Ordering::Relaxed);
            // The slot itself says whether message `cur` is there: watching
            // it (not `tail`) moves one cache line less per message.
            let seq = self.ch.slot(cur).seq.load(Ordering::Acquire);
            if self.arrived(seq, cur) {
                // Only a slot a lap ahead sends us to `tail` (whose line the
                // publisher writes with every message: not read otherwise).
                if seq > cur + 1 {
                    let tail = h.tail.0.load(Ordering::Acquire);
                    if tail.saturating_sub(cur) > n {
                        // Overwritten (drop_oldest) before we got to them.
                        self.skip(tail - n - cur);
                        continue;
                    }
                }
                if let Some(sample) = self.take(cur) {
                    return Ok(sample);
                }
                continue;
            }
            // `<=`: a publisher killed between committing a slot and
            // moving `tail` leaves us one past it.
            if self.ch.publisher_left() && h.tail.0.load(Ordering::Acquire) <= cur {
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
            let ready = || self.arrived(self.ch.slot(cur).seq.load(Ordering::Acquire), cur);
            match wait(&h.data.0, ready, &how) {
                Err(WaitEnd::PeerGone) if h.tail.0.load(Ordering::Acquire) <= cur => {
                    return Err(Error::new(ErrorKind::Closed, "recv"));
                }
                // A message came, the wait timed out, or a dead publisher
                // left messages behind: the loop looks again.
                _ => {}
            }
        }
    }

    /// Whether a slot reading `seq` has something for cursor `cur`: its
    /// message, or a later one that overwrote it. A sequence past the
    /// channel's tail was scribbled on by someone, and is nothing (else a
    /// subscriber would skip through it forever).
    fn arrived(&self, seq: u64, cur: u64) -> bool {
        seq == cur + 1
            || (seq > cur + 1
                && seq
                    <= self
                        .ch
                        .header()
                        .tail
                        .0
                        .load(Ordering::Acquire)
                        .saturating_add(1))
    }

    /// The segment and this subscriber's entry number, which name its
    /// doorbell (named channels only).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn doorbell(&self) -> Option<(&Segment, usize)> {
        self.ch.seg.name().map(|_| (&self.ch.seg, self.index))
    }

    /// Asks the publisher to ring the doorbell after each message, and
    /// fences, so that a message published before this is seen by the
    /// check that follows, or the publisher sees the request.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn arm_doorbell(&self) {
        self.ch
            .info()
            .doorbells
            .fetch_or(1 << self.index, Ordering::AcqRel);
        fence(Ordering::SeqCst);
    }

    /// Stops the doorbell.
    pub(crate) fn disarm_doorbell(&self) {
        self.ch
            .info()
            .doorbells
            .fetch_and(!(1 << self.index), Ordering::AcqRel);
    }

    /// Whether the publisher left or died and nothing more is to come.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn closed(&self) -> bool {
        self.ch.publisher_gone()
            && self.ch.header().tail.0.load(Ordering::Acquire)
                <= self.cursor.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn skip(&self, missed: u64) {
        let e = self.entry();
        e.lost.fetch_add(missed, Ordering::Relaxed);
        self.advance(self.cursor.load(std::sync::atomic::Ordering::Relaxed) + missed);
    }

    fn advance(&self, to: u64) {
        self.cursor.store(to, std::sync::atomic::Ordering::Relaxed);
        self.entry().cursor.store(to, Ordering::Release);
        notify(&self.ch.header().space.0);
    }

    /// Whether the publisher left or died, for a retry loop: its flag
    /// every time, `/proc` at most once per liveness interval (a slot being
    /// rewritten is retried many times in a row).
    fn publisher_gone(&self) -> bool {
        if self.ch.publisher_left() {
            return true;
        }
        let Ok(mut check) = self.alive_check.lock() else {
            return self.ch.publisher_gone();
        };
        if !check.due() {
            return false;
        }
        let gone = self.ch.publisher_gone();
        if gone {
            // Gone stays gone: say so again at once.
            *check = Liveness::due_now();
        }
        gone
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
            if (s1 == 0 || s2 == 0) && !self.publisher_gone() {
                // Being rewritten this instant: look again. (A publisher
                // that died mid-rewrite leaves it so: then it is lost.)
                crate::wait::primitive::spin_hint();
                return None;
            }
            self.skip(1);
            return None;
        }
        // Ask for the payload's first line now: it then crosses from the
        // publisher's CPU while the mask's line does, not after it (the
        // locked read-modify-write below holds back later loads).
        prefetch(self.ch.chunk_ptr(chunk));
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
        self.disarm_doorbell();
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

impl<'a, T: FromBytes + KnownLayout + Immutable> TypedSample<'a, T> {
    /// `sample` seen as a `T`; a message of another size (or alignment)
    /// is an error naming both, and is consumed.
    fn of(sample: Sample<'a>) -> Result<TypedSample<'a, T>> {
        if T::ref_from_bytes(&sample).is_err() {
            return Err(Error::new(
                ErrorKind::WrongType(format!(
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
}

impl<T: FromBytes + KnownLayout + Immutable> Deref for TypedSample<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Size and alignment checked by `recv_as`, which made this.
        #[allow(clippy::expect_used)]
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

/// A hint to the CPU to fetch the cache line at `p`; never faults.
#[inline]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it reads nothing the program sees and
    // cannot fault, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
