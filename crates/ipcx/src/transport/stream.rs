//! The byte-stream backend of a link (pipes, FIFOs, Unix and TCP
//! sockets): a descriptor, the frame decoder that reads it, and the
//! `Outgoing` writer, with the hello exchange on top.

use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::descriptor::{Descriptor, FdKind, Pace};
use super::link::{Shared, Until};
use super::outgoing::{Outgoing, Part, Parts};
use crate::endpoint::{Codec, Endpoint, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::fd::Interest;
use crate::sys::{self, socket::MAX_FDS};
use crate::wire::{self, Decoded, Decoder, FrameError, Header, Hello};

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

/// Frames with at most this many payload bytes are copied behind their
/// header and written as one slice: one `write` of one buffer costs less
/// than a `writev` of two, by more than the copy up to about 4 KiB (pipes,
/// 2 cores: 64 B frames 1.81 M/s with `writev`, 2.21 M/s copied; 4 KiB
/// 1.13 vs 1.15 M/s; 16 KiB even).
const COPY_UP_TO: usize = 4096;

/// The sending side of a byte stream.
pub(crate) struct StreamTx {
    ch: Arc<Descriptor>,
    codec: Codec,
    crc: bool,
    /// Largest payload of one frame (a datagram must fit a socket buffer).
    frame_max: usize,
    /// The rest of a message a send with a limit had started when its time
    /// ran out: accepted, so it goes before anything else (one buffer per
    /// system call, as [`Outgoing::rest`] gives it).
    unsent: VecDeque<Vec<u8>>,
    /// How long dropping the half may wait to write `unsent` (`?timeout=`).
    pub(crate) linger: std::time::Duration,
    /// Where a small frame is put together, header then payload, to go
    /// out in one `write` (see [`COPY_UP_TO`]).
    scratch: Vec<u8>,
    failed: bool,
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
            // Wait before reading: the read end of a FIFO reads as end of
            // stream until the peer has opened its write end.
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
                    break Err(Error::new(
                        ErrorKind::Handshake(
                            "the peer closed the connection before its hello: the listener may be at its \
                             ?max_conns= limit, or not be an ipcx endpoint"
                                .into(),
                        ),
                        "connect",
                    )
                    .at(&self.shared.url));
                }
                Err(e) => break Err(e),
                Ok(_) => {}
            }
        };
        if pipe && blocking {
            if let Err(e) = ch.set_blocking(true) {
                tracing::debug!(error = %e, "a pipe end stays non-blocking");
            }
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
}

