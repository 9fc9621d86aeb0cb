//! A single-producer single-consumer ring of variable-size records in
//! shared memory.
//!
//! The classic bounded byte ring (as in Linux's `kfifo` or LMAX's
//! single-writer queues): the producer owns `tail`, the consumer owns
//! `head`, both count bytes forever and are reduced modulo the power-of-two
//! capacity. Each record is an 8-byte header (`len | flags << 32`) and the
//! payload padded to 8 bytes; a record that would cross the end is preceded
//! by a `WRAP` record filling the rest. The producer writes a record, then
//! publishes it by storing `tail` with release; the consumer reads `tail`
//! with acquire, copies the record out, then frees it by storing `head`
//! with release.
//!
//! Waiting is an event count per direction: the waiter announces itself,
//! re-checks, and sleeps on a futex word; the other side bumps the word and
//! wakes it only when someone announced, so the fast path makes no system
//! call.

use std::cell::Cell;
use std::sync::Arc;

use super::segment::Segment;

use crate::wait::primitive::{AtomicU64, Ordering, fence};
use crate::wait::{EventCount, WaitEnd, Waiting, notify, wait};

/// The record continues in the next record (a chunked message).
pub(crate) const MORE: u32 = 1;
/// Filler up to the end of the ring.
const WRAP: u32 = 2;
const RECORD_HEADER: u64 = 8;

use crate::wait::Line;

/// The shared header of a ring, followed in memory by its data bytes.
#[repr(C)]
#[derive(Debug)]
pub struct RingHeader {
    head: Line<AtomicU64>,
    tail: Line<AtomicU64>,
    /// The consumer waits here for data.
    data: Line<EventCount>,
    /// The producer waits here for space.
    space: Line<EventCount>,
    capacity: Line<AtomicU64>,
}

/// Bytes of a ring header.
pub(crate) const RING_HEADER_LEN: usize = std::mem::size_of::<RingHeader>();
// Under loom the atomics are loom's, of another size: the layout is the
// real one only without it.
#[cfg(not(ipcx_loom))]
const _: () = {
    assert!(RING_HEADER_LEN == 320);
    assert!(std::mem::offset_of!(RingHeader, tail) == 64);
    assert!(std::mem::offset_of!(RingHeader, data) == 128);
    assert!(std::mem::offset_of!(RingHeader, capacity) == 256);
};

/// Shared memory that breaks the ring's layout: the peer's cursor or a
/// record header is impossible (the peer is hostile or its memory was
/// scribbled on). The link cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) &'static str);

/// A view of a ring inside a mapped segment, used in one role: producer
/// or consumer.
///
/// The cursor this side owns (`tail` for the producer, `head` for the
/// consumer) lives here, in process memory, and is only *published* to the
/// segment: a peer that overwrites it there changes nothing on this side.
/// The peer's cursor is read back and checked (distance at most `cap`,
/// multiple of 8), and every record header is checked against the bytes the
/// peer published, before any byte is copied.
#[derive(Debug)]
pub(crate) struct Ring {
    hdr: *const RingHeader,
    data: *mut u8,
    cap: u64,
    /// This side's cursor: the producer's tail or the consumer's head.
    own: Cell<u64>,
    /// The segment the ring lies in, kept mapped while the ring lives.
    _mapping: Option<Arc<Segment>>,
}

// SAFETY: a `Ring` is a pair of pointers into a shared mapping that the
// owner keeps alive; all shared state is accessed through atomics, and the
// byte region follows the single-producer single-consumer protocol above.
unsafe impl Send for Ring {}

impl Ring {
    /// A view of the ring at `base`, whose cursors are both 0 (fresh from
    /// [`Ring::reset`]).
    ///
    /// # Safety
    /// `base` must be 64-byte aligned and valid for reads and writes of
    /// `RING_HEADER_LEN + capacity` bytes for as long as the `Ring` lives,
    /// and `capacity` must be a power of two of at least 64.
    pub(crate) unsafe fn at(base: *mut u8, capacity: u64) -> Ring {
        Ring {
            hdr: base.cast::<RingHeader>(),
            // SAFETY: the caller guarantees the bytes after the header.
            data: unsafe { base.add(RING_HEADER_LEN) },
            cap: capacity,
            own: Cell::new(0),
            _mapping: None,
        }
    }

    /// A view of the ring at `offset` in `seg`'s data region, whose cursors
    /// are both 0; it keeps the segment mapped.
    ///
    /// # Safety
    /// `offset` must be a multiple of 64 with `RING_HEADER_LEN + capacity`
    /// bytes of the data region from there, and `capacity` a power of two
    /// of at least 64.
    pub(crate) unsafe fn in_segment(seg: &Arc<Segment>, offset: usize, capacity: u64) -> Ring {
        // SAFETY: the caller's contract; the data region starts cache-line
        // aligned, and `_mapping` keeps it mapped as long as the ring.
        let mut ring = unsafe { Ring::at(seg.as_ptr().add(offset), capacity) };
        ring._mapping = Some(seg.clone());
        ring
    }

