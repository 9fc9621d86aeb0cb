//! [`Listener`]: binds an endpoint and accepts peers.
//!
//! Handshakes run side by side: `accept` polls the listening socket and every
//! connection whose hello is still due, and returns the first whose hello
//! checked out. A peer that connects and says nothing times out alone after
//! `?handshake_timeout=`; the others are served meanwhile.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::descriptor::{Descriptor, FdKind, ServedSlot};
use super::fifo::FifoListener;
use super::link::Until;
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
/// let mut listener = ipcx::Listener::bind("tcp://127.0.0.1:0")?;
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
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Socket(SocketListener),
    Fifo(FifoListener),
    Shm(ShmListener),
}

struct Pending {
    link: Link,
    /// The link's socket, to count it as served once its hello arrives.
    ch: Arc<Descriptor>,
    deadline: Instant,
}

#[derive(Debug)]
struct SocketListener {
    fd: std::os::fd::OwnedFd,
    kind: FdKind,
    pending: Vec<Pending>,
    live: Arc<AtomicUsize>,
    refused: u64,
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
                Ok(Listener {
                    endpoint: b.endpoint,
                    inner: Inner::Socket(SocketListener {
                        fd: b.fd,
                        kind: b.kind,
                        pending: Vec::new(),
                        live: Arc::new(AtomicUsize::new(0)),
                        refused: 0,
                        evicted: 0,
                        _registration: b.registration,
                    }),
                })
            }
            Scheme::Fifo => Ok(Listener {
                endpoint: ep.clone(),
                inner: Inner::Fifo(FifoListener::bind(ep)?),
            }),
            Scheme::Shm => Ok(Listener {
                endpoint: ep.clone(),
                inner: Inner::Shm(ShmListener::bind(ep)?),
            }),
            Scheme::Pipe => Err(Error::new(
                ErrorKind::Unsupported(
                    "pipe: has no listener: the parent calls ipcx::spawn".into(),
                ),
                "bind",
            )
            .at(ep)),
            _ => Err(not_built(ep, "bind")),
        }
    }

    /// Accepts the next peer whose handshake succeeded, waiting as long as it takes.
    pub fn accept(&mut self) -> Result<Link> {
        self.accept_until(Until::Forever)
    }

    /// [`Listener::accept`], waiting at most `timeout`.
    pub fn accept_timeout(&mut self, timeout: Duration) -> Result<Link> {
        self.accept_until(Until::after(timeout))
    }

    fn accept_until(&mut self, until: Until) -> Result<Link> {
        let deadline = match until {
            Until::Deadline(d) => Some(d),
            _ => None,
        };
        match &mut self.inner {
            Inner::Socket(s) => s.accept(&self.endpoint, deadline),
            Inner::Fifo(f) => f.accept(&self.endpoint, deadline),
            Inner::Shm(s) => {
                let (rx, tx) = s.accept(&self.endpoint, deadline)?;
                Ok(Link::from_shm(&self.endpoint, rx, tx))
            }
        }
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
        match &self.inner {
            Inner::Socket(s) => s.live.load(Ordering::Acquire),
            Inner::Fifo(_) | Inner::Shm(_) => 0,
        }
    }

    /// Connections refused because `?max_conns=` was reached.
    pub fn refused(&self) -> u64 {
        match &self.inner {
            Inner::Socket(s) => s.refused,
            Inner::Fifo(_) | Inner::Shm(_) => 0,
        }
    }

    /// The listening descriptor, to wait on it in an event loop.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.inner {
            Inner::Socket(s) => Some(s.fd.as_fd()),
            Inner::Fifo(_) | Inner::Shm(_) => None,
        }
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
                self.refused += 1;
                tracing::warn!(url = %ep, max_conns = max, refused = self.refused, "connection refused: limit reached");
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

    fn accept(&mut self, ep: &Endpoint, deadline: Option<Instant>) -> Result<Link> {
        let o = ep.options();
        loop {
            // A bounded batch, so a flood of connects cannot starve the
            // handshakes already under way.
            for _ in 0..64 {
                let accepted = sys::socket::accept(self.fd.as_fd())
                    .map_err(|e| Error::io("accept", e).at(ep))?;
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
                    return Ok(Link::new(ep, Some(ch.clone()), Some(ch)));
                }
                // Until its hello arrives a peer is pending: it holds no
                // place among the served (`?max_conns=`), only one of
                // `?max_pending=`, and the oldest pending peer makes room
                // for a new one, so silent connections cannot lock out
                // the peers that speak.
                if self.pending.len() >= o.max_pending {
                    self.pending.remove(0);
                    self.evicted += 1;
                    tracing::warn!(url = %ep, max_pending = o.max_pending, evicted = self.evicted, "oldest silent peer dropped: too many pending handshakes");
                }
                let mut link = Link::new(ep, Some(ch.clone()), Some(ch.clone()));
                link.expect_hello(o.crc, o.max_msg);
                self.pending.push(Pending {
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
                        let p = self.pending.remove(i);
                        if let Some(link) = self.served(ep, p) {
                            return Ok(link);
                        }
                    }
                    Ok(false) if now < self.pending[i].deadline => i += 1,
                    Ok(false) => {
                        tracing::warn!(url = %ep, "peer sent no hello in time; dropped");
                        self.pending.remove(i);
                    }
                    Err(e) => {
                        tracing::warn!(url = %ep, error = %e, "handshake failed; peer dropped");
                        self.pending.remove(i);
                    }
                }
            }
            if deadline.is_some_and(|d| now >= d) {
                return Err(Error::new(ErrorKind::TimedOut, "accept").at(ep));
            }
            let wake = self
                .pending
                .iter()
                .map(|p| p.deadline)
                .chain(deadline)
                .min();
            let mut fds = Vec::with_capacity(1 + self.pending.len());
            fds.push(sys::fd::poll_entry(self.fd.as_fd(), Interest::Read));
            for p in &self.pending {
                if let Some(fd) = p.link.as_fd() {
                    fds.push(sys::fd::poll_entry(fd, Interest::Read));
                }
            }
            sys::fd::wait_many(&mut fds, wake).map_err(|e| Error::io("accept", e).at(ep))?;
        }
    }
}
