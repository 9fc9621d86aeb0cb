//! The two halves of a connected `shm:` link: one ring each way.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::{Conn, LinkBell, bell_number};
use crate::endpoint::{Endpoint, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::ring::{Corrupt, MORE, Ring};
use crate::transport::Until;
use crate::transport::stream_tx::out_of_time;
use crate::wait::{WaitEnd, Waiting};
use crate::wire::FrameError;

pub(super) type Halves = (Box<ShmRx>, Box<ShmTx>, Weak<Conn>);

/// The halves of a connected link, with the receiving half's doorbell
/// FIFO made (or reopened), so that the link has a descriptor to wait on.
pub(super) fn halves(conn: Conn, ep: &Endpoint) -> Result<Halves> {
    let o = ep.options();
    let seg = conn.link.segment();
    let number = bell_number(conn.side, true);
    let doorbell = match seg.name() {
        Some(name) => crate::wait::doorbell::make(name, number, seg.mode()?)
            .map_err(|e| Error::io("connect", e).at(ep))?,
        None => {
            return Err(Error::new(
                ErrorKind::InvalidArgument(
                    "an shm: link needs a named segment: connect to shm:NAME".into(),
                ),
                "connect",
            )
            .at(ep));
        }
    };
    let conn = Arc::new(conn);
    let weak = Arc::downgrade(&conn);
    let rx = ShmRx {
        ring: conn.ring(true),
        conn: conn.clone(),
        msg: Vec::new(),
        limit: o.max_msg,
        wait: o.wait,
        spin: o.spin,
        failed: None,
        doorbell,
        watched: AtomicBool::new(false),
        liveness: crate::wait::Liveness::due_now(),
        gone: false,
    };
    let tx = ShmTx {
        ring: conn.ring(false),
        conn,
        wait: o.wait,
        spin: o.spin,
        unsent: (Vec::new(), 0),
        linger: o.timeout,
        failed: false,
    };
    Ok((Box::new(rx), Box::new(tx), weak))
}

/// The receiving half of a shared-memory link.
#[derive(Debug)]
pub(crate) struct ShmRx {
    // `ring` points into the segment `conn` keeps mapped; declared first,
    // so it is dropped first.
    ring: Ring,
    conn: Arc<Conn>,
    msg: Vec<u8>,
    limit: usize,
    wait: WaitStrategy,
    spin: Duration,
    failed: Option<ErrorKind>,
    /// This half's doorbell FIFO: the descriptor the link offers to event
    /// loops (`AsFd`), readable once the peer rang.
    doorbell: OwnedFd,
    /// Someone took the descriptor: the doorbell stays armed, and a look
    /// that finds nothing empties it (see [`ShmRx::doorbell`]).
    watched: AtomicBool,
    /// When a look that finds nothing next asks whether a killed peer is
    /// alive (a peer that left says so in one load, at every look).
    liveness: crate::wait::Liveness,
    /// The peer was found gone (it stays so).
    gone: bool,
}

impl ShmRx {
    /// The doorbell FIFO, for an event loop: from now on the peer rings it
    /// after each message it sends (a `write` per message, the price of
    /// being watched), and a receive that finds nothing empties it first,
    /// so it is readable while a message may be waiting.
    pub(crate) fn doorbell(&self) -> BorrowedFd<'_> {
        if !self.watched.swap(true, Ordering::AcqRel) {
            self.bell().arm();
            // What came before the peer was asked to ring: rung here.
            if self.ring.has_data() {
                let _ =
                    crate::sys::fd::writev(self.doorbell.as_fd(), &[std::io::IoSlice::new(&[1])]);
            }
        }
        self.doorbell.as_fd()
    }

    /// A look that found nothing, on a watched half: empties the doorbell,
    /// then (armed, fenced) looks once more, so a message pushed after the
    /// first look is either seen now or rings the emptied doorbell.
    fn look_again(&mut self) -> std::result::Result<Option<u32>, Corrupt> {
        if !self.watched.load(Ordering::Acquire) {
            return Ok(None);
        }
        crate::wait::doorbell::drain(&self.doorbell);
        self.bell().arm();
        self.ring.try_pop(&mut self.msg)
    }

    /// Waits for the next whole message, which [`ShmRx::take_message`] then gives.
    pub(crate) fn next(&mut self, until: Until) -> Result<()> {
        if let Some(kind) = &self.failed {
            return Err(Error::new(kind.clone(), "recv"));
        }
        let deadline = match until {
            Until::Deadline(d) => Some(d),
            _ => None,
        };
        loop {
            let mut popped = self.ring.try_pop(&mut self.msg);
            if matches!(popped, Ok(None)) && matches!(until, Until::NoWait) {
                popped = self.look_again();
            }
            match popped.map_err(|Corrupt(why)| self.fail(ErrorKind::Corrupt(why.into())))? {
                Some(flags) => {
                    self.ring.notify_space();
                    self.conn.ring_peer(false);
                    if self.msg.len() > self.limit {
                        let len = self.msg.len() as u64;
                        self.msg.clear();
                        return Err(self.fail(ErrorKind::Frame(FrameError::TooLong {
                            len,
                            max: self.limit as u64,
                        })));
                    }
                    if flags & MORE == 0 {
                        return Ok(());
                    }
                }
                None if matches!(until, Until::NoWait) => {
                    // A peer that left (or, looked at once per liveness
                    // interval, was killed) is the end, as for a wait.
                    if self.peer_gone_now() && !self.ring.has_data() {
                        return Err(self.fail(ErrorKind::Closed));
                    }
                    return Err(Error::new(ErrorKind::WouldBlock, "recv"));
                }
                None => {
                    let conn = &self.conn;
                    let how = Waiting {
                        strategy: self.wait,
                        spin: self.spin,
                        deadline,
                        peer_gone: &|| conn.peer_gone(),
                    };
                    match self.ring.wait_data(&how) {
                        Ok(()) => {}
                        // What the peer sent before leaving is still delivered.
                        Err(WaitEnd::PeerGone) if self.ring.has_data() => {}
                        Err(WaitEnd::PeerGone) => return Err(self.fail(ErrorKind::Closed)),
                        Err(WaitEnd::TimedOut) => {
                            return Err(Error::new(ErrorKind::TimedOut, "recv"));
                        }
                    }
                }
            }
        }
    }

    /// Whether the peer left (one load) or, at most once per liveness
    /// interval, was found dead.
    fn peer_gone_now(&mut self) -> bool {
        if !self.gone {
            self.gone = self.conn.peer_left() || (self.liveness.due() && self.conn.peer_gone());
        }
        self.gone
    }

    /// Whether a receive would give something now, the doorbell aside: a
    /// message in the ring, a failure, or a peer gone (looked at as
    /// [`ShmRx::peer_gone_now`] does). What a poller asks.
    pub(crate) fn ready_now(&mut self) -> bool {
        self.failed.is_some() || self.ring.has_data() || self.peer_gone_now()
    }

    /// For a poller told the doorbell is readable: whether a receive
    /// would give something. A doorbell rung for messages already taken
    /// is emptied and armed, then the ring looked at once more (as an
    /// empty `try_recv` does).
    pub(crate) fn confirm(&mut self) -> bool {
        if self.ready_now() {
            return true;
        }
        if !self.watched.load(Ordering::Acquire) {
            return true;
        }
        crate::wait::doorbell::drain(&self.doorbell);
        // Armed (and fenced): a message pushed after this look rings the
        // emptied doorbell.
        self.bell().arm();
        self.ring.has_data()
    }

    fn fail(&mut self, kind: ErrorKind) -> Error {
        self.failed = Some(kind.clone());
        Error::new(kind, "recv")
    }

    /// This half's doorbell, for awaiting data on tokio.
    pub(crate) fn bell(&self) -> LinkBell {
        LinkBell {
            conn: self.conn.clone(),
            number: bell_number(self.conn.side, true),
        }
    }

    /// Moves the message `next` completed into `out`, keeping `out`'s
    /// allocation for the next one.
    pub(crate) fn take_message(&mut self, out: &mut Vec<u8>) {
        std::mem::swap(out, &mut self.msg);
        self.msg.clear();
    }
}