    fn hdr(&self) -> &RingHeader {
        // SAFETY: `at`'s contract: the header is mapped, aligned, and holds
        // only atomics, valid for any bit pattern.
        unsafe { &*self.hdr }
    }

    /// Empties the ring; only while neither side uses it.
    pub(crate) fn reset(&self) {
        let h = self.hdr();
        self.own.set(0);
        h.head.0.store(0, Ordering::Relaxed);
        h.tail.0.store(0, Ordering::Relaxed);
        h.capacity.0.store(self.cap, Ordering::Relaxed);
        for e in [&h.data.0, &h.space.0] {
            e.waiting.store(0, Ordering::Relaxed);
        }
        fence(Ordering::Release);
    }

    /// Largest payload of one record (larger messages are chunked).
    pub(crate) fn max_record(&self) -> usize {
        (self.cap / 4) as usize
    }

    /// Producer: bytes in use, from this side's tail and the consumer's
    /// published head.
    fn used(&self) -> Result<u64, Corrupt> {
        let head = self.hdr().head.0.load(Ordering::Acquire);
        let used = self.own.get().wrapping_sub(head);
        if used > self.cap || !used.is_multiple_of(8) {
            return Err(Corrupt(
                "the consumer's head is not within one ring behind the tail",
            ));
        }
        Ok(used)
    }

    /// Producer: appends one record; `Ok(false)` if it does not fit now.
    pub(crate) fn try_push(&self, payload: &[u8], flags: u32) -> Result<bool, Corrupt> {
        debug_assert!(payload.len() <= self.max_record());
        let tail = self.own.get();
        let used = self.used()?;
        let need = RECORD_HEADER + pad8(payload.len() as u64);
        let pos = tail & (self.cap - 1);
        let to_end = self.cap - pos;
        let waste = if to_end < need { to_end } else { 0 };
        if self.cap - used < need + waste {
            return Ok(false);
        }
        let mut at = tail;
        if waste > 0 {
            self.write_header(pos, 0, WRAP);
            at = at.wrapping_add(waste);
        }
        let pos = at & (self.cap - 1);
        self.write_header(pos, payload.len() as u32, flags);
        // SAFETY: `pos + 8 + len <= cap` (a record that would cross the end
        // is preceded by filler), and the producer alone writes bytes
        // between its tail and head + cap.
        unsafe {
            crate::sys::mem::copy(
                payload.as_ptr(),
                self.data.add((pos + RECORD_HEADER) as usize),
                payload.len(),
            )
        };
        let tail = at.wrapping_add(need);
        self.own.set(tail);
        self.hdr().tail.0.store(tail, Ordering::Release);
        Ok(true)
    }

    /// Consumer: takes one record, appending its payload to `out`; returns
    /// its flags, or `None` when the ring is empty.
    pub(crate) fn try_pop(&self, out: &mut Vec<u8>) -> Result<Option<u32>, Corrupt> {
        let mut head = self.own.get();
        let tail = self.hdr().tail.0.load(Ordering::Acquire);
        let mut avail = tail.wrapping_sub(head);
        if avail > self.cap || !avail.is_multiple_of(8) {
            return Err(Corrupt(
                "the producer's tail is not within one ring ahead of the head",
            ));
        }
        // At most one filler before a record.
        for _ in 0..2 {
            if avail == 0 {
                return Ok(None);
            }
            // `head` is a multiple of 8 (it only moves by multiples of 8),
            // so the 8-byte header at `pos` lies inside the data region.
            let pos = head & (self.cap - 1);
            let (len, flags) = self.read_header(pos);
            let to_end = self.cap - pos;
            if flags & WRAP != 0 {
                if to_end > avail {
                    return Err(Corrupt("filler record past the published tail"));
                }
                head = head.wrapping_add(to_end);
                avail -= to_end;
                continue;
            }
            let len = u64::from(len);
            let size = RECORD_HEADER + pad8(len);
            if size > avail || size > to_end {
                return Err(Corrupt(
                    "record length past the published tail or the ring's end",
                ));
            }
            let start = out.len();
            out.reserve(len as usize);
            // SAFETY: the record lies within the data region (checked
            // above) and the producer does not touch it until head moves
            // past it; `out` has room for `len` more bytes (reserved above).
            unsafe {
                crate::sys::mem::copy(
                    self.data.add((pos + RECORD_HEADER) as usize),
                    out.as_mut_ptr().add(start),
                    len as usize,
                );
                out.set_len(start + len as usize);
            }
            let head = head.wrapping_add(size);
            self.own.set(head);
            self.hdr().head.0.store(head, Ordering::Release);
            return Ok(Some(flags));
        }
        Err(Corrupt("two filler records in a row"))
    }

    /// Consumer: true when a record is waiting (or the producer's tail is
    /// corrupt, which the next `try_pop` reports).
    pub(crate) fn has_data(&self) -> bool {
        self.own.get() != self.hdr().tail.0.load(Ordering::Acquire)
    }

