//! Connecting to an `shm:` link one look at a time, for a caller that
//! waits its own way between looks (a blocking connect sleeps, tokio
//! awaits a timer).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Conn, ShmRx, ShmTx, Side, halves, me, ring_accept};
use crate::deadline::Backoff;
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::Segment;
use crate::shm::duplex::{CONNECTED, FREE, LINK_VERSION, LinkSegment};
use crate::stamp::Stamp;
use crate::sys;

/// The two halves of a connected `shm:` link.
pub(crate) type Halves = (Box<ShmRx>, Box<ShmTx>);

/// A connect under way: the link segment once it is open.
pub(crate) struct Connecting<'a> {
    ep: &'a Endpoint,
    link: Option<LinkSegment>,
    /// This process's pid and start time (read from `/proc` once).
    me: Option<(u32, u64)>,
    /// Pauses while the segment is absent or being made.
    absent: Backoff,
    /// Pauses while the endpoint is not free.
    busy: Backoff,
}

/// Why a connect cannot finish yet.
pub(crate) enum NotYet {
    /// The segment is absent, or its creator is still making it.
    Segment(crate::shm::NotYet),
    /// The endpoint is not ready, its owner is gone, or it has a peer.
    Busy,
}

impl NotYet {
    /// The error of a connect that waited until its deadline.
    pub(crate) fn gave_up(self, ep: &Endpoint) -> Error {
        match self {
            NotYet::Segment(not_yet) => not_yet.gave_up(ep),
            NotYet::Busy => Error::new(
                ErrorKind::occupied(
                    "the shm: endpoint is not ready, its owner is gone, or it already has a peer \
                     (it serves one at a time)"
                        .into(),
                ),
                "connect",
            )
            .at(ep),
        }
    }
}

impl<'a> Connecting<'a> {
    pub(crate) fn new(ep: &'a Endpoint) -> Connecting<'a> {
        Connecting {
            ep,
            link: None,
            me: None,
            absent: Backoff::new(Duration::from_millis(50)),
            busy: Backoff::new(Duration::from_millis(20)),
        }
    }

    /// How long to wait before the next look after `not_yet`.
    pub(crate) fn pause(&mut self, not_yet: &NotYet) -> Duration {
        match not_yet {
            NotYet::Segment(_) => self.absent.next_pause(),
            NotYet::Busy => self.busy.next_pause(),
        }
    }

    /// One look, without waiting: opens the segment if it is not open yet,
    /// then claims the endpoint if it is free and its owner alive.
    pub(crate) fn step(&mut self) -> Result<std::result::Result<Halves, NotYet>> {
        let ep = self.ep;
        let link = match self.link.take() {
            Some(link) => link,
            None => match Segment::look(ep)? {
                Ok(seg) => LinkSegment::new(Arc::new(seg)).ok_or_else(|| {
                    Error::new(
                        ErrorKind::Foreign(
                            "the segment is not an ipcx link (not a link's size)".into(),
                        ),
                        "connect",
                    )
                    .at(ep)
                })?,
                Err(not_yet) => return Ok(Err(NotYet::Segment(not_yet))),
            },
        };
        let me = *self.me.get_or_insert_with(me);
        if !claim(ep, &link, me)? {
            self.link = Some(link);
            return Ok(Err(NotYet::Busy));
        }
        let (rx, tx, _) = halves(
            Conn {
                link,
                side: Side::Client,
                liveness: ep.options().liveness,
                ringer: Default::default(),
            },
            ep,
        )?;
        Ok(Ok((rx, tx)))
    }
}

/// Claims the endpoint and connects (`state` FREE → CONNECTED) when its
/// header is ready, its owner alive and nobody holds it; `false` when not
/// (yet).
fn claim(ep: &Endpoint, link: &LinkSegment, (pid, start): (u32, u64)) -> Result<bool> {
    let h = link.header();
    let stamp = h.stamp();
    if let Stamp::Foreign(_) | Stamp::OtherVersion(_) = stamp
        && let Some(kind) = stamp.error(LINK_VERSION, "the segment is not an ipcx link")
    {
        return Err(Error::new(kind, "connect").at(ep));
    }
    if stamp != Stamp::Ready {
        return Ok(false);
    }
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
    if !server_alive
        || h.claim
            .compare_exchange(0, identity, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    {
        return Ok(false);
    }
    // A listener asleep for long (no claim was held when it looked) looks
    // again and sees the claim: it then looks often enough to undo it if
    // we die before connecting.
    let _ = sys::futex::wake(&h.state, sys::futex::ALL);
    let ringer = crate::wait::doorbell::Ringer::default();
    ring_accept(link, &ringer);
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
    ring_accept(link, &ringer);
    Ok(true)
}