/// The sending half of a shared-memory link.
#[derive(Debug)]
pub(crate) struct ShmTx {
    ring: Ring,
    conn: Arc<Conn>,
    wait: WaitStrategy,
    spin: Duration,
    /// The rest of a message a send with a limit had started when its
    /// time ran out, and how much of that rest is in the ring since.
    unsent: (Vec<u8>, usize),
    /// How long dropping the half may wait to push `unsent` (`?timeout=`).
    pub(crate) linger: Duration,
    failed: bool,
}

impl ShmTx {
    /// The largest message the peer accepts.
    pub(crate) fn peer_max_msg(&self) -> u64 {
        self.conn.peer_max_msg()
    }

    /// This half's doorbell, for awaiting space on tokio.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn bell(&self) -> LinkBell {
        LinkBell {
            conn: self.conn.clone(),
            number: bell_number(self.conn.side, false),
        }
    }

    /// Marks the half failed: later sends return `Closed` (a message was
    /// left half-written in the ring).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn fail(&mut self) {
        self.failed = true;
    }

    /// Sends one message, waiting for room as `until` allows: `WouldBlock`
    /// (`NoWait`) or `TimedOut` when none of it is in the ring. A message
    /// longer than the room, partly in the ring when time ran out, counts
    /// as sent: its rest is kept to go first ([`ShmTx::flush`]).
    pub(crate) fn send(&mut self, msg: &[u8], until: Until) -> Result<()> {
        self.flush(until)?;
        let mut sent = 0;
        if !self.push(msg, &mut sent, until)? {
            if sent == 0 {
                return Err(out_of_time(until));
            }
            self.unsent = (msg[sent..].to_vec(), 0);
        }
        Ok(())
    }

    /// Pushes the rest of a message a send left unfinished, waiting as
    /// `until` allows.
    /// Whether a message a send took in part still has bytes to push.
    pub(crate) fn has_unsent(&self) -> bool {
        self.unsent.1 < self.unsent.0.len()
    }

    pub(crate) fn flush(&mut self, until: Until) -> Result<()> {
        if self.unsent.0.is_empty() {
            return Ok(());
        }
        let (rest, mut sent) = std::mem::take(&mut self.unsent);
        let done = self.push(&rest, &mut sent, until);
        if !matches!(done, Ok(true)) {
            self.unsent = (rest, sent);
        }
        match done? {
            true => Ok(()),
            false => Err(out_of_time(until)),
        }
    }

    /// Pushes `msg` from byte `sent` on, waiting for room as `until`
    /// allows: `false` if time ran out first.
    fn push(&mut self, msg: &[u8], sent: &mut usize, until: Until) -> Result<bool> {
        loop {
            match self.try_send(msg, sent) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => {
                    // Parts already in the ring cannot be taken back.
                    self.failed |= *sent > 0;
                    return Err(e);
                }
            }
            if matches!(until, Until::NoWait) {
                return Ok(false);
            }
            let conn = &self.conn;
            let how = Waiting {
                strategy: self.wait,
                spin: self.spin,
                deadline: until.deadline(),
                peer_gone: &|| conn.peer_gone(),
            };
            let need = (msg.len() - *sent).min(self.ring.max_record());
            match self.ring.wait_space(need, &how) {
                Ok(()) => {}
                Err(WaitEnd::TimedOut) => return Ok(false),
                Err(WaitEnd::PeerGone) => {
                    self.failed = true;
                    return Err(Error::new(ErrorKind::Closed, "send"));
                }
            }
        }
    }

    /// Pushes what fits of `msg` from byte `sent` on, without waiting;
    /// `true` once the whole message is in the ring. A message longer than
    /// a record goes in parts, so a `false` after the first part leaves it
    /// half-sent: call again with the same `sent` to go on.
    pub(crate) fn try_send(&mut self, msg: &[u8], sent: &mut usize) -> Result<bool> {
        let max = self.conn.peer_max_msg();
        if msg.len() as u64 > max {
            return Err(Error::new(
                ErrorKind::MessageTooLarge {
                    len: msg.len() as u64,
                    max,
                },
                "send",
            ));
        }
        // The flag only: checking that the peer process lives reads /proc,
        // too slow for every message; waits below do that.
        if self.failed || self.conn.peer_left() {
            self.failed = true;
            return Err(Error::new(ErrorKind::Closed, "send"));
        }
        let most = self.ring.max_record();
        loop {
            let rest = &msg[*sent..];
            let part = &rest[..rest.len().min(most)];
            let last = part.len() == rest.len();
            let flags = if last { 0 } else { MORE };
            let pushed = self.ring.try_push(part, flags).map_err(|Corrupt(why)| {
                self.failed = true;
                Error::new(ErrorKind::Corrupt(why.into()), "send")
            })?;
            if !pushed {
                return Ok(false);
            }
            *sent += part.len();
            self.ring.notify_data();
            self.conn.ring_peer(true);
            if last {
                return Ok(true);
            }
        }
    }
}

impl Drop for ShmTx {
    /// A message a send left unfinished is finished, waiting at most
    /// `?timeout=`: the peer would otherwise see it cut short.
    fn drop(&mut self) {
        let _ = self.flush(Until::after(self.linger));
    }
}
