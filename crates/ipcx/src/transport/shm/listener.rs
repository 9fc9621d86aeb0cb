//! The binding side of an `shm:` link: creates the segment and accepts
//! one peer at a time, blocking or (for tokio) in passes that never wait.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::{
    ACCEPT_BELL, Conn, MIN_RING, ShmRx, ShmTx, Side, capacity_for, halves, me, peer_gone, ring_of,
};
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::Segment;
use crate::shm::duplex::{CONNECTED, FREE, LINK_MAGIC, LINK_VERSION, LinkSegment, segment_len};
use crate::sys;

/// The binding side: owns the segment, accepts one peer at a time.
#[derive(Debug)]
pub(crate) struct ShmListener {
    link: LinkSegment,
    /// A peer was accepted, so the rings must be reset before the next.
    used: bool,
    /// This side of the last connection: the rings are reset only after
    /// its halves are gone, or an old handler could use the next peer's.
    last: Weak<Conn>,
    /// The accept doorbell (`NAME.bell4`; its bit is set for good), which
    /// a connector rings once connected: tokio and a [`crate::Poller`]
    /// await it. Each look empties it first.
    bell: OwnedFd,
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
        let seg = link.segment();
        let name = seg.name().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument(
                    "an shm: listener needs a named segment: bind shm:NAME".into(),
                ),
                "bind",
            )
            .at(ep)
        })?;
        let bell = crate::wait::doorbell::make(name, ACCEPT_BELL, seg.mode()?)
            .map_err(|e| Error::io("bind", e).at(ep))?;
        let h = link.header();
        let (pid, start) = me();
        h.version.store(LINK_VERSION, Ordering::Relaxed);
        h.bells.store(1 << ACCEPT_BELL, Ordering::Relaxed);
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
            bell,
        })
    }

    /// The accept doorbell, readable once a connector rang.
    pub(crate) fn bell(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }

    /// Whether a peer is connected and waits to be accepted (resetting
    /// the endpoint first if the last peer and its halves are gone).
    pub(crate) fn connected(&mut self) -> bool {
        matches!(self.look(), Look::Connected)
    }

    /// Waits for a peer to connect (after the previous one, if any, left).
    pub(crate) fn accept(
        &mut self,
        ep: &Endpoint,
        deadline: Option<Instant>,
    ) -> Result<(Box<ShmRx>, Box<ShmTx>)> {
        let timed_out = || Error::new(ErrorKind::TimedOut, "accept").at(ep);
        let mut backoff = crate::deadline::Backoff::new(BUSY_PAUSE);
        loop {
            match self.look() {
                Look::Connected => return self.take(ep),
                Look::Busy => {
                    if !backoff.sleep_within(deadline) {
                        return Err(timed_out());
                    }
                }
                Look::Free { state, claimed } => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        return Err(timed_out());
                    }
                    // A connector wakes the futex when it claims and when
                    // it connected; a look is due soon only while a
                    // claimer may die between the two.
                    let slice = if claimed {
                        crate::wait::sleep_slice(deadline)
                    } else {
                        let idle = idle_look(ep);
                        deadline.map_or(idle, |d| idle.min(d - now))
                    };
                    sys::futex::wait(&self.link.header().state, state, Some(slice))
                        .map_err(|e| Error::io("accept", e).at(ep))?;
                }
            }
        }
    }

    /// One accept pass that never waits, for tokio: the peer's halves, or
    /// what to await before the next pass: the accept doorbell, with a
    /// look `?liveness=` later while a claim is held (its claimer may
    /// die) and [`idle_look`] later otherwise; or while the last peer is
    /// still there 5 ms later (it may die, which rings nobody).
    #[cfg(feature = "async")]
    pub(crate) fn poll_accept(&mut self, ep: &Endpoint) -> Result<Polled> {
        Ok(match self.look() {
            Look::Connected => Polled::Accepted(self.take(ep)?),
            Look::Busy => Polled::Wait(None, Some(Instant::now() + BUSY_PAUSE)),
            // Looked at anyway: a claimer that died before connecting, a
            // connector killed between connecting and ringing, or one of
            // an ipcx that rang no listener, rings nothing.
            Look::Free { claimed, .. } => {
                let bell = sys::fd::dup_cloexec(self.bell.as_fd())
                    .map_err(|e| Error::io("accept", e).at(ep))?;
                let look = if claimed {
                    ep.options().liveness
                } else {
                    idle_look(ep)
                };
                Polled::Wait(Some(bell), Some(crate::deadline::far_after(look)))
            }
        })
    }

    /// Where the endpoint stands: the last peer still there (or its
    /// halves here), free for a connector (the state word, to sleep on,
    /// and whether a live claimer holds it), or connected. Resets the rings once the last peer and its halves
    /// are gone, and undoes the claim of a claimer that died.
    fn look(&mut self) -> Look {
        // Emptied before looking: a ring after this look is still heard.
        crate::wait::doorbell::drain(&self.bell);
        let h = self.link.header();
        if self.used {
            // One peer at a time: wait until the last one left, then reset.
            if !peer_gone(h, Side::Server) || self.last.strong_count() > 0 {
                return Look::Busy;
            }
            ring_of(&self.link, Side::Server, true).reset();
            ring_of(&self.link, Side::Server, false).reset();
            h.bells.store(1 << ACCEPT_BELL, Ordering::Relaxed);
            h.client_gone.store(0, Ordering::Relaxed);
            h.server_gone.store(0, Ordering::Relaxed);
            h.state.store(FREE, Ordering::Release);
            // Last: whoever claims next sees the state free.
            h.claim.store(0, Ordering::Release);
            self.used = false;
        }
        let state = h.state.load(Ordering::Acquire);
        if state == CONNECTED {
            return Look::Connected;
        }
        // A client that died between claiming and connecting must not
        // block the endpoint; one that lives keeps its claim however
        // long it stalls (undoing it would let a second client in
        // beside it).
        let claim = h.claim.load(Ordering::Acquire);
        let claimed = claim != 0
            && (sys::process::identity_alive(claim)
                || h.claim
                    .compare_exchange(claim, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err());
        Look::Free { state, claimed }
    }

    /// The server's halves of the connected link.
    fn take(&mut self, ep: &Endpoint) -> Result<(Box<ShmRx>, Box<ShmTx>)> {
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

/// What [`ShmListener::look`] found.
enum Look {
    Busy,
    Free { state: u32, claimed: bool },
    Connected,
}

/// What one accept pass that never waits found.
#[cfg(feature = "async")]
pub(crate) enum Polled {
    Accepted((Box<ShmRx>, Box<ShmTx>)),
    /// Await the doorbell (when there is one) or the instant (when
    /// there is one).
    Wait(Option<std::os::fd::OwnedFd>, Option<Instant>),
}

/// The longest pause between looks while the last peer is still there
/// (it may die, so there is nothing to sleep on).
const BUSY_PAUSE: Duration = Duration::from_millis(5);

/// How long a free listener sleeps before it looks anyway when no claim
/// is held: `?liveness=`, but at least [`IDLE_LOOK`] (and at most a
/// day). A connector wakes it (the futex, the doorbell) when it claims
/// and when it connected, so this only bounds what nobody announces (a
/// connector killed between connecting and ringing, a claim written by
/// hand).
fn idle_look(ep: &Endpoint) -> Duration {
    ep.options()
        .liveness
        .clamp(IDLE_LOOK, Duration::from_secs(24 * 3600))
}

const IDLE_LOOK: Duration = Duration::from_secs(1);
