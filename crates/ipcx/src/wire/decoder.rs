//! A decoder that turns bytes from a non-blocking source into messages.
//!
//! It holds no file descriptor and never waits (the "sans-I/O" style), so the
//! blocking links, the tokio links, the fuzz target and the property tests
//! all drive the same code. Each call to [`Decoder::poll`] reads what the
//! source has, and returns a message, or `None` when it would block.

use std::io;

use super::{FLAG_CRC, FLAG_MORE, FrameError, HEADER_LEN, Header, Hello, KIND_HELLO};
use crate::endpoint::Codec;
use crate::error::{Error, ErrorKind, Result};

/// Size of the read buffer; a small message arrives with its header in one read.
const BUF_LEN: usize = 96 << 10;
/// The largest datagram a packet source reads whole: more than a Unix
/// socket can carry with the default send buffer (208 KiB), so none is
/// ever truncated.
pub(crate) const PACKET_MAX: usize = 256 << 10;
/// Size of the read buffer of a packet source: room for a batch of eight
/// of the largest datagrams, which a read of several at once needs (the
/// transport's `recv_batch`). Mapped, so that only the pages data lands
/// on are taken.
const PACKET_BUF_LEN: usize = 8 * PACKET_MAX;

/// A decoder's read buffer.
#[derive(Debug)]
enum ReadBuf {
    Heap(Box<[u8]>),
    Pages(crate::sys::mem::Pages),
}

impl ReadBuf {
    fn new(packet: bool) -> ReadBuf {
        if !packet {
            return ReadBuf::Heap(vec![0; BUF_LEN].into_boxed_slice());
        }
        match crate::sys::mem::Pages::new(PACKET_BUF_LEN) {
            Ok(p) => ReadBuf::Pages(p),
            // Without the room for a batch, datagrams come one per read.
            Err(_) => ReadBuf::Heap(vec![0; PACKET_MAX].into_boxed_slice()),
        }
    }
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ReadBuf::Heap(b) => b,
            ReadBuf::Pages(p) => p,
        }
    }
}

impl std::ops::DerefMut for ReadBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            ReadBuf::Heap(b) => b,
            ReadBuf::Pages(p) => p,
        }
    }
}
/// Payload still missing at which reads go straight into the message.
const DIRECT_MIN: usize = 16 << 10;
/// Bytes read into the buffer after a large message (see `fill`).
const SMALL_READ: usize = 4 << 10;
/// Most bytes one direct read asks for (bounds growth ahead of the data).
const DIRECT_STEP: usize = 1 << 20;

/// Where the decoder reads from: a non-blocking byte source.
pub trait ReadSource {
    /// Reads into `buf`; `Ok(0)` is end of stream, `WouldBlock` means no data yet.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Reads at most `max` bytes, appending them to `out`.
    fn read_append(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let old = out.len();
        out.resize(old + max, 0);
        let r = self.read(&mut out[old..]);
        out.truncate(old + *r.as_ref().unwrap_or(&0));
        r
    }
}

/// A source with nothing to read yet (always `WouldBlock`): decodes only
/// what is already buffered.
pub(crate) struct NothingYet;

impl ReadSource for NothingYet {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl ReadSource for &[u8] {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        io::Read::read(self, buf)
    }
}

/// What [`Decoder::poll`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A whole message is ready; take it with [`Decoder::take_message`].
    /// `nfds` file descriptors were announced with it.
    Message {
        /// File descriptors that travel with the message.
        nfds: usize,
    },
    /// The peer's handshake.
    Hello(Hello),
}

enum Fill {
    Data,
    WouldBlock,
    Eof,
}

/// The receive state of one link.
#[derive(Debug)]
pub struct Decoder {
    codec: Codec,
    limit: usize,
    packet: bool,
    buf: ReadBuf,
    start: usize,
    end: usize,
    /// Header of the frame whose payload is being read, if any.
    frame: Option<Header>,
    remaining: usize,
    part_start: usize,
    msg: Vec<u8>,
    nfds: usize,
    eof: bool,
    require_crc: bool,
    /// The last message was large enough to be read mostly in place.
    last_large: bool,
}

impl Decoder {
    /// A decoder for `codec` that refuses messages over `limit` bytes.
    /// `packet` is for sources that return one datagram per read.
    pub fn new(codec: Codec, limit: usize, packet: bool) -> Decoder {
        Decoder {
            codec,
            limit,
            packet,
            buf: ReadBuf::new(packet),
            start: 0,
            end: 0,
            frame: None,
            remaining: 0,
            part_start: 0,
            msg: Vec::new(),
            nfds: 0,
            eof: false,
            require_crc: false,
            last_large: false,
        }
    }

