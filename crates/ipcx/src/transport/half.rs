//! [`RecvHalf`] and [`SendHalf`]: the two directions of a [`Link`](super::Link), each
//! with one backend (a byte stream, an `shm:` ring, or nothing for the
//! missing direction of a one-way FIFO), matched in one place per
//! operation.

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::descriptor::Descriptor;
use super::journal::{JournalRx, JournalTx};
use super::link::{Shared, Until};
use super::mq::{MqRx, MqTx};
use super::outgoing::Outgoing;
use super::shm::{ShmRx, ShmTx};
use super::stream::StreamRx;
use super::stream_tx::StreamTx;
use crate::error::{Error, ErrorKind, Result};
use crate::wire;

/// How a half receives. The stream variant is large (its decoder state)
/// and stays inline: it is the hot path, and a box would cost an
/// indirection per message.
#[allow(clippy::large_enum_variant)]
pub(super) enum Rx {
    Stream(StreamRx),
    Shm(Box<ShmRx>),
    Mq(MqRx),
    Journal(Box<JournalRx>),
    /// The sending end of a one-way FIFO: it receives nothing; the
    /// descriptor is the link's write end, which the link offers to event
    /// loops ([`AsFd`](std::os::fd::AsFd) on [`Link`](super::Link)).
    None(Arc<Descriptor>),
}

/// How a half sends.
pub(super) enum Tx {
    Stream(StreamTx),
    Shm(Box<ShmTx>),
    Mq(MqTx),
    Journal(Box<JournalTx>),
    /// The receiving end of a one-way FIFO.
    None,
}

/// The receiving half of a [`Link`](super::Link).
pub struct RecvHalf {
    pub(super) rx: Rx,
    pub(super) shared: Arc<Shared>,
    /// What `Read` has not handed out yet of the last message, and from
    /// where.
    pub(super) unread: (Vec<u8>, usize),
}

/// The sending half of a [`Link`](super::Link).
pub struct SendHalf {
    pub(super) tx: Tx,
    pub(super) shared: Arc<Shared>,
}

