//! Replays the fuzz corpus (`fuzz/corpus/decoder/`) and any crash the
//! fuzzer saved (`fuzz/artifacts/decoder/`) through the fuzz target's own
//! routine, `ipcx::bench_support::fuzz_decode`, on stable, as an ordinary test.
//!
//! The seed files of the corpus are made here too, from the recipes in
//! [`seeds`]: `IPCX_WRITE_CORPUS=1 cargo test -p ipcx --test fuzz_corpus`
//! writes them; without it, the test checks that they are there and current.

use std::path::{Path, PathBuf};

use ipcx::bench_support::{FUZZ_LIMIT, fuzz_decode};
use ipcx::wire::{
    FLAG_MORE, HEADER_LEN, Header, Hello, KIND_DATA, KIND_HELLO, encode_message, for_each_frame,
};

fn fuzz_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz")
        .join(sub)
        .join("decoder")
}

fn header(kind: u8, flags: u8, len: u64) -> [u8; HEADER_LEN] {
    Header {
        kind,
        flags,
        nfds: 0,
        len,
        crc: 0,
    }
    .encode()
}

fn hello() -> Vec<u8> {
    let mut f = header(KIND_HELLO, 0, Hello::LEN as u64).to_vec();
    f.extend_from_slice(&Hello::new(false, FUZZ_LIMIT).encode());
    f
}

fn message(payload: &[u8], crc: bool) -> Vec<u8> {
    let mut f = Vec::new();
    encode_message(payload, crc, &mut f);
    f
}

/// The seed files: valid streams the fuzzer mutates from, and one of each
/// kind of bad input.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let text: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut chunked = Vec::new();
    for_each_frame(&text, 1000, true, |h, part| {
        chunked.extend_from_slice(&h.encode());
        chunked.extend_from_slice(part);
    });
    let mut crc_mismatch = message(b"checked payload", true);
    crc_mismatch[16] ^= 0x55;
    let mut bad_magic = message(b"hello", false);
    bad_magic[..4].copy_from_slice(b"GET ");
    // Each chunk is under the limit; the running total is not.
    let mut over_limit = header(KIND_DATA, FLAG_MORE, 10).to_vec();
    over_limit.extend_from_slice(b"0123456789");
    over_limit.extend_from_slice(&header(KIND_DATA, 0, FUZZ_LIMIT as u64 - 5));
    vec![
        ("hello", hello()),
        (
            "hello_then_messages",
            [
                hello(),
                message(b"", false),
                message(b"one", false),
                message(b"two", true),
            ]
            .concat(),
        ),
        ("empty_message", message(b"", false)),
        ("crc_message", message(b"with a checksum", true)),
        ("chunked_message", chunked),
        (
            "lines",
            b"first line\nsecond\n\nlast without newline".to_vec(),
        ),
        ("bad_magic", bad_magic),
        ("huge_length", header(KIND_DATA, 0, u64::MAX).to_vec()),
        ("chunks_over_limit", over_limit),
        ("crc_mismatch", crc_mismatch),
        ("truncated_header", message(b"hello", false)[..9].to_vec()),
        (
            "truncated_payload",
            message(b"hello world", false)[..25].to_vec(),
        ),
        ("second_hello", [hello(), hello()].concat()),
    ]
}

#[test]
fn seed_files_are_current() {
    let dir = fuzz_dir("corpus");
    let write = std::env::var_os("IPCX_WRITE_CORPUS").is_some();
    for (name, bytes) in seeds() {
        let path = dir.join(name);
        if write {
            std::fs::create_dir_all(&dir).expect("create the corpus directory");
            std::fs::write(&path, &bytes).expect("write a seed");
            continue;
        }
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; write the seeds with IPCX_WRITE_CORPUS=1",
                path.display()
            )
        });
        assert!(
            on_disk == bytes,
            "{} differs from its recipe; rewrite the seeds with IPCX_WRITE_CORPUS=1",
            path.display()
        );
    }
}

#[test]
fn corpus_and_artifacts_replay() {
    let mut files = Vec::new();
    for sub in ["corpus", "artifacts"] {
        if let Ok(entries) = std::fs::read_dir(fuzz_dir(sub)) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    assert!(
        files.len() >= seeds().len(),
        "found {} files under {}, expected at least the {} seeds",
        files.len(),
        fuzz_dir("corpus").display(),
        seeds().len()
    );
    let mut failed = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("read a corpus file");
        if std::panic::catch_unwind(|| fuzz_decode(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "fuzz_decode panicked on:\n{}",
        failed.join("\n")
    );
}