    /// Refuses data frames that carry no CRC (for `?crc=true` links, so a
    /// peer cannot skip the check by clearing the flag).
    pub fn require_crc(mut self, on: bool) -> Decoder {
        self.require_crc = on;
        self
    }

    /// The largest message this decoder accepts.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// True when bytes read ahead are held that no message took yet.
    pub fn has_buffered(&self) -> bool {
        self.start < self.end
    }

    /// True when bytes of an unfinished message are held.
    pub fn is_mid_message(&self) -> bool {
        self.frame.is_some() || self.start < self.end || !self.msg.is_empty()
    }

    /// Reads from `src` until a message is whole (`Some`), or the source
    /// would block (`None`). End of stream between messages is
    /// [`ErrorKind::Closed`]; inside one, [`FrameError::Truncated`].
    pub fn poll(&mut self, src: &mut impl ReadSource) -> Result<Option<Decoded>> {
        if self.eof {
            return Err(Error::new(ErrorKind::Closed, "recv"));
        }
        match self.codec {
            Codec::Framed => self.poll_framed(src),
            Codec::Raw => self.poll_raw(src),
            Codec::Lines => self.poll_lines(src),
        }
    }

    /// The message decoded last.
    pub fn message(&self) -> &[u8] {
        &self.msg
    }

    /// Moves the message decoded last into `out`, keeping `out`'s old
    /// allocation for the next message (no copy either way).
    pub fn take_message(&mut self, out: &mut Vec<u8>) {
        std::mem::swap(out, &mut self.msg);
        self.msg.clear();
    }

    fn poll_framed(&mut self, src: &mut impl ReadSource) -> Result<Option<Decoded>> {
        loop {
            let Some(hdr) = self.frame else {
                if self.end - self.start < HEADER_LEN {
                    match self.fill(src)? {
                        Fill::Data => continue,
                        Fill::WouldBlock => return Ok(None),
                        Fill::Eof => return Err(self.eof_error("header", HEADER_LEN)),
                    }
                }
                let mut raw = [0u8; HEADER_LEN];
                raw.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
                let hdr = Header::decode(&raw).map_err(frame_err)?;
                self.check_header(&hdr)?;
                self.start += HEADER_LEN;
                self.remaining = hdr.len as usize;
                self.part_start = self.msg.len();
                self.nfds += hdr.nfds as usize;
                self.msg.reserve(self.remaining.min(DIRECT_STEP));
                self.frame = Some(hdr);
                continue;
            };
            let avail = (self.end - self.start).min(self.remaining);
            if avail > 0 {
                crate::copy::extend(&mut self.msg, &self.buf[self.start..self.start + avail]);
                self.start += avail;
                self.remaining -= avail;
            }
            if self.remaining > 0 {
                if !self.packet && self.remaining >= DIRECT_MIN {
                    let want = self.remaining.min(DIRECT_STEP);
                    match src.read_append(&mut self.msg, want) {
                        Ok(0) => return Err(self.eof_error("payload", hdr.len as usize)),
                        Ok(n) => self.remaining -= n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(source_error(e)),
                    }
                } else {
                    match self.fill(src)? {
                        Fill::Data => {}
                        Fill::WouldBlock => return Ok(None),
                        Fill::Eof => return Err(self.eof_error("payload", hdr.len as usize)),
                    }
                }
                continue;
            }
            self.frame = None;
            if hdr.flags & FLAG_CRC != 0 {
                let actual = crc32c::crc32c(&self.msg[self.part_start..]);
                if actual != hdr.crc {
                    return Err(frame_err(FrameError::Crc {
                        expected: hdr.crc,
                        actual,
                    }));
                }
            }
            if hdr.flags & FLAG_MORE != 0 {
                continue;
            }
            if hdr.kind == KIND_HELLO {
                let hello = Hello::decode(&self.msg).map_err(frame_err)?;
                self.msg.clear();
                return Ok(Some(Decoded::Hello(hello)));
            }
            self.last_large = self.msg.len() >= DIRECT_MIN;
            return Ok(Some(Decoded::Message {
                nfds: std::mem::take(&mut self.nfds),
            }));
        }
    }

