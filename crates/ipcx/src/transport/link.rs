//! [`Link`]: a connection that moves whole messages, and its two halves.
//!
//! Each half has one backend, matched in one place per operation: a byte
//! stream (`stream.rs`: pipes, FIFOs, sockets), a shared-memory ring
//! (`shm.rs`), or nothing (the missing direction of a one-way FIFO). A new
//! mechanism is a new variant and a module of its own.

use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Capabilities;
use super::channel::Channel;
use super::outgoing::Outgoing;
use super::shm::{ShmRx, ShmTx};
use super::stream::{StreamRx, StreamTx};
use crate::endpoint::{Endpoint, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::wire::{self, Hello};

/// How long a receive may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Until {
    /// Return `WouldBlock` instead of waiting.
    NoWait,
    /// Wait until this instant, then `TimedOut`.
    Deadline(Instant),
    /// Wait as long as it takes.
    Forever,
}

impl Until {
    pub(crate) fn after(d: Duration) -> Until {
        crate::deadline::after(d).map_or(Until::Forever, Until::Deadline)
    }
}

/// What both halves of a link know.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) url: String,
    pub(crate) caps: Capabilities,
    /// The largest message the peer accepts, once its hello arrived.
    pub(crate) peer_max: AtomicU64,
    /// A send has begun on this link (see `StreamRx`'s `Drop`).
    pub(crate) sent: AtomicBool,
    /// How long a peer may take to say hello (`?handshake_timeout=`).
    pub(crate) handshake_timeout: Duration,
}

/// How a half receives. The stream variant is large (its decoder state)
/// and stays inline: it is the hot path, and a box would cost an
/// indirection per message.
#[allow(clippy::large_enum_variant)]
enum Rx {
    Stream(StreamRx),
    Shm(Box<ShmRx>),
    /// The sending end of a one-way FIFO.
    None,
}

/// How a half sends.
enum Tx {
    Stream(StreamTx),
    Shm(Box<ShmTx>),
    /// The receiving end of a one-way FIFO.
    None,
}

/// The receiving half of a [`Link`].
pub struct RecvHalf {
    rx: Rx,
    shared: Arc<Shared>,
}

/// The sending half of a [`Link`].
pub struct SendHalf {
    tx: Tx,
    shared: Arc<Shared>,
}

/// A link to one peer that moves whole messages, the same way over every
/// mechanism.
///
/// ```no_run
/// # fn main() -> ipcx::Result<()> {
/// let mut link = ipcx::Link::connect("tcp://127.0.0.1:7000?timeout=2s")?;
/// link.send(b"ping")?;
/// let reply = link.recv_timeout(std::time::Duration::from_secs(1))?;
/// println!("{} bytes back", reply.len());
/// # Ok(()) }
/// ```
pub struct Link {
    rx: RecvHalf,
    tx: SendHalf,
}

impl Link {
    /// Builds a link over a read and a write channel (the same one for
    /// sockets; either may be absent on a one-way FIFO).
    pub(crate) fn new(ep: &Endpoint, rd: Option<Arc<Channel>>, wr: Option<Arc<Channel>>) -> Link {
        // Blocking waits sleep in `read`; spinning ones need non-blocking reads.
        let blocking = ep.options().wait == WaitStrategy::Block;
        for ch in rd.iter().chain(wr.iter()) {
            if let Err(e) = ch.set_blocking(blocking) {
                tracing::debug!(error = %e, "cannot set the descriptor's blocking mode");
            }
        }
        let shared = Link::shared(ep);
        let rx = rd.map_or(Rx::None, |ch| {
            Rx::Stream(StreamRx::new(ep, ch, shared.clone()))
        });
        let tx = wr.map_or(Tx::None, |ch| {
            Tx::Stream(StreamTx::new(ep, ch, shared.clone()))
        });
        Link::of(rx, tx, shared)
    }

    /// A link over the two rings of a shared-memory segment.
    pub(crate) fn from_shm(ep: &Endpoint, rx: Box<ShmRx>, tx: Box<ShmTx>) -> Link {
        let shared = Link::shared(ep);
        shared.peer_max.store(tx.peer_max_msg(), Ordering::Release);
        Link::of(Rx::Shm(rx), Tx::Shm(tx), shared)
    }

