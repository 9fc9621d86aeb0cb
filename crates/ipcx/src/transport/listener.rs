//! [`Listener`]: binds an endpoint and accepts peers.
//!
//! Handshakes run side by side: `accept` polls the listening socket and every
//! connection whose hello is still due, and returns the first whose hello
//! checked out. A peer that connects and says nothing times out alone after
//! `?handshake_timeout=`; the others are served meanwhile.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::descriptor::{Descriptor, FdKind, ServedSlot};
use super::fifo::FifoListener;
use super::link::Until;
use super::mq::MqListener;
use super::shm::ShmListener;
use super::{Capabilities, Link, not_built, socket};
use crate::endpoint::{Codec, Endpoint, Scheme};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::Registration;
use crate::sys;
use crate::sys::fd::Interest;

/// A bound endpoint that accepts peers.
///
/// ```no_run
/// # fn main() -> ipcx::Result<()> {
/// let listener = ipcx::Listener::bind("tcp://127.0.0.1:0")?;
/// println!("listening on {}", listener.endpoint());
/// loop {
///     let mut link = listener.accept()?;
///     std::thread::spawn(move || while let Ok(m) = link.recv() { let _ = link.send(&m); });
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Listener {
    endpoint: Endpoint,
    /// The listening socket (sockets only), outside the lock, so that
    /// `as_fd` needs none.
    fd: Option<std::os::fd::OwnedFd>,
    /// Served connections (sockets), counted by the connections' own slots.
    live: Arc<AtomicUsize>,
    refused: Arc<AtomicU64>,
    /// What an accept changes; one accept at a time holds it.
    inner: std::sync::Mutex<Inner>,
    /// What a poller waits on (sockets): see `SocketListener::watch`.
    watch: Option<Arc<polling::Poller>>,
}

/// What one accept pass that never waits found.
#[cfg(feature = "async")]
pub(crate) enum Polled {
    /// A peer whose handshake checked out.
    Link(Box<Link>),
    /// Nothing yet: the next pass is worth it once one of these
    /// (duplicates of the listening socket and of the connections whose
    /// hello is due) is readable, or at the instant (the first pending
    /// peer times out).
    Wait(Vec<std::os::fd::OwnedFd>, Option<Instant>),
    /// Nothing to watch: the FIFO and `shm:` listeners wait by blocking.
    Blocking,
}

#[derive(Debug)]
enum Inner {
    Socket(SocketListener),
    Fifo(FifoListener),
    Shm(ShmListener),
    Mq(MqListener),
}

struct Pending {
    link: Link,
    /// The link's socket, to count it as served once its hello arrives.
    ch: Arc<Descriptor>,
    deadline: Instant,
}

#[derive(Debug)]
struct SocketListener {
    kind: FdKind,
    /// The listening socket and every pending peer's, for a poller
    /// ([`Listener`]'s `Pollable` descriptor): readable when a peer
    /// connects or a pending one sends. A pending socket is deleted from
    /// it before it leaves the list; what closes while still registered
    /// (the listener dropping) the kernel takes out of the epoll set, and
    /// nothing here touches it by number afterwards.
    watch: Option<Arc<polling::Poller>>,
    pending: Vec<Pending>,
    live: Arc<AtomicUsize>,
    refused: Arc<AtomicU64>,
    /// Pending peers dropped to make room (`?max_pending=`).
    evicted: u64,
    _registration: Option<Registration>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Listener {
    /// Binds (creates) the endpoint at `url`.
    pub fn bind(url: &str) -> Result<Listener> {
        Listener::bind_endpoint(&Endpoint::parse(url)?)
    }

    /// [`Listener::bind`] with a parsed endpoint.
    pub fn bind_endpoint(ep: &Endpoint) -> Result<Listener> {
        match ep.scheme() {
            Scheme::Unix | Scheme::UnixSeq | Scheme::Tcp => {
                let b = socket::bind(ep)?;
                let (live, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicU64::new(0)));
                let watch = watch_of(&b.fd).map_err(|e| Error::io("bind", e).at(ep))?;
                let inner = Inner::Socket(SocketListener {
                    kind: b.kind,
                    watch: Some(watch.clone()),
                    pending: Vec::new(),
                    live: live.clone(),
                    refused: refused.clone(),
                    evicted: 0,
                    _registration: b.registration,
                });
                let mut l = Listener::of(b.endpoint, Some(b.fd), live, refused, inner);
                l.watch = Some(watch);
                Ok(l)
            }
            Scheme::Fifo => Ok(Listener::unshared(ep, Inner::Fifo(FifoListener::bind(ep)?))),
            Scheme::Shm => Ok(Listener::unshared(ep, Inner::Shm(ShmListener::bind(ep)?))),
            Scheme::Mq | Scheme::SysvMq => {
                Ok(Listener::unshared(ep, Inner::Mq(MqListener::bind(ep)?)))
            }
            Scheme::Pipe => Err(Error::new(
                ErrorKind::Unsupported(
                    "pipe: has no listener: the parent calls ipcx::spawn".into(),
                ),
                "bind",
            )
            .at(ep)),
            Scheme::Journal => Err(Error::new(
                ErrorKind::Unsupported(
                    "journal: has no listener: Link::connect opens it (made if missing); \
                     every link reads it, and the first to send becomes its writer"
                        .into(),
                ),
                "bind",
            )
            .at(ep)),
            _ => Err(not_built(ep, "bind")),
        }
    }