impl Drop for StreamRx {
    fn drop(&mut self) {
        if self.lingers() {
            let deadline = crate::deadline::far_after(self.shared.handshake_timeout);
            if let Err(e) = self.await_hello(deadline) {
                tracing::debug!(url = %self.shared.url, error = %e, "no hello before close");
            }
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
        let ch = self.ch.clone();
        let mut r;
        loop {
            r = if buffered_only {
                self.dec.poll(&mut wire::NothingYet)
            } else {
                self.dec.poll(&mut ch.source(
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
                    ch.shutdown(false);
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

impl StreamTx {
    pub(crate) fn new(ep: &Endpoint, ch: Arc<Descriptor>, shared: Arc<Shared>) -> StreamTx {
        let o = ep.options();
        StreamTx {
            frame_max: if ch.kind().is_packet() {
                super::PACKET_FRAME_MAX
            } else {
                wire::FRAME_MAX
            },
            ch,
            codec: o.codec,
            crc: o.crc,
            unsent: VecDeque::new(),
            linger: o.timeout,
            scratch: Vec::new(),
            failed: false,
            shared,
        }
    }

    /// Sends our hello.
    pub(crate) fn send_hello(&mut self, ours: &Hello) -> Result<()> {
        match self.send_frame(wire::KIND_HELLO, &ours.encode(), &[], Until::Forever) {
            // The peer may have sent all it had and closed before we said
            // hello (a parent that spawns, sends and exits): what it sent
            // can still be read, and our sends report `Closed`.
            Err(e) if e.is_closed() => Ok(()),
            r => r,
        }
    }

    /// Sends one frame, waiting for room as `until` allows: `WouldBlock`
    /// (`NoWait`) or `TimedOut` when none of it was written. A message the
    /// descriptor took part of when time ran out cannot be taken back: it
    /// counts as sent, and its rest is kept to go first
    /// ([`StreamTx::flush`]).
    pub(crate) fn send_frame(
        &mut self,
        kind: u8,
        msg: &[u8],
        fds: &[BorrowedFd<'_>],
        until: Until,
    ) -> Result<()> {
        if fds.is_empty() && self.unsent.is_empty() && matches!(until, Until::Forever) {
            if let Some(sent) = self.send_small(kind, msg) {
                return sent;
            }
        }
        self.flush(until)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        let sent = self.write_frame(kind, msg, fds, until, &mut scratch);
        self.scratch = scratch;
        sent
    }

    /// The usual send at the cost of one bare `write`: a framed message of
    /// at most [`COPY_UP_TO`] bytes, with no descriptors and nothing of an
    /// earlier message before it, copied behind its header and written in
    /// one call. `None` leaves the message to the general way (another
    /// kind of message, a link that failed, a descriptor that would not
    /// take it at once); a descriptor that took part of it has the rest
    /// written here.
    fn send_small(&mut self, kind: u8, msg: &[u8]) -> Option<Result<()>> {
        let small = self.codec == Codec::Framed
            && !self.failed
            && msg.len() <= COPY_UP_TO.min(self.frame_max)
            && msg.len() as u64 <= self.shared.peer_max.load(Ordering::Acquire);
        if !small {
            return None;
        }
        if !self.shared.sent.load(Ordering::Relaxed) {
            self.shared.sent.store(true, Ordering::Relaxed);
        }
        let header = self.header(kind, msg, 0).encode();
        self.scratch.clear();
        self.scratch.extend_from_slice(&header);
        self.scratch.extend_from_slice(msg);
        match self
            .ch
            .write(&[std::io::IoSlice::new(&self.scratch)], &[], false)
        {
            Ok(n) if n == self.scratch.len() => Some(Ok(())),
            Ok(n) => {
                self.unsent.push_back(self.scratch[n..].to_vec());
                Some(self.flush(Until::Forever))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) => Some(Err(self.write_failed(e))),
        }
    }

    fn write_frame(
        &mut self,
        kind: u8,
        msg: &[u8],
        fds: &[BorrowedFd<'_>],
        until: Until,
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        let (ch, mut out) = self.prepare(kind, msg, fds, Some(scratch))?;
        let dont_wait = !matches!(until, Until::Forever);
        loop {
            match out.write_some(&ch, dont_wait) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !self.wait_room(until)? {
                        if out.started() {
                            self.unsent = out.rest();
                            return Ok(());
                        }
                        return Err(out_of_time(until).at(&self.shared.url));
                    }
                }
                Err(e) => return Err(self.write_failed(e)),
            }
        }
    }

    /// Writes the rest of a message a send left unfinished, waiting as
    /// `until` allows.
    /// Whether a message a send took in part still has bytes to write.
    pub(crate) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    pub(crate) fn flush(&mut self, until: Until) -> Result<()> {
        let dont_wait = !matches!(until, Until::Forever);
        while let Some(front) = self.unsent.front_mut() {
            if self.failed {
                return Err(Error::new(ErrorKind::Closed, "send").at(&self.shared.url));
            }
            match self
                .ch
                .write(&[std::io::IoSlice::new(front)], &[], dont_wait)
            {
                Ok(n) if n == front.len() => {
                    self.unsent.pop_front();
                }
                Ok(n) => {
                    front.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !self.wait_room(until)? {
                        return Err(out_of_time(until).at(&self.shared.url));
                    }
                }
                Err(e) => return Err(self.write_failed(e)),
            }
        }
        Ok(())
    }

    /// Waits until the descriptor takes more, or `until`: `false` then.
    fn wait_room(&self, until: Until) -> Result<bool> {
        sys::fd::wait(self.ch.fd(), Interest::Write, until.deadline())
            .map_err(|e| Error::io("send", e))
    }

    /// Checks that the message may go, and lays it out for writing (a
    /// small frame in `scratch`, if given).
    pub(crate) fn prepare<'a>(
        &self,
        kind: u8,
        msg: &'a [u8],
        fds: &'a [BorrowedFd<'a>],
        scratch: Option<&'a mut Vec<u8>>,
    ) -> Result<(Arc<Descriptor>, Outgoing<'a>)> {
        let err = |k: ErrorKind| Err(Error::new(k, "send").at(&self.shared.url));
        let ch = self.ch.clone();
        if self.failed {
            return err(ErrorKind::Closed);
        }
        // Stored once: the flag shares a line with what the receiving half
        // reads, and a store per message would bounce it.
        if !self.shared.sent.load(Ordering::Relaxed) {
            self.shared.sent.store(true, Ordering::Relaxed);
        }
        if !fds.is_empty() && (!ch.kind().passes_fds() || fds.len() > MAX_FDS) {
            return err(ErrorKind::Unsupported(format!(
                "{} descriptors: only unix: and unixseq: links pass descriptors, at most {MAX_FDS} at a time",
                fds.len()
            )));
        }
        let out = self.outgoing(kind, msg, fds, ch.kind().is_packet(), scratch)?;
        Ok((ch, out))
    }

    pub(crate) fn write_failed(&mut self, e: std::io::Error) -> Error {
        self.failed = true;
        Error::peer_io("send", e).at(&self.shared.url)
    }

    /// Checks a message and lays it out as the bytes to write: a frame of
    /// at most [`COPY_UP_TO`] bytes is copied behind its header into
    /// `scratch`, if given, to go out as one slice.
    pub(crate) fn outgoing<'a>(
        &self,
        kind: u8,
        msg: &'a [u8],
        fds: &'a [BorrowedFd<'a>],
        packet: bool,
        scratch: Option<&'a mut Vec<u8>>,
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
                if let Some(buf) = scratch.filter(|_| msg.len() <= COPY_UP_TO.min(self.frame_max)) {
                    buf.clear();
                    buf.extend_from_slice(&self.header(kind, msg, fds.len()).encode());
                    buf.extend_from_slice(msg);
                    (Parts::one(Part::Body(buf)), 1)
                } else if msg.len() <= self.frame_max {
                    let head = Part::Head(self.header(kind, msg, fds.len()).encode());
                    (Parts::two(head, Part::Body(msg)), 2)
                } else {
                    let mut parts = Vec::new();
                    wire::for_each_frame(msg, self.frame_max, self.crc, |h, part| {
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

    /// The descriptor.
    pub(crate) fn descriptor(&self) -> &Arc<Descriptor> {
        &self.ch
    }
}

impl Drop for StreamTx {
    /// A message a send left unfinished is finished, waiting at most
    /// `?timeout=`: the peer would otherwise see it cut short.
    fn drop(&mut self) {
        if !self.unsent.is_empty() {
            let _ = self.flush(Until::after(self.linger));
        }
    }
}

/// The error of a send whose time ran out before it wrote anything.
pub(crate) fn out_of_time(until: Until) -> Error {
    let kind = match until {
        Until::NoWait => ErrorKind::WouldBlock,
        Until::Deadline(_) | Until::Forever => ErrorKind::TimedOut,
    };
    Error::new(kind, "send")
}
