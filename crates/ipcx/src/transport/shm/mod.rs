//! `shm:name` as a [`crate::Link`]: two rings in one segment, one per
//! direction, between a binding side and one connected peer at a time.
//!
//! The segment's layout (a header and two rings) and the only casts into
//! it are `shm::duplex`'s; this is the protocol over it. The binder creates the
//! segment; a connector claims it (a compare-and-swap of its identity into
//! `claim`), then moves `state` FREE → CONNECTED, and the binder's `accept`
//! sees it connected. A claim is undone only when its claimer is dead, so a
//! client that stalls between the two steps keeps its claim and no second
//! client can connect beside it. Each side records its pid and
//! start time, so a side that waits notices within 20 ms that its peer died,
//! even by `SIGKILL`; a side that leaves normally sets its `gone` flag and
//! wakes the other at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::error::Result;
use crate::shm::Segment;
use crate::shm::duplex::{LinkHeader, LinkSegment};
use crate::shm::ring::Ring;
use crate::sys;

mod connect;
mod halves;
mod listener;

pub(crate) use connect::Connecting;

use halves::halves;
pub(crate) use halves::{ShmRx, ShmTx};
#[cfg(feature = "async")]
pub(crate) use listener::Polled;
pub(crate) use listener::ShmListener;

/// The four doorbells of a link: each side's receiving half (awaiting
/// data) and sending half (awaiting space).
fn bell_number(side: Side, recv: bool) -> usize {
    match (side, recv) {
        (Side::Server, true) => 0,
        (Side::Server, false) => 1,
        (Side::Client, true) => 2,
        (Side::Client, false) => 3,
    }
}

/// One half's doorbell on a link, for awaiting it on tokio: arm it
/// before the last look, and the peer rings after its next change.
#[derive(Debug)]
pub(crate) struct LinkBell {
    conn: Arc<Conn>,
    number: usize,
}

#[cfg_attr(not(feature = "async"), allow(dead_code))]
impl LinkBell {
    /// The segment and the number, which name the doorbell FIFO.
    pub(crate) fn segment(&self) -> (&Segment, usize) {
        (self.conn.link.segment(), self.number)
    }

    /// Asks the peer to ring; fences, so a change before this is seen by
    /// the look that follows, or the peer sees the bit.
    pub(crate) fn arm(&self) {
        self.conn
            .header()
            .bells
            .fetch_or(1 << self.number, Ordering::AcqRel);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    pub(crate) fn disarm(&self) {
        self.conn
            .header()
            .bells
            .fetch_and(!(1 << self.number), Ordering::AcqRel);
    }

    /// Whether the peer left or died (reads `/proc`: not per message).
    pub(crate) fn peer_gone(&self) -> bool {
        self.conn.peer_gone()
    }

    /// Whether the peer left normally (its flag: one load).
    pub(crate) fn peer_left(&self) -> bool {
        self.conn.peer_left()
    }

    /// How often to look without being rung (`?liveness=`).
    pub(crate) fn liveness(&self) -> Duration {
        self.conn.liveness
    }
}

/// Which end of the link this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// The smallest ring of a link (`?size=`), in data bytes.
const MIN_RING: usize = 4096;

/// Ring capacity for `?size=` (at least [`MIN_RING`]): the next power of
/// two, so that positions reduce with a mask.
fn capacity_for(size: usize) -> u64 {
    (size as u64).next_power_of_two()
}

/// One side's view of a connected link segment.
#[derive(Debug)]
struct Conn {
    link: LinkSegment,
    side: Side,
    /// How often a half awaiting on tokio looks without being rung
    /// (`?liveness=`): it notices a peer that died, or a ring it missed.
    liveness: Duration,
    /// The peer's doorbells this side rang, kept open.
    ringer: crate::wait::doorbell::Ringer,
}

impl Conn {
    fn header(&self) -> &LinkHeader {
        self.link.header()
    }

