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

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::Segment;
use crate::shm::duplex::{
    CONNECTED, FREE, LINK_MAGIC, LINK_VERSION, LinkHeader, LinkSegment, segment_len,
};
use crate::shm::ring::Ring;
use crate::stamp::Stamp;
use crate::sys;

mod halves;

use halves::halves;
pub(crate) use halves::{ShmRx, ShmTx};

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

/// The binding side: owns the segment, accepts one peer at a time.
#[derive(Debug)]
pub(crate) struct ShmListener {
    link: LinkSegment,
    /// A peer was accepted, so the rings must be reset before the next.
    used: bool,
    /// This side of the last connection: the rings are reset only after
    /// its halves are gone, or an old handler could use the next peer's.
    last: Weak<Conn>,
}

impl ShmListener {
    pub(crate) fn bind(ep: &Endpoint) -> Result<ShmListener> {
        let size = ep.options().size;
        if size < MIN_RING {
            return Err(Error::new(
                ErrorKind::InvalidOption {
                    scheme: "shm",
                    option: "size".into(),
                    reason: format!(
                        "is {size} bytes; each ring of an shm: link holds at least 4KiB \
                         (sizes are rounded up to a power of two)"
                    ),
                },
                "bind",
            )
            .at(ep));
        }
        let cap = capacity_for(size);
        let mut sized = ep.clone();
        sized.options_mut().size = segment_len(cap);
        let seg = Arc::new(Segment::create_endpoint(&sized)?);
        let link = LinkSegment::new(seg).ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt("a new link segment does not have a link's size".into()),
                "bind",
            )
            .at(ep)
        })?;
        let h = link.header();
        let (pid, start) = me();
        h.version.store(LINK_VERSION, Ordering::Relaxed);
        h.capacity.store(cap, Ordering::Relaxed);
        h.server_pid.store(pid, Ordering::Relaxed);
        h.server_start.store(start, Ordering::Relaxed);
        h.server_max_msg
            .store(ep.options().max_msg as u64, Ordering::Relaxed);
        h.state.store(FREE, Ordering::Relaxed);
        ring_of(&link, Side::Server, true).reset();
        ring_of(&link, Side::Server, false).reset();
        h.magic.store(LINK_MAGIC, Ordering::Release);
        Ok(ShmListener {
            link,
            used: false,
            last: Weak::new(),
        })
    }

    /// Waits for a peer to connect (after the previous one, if any, left).
    pub(crate) fn accept(
        &mut self,
        ep: &Endpoint,
        deadline: Option<Instant>,
    ) -> Result<(Box<ShmRx>, Box<ShmTx>)> {
        let h = self.link.header();
        let timed_out = || Error::new(ErrorKind::TimedOut, "accept").at(ep);
        if self.used {
            // One peer at a time: wait until the last one left, then reset.
            let mut backoff = crate::deadline::Backoff::new(Duration::from_millis(5));
            while !peer_gone(h, Side::Server) || self.last.strong_count() > 0 {
                if !backoff.sleep_within(deadline) {
                    return Err(timed_out());
                }
            }
            ring_of(&self.link, Side::Server, true).reset();
            ring_of(&self.link, Side::Server, false).reset();
            h.bells.store(0, Ordering::Relaxed);
            h.client_gone.store(0, Ordering::Relaxed);
            h.server_gone.store(0, Ordering::Relaxed);
            h.state.store(FREE, Ordering::Release);
            // Last: whoever claims next sees the state free.
            h.claim.store(0, Ordering::Release);
            self.used = false;
        }
        loop {
            let state = h.state.load(Ordering::Acquire);
            if state == CONNECTED {
                break;
            }
            // A client that died between claiming and connecting must not
            // block the endpoint; one that lives keeps its claim however
            // long it stalls (undoing it would let a second client in
            // beside it).
            let claim = h.claim.load(Ordering::Acquire);
            if claim != 0 && !sys::process::identity_alive(claim) {
                let _ = h
                    .claim
                    .compare_exchange(claim, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
            let mut slice = crate::wait::LIVENESS_INTERVAL;
            if let Some(d) = deadline {
                let now = Instant::now();
                if now >= d {
                    return Err(timed_out());
                }
                slice = slice.min(d - now);
            }
            sys::futex::wait(&h.state, state, Some(slice))
                .map_err(|e| Error::io("accept", e).at(ep))?;
        }
        self.used = true;
        let (rx, tx, conn) = halves(
            Conn {
                link: self.link.clone(),
                side: Side::Server,
                liveness: ep.options().liveness,
                ringer: Default::default(),
            },
            ep,
        )?;
        self.last = conn;
        Ok((rx, tx))
    }
}

/// Connects to the link segment of `ep`, waiting up to `deadline` for it
/// to exist, be initialized, and be free.
pub(crate) fn connect(ep: &Endpoint, deadline: Instant) -> Result<(Box<ShmRx>, Box<ShmTx>)> {
    let mut opened = ep.clone();
    opened.options_mut().timeout = deadline.saturating_duration_since(Instant::now());
    let seg = Arc::new(Segment::open_endpoint(&opened)?);
    let bad = |why: String| Error::new(ErrorKind::Foreign(why), "connect").at(ep);
    let link = LinkSegment::new(seg)
        .ok_or_else(|| bad("the segment is not an ipcx link (not a link's size)".into()))?;
    let h = link.header();
    let (pid, start) = me();
    let mut backoff = crate::deadline::Backoff::new(Duration::from_millis(20));
    loop {
        let stamp = h.stamp();
        if let Stamp::Foreign(_) | Stamp::OtherVersion(_) = stamp
            && let Some(kind) = stamp.error(LINK_VERSION, "the segment is not an ipcx link")
        {
            return Err(Error::new(kind, "connect").at(ep));
        }
        if stamp == Stamp::Ready {
            let cap = h.capacity.load(Ordering::Relaxed);
            if cap != link.capacity() {
                return Err(Error::new(
                    ErrorKind::Corrupt("the link header disagrees with the segment size".into()),
                    "connect",
                )
                .at(ep));
            }
            let server_alive = sys::process::is_alive(
                h.server_pid.load(Ordering::Relaxed),
                h.server_start.load(Ordering::Relaxed),
            );
            let identity = sys::process::pack_identity(pid, start);
            if server_alive
                && h.claim
                    .compare_exchange(0, identity, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                // The claim is ours alone: nobody else writes these.
                h.client_pid.store(pid, Ordering::Relaxed);
                h.client_start.store(start, Ordering::Relaxed);
                h.client_gone.store(0, Ordering::Relaxed);
                h.client_max_msg
                    .store(ep.options().max_msg as u64, Ordering::Relaxed);
                if h.state
                    .compare_exchange(FREE, CONNECTED, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    h.claim.store(0, Ordering::Release);
                    return Err(Error::new(
                        ErrorKind::Corrupt(
                            "the link is unclaimed but not free (its header was written outside the protocol)"
                                .into(),
                        ),
                        "connect",
                    )
                    .at(ep));
                }
                let _ = sys::futex::wake(&h.state, sys::futex::ALL);
                let (rx, tx, _) = halves(
                    Conn {
                        link,
                        side: Side::Client,
                        liveness: ep.options().liveness,
                        ringer: Default::default(),
                    },
                    ep,
                )?;
                return Ok((rx, tx));
            }
        }
        if !backoff.sleep_until(deadline) {
            return Err(Error::new(
                ErrorKind::occupied(
                    "the shm: endpoint is not ready, its owner is gone, or it already has a peer \
                     (it serves one at a time)"
                        .into(),
                ),
                "connect",
            )
            .at(ep));
        }
    }
}
