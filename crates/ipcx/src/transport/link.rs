//! [`Link`]: a connection that moves whole messages, and its two halves.

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Capabilities;
use super::channel::Channel;
use super::outgoing::{Outgoing, Part, Parts};
use super::shm::{ShmRx, ShmTx};
use crate::endpoint::{Codec, Endpoint, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::fd::Interest;
use crate::sys::{self, socket::MAX_FDS};
use crate::wire::{self, Decoded, Decoder, FrameError, Header, Hello};

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
    peer_max: AtomicU64,
    /// A send has begun on this link (see `RecvHalf`'s `Drop`).
    sent: std::sync::atomic::AtomicBool,
    /// How long a peer may take to say hello (`?handshake_timeout=`).
    handshake_timeout: Duration,
}

/// The receiving half of a [`Link`].
pub struct RecvHalf {
    /// A shared-memory link receives through its ring instead of `ch`.
    shm: Option<Box<ShmRx>>,
    ch: Option<Arc<Channel>>,
    dec: Decoder,
    fds: VecDeque<OwnedFd>,
    last_fds: Vec<OwnedFd>,
    /// Our hello, while the peer's is still to come.
    hello: Option<Hello>,
    /// A whole message waits in the decoder (it arrived with the hello).
    ready: bool,
    wait: WaitStrategy,
    spin: Duration,
    max_fds: usize,
    failed: Option<ErrorKind>,
    shared: Arc<Shared>,
}

/// The sending half of a [`Link`].
pub struct SendHalf {
    /// A shared-memory link sends through its ring instead of `ch`.
    shm: Option<Box<ShmTx>>,
    ch: Option<Arc<Channel>>,
    codec: Codec,
    crc: bool,
    chunk: usize,
    failed: bool,
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
        let o = ep.options();
        let caps = Capabilities::of(ep.scheme());
        let packet = rd.as_ref().is_some_and(|c| c.kind().is_packet());
        // Blocking waits sleep in `read`; spinning ones need non-blocking reads.
        let blocking = o.wait == WaitStrategy::Block;
        for ch in rd.iter().chain(wr.iter()) {
            if let Err(e) = ch.set_blocking(blocking) {
                tracing::debug!(error = %e, "cannot set the descriptor's blocking mode");
            }
        }
        let shared = Arc::new(Shared {
            url: ep.url().to_string(),
            caps,
            peer_max: AtomicU64::new(u64::MAX),
            sent: std::sync::atomic::AtomicBool::new(false),
            handshake_timeout: o.handshake_timeout,
        });
        Link {
            rx: RecvHalf {
                shm: None,
                ch: rd,
                dec: Decoder::new(o.codec, o.max_msg, packet).require_crc(o.crc),
                fds: VecDeque::new(),
                last_fds: Vec::new(),
                hello: None,
                ready: false,
                wait: o.wait,
                spin: o.spin,
                max_fds: o.max_fds,
                failed: None,
                shared: shared.clone(),
            },
            tx: SendHalf {
                shm: None,
                chunk: if packet {
                    super::PACKET_CHUNK
                } else {
                    wire::CHUNK
                },
                ch: wr,
                codec: o.codec,
                crc: o.crc,
                failed: false,
                shared,
            },
        }
    }

    /// A link over the two rings of a shared-memory segment.
    pub(crate) fn from_shm(ep: &Endpoint, rx: Box<ShmRx>, tx: Box<ShmTx>) -> Link {
        let mut link = Link::new(ep, None, None);
        link.rx
            .shared
            .peer_max
            .store(tx.peer_max_msg(), Ordering::Release);
        link.rx.shm = Some(rx);
        link.tx.shm = Some(tx);
        link
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
        if let Some(ch) = &self.tx.ch {
            ch.shutdown(true);
        }
    }

    /// Who is on the other end, as the kernel reports it (Unix sockets).
    pub fn peer_credentials(&self) -> Result<super::PeerCredentials> {
        let ch = self.rx.ch.as_ref().or(self.tx.ch.as_ref());
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
        if self.rx.shm.is_some() || self.rx.ch.is_none() {
            return Ok(());
        }
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

    /// Sends our hello (where this side sends).
    pub(crate) fn send_hello(&mut self, crc: bool, max_msg: usize) -> Result<()> {
        if self.tx.ch.is_some() {
            let hello = Hello::new(crc, max_msg);
            match self.tx.send_frame(wire::KIND_HELLO, &hello.encode(), &[]) {
                // The peer may have sent all it had and closed before we
                // said hello (a parent that spawns, sends and exits): what
                // it sent can still be read, and our sends report `Closed`.
                Err(e) if e.is_closed() => {}
                r => r?,
            }
        }
        Ok(())
    }

    /// Expects the peer's hello as the first frame (where this side
    /// receives), to be checked against ours.
    pub(crate) fn expect_hello(&mut self, crc: bool, max_msg: usize) {
        if self.rx.ch.is_some() {
            self.rx.hello = Some(Hello::new(crc, max_msg));
        }
    }

    /// Waits until the peer's hello arrived and matched ours.
    pub(crate) fn finish_handshake(&mut self, deadline: Instant) -> Result<()> {
        self.rx.await_hello(deadline)
    }

    /// Reads what has arrived of the peer's hello; `true` once it matched.
    pub(crate) fn poll_handshake(&mut self) -> Result<bool> {
        self.rx.poll_hello()
    }
}

