//! The sending side of a byte-stream link: frames laid out as the bytes to
//! write (a small one copied behind its header into one buffer), written
//! as the descriptor takes them, the rest of a message kept when a send's
//! time ran out.

use std::collections::VecDeque;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::descriptor::Descriptor;
use super::link::{Shared, Until};
use super::outgoing::{Outgoing, Part, Parts};
use crate::endpoint::{Codec, Endpoint};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::fd::Interest;
use crate::sys::{self, socket::MAX_FDS};
use crate::wire::{self, Header, Hello};

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
        if fds.is_empty()
            && self.unsent.is_empty()
            && matches!(until, Until::Forever)
            && let Some(sent) = self.send_small(kind, msg)
        {
            return sent;
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
            && self.copies(msg)
            && msg.len() as u64 <= self.shared.peer_max.load(Ordering::Acquire);
        if !small {
            return None;
        }
        self.mark_sent();
        let header = self.header(kind, msg, 0);
        put_frame(&mut self.scratch, header, msg);
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

    /// Whether a message a send took in part still has bytes to write.
    pub(crate) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Writes the rest of a message a send left unfinished, waiting as
    /// `until` allows.
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
        self.mark_sent();
        if !fds.is_empty() && !ch.kind().passes_fds() {
            return Err(self.shared.passes_no_fds());
        }
        if fds.len() > MAX_FDS {
            return err(ErrorKind::InvalidArgument(format!(
                "{} descriptors with one message; at most {MAX_FDS} go at a time",
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
                    return err(ErrorKind::InvalidArgument(
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
                if let Some(buf) = scratch.filter(|_| self.copies(msg)) {
                    put_frame(buf, self.header(kind, msg, fds.len()), msg);
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

    /// Whether `msg` goes copied behind its header (see [`COPY_UP_TO`]).
    fn copies(&self, msg: &[u8]) -> bool {
        msg.len() <= COPY_UP_TO.min(self.frame_max)
    }

    /// Records that a send has begun on the link, once: the flag shares a
    /// line with what the receiving half reads, and a store per message
    /// would bounce it.
    fn mark_sent(&self) {
        if !self.shared.sent.load(Ordering::Relaxed) {
            self.shared.sent.store(true, Ordering::Relaxed);
        }
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

/// Lays out `header` and `msg` in `buf`, to go out as one slice.
fn put_frame(buf: &mut Vec<u8>, header: Header, msg: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&header.encode());
    buf.extend_from_slice(msg);
}

/// The error of a send whose time ran out before it wrote anything.
pub(crate) fn out_of_time(until: Until) -> Error {
    let kind = match until {
        Until::NoWait => ErrorKind::WouldBlock,
        Until::Deadline(_) | Until::Forever => ErrorKind::TimedOut,
    };
    Error::new(kind, "send")
}