    /// A listener with no descriptor of its own and no shared counters
    /// (the fifo, shm and mq listeners keep their own state).
    fn unshared(ep: &Endpoint, inner: Inner) -> Listener {
        Listener::of(ep.clone(), None, Arc::default(), Arc::default(), inner)
    }

    fn of(
        endpoint: Endpoint,
        fd: Option<std::os::fd::OwnedFd>,
        live: Arc<AtomicUsize>,
        refused: Arc<AtomicU64>,
        inner: Inner,
    ) -> Listener {
        Listener {
            endpoint,
            fd,
            live,
            refused,
            inner: std::sync::Mutex::new(inner),
            watch: None,
        }
    }

    /// Accepts the next peer whose handshake succeeded, waiting as long as
    /// it takes. Takes `&self`, as std's listeners do: threads may share a
    /// listener, and their accepts take turns.
    pub fn accept(&self) -> Result<Link> {
        self.accept_until(Until::Forever)
    }

    /// [`Listener::accept`], waiting at most `timeout` (including for
    /// another thread's accept to finish).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Link> {
        self.accept_until(Until::after(timeout))
    }

    fn accept_until(&self, until: Until) -> Result<Link> {
        let deadline = match until {
            Until::Deadline(d) => Some(d),
            _ => None,
        };
        let poisoned = || Error::new(ErrorKind::Poisoned, "accept").at(&self.endpoint);
        let mut inner = match deadline {
            None => self.inner.lock().map_err(|_| poisoned())?,
            Some(d) => {
                let mut backoff = crate::deadline::Backoff::new(Duration::from_millis(10));
                loop {
                    match self.inner.try_lock() {
                        Ok(g) => break g,
                        Err(std::sync::TryLockError::Poisoned(_)) => return Err(poisoned()),
                        Err(std::sync::TryLockError::WouldBlock) => {
                            if !backoff.sleep_until(d) {
                                return Err(
                                    Error::new(ErrorKind::TimedOut, "accept").at(&self.endpoint)
                                );
                            }
                        }
                    }
                }
            }
        };
        match &mut *inner {
            Inner::Socket(s) => match &self.fd {
                Some(fd) => s.accept(&self.endpoint, fd.as_fd(), deadline),
                None => Err(poisoned()),
            },
            Inner::Fifo(f) => f.accept(&self.endpoint, deadline),
            Inner::Mq(m) => m.accept(&self.endpoint, deadline),
            Inner::Shm(s) => {
                let (rx, tx) = s.accept(&self.endpoint, deadline)?;
                Ok(Link::from_shm(&self.endpoint, rx, tx))
            }
        }
    }

    /// One accept pass that never waits, for tokio (which awaits what it
    /// says to watch).
    #[cfg(feature = "async")]
    pub(crate) fn poll_accept(&self) -> Result<Polled> {
        let poisoned = || Error::new(ErrorKind::Poisoned, "accept").at(&self.endpoint);
        let mut inner = self.inner.lock().map_err(|_| poisoned())?;
        let (Inner::Socket(s), Some(listening)) = (&mut *inner, &self.fd) else {
            return Ok(Polled::Blocking);
        };
        let wake = match s.step(&self.endpoint, listening.as_fd())? {
            Ok(link) => return Ok(Polled::Link(Box::new(link))),
            Err(wake) => wake,
        };
        let fds = s
            .watched(listening.as_fd())
            .map(sys::fd::dup_cloexec)
            .collect::<std::io::Result<_>>()
            .map_err(|e| Error::io("accept", e).at(&self.endpoint))?;
        Ok(Polled::Wait(fds, wake))
    }

    /// The bound endpoint (for `tcp://host:0`, with the port the OS chose).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// What the mechanism can do.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities::of(self.endpoint.scheme())
    }

    /// Connections served (their hello checked out) and not yet dropped
    /// (sockets); peers still due to say hello are not counted.
    pub fn connections(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Connections refused because `?max_conns=` was reached.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The listening socket, to wait on it in an event loop (readable
    /// when a peer connects). `None` on FIFO and `shm:` listeners.
    pub fn descriptor(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Says what the endpoint is doing now, as one line `ipcx ls` shows
    /// in its state column (a publisher's subscribers, a server's calls
    /// in flight). Socket listeners only (others have no record of their
    /// own to keep it with); at most a few times a second is plenty.
    pub fn set_state(&self, text: &str) {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Inner::Socket(SocketListener {
            _registration: Some(r),
            ..
        }) = &*inner
        {
            r.set_state(text);
        }
    }
}

/// A watch on the listening socket `fd`, which pending peers join.
fn watch_of(fd: &std::os::fd::OwnedFd) -> std::io::Result<Arc<polling::Poller>> {
    let watch = polling::Poller::new()?;
    // SAFETY: the listening socket outlives its registration: the watch
    // is dropped with the listener that owns the socket, and nothing
    // deletes or modifies it by number before then.
    #[allow(unsafe_code)]
    unsafe {
        watch.add_with_mode(fd, polling::Event::readable(0), polling::PollMode::Level)?;
    }
    Ok(Arc::new(watch))
}

/// A poller waits on the listening socket and the sockets of peers whose
/// hello is awaited together (an epoll of the listener's own): ready when
/// a peer connects or a pending one speaks, so a burst of peers is
/// accepted one `accept` per wake-up without a peer left waiting unseen.
impl crate::Pollable for Listener {
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.watch.as_ref().map(|w| w.as_fd())
    }
}

impl SocketListener {
    /// Takes a place among the served connections for `ch`, or counts a
    /// refusal (the peer is closed without our hello, which its
    /// `wait_connected` reports as the `?max_conns=` limit).
    fn admit(&mut self, ep: &Endpoint, ch: &Descriptor) -> bool {
        let max = ep.options().max_conns;
        match ServedSlot::take(&self.live, max) {
            Some(slot) => {
                ch.hold(slot);
                true
            }
            None => {
                let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(url = %ep, max_conns = max, refused, "connection refused: limit reached");
                false
            }
        }
    }

    /// A peer whose hello checked out: admitted and answered, or dropped.
    fn served(&mut self, ep: &Endpoint, p: Pending) -> Option<Link> {
        let o = ep.options();
        if !self.admit(ep, &p.ch) {
            return None;
        }
        let mut link = p.link;
        match link.send_hello(o.crc, o.max_msg) {
            Ok(()) => Some(link),
            Err(e) => {
                tracing::warn!(url = %ep, error = %e, "peer left before our hello; dropped");
                None
            }
        }
    }

    fn accept(
        &mut self,
        ep: &Endpoint,
        listening: BorrowedFd<'_>,
        deadline: Option<Instant>,
    ) -> Result<Link> {
        loop {
            let wake = match self.step(ep, listening)? {
                Ok(link) => return Ok(link),
                Err(wake) => wake,
            };
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(ErrorKind::TimedOut, "accept").at(ep));
            }
            let wake = wake.into_iter().chain(deadline).min();
            let mut fds: Vec<_> = self
                .watched(listening)
                .map(|fd| sys::fd::poll_entry(fd, Interest::Read))
                .collect();
            sys::fd::wait_many(&mut fds, wake).map_err(|e| Error::io("accept", e).at(ep))?;
        }
    }

    /// The listening socket and every connection whose hello is due: what
    /// becoming readable makes the next [`SocketListener::step`] worth it.
    fn watched<'a>(
        &'a self,
        listening: BorrowedFd<'a>,
    ) -> impl Iterator<Item = BorrowedFd<'a>> + 'a {
        std::iter::once(listening).chain(self.pending.iter().map(|p| p.link.as_fd()))
    }

    /// Adds a peer whose hello is awaited, watched for it.
    fn pend(&mut self, p: Pending) {
        if let Some(w) = &self.watch {
            // SAFETY: the socket is deleted from the watch before its
            // `Pending` leaves the list (`unpend`); when the listener drops
            // with it still registered, the kernel removes a closed
            // descriptor from the epoll set, and no call here names it by
            // number again (no reuse can be mistaken for it).
            #[allow(unsafe_code)]
            let added = unsafe {
                w.add_with_mode(
                    &p.ch.fd(),
                    polling::Event::readable(1),
                    polling::PollMode::Level,
                )
            };
            if let Err(e) = added {
                tracing::warn!(error = %e, "a pending peer cannot be watched");
            }
        }
        self.pending.push(p);
    }

    /// Takes pending peer `i` off the list and the watch.
    fn unpend(&mut self, i: usize) -> Pending {
        let p = self.pending.remove(i);
        if let Some(w) = &self.watch {
            let _ = w.delete(p.ch.fd());
        }
        p
    }

    /// `?max_pending=` is reached: drops the oldest pending peer if it has
    /// still said nothing (or failed); `false` when it said hello and
    /// waits to be served.
    fn make_room(&mut self, ep: &Endpoint) -> bool {
        let Some(oldest) = self.pending.first_mut() else {
            return true;
        };
        if matches!(oldest.link.poll_handshake(), Ok(true)) {
            return false;
        }
        self.unpend(0);
        self.evicted += 1;
        tracing::warn!(url = %ep, evicted = self.evicted, "oldest silent peer dropped: too many pending handshakes (?max_pending=)");
        true
    }

    /// One pass that never waits: takes the connections that came (a
    /// bounded batch) and checks the hellos that are due. A peer whose
    /// handshake checked out, or when the first pending peer times out.
    fn step(
        &mut self,
        ep: &Endpoint,
        listening: BorrowedFd<'_>,
    ) -> Result<std::result::Result<Link, Option<Instant>>> {
        let o = ep.options();
        // A bounded batch, so a flood of connects cannot starve the
        // handshakes already under way.
        for _ in 0..64 {
            // Full: room is made only by dropping a peer that still said
            // nothing; while the oldest has said hello, the connections
            // behind it wait in the kernel's backlog for the next pass
            // (a burst of clients is served, not dropped).
            if self.pending.len() >= o.max_pending && !self.make_room(ep) {
                break;
            }
            let accepted =
                sys::socket::accept(listening).map_err(|e| Error::io("accept", e).at(ep))?;
            let Some(fd) = accepted else { break };
            if self.kind == FdKind::Tcp {
                if let Err(e) = sys::socket::tcp_tune(fd.as_fd(), o.heartbeat) {
                    tracing::warn!(url = %ep, error = %e, "cannot tune accepted socket");
                    continue;
                }
            }
            let ch = Arc::new(Descriptor::new(fd, self.kind));
            if o.codec != Codec::Framed {
                if !self.admit(ep, &ch) {
                    continue;
                }
                return Ok(Ok(Link::new(ep, Some(ch.clone()), ch)));
            }
            // Until its hello arrives a peer is pending: it holds no
            // place among the served (`?max_conns=`), only one of
            // `?max_pending=`, and the oldest silent peer makes room
            // for a new one (above), so silent connections cannot lock
            // out the peers that speak.
            let mut link = Link::new(ep, Some(ch.clone()), ch.clone());
            link.expect_hello(o.crc, o.max_msg);
            self.pend(Pending {
                link,
                ch,
                deadline: crate::deadline::far_after(o.handshake_timeout),
            });
        }
        let now = Instant::now();
        let mut i = 0;
        while i < self.pending.len() {
            match self.pending[i].link.poll_handshake() {
                Ok(true) => {
                    let p = self.unpend(i);
                    if let Some(link) = self.served(ep, p) {
                        return Ok(Ok(link));
                    }
                }
                Ok(false) if now < self.pending[i].deadline => i += 1,
                Ok(false) => {
                    tracing::warn!(url = %ep, "peer sent no hello in time; dropped");
                    self.unpend(i);
                }
                Err(e) => {
                    tracing::warn!(url = %ep, error = %e, "handshake failed; peer dropped");
                    self.unpend(i);
                }
            }
        }
        Ok(Err(self.pending.iter().map(|p| p.deadline).min()))
    }
}
