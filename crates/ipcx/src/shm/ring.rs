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

use super::event::{Event, WaitEnd, Waiting, notify, wait};
use super::primitive::{AtomicU64, Ordering, fence};

/// The record continues in the next record (a chunked message).
pub(crate) const MORE: u32 = 1;
/// Filler up to the end of the ring.
const WRAP: u32 = 2;
const RECORD_HEADER: u64 = 8;

use super::event::Line;

/// The shared header of a ring, followed in memory by its data bytes.
#[repr(C)]
#[derive(Debug)]
pub struct RingHeader {
    head: Line<AtomicU64>,
    tail: Line<AtomicU64>,
    /// The consumer waits here for data.
    data: Line<Event>,
    /// The producer waits here for space.
    space: Line<Event>,
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

/// A view of a ring inside a mapped segment.
#[derive(Debug)]
pub(crate) struct Ring {
    hdr: *const RingHeader,
    data: *mut u8,
    cap: u64,
}

// SAFETY: a `Ring` is a pair of pointers into a shared mapping that the
// owner keeps alive; all shared state is accessed through atomics, and the
// byte region follows the single-producer single-consumer protocol above.
unsafe impl Send for Ring {}

impl Ring {
    /// A view of the ring at `base`.
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
        }
    }

    fn hdr(&self) -> &RingHeader {
        // SAFETY: `at`'s contract: the header is mapped, aligned, and holds
        // only atomics, valid for any bit pattern.
        unsafe { &*self.hdr }
    }

    /// Empties the ring; only while neither side uses it.
    pub(crate) fn reset(&self) {
        let h = self.hdr();
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

    /// Appends one record, or returns `false` if it does not fit now.
    pub(crate) fn try_push(&self, payload: &[u8], flags: u32) -> bool {
        debug_assert!(payload.len() <= self.max_record());
        let h = self.hdr();
        let tail = h.tail.0.load(Ordering::Relaxed);
        let head = h.head.0.load(Ordering::Acquire);
        let need = RECORD_HEADER + pad8(payload.len() as u64);
        let pos = tail & (self.cap - 1);
        let to_end = self.cap - pos;
        let waste = if to_end < need { to_end } else { 0 };
        if self.cap - (tail - head) < need + waste {
            return false;
        }
        let mut at = tail;
        if waste > 0 {
            self.write_header(pos, 0, WRAP);
            at += waste;
        }
        let pos = at & (self.cap - 1);
        self.write_header(pos, payload.len() as u32, flags);
        // SAFETY: `pos + 8 + len <= cap` (no record crosses the end), and the
        // producer alone writes bytes between tail and head + cap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                self.data.add((pos + RECORD_HEADER) as usize),
                payload.len(),
            )
        };
        h.tail.0.store(at + need, Ordering::Release);
        true
    }

    /// Takes one record, appending its payload to `out`; returns its flags,
    /// or `None` when the ring is empty.
    pub(crate) fn try_pop(&self, out: &mut Vec<u8>) -> Option<u32> {
        let h = self.hdr();
        let mut head = h.head.0.load(Ordering::Relaxed);
        let tail = h.tail.0.load(Ordering::Acquire);
        // At most one filler before a record; anything else (a peer that
        // wrote nonsense) reads as empty rather than loop or overrun.
        for _ in 0..2 {
            if head == tail || tail.wrapping_sub(head) > self.cap {
                return None;
            }
            let pos = head & (self.cap - 1);
            let (len, flags) = self.read_header(pos);
            if flags & WRAP != 0 {
                head += self.cap - pos;
                continue;
            }
            // A corrupt length (a hostile writer) must not read out of
            // bounds: clamp to what a record may hold.
            let len = u64::from(len).min(self.cap - pos - RECORD_HEADER);
            let start = out.len();
            out.reserve(len as usize);
            // SAFETY: the record lies within the data region (clamped above)
            // and the producer does not touch it until head moves past it;
            // `out` has room for `len` more bytes (reserved above).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data.add((pos + RECORD_HEADER) as usize),
                    out.as_mut_ptr().add(start),
                    len as usize,
                );
                out.set_len(start + len as usize);
            }
            h.head
                .0
                .store(head + RECORD_HEADER + pad8(len), Ordering::Release);
            return Some(flags);
        }
        None
    }

    /// True when a record is waiting.
    pub(crate) fn has_data(&self) -> bool {
        let h = self.hdr();
        h.head.0.load(Ordering::Relaxed) != h.tail.0.load(Ordering::Acquire)
    }

    /// True when a record of `len` payload bytes fits now.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        let h = self.hdr();
        let used = h.tail.0.load(Ordering::Relaxed) - h.head.0.load(Ordering::Acquire);
        // Worst case: a full record of filler before it.
        self.cap - used >= 2 * (RECORD_HEADER + pad8(len as u64))
    }

    fn write_header(&self, pos: u64, len: u32, flags: u32) {
        let word = u64::from(len) | u64::from(flags) << 32;
        // SAFETY: records start 8-byte aligned inside the data region, and
        // the producer alone writes here (see `try_push`).
        unsafe { self.data.add(pos as usize).cast::<u64>().write(word) };
    }

    fn read_header(&self, pos: u64) -> (u32, u32) {
        // SAFETY: as in `write_header`; the consumer reads only published
        // records.
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
    use crate::shm::primitive::AtomicU32;
    use std::time::Duration;

    #[repr(C, align(64))]
    struct Memory {
        header: RingHeader,
        data: [u8; 64],
    }

    fn line<T>(v: T) -> Line<T> {
        Line(v)
    }

    fn event() -> Event {
        Event {
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
                    while !ring.try_push(m, 0) {
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
                    if ring.try_pop(&mut out).is_some() {
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