impl RecvHalf {
    /// Receives one message into a fresh buffer.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.recv_into(&mut v)?;
        Ok(v)
    }

    /// Receives one message into `buf`, replacing its contents.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.next(Until::Forever)?;
        self.take_message(buf);
        Ok(())
    }

    /// Receives a message if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>> {
        match self.next(Until::NoWait) {
            Ok(()) => {
                let mut v = Vec::new();
                self.take_message(&mut v);
                Ok(Some(v))
            }
            Err(e) if *e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Receives one message, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.recv_until(Until::after(timeout))
    }

    pub(crate) fn recv_until(&mut self, until: Until) -> Result<Vec<u8>> {
        self.next(until)?;
        let mut v = Vec::new();
        self.take_message(&mut v);
        Ok(v)
    }

    /// Receives one message and the file descriptors sent with it.
    pub fn recv_fds(&mut self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        let msg = self.recv()?;
        Ok((msg, self.take_fds()))
    }

    /// Receives the first message `msgtyp` selects (`sysvmq:` links: 0 the
    /// first of any type, N > 0 the first of type N, -N the first of the
    /// lowest type up to N), waiting as `until` allows.
    pub(crate) fn recv_typed(&mut self, msgtyp: i64, until: Until) -> Result<(Vec<u8>, i64)> {
        match &mut self.rx {
            Rx::Mq(m) if m.is_sysv() => {
                m.next_of(msgtyp, until)
                    .map_err(|e| e.at(&self.shared.url))?;
                let mut v = Vec::new();
                m.take_message(&mut v);
                Ok((v, m.tag()))
            }
            _ => Err(Error::new(
                ErrorKind::Unsupported("only sysvmq: links carry message types".into()),
                "recv",
            )
            .at(&self.shared.url)),
        }
    }

    /// The type of the message received last (`sysvmq:` links; `0` on
    /// others).
    pub fn last_type(&self) -> i64 {
        match &self.rx {
            Rx::Mq(m) if m.is_sysv() => m.tag(),
            _ => 0,
        }
    }

    /// The priority of the message received last (`mq:` links; `0` on
    /// others).
    pub fn last_priority(&self) -> u32 {
        match &self.rx {
            Rx::Mq(m) if !m.is_sysv() => u32::try_from(m.tag()).unwrap_or(0),
            Rx::Mq(_) => 0,
            Rx::Stream(_) | Rx::Shm(_) | Rx::Journal(_) | Rx::None(_) => 0,
        }
    }

    /// How many messages wait in the queue this half takes from (`mq:`,
    /// `sysvmq:`; `None` on links of other mechanisms, which have no
    /// queue of their own to count).
    pub fn queued(&self) -> Option<Result<usize>> {
        match &self.rx {
            Rx::Mq(m) => Some(m.depth().map_err(|e| e.at(&self.shared.url))),
            _ => None,
        }
    }

    /// The sequence number of the record received last (`journal:`
    /// links; `0` on others).
    pub fn last_seq(&self) -> u64 {
        match &self.rx {
            Rx::Journal(j) => j.seq(),
            Rx::Stream(_) | Rx::Shm(_) | Rx::Mq(_) | Rx::None(_) => 0,
        }
    }

    /// The descriptors that came with the last message received (taken).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn take_fds(&mut self) -> Vec<OwnedFd> {
        match &mut self.rx {
            Rx::Stream(s) => std::mem::take(&mut s.last_fds),
            Rx::Shm(_) | Rx::Mq(_) | Rx::Journal(_) | Rx::None(_) => Vec::new(),
        }
    }

    /// What an event loop waits on for this half to have a message: the
    /// stream's descriptor, or an `shm:` link's doorbell FIFO (readable
    /// once the peer rang; taking it makes the peer ring after each
    /// message it sends). `None` on the sending end of a one-way FIFO.
    pub fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        match &self.rx {
            Rx::Stream(s) => Some(s.descriptor().fd()),
            Rx::Shm(s) => Some(s.doorbell()),
            Rx::Mq(m) => Some(m.fd()),
            Rx::Journal(j) => Some(j.fd()),
            Rx::None(_) => None,
        }
    }

    /// Whether a receive would give a message (or an error) now although
    /// the descriptor may not say so: a message a stream read ahead, what
    /// `Read` has not handed out, an `shm:` ring holding one or a peer
    /// gone. Queues and journals keep nothing back: their descriptors say
    /// it all.
    pub(crate) fn ready_now(&mut self) -> bool {
        if self.unread.1 < self.unread.0.len() {
            return true;
        }
        match &mut self.rx {
            Rx::Stream(s) => s.ready_without_reading(),
            Rx::Shm(s) => s.ready_now(),
            Rx::Mq(_) | Rx::Journal(_) | Rx::None(_) => false,
        }
    }

    /// For a poller told this half's descriptor is readable: whether a
    /// receive would give something, where the descriptor may still say so
    /// for what was taken (an `shm:` doorbell, a watcher's eventfd: those
    /// are lowered then). A socket's and a POSIX queue's say it exactly.
    pub(crate) fn confirm(&mut self) -> bool {
        if self.unread.1 < self.unread.0.len() {
            return true;
        }
        match &mut self.rx {
            Rx::Shm(s) => s.confirm(),
            Rx::Mq(m) => m.confirm(),
            Rx::Journal(j) => j.confirm(),
            Rx::Stream(_) | Rx::None(_) => true,
        }
    }

    /// How often a poller must ask [`RecvHalf::ready_now`] although the
    /// descriptor is quiet: an `shm:` peer that was killed rings nothing.
    pub(crate) fn check_every(&self) -> Option<Duration> {
        match &self.rx {
            Rx::Shm(_) => Some(crate::wait::LIVENESS_INTERVAL),
            Rx::Stream(_) | Rx::Mq(_) | Rx::Journal(_) | Rx::None(_) => None,
        }
    }

    /// The descriptor tokio's reactor watches for this half (a byte
    /// stream's, a queue's, or the eventfd a watcher raises), if it reads
    /// one.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn reactor_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.rx {
            Rx::Stream(s) => Some(s.descriptor().fd()),
            // A System V queue's and a journal's: the eventfd their
            // watcher thread raises.
            Rx::Mq(m) => Some(m.fd()),
            Rx::Journal(j) => Some(j.fd()),
            Rx::Shm(_) | Rx::None(_) => None,
        }
    }

    /// The descriptor [`AsFd`] on the link gives: [`RecvHalf::descriptor`],
    /// or the write end on the sending end of a one-way FIFO.
    pub(crate) fn link_fd(&self) -> BorrowedFd<'_> {
        match &self.rx {
            Rx::Stream(s) => s.descriptor().fd(),
            Rx::Shm(s) => s.doorbell(),
            Rx::Mq(m) => m.fd(),
            Rx::Journal(j) => j.fd(),
            Rx::None(write_end) => write_end.fd(),
        }
    }

    /// Puts the descriptor in non-blocking mode, for an event loop.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn set_nonblocking(&self) -> Result<()> {
        match &self.rx {
            Rx::Stream(s) => set_nonblocking(s.descriptor()),
            Rx::Shm(_) | Rx::Mq(_) | Rx::Journal(_) | Rx::None(_) => Ok(()),
        }
    }

    /// A shared-memory half's doorbell place (tokio awaits it instead of
    /// a descriptor).
    #[cfg(feature = "async")]
    pub(crate) fn shm_bell(&self) -> Option<super::shm::LinkBell> {
        match &self.rx {
            Rx::Shm(s) => Some(s.bell()),
            Rx::Stream(_) | Rx::Mq(_) | Rx::Journal(_) | Rx::None(_) => None,
        }
    }

    /// Whether dropping this half waits for the peer's hello first.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn lingers(&self) -> bool {
        match &self.rx {
            Rx::Stream(s) => s.lingers(),
            Rx::Shm(_) | Rx::Mq(_) | Rx::Journal(_) | Rx::None(_) => false,
        }
    }

    /// Takes the message the last successful `next` or `poll_once`
    /// completed.
    pub(crate) fn take_message(&mut self, out: &mut Vec<u8>) {
        match &mut self.rx {
            Rx::Stream(s) => s.take_message(out),
            Rx::Shm(s) => s.take_message(out),
            Rx::Mq(m) => m.take_message(out),
            Rx::Journal(j) => j.take_message(out),
            Rx::None(_) => out.clear(),
        }
    }

    /// Waits for the next whole message, which the backend then holds.
    pub(crate) fn next(&mut self, until: Until) -> Result<()> {
        match &mut self.rx {
            Rx::Stream(s) => s.next(until),
            Rx::Shm(s) => s.next(until).map_err(|e| e.at(&self.shared.url)),
            Rx::Mq(m) => m.next(until).map_err(|e| e.at(&self.shared.url)),
            Rx::Journal(j) => j.next(until).map_err(|e| e.at(&self.shared.url)),
            Rx::None(_) => Err(self.only_sends("recv")),
        }
    }

    /// One attempt without waiting: `Some` when a message is whole. A hello
    /// the link expects is checked and consumed on the way.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn poll_once(&mut self, op: &'static str) -> Result<Option<()>> {
        match &mut self.rx {
            Rx::Stream(s) => s.poll_once(op),
            Rx::Shm(s) => match s.next(Until::NoWait) {
                Ok(()) => Ok(Some(())),
                Err(e) if *e.kind() == ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e.at(&self.shared.url)),
            },
            Rx::Mq(m) => match m.next(Until::NoWait) {
                Ok(()) => Ok(Some(())),
                Err(e) if *e.kind() == ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e.at(&self.shared.url)),
            },
            Rx::Journal(j) => match j.next(Until::NoWait) {
                Ok(()) => Ok(Some(())),
                Err(e) if *e.kind() == ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e.at(&self.shared.url)),
            },
            Rx::None(_) => Err(self.only_sends(op)),
        }
    }

    fn only_sends(&self, op: &'static str) -> Error {
        Error::new(
            ErrorKind::Unsupported(
                "this link only sends (a one-way FIFO; add ?duplex=true)".into(),
            ),
            op,
        )
        .at(&self.shared.url)
    }
}

