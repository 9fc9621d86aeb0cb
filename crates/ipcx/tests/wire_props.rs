//! Properties of the wire format: whatever `encode_message` writes, the
//! `Decoder` reads back, however the bytes are cut up on the way; and no
//! input makes the decoder panic or allocate past its limit.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;

use ipcx::Codec;
use ipcx::wire::{
    Decoded, Decoder, FLAG_CRC, FLAG_MORE, FRAME_MAX, Header, KIND_DATA, KIND_HELLO, ReadSource,
    encode_message, for_each_frame,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Allocation watch

/// The system allocator, recording the largest single allocation made by
/// the current thread while it watches.
struct Watched;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: allocations during thread teardown find no thread-locals.
    if WATCHING.try_with(Cell::get).unwrap_or(false) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: every call is passed on unchanged to the system allocator; the
// bookkeeping only reads sizes and touches const-initialized thread-locals,
// which never allocate.
unsafe impl GlobalAlloc for Watched {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`; `ptr` came from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as for `alloc`; `ptr` came from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Watched = Watched;

/// Runs `f`, returning the largest single allocation it made.
fn largest_allocation(f: impl FnOnce()) -> usize {
    LARGEST.with(|l| l.set(0));
    WATCHING.with(|w| w.set(true));
    f();
    WATCHING.with(|w| w.set(false));
    LARGEST.with(Cell::get)
}

// ---------------------------------------------------------------------------
// Sources

/// Gives bytes in pieces of the sizes in `cuts` (cycled), and `WouldBlock`
/// where a cut is 0 — the way a socket hands over what has arrived.
struct Pieces<'a> {
    data: &'a [u8],
    cuts: &'a [usize],
    next: usize,
}

impl ReadSource for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let cut = self.cuts[self.next % self.cuts.len()];
        self.next += 1;
        if cut == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = cut.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Decodes `data`, given in pieces of `cuts`, until the end of stream.
fn decode_all(dec: &mut Decoder, data: &[u8], cuts: &[usize]) -> Result<Vec<Vec<u8>>, ipcx::Error> {
    let mut src = Pieces {
        data,
        cuts,
        next: 0,
    };
    let mut out = Vec::new();
    // `None`s in a row with no byte taken: at most one per 0 in `cuts`.
    let (mut idle, mut left) = (0, data.len());
    loop {
        match dec.poll(&mut src) {
            Ok(Some(Decoded::Message { .. })) => {
                let mut m = Vec::new();
                dec.take_message(&mut m);
                out.push(m);
            }
            Ok(Some(Decoded::Hello(_))) => {}
            Ok(None) => {
                idle = if src.data.len() < left { 0 } else { idle + 1 };
                left = src.data.len();
                assert!(idle <= cuts.len(), "no progress with {left} bytes left");
            }
            Err(e) if e.is_closed() => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// Message `i` of length `len`: bytes that differ per message and offset.
fn message(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (j * 31 + i * 7 + j / 251) as u8).collect()
}

// ---------------------------------------------------------------------------
// Properties

/// Messages of 0 to 200 000 bytes, each with or without CRC.
fn messages() -> impl Strategy<Value = Vec<(usize, bool)>> {
    prop::collection::vec((0usize..200_000, any::<bool>()), 1..6)
}

/// Piece sizes: mostly small, sometimes large, sometimes 0 (`WouldBlock`);
/// at least one is not 0.
fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![4 => 1usize..64, 2 => 64usize..70_000, 1 => Just(0usize)],
        1..12,
    )
    .prop_map(|mut v| {
        v.push(1 + v.len() * 97);
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // Integration tests have no `src/lib.rs` beside them to store
        // failures next to; a failure prints its minimal input instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Encoded messages decode to themselves, however the stream is cut.
    #[test]
    fn encoded_messages_decode_to_themselves(msgs in messages(), cuts in cuts()) {
        let msgs: Vec<(Vec<u8>, bool)> =
            msgs.iter().enumerate().map(|(i, &(len, crc))| (message(i, len), crc)).collect();
        let mut bytes = Vec::new();
        for (m, crc) in &msgs {
            encode_message(m, *crc, &mut bytes);
        }
        let mut dec = Decoder::new(Codec::Framed, 256 << 10, false);
        let got = decode_all(&mut dec, &bytes, &cuts)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.len(), msgs.len());
        for (g, (m, _)) in got.iter().zip(&msgs) {
            prop_assert!(g == m, "a message of {} bytes came back as {} bytes", m.len(), g.len());
        }
    }

    /// Messages cut into chunks of any size reassemble, as the chunks of a
    /// large message do.
    #[test]
    fn chunked_messages_reassemble(
        msgs in messages(),
        chunk in 1usize..70_000,
        cuts in cuts(),
    ) {
        let msgs: Vec<Vec<u8>> =
            msgs.iter().enumerate().map(|(i, &(len, _))| message(i, len)).collect();
        let mut bytes = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            for_each_frame(m, chunk, i % 2 == 0, |h, part| {
                bytes.extend_from_slice(&h.encode());
                bytes.extend_from_slice(part);
            });
        }
        let mut dec = Decoder::new(Codec::Framed, 256 << 10, false);
        let got = decode_all(&mut dec, &bytes, &cuts)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(got == msgs, "chunked messages did not reassemble");
    }

    /// Any bytes — random, or after a plausible header — end in a message,
    /// an error, or the end of stream; never a panic, never an allocation
    /// past the limit, for every codec.
    #[test]
    fn arbitrary_bytes_are_refused_safely(
        head in header_like(),
        tail in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in cuts(),
    ) {
        const LIMIT: usize = 64 << 10;
        let mut bytes = head;
        bytes.extend_from_slice(&tail);
        for codec in [Codec::Framed, Codec::Raw, Codec::Lines] {
            let mut dec = Decoder::new(codec, LIMIT, false);
            let mut result = Ok(Vec::new());
            let largest = largest_allocation(|| {
                result = decode_all(&mut dec, &bytes, &cuts);
            });
            if let Ok(msgs) = &result {
                prop_assert!(msgs.iter().all(|m| m.len() <= LIMIT));
            }
            // The decoder's own buffer, or a message growing to the limit
            // (a Vec may double past what it needs).
            prop_assert!(largest <= 2 * LIMIT, "{codec:?}: allocated {largest} bytes");
        }
        ipcx::bench_support::fuzz_decode(&bytes);
    }
}

/// Nothing, random bytes, or a valid-looking header with a random length,
/// kind and flags, so that inputs get past the magic.
fn header_like() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..64),
        (
            prop_oneof![Just(KIND_DATA), Just(KIND_HELLO), any::<u8>()],
            prop_oneof![Just(0), Just(FLAG_CRC), Just(FLAG_MORE), any::<u8>()],
            any::<u8>(),
            prop_oneof![0u64..100_000, any::<u64>(), Just(u64::MAX)],
        )
            .prop_map(|(kind, flags, nfds, len)| {
                Header {
                    kind,
                    flags,
                    nfds,
                    len,
                    crc: 0,
                }
                .encode()
                .to_vec()
            }),
    ]
}

/// The largest allocation decoding makes stays near the limit even when a
/// header declares a length near `u64::MAX` or just over the limit.
#[test]
fn declared_lengths_do_not_allocate() {
    const LIMIT: usize = 64 << 10;
    for len in [LIMIT as u64 + 1, 1 << 40, u64::MAX - 1, u64::MAX] {
        let bytes = Header {
            kind: KIND_DATA,
            flags: 0,
            nfds: 0,
            len,
            crc: 0,
        }
        .encode();
        let mut result = Ok(Vec::new());
        let largest = largest_allocation(|| {
            let mut dec = Decoder::new(Codec::Framed, LIMIT, false);
            result = decode_all(&mut dec, &bytes, &[usize::MAX]);
        });
        let err = result.expect_err("a length over the limit");
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        assert!(largest <= 2 * LIMIT, "len {len}: allocated {largest} bytes");
    }
    // The watch works: a large allocation is seen.
    assert!(largest_allocation(|| drop(vec![0u8; FRAME_MAX])) >= FRAME_MAX);
}