    fn check_header(&self, hdr: &Header) -> Result<()> {
        let mid_message = !self.msg.is_empty() || self.nfds > 0;
        if hdr.kind == KIND_HELLO {
            if mid_message || hdr.flags & FLAG_MORE != 0 {
                return Err(frame_err(FrameError::Unexpected("hello inside a message")));
            }
            if hdr.nfds != 0 {
                return Err(frame_err(FrameError::Unexpected("descriptors on a hello")));
            }
            if hdr.len != Hello::LEN as u64 {
                return Err(frame_err(FrameError::TooLong {
                    len: hdr.len,
                    max: Hello::LEN as u64,
                }));
            }
            return Ok(());
        }
        if self.require_crc && hdr.flags & FLAG_CRC == 0 {
            return Err(frame_err(FrameError::MissingCrc));
        }
        let total = (self.msg.len() as u64).saturating_add(hdr.len);
        if total > self.limit as u64 {
            return Err(frame_err(FrameError::TooLong {
                len: total,
                max: self.limit as u64,
            }));
        }
        Ok(())
    }

    fn poll_raw(&mut self, src: &mut impl ReadSource) -> Result<Option<Decoded>> {
        if self.start == self.end {
            match self.fill(src)? {
                Fill::Data => {}
                Fill::WouldBlock => return Ok(None),
                Fill::Eof => return Err(self.eof_error("", 0)),
            }
        }
        let n = (self.end - self.start).min(self.limit);
        self.msg.clear();
        crate::copy::extend(&mut self.msg, &self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(Some(Decoded::Message { nfds: 0 }))
    }

    fn poll_lines(&mut self, src: &mut impl ReadSource) -> Result<Option<Decoded>> {
        loop {
            let pending = &self.buf[self.start..self.end];
            let newline = pending.iter().position(|&b| b == b'\n');
            let take = newline.unwrap_or(pending.len());
            if self.msg.len() + take > self.limit {
                return Err(frame_err(FrameError::TooLong {
                    len: (self.msg.len() + take) as u64,
                    max: self.limit as u64,
                }));
            }
            self.msg.extend_from_slice(&pending[..take]);
            if newline.is_some() {
                self.start += take + 1;
                return Ok(Some(Decoded::Message { nfds: 0 }));
            }
            self.start = self.end;
            match self.fill(src)? {
                Fill::Data => {}
                Fill::WouldBlock => return Ok(None),
                Fill::Eof if !self.msg.is_empty() => {
                    // The last line had no newline: deliver it, close next time.
                    self.eof = true;
                    return Ok(Some(Decoded::Message { nfds: 0 }));
                }
                Fill::Eof => return Err(self.eof_error("", 0)),
            }
        }
    }

    fn fill(&mut self, src: &mut impl ReadSource) -> Result<Fill> {
        // A packet source truncates a datagram that does not fit, so keep a
        // whole buffer's worth free; a stream source only needs some room.
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.packet || self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // After a large message the next one is likely large too: read
        // little into the buffer, so its payload goes straight into the
        // message (one copy, by the kernel) instead of through the buffer.
        let room = if self.last_large && self.codec == Codec::Framed && !self.packet {
            (self.buf.len() - self.end).min(SMALL_READ)
        } else {
            self.buf.len() - self.end
        };
        loop {
            return match src.read(&mut self.buf[self.end..self.end + room]) {
                Ok(0) => Ok(Fill::Eof),
                Ok(n) => {
                    self.end += n;
                    Ok(Fill::Data)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Fill::WouldBlock),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(source_error(e)),
            };
        }
    }

    fn eof_error(&mut self, part: &'static str, expected: usize) -> Error {
        self.eof = true;
        if !self.is_mid_message() {
            return Error::new(ErrorKind::Closed, "recv");
        }
        let got = match self.frame {
            Some(h) => h.len as usize - self.remaining,
            None => self.end - self.start,
        };
        frame_err(FrameError::Truncated {
            part,
            got: got as u64,
            expected: expected as u64,
        })
    }
}

/// An error from the source: a [`FrameError`] it found (truncated
/// datagram, too many descriptors), or an OS error.
fn source_error(e: io::Error) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<FrameError>())
    {
        Some(fe) => frame_err(fe.clone()),
        None => Error::peer_io("recv", e),
    }
}

pub(crate) fn frame_err(e: FrameError) -> Error {
    Error::new(ErrorKind::Frame(e), "recv")
}

#[cfg(test)]
mod tests;
