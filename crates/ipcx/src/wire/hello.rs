//! The connect handshake.
//!
//! Each side sends one hello frame as soon as the connection exists and
//! checks the peer's: version, flags, and the largest message each accepts.
//! The `auth` byte is where authentication will negotiate its method; this
//! version knows only 0 (none) and rejects anything else.

use super::{FrameError, VERSION};

/// The payload of a hello frame (16 bytes, little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version of the sender.
    pub version: u8,
    /// Whether the sender puts a CRC on its frames and wants one on ours.
    pub crc: bool,
    /// Authentication method the sender offers (0: none).
    pub auth: u8,
    /// Largest message the sender accepts.
    pub max_msg: u64,
}

impl Hello {
    /// Length of an encoded hello.
    pub const LEN: usize = 16;

    /// A hello for this build.
    pub fn new(crc: bool, max_msg: usize) -> Hello {
        Hello {
            version: VERSION,
            crc,
            auth: 0,
            max_msg: max_msg as u64,
        }
    }

    /// Encodes the hello.
    pub fn encode(&self) -> [u8; Hello::LEN] {
        let mut b = [0u8; Hello::LEN];
        b[0] = self.version;
        b[1] = u8::from(self.crc);
        b[2] = self.auth;
        b[8..16].copy_from_slice(&self.max_msg.to_le_bytes());
        b
    }

    /// Decodes a hello.
    pub fn decode(b: &[u8]) -> Result<Hello, FrameError> {
        if b.len() != Hello::LEN {
            return Err(FrameError::Unexpected("hello of the wrong length"));
        }
        let mut m = [0u8; 8];
        m.copy_from_slice(&b[8..16]);
        Ok(Hello {
            version: b[0],
            crc: b[1] & 1 == 1,
            auth: b[2],
            max_msg: u64::from_le_bytes(m),
        })
    }

    /// Checks the peer's hello against ours; the error says what differs.
    pub fn check_peer(&self, peer: &Hello) -> Result<(), String> {
        if peer.version != self.version {
            return Err(format!(
                "protocol version mismatch: peer speaks {}, this side {} — upgrade the older side",
                peer.version, self.version
            ));
        }
        if peer.crc != self.crc {
            return Err(format!(
                "CRC setting differs: peer has crc={}, this side crc={} — set ?crc= the same on both",
                peer.crc, self.crc
            ));
        }
        if peer.auth != 0 {
            return Err(format!(
                "peer asks for authentication method {} which this build does not know",
                peer.auth
            ));
        }
        if peer.max_msg == 0 {
            return Err("peer announced max_msg=0".into());
        }
        Ok(())
    }
}
