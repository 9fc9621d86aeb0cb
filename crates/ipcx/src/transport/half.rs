//! [`RecvHalf`] and [`SendHalf`]: the two directions of a [`Link`](super::Link), each
//! with one backend (a byte stream, an `shm:` ring, or nothing for the
//! missing direction of a one-way FIFO), matched in one place per
//! operation. The sending half's methods are in `half/send.rs`.

mod send;

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use super::descriptor::Descriptor;
use super::journal::{JournalRx, JournalTx};
use super::link::{Shared, Until};
use super::mq::{MqRx, MqTx};
use super::shm::{ShmRx, ShmTx};
use super::stream::StreamRx;
use super::stream_tx::StreamTx;
use crate::error::{Error, ErrorKind, Result};

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

    /// The descriptor [`AsFd`](std::os::fd::AsFd) on the link gives: [`RecvHalf::descriptor`],
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

    /// Until when a lingering half waits for the peer's hello (`None`
    /// when it does not linger).
    #[cfg(feature = "async")]
    pub(crate) fn linger_deadline(&self) -> Option<std::time::Instant> {
        match &self.rx {
            Rx::Stream(s) if s.lingers() => Some(s.linger_deadline()),
            _ => None,
        }
    }

    /// Stops lingering: dropping the half then closes at once.
    #[cfg(feature = "async")]
    pub(crate) fn give_up_hello(&mut self) {
        if let Rx::Stream(s) = &mut self.rx {
            s.give_up_hello();
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
            ErrorKind::OneWay("this end of a one-way FIFO only sends (add ?duplex=true)".into()),
            op,
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
