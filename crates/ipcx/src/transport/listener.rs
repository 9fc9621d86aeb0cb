//! [`Listener`]: binds an endpoint and accepts peers.
//!
//! Handshakes run side by side: `accept` polls the listening socket and every
//! connection whose hello is still due, and returns the first whose hello
//! checked out. A peer that connects and says nothing times out alone after
//! `?handshake_timeout=`; the others are served meanwhile.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::fifo::FifoListener;
use super::link::Until;
use super::mq::MqListener;
use super::shm::ShmListener;
use super::{Capabilities, Link, not_built, socket};
use crate::endpoint::{Endpoint, Scheme};
use crate::error::{Error, ErrorKind, Result};

mod sockets;

use sockets::{SocketListener, watch_of};

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
    /// What a poller waits on for a listener that is no socket, outside
    /// the lock: a duplicate of an `shm:` listener's accept doorbell or
    /// of a queue listener's eventfd (holding 1 while no link is out).
    ready_fd: Option<std::os::fd::OwnedFd>,
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
    Wait(Vec<std::os::fd::OwnedFd>, Option<std::time::Instant>),
    /// Accept by blocking: a FIFO listener once a writer's first bytes
    /// are in (the accept then waits only for the rest of the handshake).
    Blocking,
}

#[derive(Debug)]
enum Inner {
    Socket(SocketListener),
    Fifo(FifoListener),
    Shm(ShmListener),
    Mq(MqListener),
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
                let inner = Inner::Socket(SocketListener::new(
                    b.kind,
                    watch.clone(),
                    (live.clone(), refused.clone()),
                    b.registration,
                ));
                let mut l = Listener::of(b.endpoint, Some(b.fd), live, refused, inner);
                l.watch = Some(watch);
                Ok(l)
            }
            Scheme::Fifo => Ok(Listener::unshared(ep, Inner::Fifo(FifoListener::bind(ep)?))),
            Scheme::Shm => {
                let s = ShmListener::bind(ep)?;
                let ready = crate::sys::fd::dup_cloexec(s.bell());
                Listener::watched(ep, Inner::Shm(s), ready)
            }
            Scheme::Mq | Scheme::SysvMq => {
                let m = MqListener::bind(ep)?;
                let ready = crate::sys::fd::dup_cloexec(m.free_fd());
                Listener::watched(ep, Inner::Mq(m), ready)
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

    /// One that is no socket, with what a poller waits on (`ready`, a
    /// duplicate made for it).
    fn watched(
        ep: &Endpoint,
        inner: Inner,
        ready: std::io::Result<std::os::fd::OwnedFd>,
    ) -> Result<Listener> {
        let ready = ready.map_err(|e| Error::io("bind", e).at(ep))?;
        let mut l = Listener::unshared(ep, inner);
        l.ready_fd = Some(ready);
        Ok(l)
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
            ready_fd: None,
        }
    }

    /// Accepts the next peer whose handshake succeeded, waiting as long as
    /// it takes. Takes `&self`, as std's listeners do: threads may share a
    /// listener, and their accepts take turns.
    pub fn accept(&self) -> Result<Link> {
        self.accept_until(Until::Forever)
    }

    /// [`Listener::accept`], waiting at most `timeout` (including for
    /// another thread's accept to finish) for a peer. A FIFO accept that
    /// found a writer's first bytes in time reads the rest of its hello
    /// for up to `?handshake_timeout=` more (a FIFO has no pending
    /// connections to set aside).
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
        let (s, listening) = match (&mut *inner, &self.fd) {
            (Inner::Socket(s), Some(listening)) => (s, listening),
            (Inner::Fifo(f), _) => {
                return Ok(match f.poll_ready(&self.endpoint)? {
                    None => Polled::Blocking,
                    Some((fds, wake)) => Polled::Wait(fds, wake),
                });
            }
            (Inner::Shm(s), _) => {
                return Ok(match s.poll_accept(&self.endpoint)? {
                    super::shm::Polled::Accepted((rx, tx)) => {
                        Polled::Link(Box::new(Link::from_shm(&self.endpoint, rx, tx)))
                    }
                    super::shm::Polled::Wait(bell, wake) => {
                        Polled::Wait(bell.into_iter().collect(), wake)
                    }
                });
            }
            (Inner::Mq(m), _) => {
                return Ok(match m.try_accept(&self.endpoint)? {
                    Some(link) => Polled::Link(Box::new(link)),
                    // Raised when the link out is dropped.
                    None => Polled::Wait(
                        vec![
                            crate::sys::fd::dup_cloexec(m.free_fd())
                                .map_err(|e| Error::io("accept", e).at(&self.endpoint))?,
                        ],
                        None,
                    ),
                });
            }
            (Inner::Socket(_), None) => {
                return Err(poisoned());
            }
        };
        let wake = match s.step(&self.endpoint, listening.as_fd())? {
            Ok(link) => return Ok(Polled::Link(Box::new(link))),
            Err(wake) => wake,
        };
        let fds = s
            .watched(listening.as_fd())
            .map(crate::sys::fd::dup_cloexec)
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
    /// when a peer connects). `None` on FIFO, queue and `shm:` listeners (the
    /// last two join a [`crate::Poller`], through what says only part of
    /// it alone: an `shm:` doorbell that needs timed looks beside it, a
    /// queue listener's eventfd of its own process's state).
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
        if let Inner::Socket(s) = &*inner {
            s.set_state(text);
        }
    }
}

/// A poller waits on the listening socket and the sockets of peers whose
/// hello is awaited together (an epoll of the listener's own): ready when
/// a peer connects or a pending one speaks, so a burst of peers is
/// accepted one `accept` per wake-up without a peer left waiting unseen.
/// An `shm:` listener is ready when a peer connected: the poller awaits
/// the doorbell its connector rings, and looks every `?liveness=` anyway
/// (after the last peer left, the endpoint is reset by a look before the
/// next can connect; a claimer that died is undone by one). A queue
/// listener is ready while no link it handed out lives (an eventfd the
/// link raises when dropped). A FIFO listener has nothing to offer.
impl crate::Pollable for Listener {
    fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        match (&self.watch, &self.ready_fd) {
            (Some(w), _) => Some(w.as_fd()),
            (None, Some(fd)) => Some(fd.as_fd()),
            (None, None) => None,
        }
    }

    fn ready_now(&mut self) -> bool {
        self.ready().unwrap_or(false)
    }

    fn confirm(&mut self) -> bool {
        self.ready().unwrap_or(true)
    }

    fn check_every(&self) -> Option<Duration> {
        match self.endpoint.scheme() {
            Scheme::Shm => Some(self.endpoint.options().liveness),
            _ => None,
        }
    }
}

impl Listener {
    /// Whether an accept would take a peer now, for listeners whose
    /// descriptor is no socket's (`shm:`: a look says it; queues: their
    /// eventfd, looked at without waiting); `None` for socket listeners,
    /// whose readiness is the descriptor's.
    fn ready(&mut self) -> Option<bool> {
        match self.inner.get_mut() {
            Ok(Inner::Shm(s)) => Some(s.connected()),
            Ok(Inner::Mq(m)) => Some(m.is_free()),
            Ok(Inner::Socket(_) | Inner::Fifo(_)) => None,
            // A poisoned lock: the accept says so.
            Err(_) => Some(true),
        }
    }
}
