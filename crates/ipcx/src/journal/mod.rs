//! `journal:/dir`: a persistent, append-only queue in files, as Chronicle
//! Queue is on the JVM: one writer appends, any number of readers in
//! other processes replay from any sequence number and follow it live.
//!
//! The directory holds fixed-size segment files named by their first
//! sequence number (`00000000000000000000.seg`). A segment starts with a
//! page of header: a magic, the layout version, the first sequence
//! number, the end of what is committed, and a futex word readers sleep
//! on. Records follow, each `[length u32][crc32c u32][seq u64][payload]`
//! padded to 8 bytes; the CRC covers the sequence number and payload.
//! The writer maps its segment and copies records in (an append is a
//! copy and a store, no system call, unless a reader sleeps and must be
//! woken); readers read with `pread` and check every record. The writer
//! also mirrors its last record into the header page, so a reader that
//! follows closely takes it without a system call (checked the same way).
//!
//! One writer at a time: it holds `flock` on `dir/LOCK`, which the kernel
//! releases the moment its process dies (no timeout). Opening a writer
//! recovers the last segment: records are checked (length, CRC, sequence)
//! in order, every whole one is kept (also one whose append had not
//! returned yet, or whose committed end a power loss took), the first
//! torn or broken one and everything after it is cut off, and how many
//! bytes were dropped is reported.
//!
//! Durability (`?durability=`): `none` (the page cache: survives a killed
//! process), `flush` (`msync` when [`JournalWriter::flush`] is called: a
//! batch survives power loss once flushed), `sync` (`msync` of the record
//! after every append).
//!
//! Retention (`?retain=` bytes, `?retain_age=`): when a new segment
//! starts, whole segments go, oldest first, while the journal is larger
//! or its oldest older than that. A reader still in a removed segment
//! reads it to its end; one that needs a removed record gets
//! [`ErrorKind::FellBehind`], which says how far behind it is. A user
//! that knows it needs nothing before some record removes the segments
//! before it itself ([`JournalWriter::release_before`]; the durable work
//! queue does).
//!
//! ```no_run
//! # fn main() -> ipcx::Result<()> {
//! let mut w = ipcx::journal::JournalWriter::open("journal:/var/lib/app/events")?;
//! let seq = w.append(b"order 42 filled")?;
//! let mut r = ipcx::journal::JournalReader::open("journal:/var/lib/app/events", 0)?;
//! let (first, payload) = r.next()?;
//! # let _ = (seq, first, payload); Ok(()) }
//! ```

mod reader;
mod segment;
mod writer;

use std::path::{Path, PathBuf};

use crate::endpoint::{Address, Endpoint};
use crate::error::{Error, ErrorKind, Result};

pub use reader::JournalReader;
pub use writer::{JournalWriter, Recovery};

use segment::{HEADER, ReadAhead, Segment};

/// What an append makes durable before it returns (`?durability=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The page cache: a killed process loses nothing, a power loss may.
    None,
    /// `fdatasync` when [`JournalWriter::flush`] is called.
    Flush,
    /// `fdatasync` after every append.
    Sync,
}

/// The largest payload a journal with segments of `segment_size` bytes
/// takes.
pub(crate) fn largest_record(segment_size: u64) -> u64 {
    segment_size.max(HEADER * 2) - HEADER - segment::RECORD_HEAD as u64
}

/// Takes `dir` out of a `journal:/dir` URL and its options.
fn parse(url: &str) -> Result<(Endpoint, PathBuf)> {
    let ep = Endpoint::parse(url)?;
    match ep.address() {
        Address::Path(p) if ep.scheme() == crate::Scheme::Journal => {
            let dir = p.to_path_buf();
            Ok((ep, dir))
        }
        _ => Err(Error::new(
            ErrorKind::InvalidEndpoint("a journal is journal:/dir".into()),
            "open",
        )
        .at(url)),
    }
}

/// The segments of `dir`, by first sequence number.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("open", e).at(dir.display()))?;
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let first = name.strip_suffix(".seg")?.parse().ok()?;
            Some((first, e.path()))
        })
        .collect();
    out.sort_by_key(|(first, _)| *first);
    Ok(out)
}

/// What a journal holds (`ipcx journal stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalStat {
    /// Segment files.
    pub segments: usize,
    /// The oldest sequence number kept.
    pub first_seq: u64,
    /// The sequence number the next append gets (one past the last).
    pub next_seq: u64,
    /// Bytes of the segment files.
    pub bytes: u64,
}

/// What the journal at `url` holds; every record of its last segment is
/// checked on the way.
pub fn stat(url: &str) -> Result<JournalStat> {
    let (ep, dir) = parse(url)?;
    let all = segments(&dir)?;
    let (Some((first_seq, _)), Some((_, last))) = (all.first(), all.last()) else {
        return Err(Error::new(
            ErrorKind::InvalidEndpoint(format!("{} holds no journal", dir.display())),
            "stat",
        )
        .at(&ep));
    };
    let seg = Segment::open(last, false)?;
    let end = seg.committed().clamp(HEADER, seg.size);
    let (mut pos, mut next_seq) = (HEADER, seg.first_seq);
    let mut ahead = ReadAhead::default();
    while let Some((_, next)) = ahead
        .record_at(&seg, pos, end, next_seq)
        .map_err(|e| Error::io("stat", e))?
    {
        pos = next;
        next_seq += 1;
    }
    let bytes = all
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    Ok(JournalStat {
        segments: all.len(),
        first_seq: *first_seq,
        next_seq,
        bytes,
    })
}
