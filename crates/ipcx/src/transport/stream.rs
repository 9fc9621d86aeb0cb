//! The byte-stream backend of a link (pipes, FIFOs, Unix and TCP
//! sockets), its receiving side: a descriptor, the frame decoder that reads
//! it, and the hello exchange; the sending side is `stream_tx.rs`.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::descriptor::{Descriptor, FdKind, Pace};
use super::link::{Shared, Until};
use crate::endpoint::{Endpoint, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::sys::fd::Interest;
use crate::wire::{self, Decoded, Decoder, FrameError, Hello};

/// The receiving side of a byte stream.
pub(crate) struct StreamRx {
    ch: Arc<Descriptor>,
    dec: Decoder,
    fds: VecDeque<OwnedFd>,
    /// The descriptors that came with the last message.
    pub(crate) last_fds: Vec<OwnedFd>,
    /// Our hello, while the peer's is still to come.
    hello: Option<Hello>,
    /// A whole message waits in the decoder (it arrived with the hello).
    ready: bool,
    wait: WaitStrategy,
    spin: std::time::Duration,
    max_fds: usize,
    pace: Pace,
    failed: Option<ErrorKind>,
    shared: Arc<Shared>,
}

impl StreamRx {
    pub(crate) fn new(ep: &Endpoint, ch: Arc<Descriptor>, shared: Arc<Shared>) -> StreamRx {
        let o = ep.options();
        let packet = ch.kind().is_packet();
        // Spinning before a read pays on pipes and Unix streams only
        // (measured). On seqpacket every wait tried made 64 B slower
        // (2-20 µs, batches of up to 8 or 32: 0.62-0.84 M/s against
        // 0.83-0.95 reading at once); it reads a batch of those queued
        // anyway. A TCP segment over loopback costs its writer ~4 µs, so a
        // 2 µs wait batches nothing.
        let coalesce = match ch.kind() {
            FdKind::Pipe | FdKind::UnixStream => o.coalesce,
            FdKind::UnixSeq | FdKind::Tcp => std::time::Duration::ZERO,
        };
        StreamRx {
            ch,
            dec: Decoder::new(o.codec, o.max_msg, packet).require_crc(o.crc),
            fds: VecDeque::new(),
            last_fds: Vec::new(),
            hello: None,
            ready: false,
            wait: o.wait,
            spin: o.spin,
            max_fds: o.max_fds,
            pace: Pace::new(coalesce),
            failed: None,
            shared,
        }
    }

    /// The descriptor.
    pub(crate) fn descriptor(&self) -> &Arc<Descriptor> {
        &self.ch
    }

    /// Expects the peer's hello as the first frame, checked against `ours`.
    pub(crate) fn expect_hello(&mut self, ours: Hello) {
        self.hello = Some(ours);
    }

    /// Waits until the peer's hello arrived and matched ours.
    ///
    /// On a pipe or FIFO without `poll(2)`: once a pipe has been polled,
    /// Linux makes every later `write` into it wake its wait queue, even
    /// with nobody waiting (`pipe->poll_usage`), which cost a stream of
    /// 64-byte messages about a fifth of its rate (docs/ARCHITECTURE.md).
    /// The read end is read without blocking between short pauses, and a
    /// FIFO end opened before its writer (which reads as the end until
    /// the writer comes) only once it holds bytes (`FIONREAD`).
    pub(crate) fn await_hello(&mut self, deadline: Instant) -> Result<()> {
        let ch = self.ch.clone();
        let pipe = !ch.kind().is_socket();
        let blocking = ch.is_blocking();
        if pipe && blocking {
            ch.set_blocking(false)
                .map_err(|e| Error::io("connect", e))?;
        }
        let mut backoff = crate::deadline::Backoff::starting_at(
            std::time::Duration::from_micros(20),
            std::time::Duration::from_millis(10),
        );
        let mut first = true;
        let r = loop {
            if self.hello.is_none() {
                break Ok(());
            }
            // Wait before reading: a FIFO end opened before its writer
            // reads as the end of the stream until the writer comes.
            let arrived = if pipe {
                pipe_readable(&ch, &mut backoff, deadline, std::mem::take(&mut first))
            } else {
                sys::fd::wait(ch.fd(), Interest::Read, Some(deadline))
            };
            match arrived.map_err(|e| Error::io("connect", e)) {
                Err(e) => break Err(e),
                Ok(false) => {
                    break Err(Error::new(
                        ErrorKind::Handshake("the peer sent no hello in time (is it an ipcx endpoint with codec=framed?)".into()),
                        "connect",
                    )
                    .at(&self.shared.url));
                }
                Ok(true) => {}
            }
            match self.poll_hello() {
                Err(e) if e.is_closed() => {
                    let why = if pipe {
                        "the peer closed its end before its hello: it exited, or is not an ipcx \
                         endpoint with codec=framed"
                    } else {
                        "the peer closed the connection before its hello: the listener may be at its \
                         ?max_conns= limit, or not be an ipcx endpoint"
                    };
                    break Err(Error::new(ErrorKind::Handshake(why.into()), "connect")
                        .at(&self.shared.url));
                }
                Err(e) => break Err(e),
                Ok(_) => {}
            }
        };
        if pipe
            && blocking
            && let Err(e) = ch.set_blocking(true)
        {
            tracing::debug!(error = %e, "a pipe end stays non-blocking");
        }
        r
    }

    /// Reads what has arrived of the peer's hello; `true` once it matched.
    pub(crate) fn poll_hello(&mut self) -> Result<bool> {
        if self.hello.is_none() {
            return Ok(true);
        }
        match self.poll_with("connect", false, true, false)? {
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

/// Whether to read a pipe end (non-blocking) now, after a pause unless
/// `first`: at once, or for an end that reads as the end until its writer
/// comes, once it holds bytes; `false` when `deadline` passed first.
fn pipe_readable(
    ch: &Descriptor,
    backoff: &mut crate::deadline::Backoff,
    deadline: Instant,
    first: bool,
) -> std::io::Result<bool> {
    if !first && !backoff.sleep_until(deadline) {
        return Ok(false);
    }
    while ch.eof_until_writer() && sys::fd::bytes_ready(ch.fd())? == 0 {
        if !backoff.sleep_until(deadline) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A socket closed with unread bytes in its receive queue is reset, not
/// closed: the kernel drops what this side sent and the peer has not yet
/// read (TCP sends RST; a Unix peer gets `ECONNRESET`). A connecting side
/// that sent and never received still has the listener's hello to read, so
/// it lingers for it (up to `?handshake_timeout=`, which `connect` used to
/// spend waiting for the same hello) and reads it before the close.
impl StreamRx {
    /// Whether dropping this half waits for the peer's hello first.
    pub(crate) fn lingers(&self) -> bool {
        self.hello.is_some()
            && self.failed.is_none()
            && self.shared.sent.load(Ordering::Relaxed)
            && self.ch.kind().is_socket()
    }

    /// Until when a lingering drop waits for the hello.
    pub(crate) fn linger_deadline(&self) -> Instant {
        crate::deadline::far_after(self.shared.handshake_timeout)
    }

    /// Stops waiting for the peer's hello: the time for it was spent
    /// elsewhere (a task that awaited it), so dropping closes at once.
    #[cfg(feature = "async")]
    pub(crate) fn give_up_hello(&mut self) {
        self.hello = None;
    }
}

impl Drop for StreamRx {
    fn drop(&mut self) {
        if self.lingers()
            && let Err(e) = self.await_hello(self.linger_deadline())
        {
            tracing::debug!(url = %self.shared.url, error = %e, "no hello before close");
        }
    }
}

impl StreamRx {
    /// Takes the message the last successful `next` or `poll_once`
    /// completed.
    pub(crate) fn take_message(&mut self, out: &mut Vec<u8>) {
        self.dec.take_message(out);
    }

    pub(crate) fn next(&mut self, until: Until) -> Result<()> {
        // Blocking forever on a blocking descriptor: let the read sleep.
        let may_block = matches!(until, Until::Forever) && self.wait == WaitStrategy::Block;
        let mut spin_end = None;
        loop {
            if self.poll_with("recv", may_block, false, false)?.is_some() {
                return Ok(());
            }
            self.wait_readable(until, &mut spin_end)?;
        }
    }

    /// One attempt without waiting: `Some` when a message is whole. A hello
    /// the link expects is checked and consumed on the way.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn poll_once(&mut self, op: &'static str) -> Result<Option<()>> {
        self.poll_with(op, false, false, false)
    }

    /// Whether a receive would give a message (or an error) now without
    /// reading the descriptor: one read ahead is whole in the buffer. What
    /// a poller asks besides the descriptor's readiness.
    pub(crate) fn ready_without_reading(&mut self) -> bool {
        if self.ready || self.failed.is_some() {
            return true;
        }
        if !self.dec.has_buffered() {
            return false;
        }
        match self.poll_with("recv", false, false, true) {
            Ok(Some(())) => {
                self.ready = true;
                true
            }
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// `after_hello`: stop once the peer's hello is consumed, leaving what
    /// follows it (good or bad) to the first receive, so that a listener
    /// hands over a peer that said hello and the bytes after it are the
    /// link's to judge.
    /// `buffered_only`: decode what is buffered, read nothing.
    fn poll_with(
        &mut self,
        op: &'static str,
        may_block: bool,
        after_hello: bool,
        buffered_only: bool,
    ) -> Result<Option<()>> {
        if std::mem::take(&mut self.ready) {
            return Ok(Some(()));
        }
        if let Some(kind) = &self.failed {
            return Err(Error::new(kind.clone(), op).at(&self.shared.url));
        }
        let mut r;
        loop {
            r = if buffered_only {
                self.dec.poll(&mut wire::NothingYet)
            } else {
                self.dec.poll(&mut self.ch.source(
                    &mut self.fds,
                    self.max_fds,
                    may_block,
                    &mut self.pace,
                ))
            }
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
                    self.ch.shutdown(false);
                }
                self.failed = Some(e.kind().clone());
                // Descriptors that came ahead of their messages are of no
                // use now: closed at once, not with the link.
                self.fds.clear();
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
        let ch = &self.ch;
        match sys::fd::wait(ch.fd(), Interest::Read, deadline) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::new(ErrorKind::TimedOut, "recv").at(&self.shared.url)),
            Err(e) => Err(Error::io("recv", e).at(&self.shared.url)),
        }
    }
}