impl RecvHalf {
    /// Waits until the peer's hello arrived and matched ours.
    fn await_hello(&mut self, deadline: Instant) -> Result<()> {
        while self.hello.is_some() {
            // Wait before reading: the read end of a FIFO reads as end of
            // stream until the peer has opened its write end.
            let ch = self.channel("connect")?;
            if !sys::fd::wait(ch.fd(), Interest::Read, Some(deadline))
                .map_err(|e| Error::io("connect", e))?
            {
                return Err(Error::new(
                    ErrorKind::Handshake("the peer sent no hello in time (is it an ipcx endpoint with codec=framed?)".into()),
                    "connect",
                )
                .at(&self.shared.url));
            }
            if let Err(e) = self.poll_hello() {
                if !e.is_closed() {
                    return Err(e);
                }
                return Err(Error::new(
                    ErrorKind::Handshake(
                        "the peer closed the connection before its hello: the listener may be at its \
                         ?max_conns= limit, or not be an ipcx endpoint"
                            .into(),
                    ),
                    "connect",
                )
                .at(&self.shared.url));
            }
        }
        Ok(())
    }

    /// Reads what has arrived of the peer's hello; `true` once it matched.
    fn poll_hello(&mut self) -> Result<bool> {
        if self.hello.is_none() {
            return Ok(true);
        }
        match self.poll_with("connect", false, true)? {
            None => Ok(self.hello.is_none()),
            // The hello came, and a message right behind it: keep that one
            // for the first `recv`.
            Some(()) if self.hello.is_none() => {
                self.ready = true;
                Ok(true)
            }
            Some(()) => Err(Error::new(
                ErrorKind::Handshake("the peer sent data before its hello".into()),
                "connect",
            )
            .at(&self.shared.url)),
        }
    }
}

/// A socket closed with unread bytes in its receive queue is reset, not
/// closed: the kernel drops what this side sent and the peer has not yet
/// read (TCP sends RST; a Unix peer gets `ECONNRESET`). A connecting side
/// that sent and never received still has the listener's hello to read, so
/// it lingers for it (up to `?handshake_timeout=`, which `connect` used to
/// spend waiting for the same hello) and reads it before the close.
impl RecvHalf {
    /// Whether dropping this half waits for the peer's hello first.
    pub(crate) fn lingers(&self) -> bool {
        self.hello.is_some()
            && self.failed.is_none()
            && self.shared.sent.load(Ordering::Relaxed)
            && self.ch.as_ref().is_some_and(|c| c.kind().is_socket())
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        if self.lingers() {
            let deadline = crate::deadline::far_after(self.shared.handshake_timeout);
            if let Err(e) = self.await_hello(deadline) {
                tracing::debug!(url = %self.shared.url, error = %e, "no hello before close");
            }
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
        Ok((msg, std::mem::take(&mut self.last_fds)))
    }

    /// The receiving descriptor, to wait on it in an event loop.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.ch.as_ref().map(|c| c.fd())
    }

