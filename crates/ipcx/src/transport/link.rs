//! [`Link`]: a connection that moves whole messages; its halves are in
//! `half.rs`, what queue and journal links add in `link/queues.rs`, the
//! hello in `link/handshake.rs`.
//!
//! Each half has one backend, matched in one place per operation: a byte
//! stream (`stream.rs`: pipes, FIFOs, sockets), a shared-memory ring
//! (`shm.rs`), or nothing (the missing direction of a one-way FIFO). A new
//! mechanism is a new variant and a module of its own.

mod handshake;
mod queues;

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Capabilities;
use super::descriptor::Descriptor;
use super::half::{RecvHalf, Rx, SendHalf, Tx};
use super::journal::{JournalRx, JournalTx};
use super::mq::{MqRx, MqTx};
use super::shm::{ShmRx, ShmTx};
use super::stream::StreamRx;
use super::stream_tx::StreamTx;
use crate::endpoint::{Endpoint, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// How long a receive or a send may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// The instant to give up at, if any (`NoWait`: now).
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Until::NoWait => Some(Instant::now()),
            Until::Deadline(d) => Some(d),
            Until::Forever => None,
        }
    }
}

/// Puts a link's descriptor in the mode its `?wait=` needs: blocking
/// waits sleep in `read`; spinning ones need non-blocking reads.
fn blocking_as(ep: &Endpoint, ch: Arc<Descriptor>) -> Arc<Descriptor> {
    if let Err(e) = ch.set_blocking(ep.options().wait == WaitStrategy::Block) {
        tracing::debug!(error = %e, "cannot set the descriptor's blocking mode");
    }
    ch
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

impl Shared {
    /// The refusal of descriptors on a link whose mechanism passes none
    /// (every one but `unix:` and `unixseq:`), naming its scheme.
    pub(crate) fn passes_no_fds(&self) -> Error {
        let scheme = self.url.split(':').next().unwrap_or_default();
        Error::new(
            ErrorKind::Unsupported(format!(
                "{scheme}: links do not pass descriptors; send them over unix: or unixseq:"
            )),
            "send",
        )
        .at(&self.url)
    }
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
    /// Builds a link over a write descriptor and a read one (the same one
    /// for sockets; absent on the sending end of a one-way FIFO).
    pub(crate) fn new(ep: &Endpoint, rd: Option<Arc<Descriptor>>, wr: Arc<Descriptor>) -> Link {
        let shared = Link::shared(ep);
        let rx = match rd {
            Some(rd) => Rx::Stream(StreamRx::new(ep, blocking_as(ep, rd), shared.clone())),
            None => Rx::None(wr.clone()),
        };
        let tx = Tx::Stream(StreamTx::new(ep, blocking_as(ep, wr), shared.clone()));
        Link::of(rx, tx, shared)
    }

    /// Builds a link that only receives (the receiving end of a one-way
    /// FIFO).
    pub(crate) fn receiving(ep: &Endpoint, rd: Arc<Descriptor>) -> Link {
        let shared = Link::shared(ep);
        let rx = Rx::Stream(StreamRx::new(ep, blocking_as(ep, rd), shared.clone()));
        Link::of(rx, Tx::None, shared)
    }

    /// A link over the two rings of a shared-memory segment.
    pub(crate) fn from_shm(ep: &Endpoint, rx: Box<ShmRx>, tx: Box<ShmTx>) -> Link {
        let shared = Link::shared(ep);
        shared.peer_max.store(tx.peer_max_msg(), Ordering::Release);
        Link::of(Rx::Shm(rx), Tx::Shm(tx), shared)
    }

    /// A link over a message queue: it sends into it and takes from it.
    /// The queue's message size is the limit a peer would announce.
    pub(crate) fn from_mq(ep: &Endpoint, rx: MqRx, tx: MqTx) -> Link {
        let shared = Link::shared(ep);
        shared.peer_max.store(tx.max_msg(), Ordering::Release);
        Link::of(Rx::Mq(rx), Tx::Mq(tx), shared)
    }

    /// A link on a journal: it appends to it and follows it. `max` is the
    /// largest record it takes, the limit a peer would announce.
    pub(crate) fn from_journal(ep: &Endpoint, rx: JournalRx, tx: JournalTx, max: u64) -> Link {
        let shared = Link::shared(ep);
        shared.peer_max.store(max, Ordering::Release);
        Link::of(Rx::Journal(Box::new(rx)), Tx::Journal(Box::new(tx)), shared)
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
                unread: (Vec::new(), 0),
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

    /// Sends one message, waiting as long as the peer takes to make room
    /// (a peer that stopped reading stalls it: [`Link::send_timeout`] and
    /// [`Link::try_send`] bound the wait).
    pub fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg)
    }

    /// Sends one message if the link has room for it now.
    /// [`ErrorKind::WouldBlock`] means nothing was sent and the link is
    /// as it was: a producer that must not wait drops or keeps the message.
    ///
    /// `Ok` means the link took the message. A message is never cut
    /// short: if the link took only part of it (a message larger than the
    /// room left in a socket or ring), the rest is kept and goes first,
    /// before the next message, before this link receives, on
    /// [`Link::flush`], or when the link is dropped (waiting at most its
    /// `?timeout=` then).
    ///
    /// ```
    /// # fn main() -> ipcx::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("ipcx-doc-ts-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let url = format!("unix:{}/app.sock", dir.display());
    /// let listener = ipcx::Listener::bind(&url)?;
    /// let mut tx = ipcx::Link::connect(&url)?;
    /// let mut rx = listener.accept()?; // reads nothing yet
    /// let mut sent = 0;
    /// loop {
    ///     match tx.try_send(&[7u8; 1000]) {
    ///         Ok(()) => sent += 1,
    ///         Err(e) if *e.kind() == ipcx::ErrorKind::WouldBlock => break,
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// assert!(sent > 0); // what the kernel's buffers took
    /// assert_eq!(rx.recv()?, [7u8; 1000]);
    /// # drop(listener); std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn try_send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.try_send(msg)
    }

    /// Sends one message, waiting at most `timeout` for room:
    /// [`ErrorKind::TimedOut`] means nothing was sent and the link is as it
    /// was. `Ok` means the link took the message, as with
    /// [`Link::try_send`].
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.tx.send_timeout(msg, timeout)
    }

    /// Finishes sending a message that [`Link::try_send`] or
    /// [`Link::send_timeout`] left partly sent, waiting as long as it
    /// takes; at once if there is none. Receiving does it too.
    pub fn flush(&mut self) -> Result<()> {
        self.tx.flush()
    }

    /// Sends one message with file descriptors (Unix sockets only).
    pub fn send_fds(&mut self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.tx.send_fds(msg, fds)
    }

    /// Receives one message into a fresh buffer, waiting as long as it
    /// takes. Like every receive of a link, it first finishes a message a
    /// send left partly sent (a request must be whole before its reply can
    /// come), within the same time.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.recv_into(&mut v)?;
        Ok(v)
    }

    /// Receives one message into `buf`, replacing its contents; reusing one
    /// buffer avoids an allocation per message.
    pub fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        if self.receive_while_sending(Until::Forever)? {
            self.rx.take_message(buf);
            return Ok(());
        }
        self.rx.recv_into(buf)
    }

    /// Receives a message if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>> {
        // What the peer has room for of a partly sent message goes now;
        // the rest waits for the next call.
        let _ = self.tx.flush_until(Until::NoWait);
        self.rx.try_recv()
    }

    /// Receives one message, waiting at most `timeout` ([`ErrorKind::TimedOut`]).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        let until = Until::after(timeout);
        if self.receive_while_sending(until)? {
            let mut v = Vec::new();
            self.rx.take_message(&mut v);
            return Ok(v);
        }
        self.rx.recv_until(until)
    }

    /// Receives one message and the file descriptors sent with it.
    pub fn recv_fds(&mut self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        if self.receive_while_sending(Until::Forever)? {
            let mut v = Vec::new();
            self.rx.take_message(&mut v);
            return Ok((v, self.rx.take_fds()));
        }
        self.rx.recv_fds()
    }

    /// Before a receive, while a message a send left partly sent is still
    /// going out (see [`Link::try_send`]): writes its rest as the peer
    /// makes room and takes a message that arrives meanwhile, whichever
    /// comes first, as `until` allows. Two sides that each wait for the
    /// other to read cannot deadlock this way. `true`: a message was
    /// taken (the rest may still be going); `false`: nothing is left to
    /// send, receive as usual. A send that fails here is the sending
    /// half's to report; what the peer sent is still received.
    fn receive_while_sending(&mut self, until: Until) -> Result<bool> {
        loop {
            match self.tx.flush_until(Until::NoWait) {
                Err(e) if *e.kind() == ErrorKind::WouldBlock => {}
                _ => return Ok(false),
            }
            if self.rx.poll_once("recv")?.is_some() {
                return Ok(true);
            }
            let deadline = until.deadline();
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let kind = match until {
                    Until::NoWait => ErrorKind::WouldBlock,
                    _ => ErrorKind::TimedOut,
                };
                return Err(Error::new(kind, "recv").at(&self.tx.shared.url));
            }
            // Room to write or something to read; on shared memory, which
            // has no descriptor for both, a short sleep.
            let slice = Instant::now() + Duration::from_millis(1);
            match (self.rx.reactor_fd(), self.tx.descriptor()) {
                (Some(r), Some(w)) => {
                    let mut fds = [
                        sys::fd::poll_entry(r, sys::fd::Interest::Read),
                        sys::fd::poll_entry(w, sys::fd::Interest::Write),
                    ];
                    sys::fd::wait_many(&mut fds, deadline).map_err(|e| Error::io("recv", e))?;
                }
                _ => std::thread::sleep(
                    deadline
                        .map_or(slice, |d| d.min(slice))
                        .saturating_duration_since(Instant::now()),
                ),
            }
        }
    }

    /// Splits the link into halves that can move to different threads.
    pub fn split(self) -> (RecvHalf, SendHalf) {
        (self.rx, self.tx)
    }

    /// The receiving half, borrowed.
    pub fn recv_half(&mut self) -> &mut RecvHalf {
        &mut self.rx
    }

    /// The sending half, borrowed.
    pub fn send_half(&mut self) -> &mut SendHalf {
        &mut self.tx
    }

    /// Joins two halves of the same link again; or, where messages go one
    /// way through an object with no peers (`mq:`, `sysvmq:`, `journal:`),
    /// the receiving half of one link and the sending half of another: a
    /// duplex link over two queues.
    ///
    /// ```no_run
    /// # fn main() -> ipcx::Result<()> {
    /// // This side takes requests from one queue and answers on another.
    /// let (requests, _) = ipcx::Link::connect("mq:/jobs")?.split();
    /// let (_, replies) = ipcx::Link::connect("mq:/jobs-done")?.split();
    /// let mut link = ipcx::Link::unsplit(requests, replies);
    /// let job = link.recv()?;
    /// link.send(&job)?;
    /// # Ok(()) }
    /// ```
    pub fn unsplit(rx: RecvHalf, tx: SendHalf) -> Link {
        Link { rx, tx }
    }

    /// Closes the link: the peer's next `recv` returns `Closed` once it has
    /// read what was sent.
    pub fn close(mut self) {
        self.tx.shutdown();
    }

    /// Who is on the other end, as the kernel reports it (Unix sockets).
    pub fn peer_credentials(&self) -> Result<super::PeerCredentials> {
        let ch = match (&self.rx.rx, &self.tx.tx) {
            (Rx::Stream(s), _) => Some(s.descriptor()),
            (_, Tx::Stream(s)) => Some(s.descriptor()),
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
}

/// What an event loop (`poll`, `epoll`, mio) waits on for a message: the
/// socket or the pipe's read end; on an `shm:` link, its doorbell FIFO,
/// which is readable once the peer rang. Taking an `shm:` link's
/// descriptor makes the peer ring after each message it sends (a `write`
/// each, the price of being watched), and a `try_recv` that finds nothing
/// empties the doorbell. On the sending end of a one-way FIFO it is the
/// write end.
///
/// Answer a wake-up by receiving until [`Link::try_recv`] finds nothing,
/// as with ZeroMQ's `ZMQ_FD` or mio: messages the link already read ahead
/// into its buffer do not make the descriptor readable, and a wake-up may
/// find nothing.
///
/// ```
/// use std::os::fd::AsFd;
/// # fn main() -> ipcx::Result<()> {
/// # let name = format!("doc-asfd-{}", std::process::id());
/// let listener = ipcx::Listener::bind(&format!("shm:{name}"))?;
/// let mut client = ipcx::Link::connect(&format!("shm:{name}"))?;
/// let mut server = listener.accept()?;
/// client.send(b"hi")?;
/// // Any event loop: here poll(2), through rustix.
/// let mut fds = [rustix::event::PollFd::new(&server, rustix::event::PollFlags::IN)];
/// let five = rustix::event::Timespec { tv_sec: 5, tv_nsec: 0 };
/// assert_eq!(rustix::event::poll(&mut fds, Some(&five)).unwrap(), 1);
/// assert_eq!(server.try_recv()?.as_deref(), Some(&b"hi"[..]));
/// # Ok(()) }
/// ```
impl AsFd for Link {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.link_fd()
    }
}

impl crate::Pollable for Link {
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.rx.link_fd())
    }

    fn ready_now(&mut self) -> bool {
        self.rx.ready_now()
    }

    fn confirm(&mut self) -> bool {
        self.rx.confirm()
    }

    fn check_every(&self) -> Option<Duration> {
        self.rx.check_every()
    }
}

impl AsRawFd for Link {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("url", &self.rx.shared.url)
            .finish_non_exhaustive()
    }
}