impl SendHalf {
    /// Sends one message, waiting as long as the peer takes to make room.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_frame(wire::KIND_DATA, msg, &[], Until::Forever)
    }

    /// Sends one message if the link has room for it now: `WouldBlock`
    /// means nothing was sent. See [`Link::try_send`](super::Link::try_send);
    /// unlike a link's receives, this half's peer [`RecvHalf`] cannot
    /// finish what `try_send` left partly sent: call [`SendHalf::flush`]
    /// before awaiting a reply.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_frame(wire::KIND_DATA, msg, &[], Until::NoWait)
    }

    /// [`SendHalf::try_send`] with `priority` (`mq:` links; see
    /// [`Link::send_with_priority`](super::Link::send_with_priority)):
    /// `WouldBlock` when the queue is full.
    pub fn try_send_with_priority(&mut self, msg: &[u8], priority: u32) -> Result<()> {
        self.send_with_priority(msg, priority, Until::NoWait)
    }

    /// Whether this half sends into a message queue or a journal (a
    /// message goes whole, or not at all).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn is_queue(&self) -> bool {
        matches!(self.tx, Tx::Mq(_) | Tx::Journal(_))
    }

    /// Sends one message with `priority` (see
    /// [`Link::send_with_priority`](super::Link::send_with_priority)).
    pub(crate) fn send_with_priority(
        &mut self,
        msg: &[u8],
        priority: u32,
        until: Until,
    ) -> Result<()> {
        match &mut self.tx {
            Tx::Mq(m) if !m.is_sysv() => m
                .send(msg, Some(i64::from(priority)), until)
                .map_err(|e| e.at(&self.shared.url)),
            _ if priority == 0 => self.send_frame(wire::KIND_DATA, msg, &[], until),
            _ => Err(Error::new(
                ErrorKind::Unsupported(
                    "only mq: links carry priorities (sysvmq: has types: send_typed)".into(),
                ),
                "send",
            )
            .at(&self.shared.url)),
        }
    }

    /// Sends one message with the System V type `mtype` (> 0; see
    /// [`Link::send_typed`](super::Link::send_typed)).
    pub(crate) fn send_typed(&mut self, msg: &[u8], mtype: i64, until: Until) -> Result<()> {
        match &mut self.tx {
            Tx::Mq(m) if m.is_sysv() => m
                .send(msg, Some(mtype), until)
                .map_err(|e| e.at(&self.shared.url)),
            _ => Err(Error::new(
                ErrorKind::Unsupported("only sysvmq: links carry message types".into()),
                "send",
            )
            .at(&self.shared.url)),
        }
    }

    /// Pushes what [`SendHalf::try_send`] left unsent, without waiting:
    /// `true` once nothing is left (an event loop calls it when the link
    /// is writable, or now and then).
    pub fn try_flush(&mut self) -> Result<bool> {
        match self.flush_until(Until::NoWait) {
            Ok(()) => Ok(!self.has_unsent()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a message [`SendHalf::try_send`] or
    /// [`SendHalf::send_timeout`] took in part still has bytes to write
    /// (they go before the next message, or on [`SendHalf::flush`]).
    pub fn has_unsent(&self) -> bool {
        match &self.tx {
            Tx::Stream(s) => s.has_unsent(),
            Tx::Shm(s) => s.has_unsent(),
            Tx::Mq(_) | Tx::Journal(_) | Tx::None => false,
        }
    }

    /// Finishes sending a message that [`SendHalf::try_send`] or
    /// [`SendHalf::send_timeout`] left partly sent, waiting as long as it
    /// takes; at once if there is none.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_until(Until::Forever)
    }

    /// [`SendHalf::flush`], waiting at most the link's `?timeout=` (before
    /// the async sender takes over, which knows nothing of a rest).
    pub(crate) fn flush_lingering(&mut self) -> Result<()> {
        match &mut self.tx {
            Tx::Stream(s) => s.flush(Until::after(s.linger)),
            Tx::Shm(s) => s.flush(Until::after(s.linger)),
            Tx::Mq(_) | Tx::Journal(_) | Tx::None => Ok(()),
        }
    }

    /// [`SendHalf::flush`], waiting as `until` allows.
    pub(crate) fn flush_until(&mut self, until: Until) -> Result<()> {
        match &mut self.tx {
            Tx::Stream(s) => s.flush(until),
            Tx::Shm(s) => s.flush(until).map_err(|e| e.at(&self.shared.url)),
            Tx::Journal(j) => j.flush().map_err(|e| e.at(&self.shared.url)),
            Tx::Mq(_) | Tx::None => Ok(()),
        }
    }

    /// Sends one message, waiting at most `timeout` for room: `TimedOut`
    /// means nothing was sent. See
    /// [`Link::send_timeout`](super::Link::send_timeout).
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.send_frame(wire::KIND_DATA, msg, &[], Until::after(timeout))
    }

    /// Sends one message with file descriptors (Unix sockets only).
    pub fn send_fds(&mut self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.send_frame(wire::KIND_DATA, msg, fds, Until::Forever)
    }

    /// The largest message the peer accepts, once its handshake arrived.
    pub fn peer_max_msg(&self) -> Option<u64> {
        match self.shared.peer_max.load(Ordering::Acquire) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    /// Ends this direction: the peer's next receive returns `Closed` once
    /// it has read what was sent (a stream's write side is shut down; an
    /// `shm:` half is marked gone when it drops).
    pub(crate) fn shutdown(&mut self) {
        // The rest of a message a send left partly sent goes first (at
        // most `?timeout=`): shut down before it, the peer would get the
        // message cut short.
        let _ = self.flush_lingering();
        if let Tx::Stream(s) = &self.tx {
            s.descriptor().shutdown(true);
        }
    }

    /// The sending descriptor, to wait on it in an event loop (writable
    /// when a send can go). `None` on `shm:` links and the receiving end
    /// of a one-way FIFO.
    pub fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        match &self.tx {
            Tx::Stream(s) => Some(s.descriptor().fd()),
            Tx::Mq(m) => m.fd(),
            Tx::Shm(_) | Tx::Journal(_) | Tx::None => None,
        }
    }

    pub(crate) fn send_frame(
        &mut self,
        kind: u8,
        msg: &[u8],
        fds: &[BorrowedFd<'_>],
        until: Until,
    ) -> Result<()> {
        match &mut self.tx {
            Tx::Stream(s) => s.send_frame(kind, msg, fds, until),
            Tx::Shm(_) if !fds.is_empty() => Err(Error::new(
                ErrorKind::Unsupported("shm: links do not pass descriptors".into()),
                "send",
            )
            .at(&self.shared.url)),
            Tx::Shm(s) => s.send(msg, until).map_err(|e| e.at(&self.shared.url)),
            Tx::Mq(_) if !fds.is_empty() => Err(Error::new(
                ErrorKind::Unsupported("mq: links do not pass descriptors".into()),
                "send",
            )
            .at(&self.shared.url)),
            Tx::Mq(m) => m.send(msg, None, until).map_err(|e| e.at(&self.shared.url)),
            Tx::Journal(_) if !fds.is_empty() => Err(Error::new(
                ErrorKind::Unsupported("journal: links do not pass descriptors".into()),
                "send",
            )
            .at(&self.shared.url)),
            Tx::Journal(j) => j.send(msg).map_err(|e| e.at(&self.shared.url)),
            Tx::None => Err(self.only_receives()),
        }
    }

    /// Checks that the message may go, and lays it out for writing (byte
    /// streams; the async sender writes it).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn prepare<'a>(
        &self,
        kind: u8,
        msg: &'a [u8],
        fds: &'a [BorrowedFd<'a>],
    ) -> Result<(Arc<Descriptor>, Outgoing<'a>)> {
        match &self.tx {
            Tx::Stream(s) => s.prepare(kind, msg, fds, None),
            Tx::Shm(_) | Tx::Mq(_) | Tx::Journal(_) => Err(Error::new(
                ErrorKind::Unsupported("not a byte stream".into()),
                "send",
            )),
            Tx::None => Err(self.only_receives()),
        }
    }

    /// A write failed or was abandoned mid-message: later sends fail.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn write_failed(&mut self, e: std::io::Error) -> Error {
        match &mut self.tx {
            Tx::Stream(s) => s.write_failed(e),
            Tx::Shm(s) => {
                s.fail();
                Error::peer_io("send", e).at(&self.shared.url)
            }
            Tx::Mq(_) | Tx::Journal(_) => Error::peer_io("send", e).at(&self.shared.url),
            Tx::None => self.only_receives(),
        }
    }

    /// A shared-memory half's doorbell place (tokio awaits it instead of
    /// a descriptor).
    #[cfg(feature = "async")]
    pub(crate) fn shm_bell(&self) -> Option<super::shm::LinkBell> {
        match &self.tx {
            Tx::Shm(s) => Some(s.bell()),
            Tx::Stream(_) | Tx::Mq(_) | Tx::Journal(_) | Tx::None => None,
        }
    }

    /// Shared memory: pushes what fits of `msg` from byte `sent` on without
    /// waiting; `true` once it is all in the ring.
    #[cfg(feature = "async")]
    pub(crate) fn try_send_shm(&mut self, msg: &[u8], sent: &mut usize) -> Result<bool> {
        let url = &self.shared.url;
        match &mut self.tx {
            Tx::Shm(s) => s.try_send(msg, sent).map_err(|e| e.at(url)),
            Tx::Stream(_) | Tx::Mq(_) | Tx::Journal(_) | Tx::None => Err(Error::new(
                ErrorKind::Unsupported("not a shared-memory link".into()),
                "send",
            )),
        }
    }

    /// Puts the descriptor in non-blocking mode, for an event loop.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn set_nonblocking(&self) -> Result<()> {
        match &self.tx {
            Tx::Stream(s) => set_nonblocking(s.descriptor()),
            Tx::Shm(_) | Tx::Mq(_) | Tx::Journal(_) | Tx::None => Ok(()),
        }
    }

    fn only_receives(&self) -> Error {
        Error::new(
            ErrorKind::Unsupported(
                "this link only receives (a one-way FIFO; add ?duplex=true)".into(),
            ),
            "send",
        )
        .at(&self.shared.url)
    }
}

#[cfg_attr(not(feature = "async"), allow(dead_code))]
fn set_nonblocking(ch: &Descriptor) -> Result<()> {
    ch.set_blocking(false).map_err(|e| Error::io("register", e))
}

impl fmt::Debug for RecvHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvHalf")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendHalf")
            .field("url", &self.shared.url)
            .finish_non_exhaustive()
    }
}
