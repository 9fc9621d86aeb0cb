//! Arbitrary bytes into the decoder of every codec, whole and in pieces,
//! with a small message limit. The routine is the library's own
//! `ipcx::bench_support::fuzz_decode`, which `tests/fuzz_corpus.rs` replays on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ipcx::bench_support::fuzz_decode(data);
});