    /// Producer: true when a record of `len` payload bytes fits now (or
    /// the consumer's head is corrupt, which the next `try_push` reports).
    pub(crate) fn has_room(&self, len: usize) -> bool {
        match self.used() {
            // Worst case: a full record of filler before it.
            Ok(used) => self.cap - used >= 2 * (RECORD_HEADER + pad8(len as u64)),
            Err(_) => true,
        }
    }

    fn write_header(&self, pos: u64, len: u32, flags: u32) {
        let word = u64::from(len) | u64::from(flags) << 32;
        // SAFETY: `pos` is a multiple of 8 below `cap` (from this side's
        // own cursor), so the word is aligned inside the data region; the
        // producer alone writes here (see `try_push`).
        unsafe { self.data.add(pos as usize).cast::<u64>().write(word) };
    }

    fn read_header(&self, pos: u64) -> (u32, u32) {
        // SAFETY: as in `write_header`, from the consumer's own cursor; the
        // consumer reads only records inside what the producer published.
        let word = unsafe { self.data.add(pos as usize).cast::<u64>().read() };
        (word as u32, (word >> 32) as u32)
    }

    /// Consumer: wakes the producer if it sleeps waiting for space.
    pub(crate) fn notify_space(&self) {
        notify(&self.hdr().space.0);
    }

    /// Producer: wakes the consumer if it sleeps waiting for data.
    pub(crate) fn notify_data(&self) {
        notify(&self.hdr().data.0);
    }

    /// Consumer: waits until a record arrives.
    pub(crate) fn wait_data(&self, how: &Waiting<'_>) -> Result<(), WaitEnd> {
        wait(&self.hdr().data.0, || self.has_data(), how)
    }

    /// Producer: waits until `len` bytes fit.
    pub(crate) fn wait_space(&self, len: usize, how: &Waiting<'_>) -> Result<(), WaitEnd> {
        wait(&self.hdr().space.0, || self.has_room(len), how)
    }

    /// Wakes whoever sleeps on either side (used when a side goes away).
    pub(crate) fn wake_all(&self) {
        let h = self.hdr();
        h.data.0.wake_all();
        h.space.0.wake_all();
    }
}

fn pad8(n: u64) -> u64 {
    (n + 7) & !7
}

/// A loom model of the ring protocol: a producer pushes three records of
/// different sizes through a 64-byte ring (so it wraps, and both sides must
/// sleep and be woken), a consumer takes them; every interleaving loom finds
/// must deliver all three, whole and in order, without a lost wake-up.
///
/// Run with `scripts/loom`.
#[cfg(all(test, ipcx_loom))]
mod model {
    use super::*;
    use crate::endpoint::WaitStrategy;
    use crate::wait::primitive::AtomicU32;
    use std::time::Duration;

    #[repr(C, align(64))]
    struct Memory {
        header: RingHeader,
        data: [u8; 64],
    }

    fn line<T>(v: T) -> Line<T> {
        Line(v)
    }

    fn event() -> EventCount {
        EventCount {
            word: AtomicU32::new(0),
            waiting: AtomicU32::new(0),
        }
    }

    #[test]
    fn records_cross_whole_and_in_order() {
        loom::model(|| {
            let mem = Box::into_raw(Box::new(Memory {
                header: RingHeader {
                    head: line(AtomicU64::new(0)),
                    tail: line(AtomicU64::new(0)),
                    data: line(event()),
                    space: line(event()),
                    capacity: line(AtomicU64::new(64)),
                },
                data: [0; 64],
            }));
            let base = mem.cast::<u8>() as usize;
            let messages: [&[u8]; 3] = [
                b"12345678",
                b"abcdefghijklmnop",
                b"ABCDEFGHIJKLMNOPQRSTUVWX",
            ];
            let how = || Waiting {
                strategy: WaitStrategy::Block,
                spin: Duration::ZERO,
                deadline: None,
                peer_gone: &|| false,
            };
            let producer = loom::thread::spawn(move || {
                // SAFETY: `mem` outlives both threads (freed after join).
                let ring = unsafe { Ring::at(base as *mut u8, 64) };
                for m in messages {
                    while !ring.try_push(m, 0).unwrap() {
                        ring.wait_space(m.len(), &how()).unwrap();
                    }
                    ring.notify_data();
                }
            });
            // SAFETY: as above.
            let ring = unsafe { Ring::at(base as *mut u8, 64) };
            for m in messages {
                let mut out = Vec::new();
                loop {
                    if ring.try_pop(&mut out).unwrap().is_some() {
                        ring.notify_space();
                        break;
                    }
                    ring.wait_data(&how()).unwrap();
                }
                assert_eq!(out, m);
            }
            producer.join().unwrap();
            // SAFETY: both views are gone; `mem` came from Box::into_raw.
            drop(unsafe { Box::from_raw(mem) });
        });
    }
}