    /// Waits for the next whole message, which the decoder then holds.
    /// Puts the descriptor in non-blocking mode, for an event loop.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn set_nonblocking(&self) -> Result<()> {
        set_nonblocking(&self.ch)
    }

    /// A shared-memory half's doorbell place (tokio awaits it instead of
    /// a descriptor).
    #[cfg(feature = "async")]
    pub(crate) fn shm_bell(&self) -> Option<super::shm::BellPlace> {
        self.shm.as_ref().map(|s| s.bell())
    }

    /// Takes the message the last successful [`RecvHalf::next`] or
    /// [`RecvHalf::poll_once`] completed.
    pub(crate) fn take_message(&mut self, out: &mut Vec<u8>) {
        match &mut self.shm {
            Some(shm) => shm.take_message(out),
            None => self.dec.take_message(out),
        }
    }

    pub(crate) fn next(&mut self, until: Until) -> Result<()> {
        if let Some(shm) = &mut self.shm {
            return shm.next(until).map_err(|e| e.at(&self.shared.url));
        }
        // Blocking forever on a blocking descriptor: let the read sleep.
        let may_block = matches!(until, Until::Forever) && self.wait == WaitStrategy::Block;
        let mut spin_end = None;
        loop {
            if self.poll_with("recv", may_block, false)?.is_some() {
                return Ok(());
            }
            self.wait_readable(until, &mut spin_end)?;
        }
    }

    /// One attempt without waiting: `Some` when a message is whole. A hello
    /// the link expects is checked and consumed on the way.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn poll_once(&mut self, op: &'static str) -> Result<Option<()>> {
        self.poll_with(op, false, false)
    }

    /// `after_hello`: stop once the peer's hello is consumed, leaving what
    /// follows it (good or bad) to the first receive, so that a listener
    /// hands over a peer that said hello and the bytes after it are the
    /// link's to judge.
    fn poll_with(
        &mut self,
        op: &'static str,
        may_block: bool,
        after_hello: bool,
    ) -> Result<Option<()>> {
        if let Some(shm) = &mut self.shm {
            return match shm.next(Until::NoWait) {
                Ok(()) => Ok(Some(())),
                Err(e) if *e.kind() == ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e.at(&self.shared.url)),
            };
        }
        if std::mem::take(&mut self.ready) {
            return Ok(Some(()));
        }
        if let Some(kind) = &self.failed {
            return Err(Error::new(kind.clone(), op).at(&self.shared.url));
        }
        let ch = self.channel(op)?.clone();
        let mut r;
        loop {
            r = self
                .dec
                .poll(&mut ch.source(&mut self.fds, self.max_fds, may_block))
                .and_then(|d| self.accept_decoded(d));
            // A hello was consumed: what follows it may already be buffered.
            if after_hello || !matches!(r, Ok(Some(false))) {
                break;
            }
        }
        match r.map(|got| got.filter(|&whole| whole).map(|_| ())) {
            Ok(r) => Ok(r),
            Err(e) if *e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) => {
                // A broken or finished stream: close it so the peer sees the
                // end at once, and give every later call the same answer.
                if !e.is_closed() {
                    tracing::warn!(url = %self.shared.url, error = %e, "closing link after bad input");
                    ch.shutdown(false);
                }
                self.failed = Some(e.kind().clone());
                Err(e.at(&self.shared.url))
            }
        }
    }

    /// `Some(true)`: a message is whole; `Some(false)`: a hello was consumed.
    fn accept_decoded(&mut self, d: Option<Decoded>) -> Result<Option<bool>> {
        match d {
            None => Ok(None),
            Some(Decoded::Hello(peer)) => {
                let Some(ours) = self.hello.take() else {
                    return Err(wire::frame_err(FrameError::Unexpected("second hello")));
                };
                ours.check_peer(&peer)
                    .map_err(|why| Error::new(ErrorKind::Handshake(why), "handshake"))?;
                self.shared.peer_max.store(peer.max_msg, Ordering::Release);
                Ok(Some(false))
            }
            Some(Decoded::Message { .. }) if self.hello.is_some() => Err(Error::new(
                ErrorKind::Handshake("the peer sent data before its hello".into()),
                "handshake",
            )),
            Some(Decoded::Message { nfds }) => {
                if nfds > self.max_fds {
                    return Err(wire::frame_err(FrameError::Fds(format!(
                        "{nfds} sent with one message, the limit is {} (?max_fds=)",
                        self.max_fds
                    ))));
                }
                if nfds > self.fds.len() {
                    return Err(wire::frame_err(FrameError::Fds(format!(
                        "{nfds} announced, {} received",
                        self.fds.len()
                    ))));
                }
                self.last_fds.clear();
                self.last_fds.extend(self.fds.drain(..nfds));
                Ok(Some(true))
            }
        }
    }

    fn channel(&self, op: &'static str) -> Result<&Arc<Channel>> {
        self.ch.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported(
                    "this link only sends (a one-way FIFO; add ?duplex=true)".into(),
                ),
                op,
            )
            .at(&self.shared.url)
        })
    }

    fn wait_readable(&self, until: Until, spin_end: &mut Option<Instant>) -> Result<()> {
        let deadline = match until {
            Until::NoWait => return Err(Error::new(ErrorKind::WouldBlock, "recv")),
            Until::Forever => None,
            Until::Deadline(t) => Some(t),
        };
        let spinning = match self.wait {
            WaitStrategy::Block => false,
            WaitStrategy::Spin => true,
            WaitStrategy::Adaptive => {
                Instant::now()
                    < *spin_end.get_or_insert_with(|| crate::deadline::far_after(self.spin))
            }
        };
        if spinning {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(ErrorKind::TimedOut, "recv").at(&self.shared.url));
            }
            std::hint::spin_loop();
            return Ok(());
        }
        let ch = self.channel("recv")?;
        match sys::fd::wait(ch.fd(), Interest::Read, deadline) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::new(ErrorKind::TimedOut, "recv").at(&self.shared.url)),
            Err(e) => Err(Error::io("recv", e).at(&self.shared.url)),
        }
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

    pub(crate) fn send_frame(
        &mut self,
        kind: u8,
        msg: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> Result<()> {
        if let Some(shm) = &mut self.shm {
            if !fds.is_empty() {
                return Err(Error::new(
                    ErrorKind::Unsupported("shm: links do not pass descriptors".into()),
                    "send",
                )
                .at(&self.shared.url));
            }
            return shm.send(msg).map_err(|e| e.at(&self.shared.url));
        }
        let (ch, mut out) = self.prepare(kind, msg, fds)?;
        loop {
            match out.write_some(&ch) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    sys::fd::wait(ch.fd(), Interest::Write, None)
                        .map_err(|e| Error::io("send", e))?;
                }
                Err(e) => return Err(self.write_failed(e)),
            }
        }
    }

    /// Checks that the message may go, and lays it out for writing.
    pub(crate) fn prepare<'a>(
        &self,
        kind: u8,
        msg: &'a [u8],
        fds: &'a [BorrowedFd<'a>],
    ) -> Result<(Arc<Channel>, Outgoing<'a>)> {
        let err = |k: ErrorKind| Err(Error::new(k, "send").at(&self.shared.url));
        let Some(ch) = self.ch.clone() else {
            return err(ErrorKind::Unsupported(
                "this link only receives (a one-way FIFO; add ?duplex=true)".into(),
            ));
        };
        if self.failed {
            return err(ErrorKind::Closed);
        }
        self.shared.sent.store(true, Ordering::Relaxed);
        if !fds.is_empty() && (!ch.kind().passes_fds() || fds.len() > MAX_FDS) {
            return err(ErrorKind::Unsupported(format!(
                "{} descriptors: only unix: and unixseq: links pass descriptors, at most {MAX_FDS} at a time",
                fds.len()
            )));
        }
        let out = self.outgoing(kind, msg, fds, ch.kind().is_packet())?;
        Ok((ch, out))
    }

    /// A write failed mid-message: the stream can no longer be trusted.
    /// A shared-memory half's doorbell place (tokio awaits it instead of
    /// a descriptor).
    #[cfg(feature = "async")]
    pub(crate) fn shm_bell(&self) -> Option<super::shm::BellPlace> {
        self.shm.as_ref().map(|s| s.bell())
    }

    /// Shared memory: pushes what fits of `msg` from byte `sent` on without
    /// waiting; `true` once it is all in the ring.
    #[cfg(feature = "async")]
    pub(crate) fn try_send_shm(&mut self, msg: &[u8], sent: &mut usize) -> Result<bool> {
        let url = &self.shared.url;
        match &mut self.shm {
            Some(shm) => shm.try_send(msg, sent).map_err(|e| e.at(url)),
            None => Err(Error::new(
                ErrorKind::Unsupported("not a shared-memory link".into()),
                "send",
            )),
        }
    }

    pub(crate) fn write_failed(&mut self, e: std::io::Error) -> Error {
        if let Some(shm) = &mut self.shm {
            shm.fail();
        }
        self.failed = true;
        Error::peer_io("send", e).at(&self.shared.url)
    }

    /// Checks a message and lays it out as the bytes to write.
    pub(crate) fn outgoing<'a>(
        &self,
        kind: u8,
        msg: &'a [u8],
        fds: &'a [BorrowedFd<'a>],
        packet: bool,
    ) -> Result<Outgoing<'a>> {
        let err = |k: ErrorKind| Err(Error::new(k, "send").at(&self.shared.url));
        let (parts, group) = match self.codec {
            Codec::Raw => (Parts::one(Part::Body(msg)), 1),
            Codec::Lines => {
                if msg.contains(&b'\n') {
                    return err(ErrorKind::Unsupported(
                        "a message on a codec=lines link may not contain a newline; send it on a framed link or split it".into(),
                    ));
                }
                (Parts::two(Part::Body(msg), Part::Body(b"\n")), 2)
            }
            Codec::Framed => {
                let max = self.shared.peer_max.load(Ordering::Acquire);
                if msg.len() as u64 > max {
                    return err(ErrorKind::MessageTooLarge {
                        len: msg.len() as u64,
                        max,
                    });
                }
                if msg.len() <= self.chunk {
                    let head = Part::Head(self.header(kind, msg, fds.len()).encode());
                    (Parts::two(head, Part::Body(msg)), 2)
                } else {
                    let mut parts = Vec::new();
                    wire::for_each_chunk(msg, self.chunk, self.crc, |h, part| {
                        parts.extend([Part::Head(h.encode()), Part::Body(part)]);
                    });
                    if let Some(Part::Head(h)) = parts.first_mut() {
                        h[7] = fds.len() as u8;
                    }
                    (Parts::Heap(parts), 2)
                }
            }
        };
        // A datagram socket takes one frame per call; a stream takes all.
        let group = if packet { group } else { usize::MAX };
        Ok(Outgoing::new(parts, group, fds))
    }

    fn header(&self, kind: u8, msg: &[u8], nfds: usize) -> Header {
        Header {
            kind,
            flags: if self.crc { wire::FLAG_CRC } else { 0 },
            nfds: nfds as u8,
            len: msg.len() as u64,
            crc: if self.crc { crc32c::crc32c(msg) } else { 0 },
        }
    }

    /// The sending descriptor, to wait on it in an event loop.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.ch.as_ref().map(|c| c.fd())
    }

    /// Puts the descriptor in non-blocking mode, for an event loop.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn set_nonblocking(&self) -> Result<()> {
        set_nonblocking(&self.ch)
    }
}

#[cfg_attr(not(feature = "async"), allow(dead_code))]
fn set_nonblocking(ch: &Option<Arc<Channel>>) -> Result<()> {
    match ch {
        Some(ch) => ch.set_blocking(false).map_err(|e| Error::io("register", e)),
        None => Ok(()),
    }
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
