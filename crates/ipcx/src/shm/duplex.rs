//! The memory of a two-way link in one segment: a [`LinkHeader`], then the
//! client-to-server ring, then the server-to-client ring (each a 320-byte
//! ring header and a power-of-two data area). The protocol that uses it
//! (claiming, accepting, the halves) is `transport`'s `shm:` mechanism;
//! this module owns the layout and the only casts into it.

use std::mem::{offset_of, size_of};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::ring::{RING_HEADER_LEN, Ring};
use super::segment::Segment;
use crate::stamp::Stamp;
use crate::sys;

/// `IPCXLNK1`, little-endian: a link segment's header is complete.
pub(crate) const LINK_MAGIC: u64 = u64::from_le_bytes(*b"IPCXLNK1");
/// Layout version of [`LinkHeader`] and the protocol over it.
pub(crate) const LINK_VERSION: u32 = 3;

/// `state`: no client connected.
pub(crate) const FREE: u32 = 0;
/// `state`: a client is connected.
pub(crate) const CONNECTED: u32 = 2;

/// The shared state of a link segment.
#[repr(C)]
#[derive(Debug)]
pub struct LinkHeader {
    pub(crate) magic: AtomicU64,
    pub(crate) version: AtomicU32,
    /// FREE or CONNECTED; also the futex word `accept` sleeps on.
    pub(crate) state: AtomicU32,
    pub(crate) server_pid: AtomicU32,
    pub(crate) client_pid: AtomicU32,
    pub(crate) server_start: AtomicU64,
    pub(crate) client_start: AtomicU64,
    pub(crate) server_gone: AtomicU32,
    pub(crate) client_gone: AtomicU32,
    /// Data bytes of each ring.
    pub(crate) capacity: AtomicU64,
    pub(crate) server_max_msg: AtomicU64,
    pub(crate) client_max_msg: AtomicU64,
    /// Doorbells armed by a side awaiting on tokio (bit `k`: the
    /// FIFO `NAME.bellK`).
    pub(crate) bells: AtomicU64,
    /// The connecting process's packed identity (pid and start time) while
    /// it holds the link, 0 while free.
    pub(crate) claim: AtomicU64,
    _reserved: [u64; 5],
}

/// Bytes of a [`LinkHeader`].
pub(crate) const LINK_HEADER_LEN: usize = size_of::<LinkHeader>();
const _: () = assert!(LINK_HEADER_LEN == 128);
const _: () = assert!(offset_of!(LinkHeader, state) == 12);
const _: () = assert!(offset_of!(LinkHeader, server_start) == 24);
const _: () = assert!(offset_of!(LinkHeader, capacity) == 48);
const _: () = assert!(offset_of!(LinkHeader, bells) == 72);
const _: () = assert!(offset_of!(LinkHeader, claim) == 80);

/// Data bytes of a link segment whose rings hold `cap` bytes each.
pub(crate) fn segment_len(cap: u64) -> usize {
    LINK_HEADER_LEN + 2 * (RING_HEADER_LEN + cap as usize)
}

/// A segment checked to hold a link's header and two rings: its accessors
/// are safe.
#[derive(Debug, Clone)]
pub(crate) struct LinkSegment {
    seg: Arc<Segment>,
    /// Ring capacity implied by this process's own mapping (never re-read
    /// from shared memory, where a peer could change it).
    cap: u64,
}

impl LinkSegment {
    /// `seg` as a link segment, if its size is one: a header and two rings
    /// of the same power-of-two capacity (at least 64 bytes).
    pub(crate) fn new(seg: Arc<Segment>) -> Option<LinkSegment> {
        let rings = seg.len().checked_sub(LINK_HEADER_LEN)? / 2;
        let cap = rings.checked_sub(RING_HEADER_LEN)? as u64;
        let fits = cap >= 64 && cap.is_power_of_two() && segment_len(cap) == seg.len();
        fits.then_some(LinkSegment { seg, cap })
    }

    /// The segment.
    pub(crate) fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Data bytes of each ring.
    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    /// The header.
    pub(crate) fn header(&self) -> &LinkHeader {
        // SAFETY: `new` checked the segment holds the header; the data
        // region is cache-line aligned; the header holds only atomics and
        // padding, valid for any bits.
        unsafe { &*self.seg.as_ptr().cast::<LinkHeader>() }
    }

    /// The ring that carries client-to-server messages (`true`) or
    /// server-to-client ones.
    pub(crate) fn ring(&self, client_to_server: bool) -> Ring {
        let offset = LINK_HEADER_LEN
            + if client_to_server {
                0
            } else {
                RING_HEADER_LEN + self.cap as usize
            };
        // SAFETY: `new` checked that both rings lie inside the segment; the
        // offsets are 64-byte multiples from the cache-aligned data region;
        // the ring keeps the segment mapped while it lives.
        unsafe { Ring::in_segment(&self.seg, offset, self.cap) }
    }
}

/// `ipcx ls`'s view of a link segment: whether a peer is connected, and
/// which processes the two sides are.
pub(crate) fn describe(seg: &Segment) -> Option<String> {
    // SAFETY: a link header is atomics and padding only.
    let h = unsafe { seg.data_header::<LinkHeader>() }?;
    if h.stamp() != Stamp::Ready {
        return None;
    }
    let who = |pid: &AtomicU32, start: &AtomicU64| {
        let pid = pid.load(Ordering::Relaxed);
        let alive = sys::process::is_alive(pid, start.load(Ordering::Relaxed));
        format!("pid {pid}{}", if alive { "" } else { " (dead)" })
    };
    let server = who(&h.server_pid, &h.server_start);
    Some(match h.state.load(Ordering::Acquire) {
        CONNECTED => format!(
            "link: server {server}, client {}",
            who(&h.client_pid, &h.client_start)
        ),
        _ => format!("link: server {server}, no client"),
    })
}

impl LinkHeader {
    /// What the header's magic and layout version say.
    pub(crate) fn stamp(&self) -> Stamp {
        let magic = self.magic.load(Ordering::Acquire);
        Stamp::of(
            magic,
            LINK_MAGIC,
            self.version.load(Ordering::Relaxed),
            LINK_VERSION,
        )
    }
}