    fn shared(ep: &Endpoint) -> Arc<Shared> {
        Arc::new(Shared {
            url: ep.url().to_string(),
            caps: Capabilities::of(ep.scheme()),
            peer_max: AtomicU64::new(u64::MAX),
            sent: AtomicBool::new(false),
            handshake_timeout: ep.options().handshake_timeout,
        })
    }

    fn of(rx: Rx, tx: Tx, shared: Arc<Shared>) -> Link {
        Link {
            rx: RecvHalf {
                rx,
                shared: shared.clone(),
            },
            tx: SendHalf { tx, shared },
        }
    }

    /// Connects to `url`, waiting up to its `?timeout=` (default 5s) for a
    /// peer to bind it, then runs the handshake.
    pub fn connect(url: &str) -> Result<Link> {
        super::connect(&Endpoint::parse(url)?)
    }

    /// [`Link::connect`] with a parsed endpoint.
    pub fn connect_endpoint(ep: &Endpoint) -> Result<Link> {
        super::connect(ep)
    }

    /// The link a parent made with [`crate::spawn`], in the child: the two
    /// pipe descriptors named by the `IPCX_PIPE` variable, which is then
    /// removed (a grandchild inherits neither).
    ///
    /// # Safety
    /// As with `jobserver::Client::from_env`, descriptor numbers read from
    /// the environment cannot be checked for ownership. The caller
    /// guarantees that this process was started by [`crate::spawn`] (or
    /// given `IPCX_PIPE=pipe:fd=R,W` by a parent that passed those two
    /// descriptors for this purpose), that nothing else in this process has
    /// taken them over (call it early, before opening other files), and
    /// that no other thread reads or writes the environment meanwhile (the
    /// variable is removed).
    #[allow(unsafe_code)]
    pub unsafe fn from_inherited() -> Result<Link> {
        // SAFETY: forwarded to the caller.
        unsafe { super::pipe::from_inherited() }
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg)
    }

    /// Sends one message with file descriptors (Unix sockets only).
    pub fn send_fds(&mut self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.tx.send_fds(msg, fds)
    }

    /// Receives one message into a fresh buffer, waiting as long as it takes.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.rx.recv()
    }

    /// Receives one message into `buf`, replacing its contents; reusing one
    /// buffer avoids an allocation per message.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.rx.recv_into(buf)
    }

    /// Receives a message if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>> {
        self.rx.try_recv()
    }

    /// Receives one message, waiting at most `timeout` ([`ErrorKind::TimedOut`]).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.rx.recv_timeout(timeout)
    }

    /// Receives one message and the file descriptors sent with it.
    pub fn recv_fds(&mut self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        self.rx.recv_fds()
    }

    /// Splits the link into halves that can move to different threads.
    pub fn split(self) -> (RecvHalf, SendHalf) {
        (self.rx, self.tx)
    }

    /// Joins two halves of the same link again.
    pub fn unsplit(rx: RecvHalf, tx: SendHalf) -> Link {
        Link { rx, tx }
    }

    /// Closes the link: the peer's next `recv` returns `Closed` once it has
    /// read what was sent.
    pub fn close(self) {
        if let Tx::Stream(s) = &self.tx.tx {
            s.channel().shutdown(true);
        }
    }

    /// Who is on the other end, as the kernel reports it (Unix sockets).
    pub fn peer_credentials(&self) -> Result<super::PeerCredentials> {
        let ch = match (&self.rx.rx, &self.tx.tx) {
            (Rx::Stream(s), _) => Some(s.channel()),
            (_, Tx::Stream(s)) => Some(s.channel()),
            _ => None,
        };
        match ch {
            Some(ch) if ch.kind().passes_fds() => {
                let (pid, uid, gid) = sys::socket::peer_credentials(ch.fd())
                    .map_err(|e| Error::io("peer_credentials", e).at(&self.rx.shared.url))?;
                Ok(super::PeerCredentials { pid, uid, gid })
            }
            _ => Err(Error::new(
                ErrorKind::Unsupported(
                    "peer credentials exist only on unix: and unixseq: links".into(),
                ),
                "peer_credentials",
            )
            .at(&self.rx.shared.url)),
        }
    }

    /// What the mechanism under this link can do.
    pub fn capabilities(&self) -> Capabilities {
        self.rx.shared.caps
    }

    /// The endpoint URL of the link.
    pub fn url(&self) -> &str {
        &self.rx.shared.url
    }

    /// The largest message the peer accepts, once its handshake arrived.
    pub fn peer_max_msg(&self) -> Option<u64> {
        self.tx.peer_max_msg()
    }

    /// Waits up to `timeout` for the peer's hello: on return, the peer
    /// accepted this link and speaks the same protocol with compatible
    /// settings (CRC, limits).
    ///
    /// `connect` does not wait for it (the listener answers only when it
    /// accepts, and a connect must not depend on that); the first receive
    /// checks it anyway. Call this where a sender must know it was
    /// accepted before it goes on, as `ipcx send` does: a listener at its
    /// `?max_conns=` limit closes the connection unanswered, and this says
    /// so. A message that arrived right behind the hello is kept for the
    /// next receive.
    ///
    /// ```
    /// # fn main() -> ipcx::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("ipcx-doc-wc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let url = format!("unix:{}/app.sock", dir.display());
    /// let mut listener = ipcx::Listener::bind(&url)?;
    /// let mut client = ipcx::Link::connect(&url)?; // returns at once
    /// let _server = listener.accept()?;             // answers the hello
    /// client.wait_connected(std::time::Duration::from_secs(5))?;
    /// assert!(client.peer_max_msg().is_some());
    /// # drop(listener); std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        self.finish_handshake(crate::deadline::far_after(timeout))
    }

    /// The receiving descriptor, to wait on it in an event loop.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.rx.as_fd()
    }

    /// Sends our hello and, where this side also receives, expects the
    /// peer's as the first frame.
    pub(crate) fn begin_handshake(&mut self, crc: bool, max_msg: usize) -> Result<()> {
        self.send_hello(crc, max_msg)?;
        self.expect_hello(crc, max_msg);
        Ok(())
    }

    /// Sends our hello (where this side sends a byte stream).
    pub(crate) fn send_hello(&mut self, crc: bool, max_msg: usize) -> Result<()> {
        match &mut self.tx.tx {
            Tx::Stream(s) => s.send_hello(&Hello::new(crc, max_msg)),
            Tx::Shm(_) | Tx::None => Ok(()),
        }
    }

    /// Expects the peer's hello as the first frame (where this side
    /// receives a byte stream), to be checked against ours.
    pub(crate) fn expect_hello(&mut self, crc: bool, max_msg: usize) {
        if let Rx::Stream(s) = &mut self.rx.rx {
            s.expect_hello(Hello::new(crc, max_msg));
        }
    }

    /// Waits until the peer's hello arrived and matched ours.
    pub(crate) fn finish_handshake(&mut self, deadline: Instant) -> Result<()> {
        match &mut self.rx.rx {
            Rx::Stream(s) => s.await_hello(deadline),
            Rx::Shm(_) | Rx::None => Ok(()),
        }
    }

    /// Reads what has arrived of the peer's hello; `true` once it matched.
    pub(crate) fn poll_handshake(&mut self) -> Result<bool> {
        match &mut self.rx.rx {
            Rx::Stream(s) => s.poll_hello(),
            Rx::Shm(_) | Rx::None => Ok(true),
        }
    }
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
        self.next(Until::after(timeout))?;
        let mut v = Vec::new();
        self.take_message(&mut v);
        Ok(v)
    }

    /// Receives one message and the file descriptors sent with it.
    pub fn recv_fds(&mut self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        let msg = self.recv()?;
        let fds = match &mut self.rx {
            Rx::Stream(s) => std::mem::take(&mut s.last_fds),
            Rx::Shm(_) | Rx::None => Vec::new(),
        };
        Ok((msg, fds))
    }

    /// The receiving descriptor, to wait on it in an event loop.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.rx {
            Rx::Stream(s) => Some(s.channel().fd()),
            Rx::Shm(_) | Rx::None => None,
        }
    }

    /// Puts the descriptor in non-blocking mode, for an event loop.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn set_nonblocking(&self) -> Result<()> {
        match &self.rx {
            Rx::Stream(s) => set_nonblocking(s.channel()),
            Rx::Shm(_) | Rx::None => Ok(()),
        }
    }

    /// A shared-memory half's doorbell place (tokio awaits it instead of
    /// a descriptor).
    #[cfg(feature = "async")]
    pub(crate) fn shm_bell(&self) -> Option<super::shm::BellPlace> {
        match &self.rx {
            Rx::Shm(s) => Some(s.bell()),
            Rx::Stream(_) | Rx::None => None,
        }
    }

    /// Whether dropping this half waits for the peer's hello first.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn lingers(&self) -> bool {
        match &self.rx {
            Rx::Stream(s) => s.lingers(),
            Rx::Shm(_) | Rx::None => false,
        }
    }

    /// Takes the message the last successful `next` or `poll_once`
    /// completed.
    pub(crate) fn take_message(&mut self, out: &mut Vec<u8>) {
        match &mut self.rx {
            Rx::Stream(s) => s.take_message(out),
            Rx::Shm(s) => s.take_message(out),
            Rx::None => out.clear(),
        }
    }

    /// Waits for the next whole message, which the backend then holds.
    pub(crate) fn next(&mut self, until: Until) -> Result<()> {
        match &mut self.rx {
            Rx::Stream(s) => s.next(until),
            Rx::Shm(s) => s.next(until).map_err(|e| e.at(&self.shared.url)),
            Rx::None => Err(self.only_sends("recv")),
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
            Rx::None => Err(self.only_sends(op)),
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
    /// Sends one message.
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_frame(wire::KIND_DATA, msg, &[])
    }

    /// Sends one message with file descriptors (Unix sockets only).
    pub fn send_fds(&mut self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.send_frame(wire::KIND_DATA, msg, fds)
    }

    /// The largest message the peer accepts, once its handshake arrived.
    pub fn peer_max_msg(&self) -> Option<u64> {
        match self.shared.peer_max.load(Ordering::Acquire) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    /// The sending descriptor, to wait on it in an event loop.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.tx {
            Tx::Stream(s) => Some(s.channel().fd()),
            Tx::Shm(_) | Tx::None => None,
        }
    }

    pub(crate) fn send_frame(
        &mut self,
        kind: u8,
        msg: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<()> {
        match &mut self.tx {
            Tx::Stream(s) => s.send_frame(kind, msg, fds),
            Tx::Shm(_) if !fds.is_empty() => Err(Error::new(
                ErrorKind::Unsupported("shm: links do not pass descriptors".into()),
                "send",
            )
            .at(&self.shared.url)),
            Tx::Shm(s) => s.send(msg).map_err(|e| e.at(&self.shared.url)),
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
    ) -> Result<(Arc<Channel>, Outgoing<'a>)> {
        match &self.tx {
            Tx::Stream(s) => s.prepare(kind, msg, fds),
            Tx::Shm(_) => Err(Error::new(
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
            Tx::None => self.only_receives(),
        }
    }

    /// A shared-memory half's doorbell place (tokio awaits it instead of
    /// a descriptor).
    #[cfg(feature = "async")]
    pub(crate) fn shm_bell(&self) -> Option<super::shm::BellPlace> {
        match &self.tx {
            Tx::Shm(s) => Some(s.bell()),
            Tx::Stream(_) | Tx::None => None,
        }
    }

    /// Shared memory: pushes what fits of `msg` from byte `sent` on without
    /// waiting; `true` once it is all in the ring.
    #[cfg(feature = "async")]
    pub(crate) fn try_send_shm(&mut self, msg: &[u8], sent: &mut usize) -> Result<bool> {
        let url = &self.shared.url;
        match &mut self.tx {
            Tx::Shm(s) => s.try_send(msg, sent).map_err(|e| e.at(url)),
            Tx::Stream(_) | Tx::None => Err(Error::new(
                ErrorKind::Unsupported("not a shared-memory link".into()),
                "send",
            )),
        }
    }

    /// Puts the descriptor in non-blocking mode, for an event loop.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn set_nonblocking(&self) -> Result<()> {
        match &self.tx {
            Tx::Stream(s) => set_nonblocking(s.channel()),
            Tx::Shm(_) | Tx::None => Ok(()),
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
fn set_nonblocking(ch: &Channel) -> Result<()> {
    ch.set_blocking(false).map_err(|e| Error::io("register", e))
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("url", &self.rx.shared.url)
            .finish_non_exhaustive()
    }
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
