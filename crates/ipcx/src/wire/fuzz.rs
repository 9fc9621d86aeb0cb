//! The decode routine the fuzz target (`fuzz/fuzz_targets/decoder.rs`) and
//! the corpus replay test (`tests/fuzz_corpus.rs`) share, so that a crash
//! the fuzzer found replays on stable exactly as it was found.

use std::io;

use super::{Decoded, Decoder, ReadSource};
use crate::endpoint::Codec;

/// The message limit of the decoders [`fuzz_decode`] runs: small, so that an
/// input that gets past the length check shows up as a large allocation.
pub const FUZZ_LIMIT: usize = 64 << 10;

/// Feeds `data` to a [`Decoder`] of every codec — whole, and in small pieces
/// with a `WouldBlock` between them, as a stream and (framed) as packets —
/// and discards what comes out. Bad input must end in an error; the function
/// returns nothing.
///
/// # Panics
///
/// Only when the decoder breaks one of its own promises, which is what the
/// fuzzer looks for: a message over [`FUZZ_LIMIT`], or no progress on a
/// source that has data.
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    for codec in [Codec::Framed, Codec::Raw, Codec::Lines] {
        run(Decoder::new(codec, FUZZ_LIMIT, false), data);
        run(Decoder::new(codec, FUZZ_LIMIT, false), Pieces::new(data));
    }
    run(
        Decoder::new(Codec::Framed, FUZZ_LIMIT, true),
        Pieces::new(data),
    );
}

/// Decodes until the end of the input or the first error.
fn run(mut dec: Decoder, mut src: impl ReadSource + Remaining) {
    let mut msg = Vec::new();
    let mut blocked_at = None;
    loop {
        match dec.poll(&mut src) {
            Ok(Some(Decoded::Message { .. })) => {
                dec.take_message(&mut msg);
                assert!(
                    msg.len() <= FUZZ_LIMIT,
                    "decoded a message of {} bytes over the limit of {FUZZ_LIMIT}",
                    msg.len()
                );
                blocked_at = None;
            }
            Ok(Some(Decoded::Hello(_))) => blocked_at = None,
            Ok(None) => {
                // The source blocks once before each piece, so between two
                // `None`s the decoder must have taken a piece.
                let left = src.remaining();
                assert!(
                    src.blocks() && blocked_at != Some(left),
                    "the decoder made no progress with {left} bytes left to read"
                );
                blocked_at = Some(left);
            }
            Err(_) => return,
        }
    }
}

/// A source that can tell what it has left.
trait Remaining {
    fn remaining(&self) -> usize;
    fn blocks(&self) -> bool;
}

impl Remaining for &[u8] {
    fn remaining(&self) -> usize {
        self.len()
    }
    fn blocks(&self) -> bool {
        false
    }
}

/// Gives its bytes in pieces of 1 to 13 bytes (so that headers and payloads
/// split everywhere), and `WouldBlock` before every piece.
struct Pieces<'a> {
    rest: &'a [u8],
    next: usize,
    blocked: bool,
}

impl<'a> Pieces<'a> {
    fn new(data: &'a [u8]) -> Pieces<'a> {
        Pieces {
            rest: data,
            next: data.first().map_or(1, |b| usize::from(*b)),
            blocked: false,
        }
    }
}

impl ReadSource for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.blocked = !self.blocked;
        if self.blocked {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.next = self.next.wrapping_mul(7).wrapping_add(3);
        let n = (self.next % 13 + 1).min(self.rest.len()).min(buf.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

impl Remaining for Pieces<'_> {
    fn remaining(&self) -> usize {
        self.rest.len()
    }
    fn blocks(&self) -> bool {
        true
    }
}