    /// The ring this side reads (`incoming`) or writes.
    fn ring(&self, incoming: bool) -> Ring {
        ring_of(&self.link, self.side, incoming)
    }

    fn peer_gone(&self) -> bool {
        peer_gone(self.header(), self.side)
    }

    /// Whether the peer left normally (its `gone` flag): one load.
    fn peer_left(&self) -> bool {
        let h = self.header();
        let gone = match self.side {
            Side::Server => &h.client_gone,
            Side::Client => &h.server_gone,
        };
        gone.load(Ordering::Acquire) != 0
    }

    /// After a change the peer may await (past the fence of the `notify`
    /// before it): rings the peer's receiving (`recv`) or sending half if
    /// it armed its doorbell.
    fn ring_peer(&self, recv: bool) {
        let peer = match self.side {
            Side::Server => Side::Client,
            Side::Client => Side::Server,
        };
        let bit = 1u64 << bell_number(peer, recv);
        if self.header().bells.load(Ordering::Relaxed) & bit != 0
            && let Some(name) = self.link.segment().name()
        {
            self.ringer.ring(name, bit);
        }
    }

    fn peer_max_msg(&self) -> u64 {
        let h = self.header();
        match self.side {
            Side::Server => h.client_max_msg.load(Ordering::Acquire),
            Side::Client => h.server_max_msg.load(Ordering::Acquire),
        }
    }
}

/// The ring `side` reads (`incoming`) or writes.
fn ring_of(link: &LinkSegment, side: Side, incoming: bool) -> Ring {
    link.ring((side == Side::Server) == incoming)
}

/// Whether the other side of `side` left or died.
fn peer_gone(h: &LinkHeader, side: Side) -> bool {
    let (gone, pid, start) = match side {
        Side::Server => (&h.client_gone, &h.client_pid, &h.client_start),
        Side::Client => (&h.server_gone, &h.server_pid, &h.server_start),
    };
    gone.load(Ordering::Acquire) != 0
        || !sys::process::is_alive(pid.load(Ordering::Acquire), start.load(Ordering::Acquire))
}

impl Drop for Conn {
    fn drop(&mut self) {
        let h = self.header();
        let mine = match self.side {
            Side::Server => &h.server_gone,
            Side::Client => &h.client_gone,
        };
        mine.store(1, Ordering::Release);
        self.ring(true).wake_all();
        self.ring(false).wake_all();
        // A peer awaiting on tokio learns at once too.
        std::sync::atomic::fence(Ordering::SeqCst);
        self.ring_peer(true);
        self.ring_peer(false);
    }
}

fn me() -> (u32, u64) {
    let pid = sys::process::pid();
    (pid, sys::process::start_time(pid).unwrap_or(0))
}

/// The listener's doorbell, which a connector rings once connected (the
/// halves' are 0 to 3, [`bell_number`]); its bit is set from `bind` on.
const ACCEPT_BELL: usize = 4;

/// Once claimed and once connected: rings the listener's doorbell (its
/// bit is set for good; one written by an older listener may lack it).
fn ring_accept(link: &LinkSegment, ringer: &crate::wait::doorbell::Ringer) {
    if link.header().bells.load(Ordering::Acquire) & (1 << ACCEPT_BELL) != 0
        && let Some(name) = link.segment().name()
    {
        ringer.ring(name, 1 << ACCEPT_BELL);
    }
}

/// Connects to the link segment of `ep`, waiting up to `deadline` for it
/// to exist, be initialized, and be free.
pub(crate) fn connect(ep: &Endpoint, deadline: Instant) -> Result<(Box<ShmRx>, Box<ShmTx>)> {
    let mut connecting = Connecting::new(ep);
    loop {
        let not_yet = match connecting.step()? {
            Ok(halves) => return Ok(halves),
            Err(not_yet) => not_yet,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(not_yet.gave_up(ep));
        }
        std::thread::sleep(connecting.pause(&not_yet).min(left));
    }
}
