//! [`SendHalf`]'s methods: sends that wait, or not, or up to a deadline;
//! flushing what a send left; priorities and types on queues.

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{SendHalf, Tx, set_nonblocking};
use crate::error::{Error, ErrorKind, Result};
use crate::transport::descriptor::Descriptor;
use crate::transport::link::Until;
use crate::transport::outgoing::Outgoing;
use crate::wire;

impl SendHalf {
    /// Sends one message, waiting as long as the peer takes to make room.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_frame(wire::KIND_DATA, msg, &[], Until::Forever)
    }

    /// Sends one message if the link has room for it now: `WouldBlock`
    /// means nothing was sent. See [`Link::try_send`](crate::Link::try_send);
    /// unlike a link's receives, this half's peer [`RecvHalf`](crate::RecvHalf) cannot
    /// finish what `try_send` left partly sent: call [`SendHalf::flush`]
    /// before awaiting a reply.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_frame(wire::KIND_DATA, msg, &[], Until::NoWait)
    }

    /// [`SendHalf::try_send`] with `priority` (`mq:` links; see
    /// [`Link::send_with_priority`](crate::Link::send_with_priority)):
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
    /// [`Link::send_with_priority`](crate::Link::send_with_priority)).
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
    /// [`Link::send_typed`](crate::Link::send_typed)).
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
    /// [`Link::send_timeout`](crate::Link::send_timeout).
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
            Tx::None => Err(self.only_receives()),
            _ if !fds.is_empty() => Err(self.passes_no_fds()),
            Tx::Shm(s) => s.send(msg, until).map_err(|e| e.at(&self.shared.url)),
            Tx::Mq(m) => m.send(msg, None, until).map_err(|e| e.at(&self.shared.url)),
            Tx::Journal(j) => j.send(msg).map_err(|e| e.at(&self.shared.url)),
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
    pub(crate) fn shm_bell(&self) -> Option<crate::transport::shm::LinkBell> {
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

    /// The refusal of descriptors on a link whose mechanism passes none.
    pub(crate) fn passes_no_fds(&self) -> Error {
        self.shared.passes_no_fds()
    }

    fn only_receives(&self) -> Error {
        Error::new(
            ErrorKind::OneWay("this end of a one-way FIFO only receives (add ?duplex=true)".into()),
            "send",
        )
        .at(&self.shared.url)
    }
}
