//! The socket listener: the listening socket, the peers whose hello is
//! still due, and the accept pass that serves them side by side.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::endpoint::{Codec, Endpoint};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::Registration;
use crate::sys;
use crate::sys::fd::Interest;
use crate::transport::Link;
use crate::transport::descriptor::{Descriptor, FdKind, ServedSlot};

pub(super) struct Pending {
    link: Link,
    /// The link's socket, to count it as served once its hello arrives.
    ch: Arc<Descriptor>,
    deadline: Instant,
}

#[derive(Debug)]
pub(super) struct SocketListener {
    kind: FdKind,
    /// The listening socket and every pending peer's, for a poller
    /// ([`Listener`](super::Listener)'s `Pollable` descriptor): readable when a peer
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
    registration: Option<Registration>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// A watch on the listening socket `fd`, which pending peers join.
pub(super) fn watch_of(fd: &std::os::fd::OwnedFd) -> std::io::Result<Arc<polling::Poller>> {
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

impl SocketListener {
    /// A listener on a bound socket of `kind`, whose watch is `watch`;
    /// `counts` are the served connections and the refusals, which the
    /// [`Listener`](super::Listener) reads too.
    pub(super) fn new(
        kind: FdKind,
        watch: Arc<polling::Poller>,
        counts: (Arc<AtomicUsize>, Arc<AtomicU64>),
        registration: Option<Registration>,
    ) -> SocketListener {
        SocketListener {
            kind,
            watch: Some(watch),
            pending: Vec::new(),
            live: counts.0,
            refused: counts.1,
            evicted: 0,
            registration,
        }
    }

    /// Publishes `text` as the listener's state in its registry record.
    pub(super) fn set_state(&self, text: &str) {
        if let Some(r) = &self.registration {
            r.set_state(text);
        }
    }

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

    pub(super) fn accept(
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
    pub(super) fn watched<'a>(
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
    pub(super) fn step(
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
            if self.kind == FdKind::Tcp
                && let Err(e) = sys::socket::tcp_tune(fd.as_fd(), o.heartbeat)
            {
                tracing::warn!(url = %ep, error = %e, "cannot tune accepted socket");
                continue;
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
