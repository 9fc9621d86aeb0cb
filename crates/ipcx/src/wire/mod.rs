//! The frame format for byte-stream links, and its validation.
//!
//! Every frame is a 20-byte little-endian header, then the payload:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `IPCX` |
//! | 4 | 1 | version ([`VERSION`]) |
//! | 5 | 1 | kind: 1 data, 2 hello |
//! | 6 | 1 | flags: bit 0 CRC present, bit 1 more frames of the message follow |
//! | 7 | 1 | number of file descriptors sent with the frame |
//! | 8 | 8 | payload length |
//! | 16 | 4 | CRC32C of the payload, or 0 |
//!
//! A message longer than [`FRAME_MAX`] travels as several data frames, all but
//! the last flagged `MORE`. The receiver checks magic, version, kind, flags
//! and length against its limit before it reads or allocates the payload.

mod decoder;
pub(crate) mod fuzz;
mod hello;

pub use decoder::{Decoded, Decoder, ReadSource};
pub(crate) use decoder::{NothingYet, PACKET_MAX, frame_err};
#[doc(hidden)]
pub use hello::Hello;

/// The four magic bytes that open every frame.
pub const MAGIC: [u8; 4] = *b"IPCX";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Length of the frame header.
pub const HEADER_LEN: usize = 20;
/// Largest payload of one frame on a stream; a longer message goes in
/// several frames.
pub const FRAME_MAX: usize = 1 << 20;

/// Frame kind: a data frame.
pub const KIND_DATA: u8 = 1;
/// Frame kind: the connect handshake.
pub const KIND_HELLO: u8 = 2;

/// Flag: the header carries a CRC32C of the payload.
pub const FLAG_CRC: u8 = 1;
/// Flag: more frames of this message follow.
pub const FLAG_MORE: u8 = 2;
const KNOWN_FLAGS: u8 = FLAG_CRC | FLAG_MORE;

/// What was wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The first four bytes are not `IPCX`: the peer does not speak ipcx framing.
    #[error("bad magic {found:02x?} (expected \"IPCX\"; is the peer using ?codec=raw?)")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// The peer speaks another protocol version.
    #[error(
        "unsupported protocol version {found} (this build speaks {VERSION}; upgrade the older side)"
    )]
    Version {
        /// The version found.
        found: u8,
    },
    /// The kind byte is not one this version knows.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// Flag bits this version does not know are set.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// The declared length is over the receiver's limit.
    #[error("declared length {len} exceeds the limit of {max} bytes")]
    TooLong {
        /// The declared length (or running total of a message in several frames).
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The stream ended inside a frame.
    #[error("truncated {part}: the peer closed after {got} of {expected} bytes")]
    Truncated {
        /// `"header"` or `"payload"`.
        part: &'static str,
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// The payload does not match its CRC32C.
    #[error("CRC mismatch: header says {expected:#010x}, payload has {actual:#010x}")]
    Crc {
        /// The CRC in the header.
        expected: u32,
        /// The CRC of the payload received.
        actual: u32,
    },
    /// A data frame without a CRC arrived on a link that requires one.
    #[error("frame without a CRC on a link with crc=true")]
    MissingCrc,
    /// A frame that is only valid at one point arrived at another.
    #[error("unexpected {0}")]
    Unexpected(&'static str),
    /// More file descriptors than the link accepts, or fewer than announced.
    #[error("file descriptors: {0}")]
    Fds(String),
    /// A raw packet was larger than the receive buffer.
    #[error("packet larger than {0} bytes was truncated by the kernel")]
    PacketTruncated(usize),
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Frame kind.
    pub kind: u8,
    /// Flag bits.
    pub flags: u8,
    /// File descriptors that travel with the frame.
    pub nfds: u8,
    /// Payload length.
    pub len: u64,
    /// CRC32C of the payload (when `FLAG_CRC` is set).
    pub crc: u32,
}

impl Header {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.kind;
        b[6] = self.flags;
        b[7] = self.nfds;
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..20].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Decodes and validates a header; the length is checked by the caller,
    /// which knows the limit.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
        let magic: [u8; 4] = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        if b[4] != VERSION {
            return Err(FrameError::Version { found: b[4] });
        }
        let kind = b[5];
        if kind != KIND_DATA && kind != KIND_HELLO {
            return Err(FrameError::UnknownKind(kind));
        }
        let flags = b[6];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(FrameError::UnknownFlags(flags & !KNOWN_FLAGS));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&b[8..16]);
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&b[16..20]);
        Ok(Header {
            kind,
            flags,
            nfds: b[7],
            len: u64::from_le_bytes(len),
            crc: u32::from_le_bytes(crc),
        })
    }
}

/// Encodes a whole message as frames into a byte vector (tests, fuzzing and
/// tools use it; links write the same headers without copying the payload).
pub fn encode_message(payload: &[u8], crc: bool, out: &mut Vec<u8>) {
    for_each_frame(payload, FRAME_MAX, crc, |h, part| {
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(part);
    });
}

/// Splits `payload` into frames of at most `frame_max` bytes and gives each with
/// its header. An empty payload is one empty frame.
pub fn for_each_frame<'a>(
    payload: &'a [u8],
    frame_max: usize,
    crc: bool,
    mut f: impl FnMut(Header, &'a [u8]),
) {
    let mut rest = payload;
    loop {
        let n = rest.len().min(frame_max);
        let (part, tail) = rest.split_at(n);
        let more = !tail.is_empty();
        let h = Header {
            kind: KIND_DATA,
            flags: if crc { FLAG_CRC } else { 0 } | if more { FLAG_MORE } else { 0 },
            nfds: 0,
            len: n as u64,
            crc: if crc { crc32c::crc32c(part) } else { 0 },
        };
        f(h, part);
        if !more {
            break;
        }
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let h = Header {
            kind: KIND_DATA,
            flags: FLAG_CRC,
            nfds: 2,
            len: 1234,
            crc: 0xdead_beef,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn bad_headers_are_named() {
        let mut b = Header {
            kind: KIND_DATA,
            flags: 0,
            nfds: 0,
            len: 0,
            crc: 0,
        }
        .encode();
        b[0] = b'X';
        assert!(matches!(
            Header::decode(&b),
            Err(FrameError::BadMagic { .. })
        ));
        b[0] = b'I';
        b[4] = 9;
        assert_eq!(Header::decode(&b), Err(FrameError::Version { found: 9 }));
        b[4] = VERSION;
        b[5] = 77;
        assert_eq!(Header::decode(&b), Err(FrameError::UnknownKind(77)));
    }
}
