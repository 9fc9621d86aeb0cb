//! A segment file: its header page, mapped, and its records, read by
//! `pread` (or from the header's mirror of the last record).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use crate::error::{Error, ErrorKind, Result};
use crate::stamp::Stamp;
use crate::sys;

pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"IPCXJRN1");
pub(super) const VERSION: u32 = 1;
/// The header page; records start after it.
pub(super) const HEADER: u64 = 4096;
/// Bytes before a record's payload.
pub(super) const RECORD_HEAD: usize = 16;

/// A segment file: its descriptor and its header page, mapped.
#[derive(Debug)]
pub(super) struct Segment {
    pub(super) file: File,
    map: sys::shm::Mapping,
    pub(super) first_seq: u64,
    pub(super) size: u64,
}

/// The header page's fields, at fixed offsets.
pub(super) const OFF_MAGIC: usize = 0;
pub(super) const OFF_VERSION: usize = 8;
/// Bit 0: sealed (the writer moved on to the next segment).
pub(super) const OFF_FLAGS: usize = 12;
pub(super) const OFF_FIRST: usize = 16;
pub(super) const OFF_SIZE: usize = 24;
pub(super) const OFF_COMMITTED: usize = 32;
pub(super) const OFF_NOTIFY: usize = 40;
/// Readers asleep on the futex: the writer wakes only when there are.
pub(super) const OFF_WAITERS: usize = 44;
/// The mirror of the last record appended (if it fits), for readers that
/// follow the writer closely: they take it from this mapped page instead
/// of a `pread`. A seqlock: odd while the writer rewrites it.
const OFF_MIRROR_VERSION: usize = 48;
/// Where the mirrored record is in the segment, and its bytes (padded).
const OFF_MIRROR_POS: usize = 56;
const OFF_MIRROR_LEN: usize = 64;
const OFF_MIRROR: usize = 128;
/// The largest record (head and padded payload) mirrored.
pub(super) const MIRROR_MAX: usize = HEADER as usize - OFF_MIRROR;

impl Segment {
    #[allow(unsafe_code)]
    pub(super) fn word64(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off < HEADER as usize);
        // SAFETY: the mapping is page-aligned and at least HEADER bytes, so
        // `off` (a multiple of 8 below HEADER) is aligned and inside it; it
        // lives as long as `self`; an atomic may hold any bit pattern, so
        // whatever another process writes there is a valid value.
        unsafe { &*(self.map.as_ptr().add(off).cast::<AtomicU64>()) }
    }

    #[allow(unsafe_code)]
    pub(super) fn word32(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off < HEADER as usize);
        // SAFETY: as for `word64`, at a multiple of 4.
        unsafe { &*(self.map.as_ptr().add(off).cast::<AtomicU32>()) }
    }

    pub(super) fn committed(&self) -> u64 {
        self.word64(OFF_COMMITTED).load(Ordering::Acquire)
    }

    pub(super) fn path(dir: &Path, first_seq: u64) -> PathBuf {
        dir.join(format!("{first_seq:020}.seg"))
    }

    /// Makes a new segment whose first record will be `first_seq`: under
    /// a temporary name until its header is written, then renamed, so
    /// that a segment file is never seen half made (a writer killed in
    /// between leaves only the temporary file, which the next removes).
    ///
    /// `durable`: its header reaches the disk before the rename, and the
    /// rename before this returns (`fsync` of the directory), so that a
    /// power loss never leaves a segment without its header, nor loses one
    /// whose records were synced.
    pub(super) fn create(
        dir: &Path,
        first_seq: u64,
        size: u64,
        durable: bool,
    ) -> std::io::Result<Segment> {
        let path = Segment::path(dir, first_seq);
        let tmp = path.with_extension("seg.tmp");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.set_len(size)?;
        let map = sys::shm::Mapping::new(file.as_fd(), HEADER as usize)?;
        let seg = Segment {
            file,
            map,
            first_seq,
            size,
        };
        seg.word64(OFF_FIRST).store(first_seq, Ordering::Relaxed);
        seg.word64(OFF_SIZE).store(size, Ordering::Relaxed);
        seg.word64(OFF_COMMITTED).store(HEADER, Ordering::Relaxed);
        seg.word32(OFF_VERSION).store(VERSION, Ordering::Relaxed);
        seg.word64(OFF_MAGIC).store(MAGIC, Ordering::Release);
        if path.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists already", path.display()),
            ));
        }
        if durable {
            seg.map.sync(0, HEADER as usize)?;
        }
        std::fs::rename(&tmp, &path)?;
        if durable {
            File::open(dir)?.sync_all()?;
        }
        Ok(seg)
    }

    /// Opens an existing segment, checking its header.
    pub(super) fn open(path: &Path, write: bool) -> Result<Segment> {
        let io = |e| Error::io("open", e).at(path.display());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let bad = |why: String| Error::new(ErrorKind::Corrupt(why), "open").at(path.display());
        if len < HEADER * 2 {
            return Err(bad(format!(
                "the journal segment of {len} bytes is too short for its header; \
                 restore it from a copy, or remove the journal directory"
            )));
        }
        // Read-only readers still map read-write: the header's futex word
        // and committed end are only read, but mapping needs one mode.
        let file = if write {
            file
        } else {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(io)?
        };
        let map = sys::shm::Mapping::new(file.as_fd(), HEADER as usize).map_err(io)?;
        let mut seg = Segment {
            file,
            map,
            first_seq: 0,
            size: len,
        };
        let stamp = Stamp::of(
            seg.word64(OFF_MAGIC).load(Ordering::Acquire),
            MAGIC,
            seg.word32(OFF_VERSION).load(Ordering::Relaxed),
            VERSION,
        );
        match stamp {
            Stamp::Ready => {}
            // A segment is written whole before it is renamed into place:
            // any other magic, 0 too, was written over it.
            Stamp::Initializing | Stamp::Foreign(_) => {
                return Err(bad(
                    "the file's header has no ipcx journal magic: not a journal segment, \
                     or its header was overwritten; move it out of the journal directory"
                        .into(),
                ));
            }
            Stamp::OtherVersion(found) => {
                return Err(Error::new(
                    ErrorKind::VersionMismatch {
                        found,
                        expected: VERSION,
                    },
                    "open",
                )
                .at(path.display()));
            }
        }
        seg.first_seq = seg.word64(OFF_FIRST).load(Ordering::Relaxed);
        Ok(seg)
    }

    /// Marks the segment finished (the writer moved on to the next one)
    /// and wakes its readers.
    pub(super) fn seal(&self) {
        self.word32(OFF_FLAGS).fetch_or(1, Ordering::Release);
        let notify = self.word32(OFF_NOTIFY);
        notify.fetch_add(1, Ordering::Release);
        let _ = sys::futex::wake(notify, sys::futex::ALL);
    }

    /// Mirrors `record` (a whole record, at `pos`, length a multiple of 8
    /// and at most [`MIRROR_MAX`]) into the header page. Word by word with
    /// atomics, so a reader in this process or another never races it.
    pub(super) fn mirror(&self, pos: u64, record: &[u8]) {
        let version = self.word64(OFF_MIRROR_VERSION);
        // Odd while rewriting, whatever a killed writer left there.
        let odd = version.load(Ordering::Relaxed) | 1;
        version.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        self.word64(OFF_MIRROR_POS).store(pos, Ordering::Relaxed);
        self.word64(OFF_MIRROR_LEN)
            .store(record.len() as u64, Ordering::Relaxed);
        for (i, word) in record.chunks_exact(8).enumerate() {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.word64(OFF_MIRROR + i * 8)
                .store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
        version.store(odd + 1, Ordering::Release);
    }

    /// Empties the mirror (no position), so that no record is taken from
    /// it until the next one is mirrored: recovery, and an append too
    /// large to mirror, make it stale.
    pub(super) fn unmirror(&self) {
        let version = self.word64(OFF_MIRROR_VERSION);
        let odd = version.load(Ordering::Relaxed) | 1;
        version.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
        self.word64(OFF_MIRROR_POS)
            .store(u64::MAX, Ordering::Relaxed);
        version.store(odd + 1, Ordering::Release);
    }

    /// The mirrored record if it is the one at `pos` and ends by `end`,
    /// copied into `out`; `false` if not, or if the writer is rewriting
    /// it this instant. What it holds is checked by the caller like any
    /// record read from the file.
    fn mirrored(&self, pos: u64, end: u64, out: &mut Vec<u8>) -> bool {
        let version = self.word64(OFF_MIRROR_VERSION);
        let before = version.load(Ordering::Acquire);
        if before & 1 != 0 || self.word64(OFF_MIRROR_POS).load(Ordering::Relaxed) != pos {
            return false;
        }
        let len = self.word64(OFF_MIRROR_LEN).load(Ordering::Relaxed);
        if len as usize > MIRROR_MAX || !len.is_multiple_of(8) || pos.saturating_add(len) > end {
            return false;
        }
        out.clear();
        for i in 0..len as usize / 8 {
            let w = self.word64(OFF_MIRROR + i * 8).load(Ordering::Relaxed);
            out.extend_from_slice(&w.to_ne_bytes());
        }
        fence(Ordering::Acquire);
        version.load(Ordering::Relaxed) == before
    }
}

/// Bytes of a segment read ahead by one `pread`: a reader that is behind
/// takes many records per call, one that follows the writer takes what
/// was published since it last looked. Only bytes below a committed end
/// are read, and those never change, so what is held stays right.
#[derive(Debug, Default)]
pub(super) struct ReadAhead {
    buf: Vec<u8>,
    /// Where `buf` starts in the segment.
    at: u64,
    /// `buf` holds the writer's mirror, not bytes read from the file.
    mirrored: bool,
    /// Never take the mirror (recovery: only what is in the file counts).
    file_only: bool,
}

/// At most this much is read ahead at once (more if a record is larger).
const WINDOW: u64 = 64 * 1024;

impl ReadAhead {
    /// A read-ahead that reads the file only, never the mirror: what
    /// recovery uses (after a power loss the header page can hold a
    /// record the file lost).
    pub(super) fn file_only() -> ReadAhead {
        ReadAhead {
            file_only: true,
            ..ReadAhead::default()
        }
    }

    /// Forgets what was read (the reader moved to another segment).
    pub(super) fn clear(&mut self) {
        self.buf.clear();
    }

    /// `len` bytes at `pos`, all below `end`; `None` if the segment ends
    /// first. Takes the writer's mirror of its last record if that is the
    /// one (and `mirror` allows), else reads by `pread` (never through a
    /// mapping of the records: a segment someone truncates must give an
    /// error, not `SIGBUS`).
    fn bytes(
        &mut self,
        seg: &Segment,
        pos: u64,
        len: u64,
        end: u64,
        mirror: bool,
    ) -> std::io::Result<Option<&[u8]>> {
        let held = self.at..self.at + self.buf.len() as u64;
        if pos < held.start || pos + len > held.end {
            self.at = pos;
            self.mirrored = mirror && seg.mirrored(pos, end, &mut self.buf);
            if !self.mirrored {
                let want = (end - pos).min(WINDOW).max(len);
                self.buf.resize(want as usize, 0);
                let got = sys::fs::read_at(seg.file.as_fd(), &mut self.buf, pos)?;
                self.buf.truncate(got);
            }
        }
        if pos + len > self.at + self.buf.len() as u64 {
            return Ok(None);
        }
        let from = (pos - self.at) as usize;
        Ok(Some(&self.buf[from..from + len as usize]))
    }

    /// Reads and checks the record at `pos` of `seg` (within `end`),
    /// expecting sequence `seq`: its payload and where the next record
    /// starts; `None` if what is there is not a whole, correct record.
    /// A mirror that does not check out (damaged, or a peer's scribble)
    /// is passed over for the file.
    pub(super) fn record_at(
        &mut self,
        seg: &Segment,
        pos: u64,
        end: u64,
        seq: u64,
    ) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        if self.file_only {
            return self.checked_record(seg, pos, end, seq, false);
        }
        match self.checked_record(seg, pos, end, seq, true)? {
            None if self.mirrored => {
                self.buf.clear();
                self.checked_record(seg, pos, end, seq, false)
            }
            r => Ok(r),
        }
    }

    fn checked_record(
        &mut self,
        seg: &Segment,
        pos: u64,
        end: u64,
        seq: u64,
        mirror: bool,
    ) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        if pos + RECORD_HEAD as u64 > end {
            return Ok(None);
        }
        let Some(head) = self.bytes(seg, pos, RECORD_HEAD as u64, end, mirror)? else {
            return Ok(None);
        };
        let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (len, crc) = (u64::from(word(0)), word(4));
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&head[8..16]);
        let next = pos + RECORD_HEAD as u64 + padded(len);
        if u64::from_le_bytes(seq_bytes) != seq || next > end {
            return Ok(None);
        }
        let Some(payload) = self.bytes(seg, pos + RECORD_HEAD as u64, len, end, mirror)? else {
            return Ok(None);
        };
        if crc32c::crc32c_append(crc32c::crc32c(&seq_bytes), payload) != crc {
            return Ok(None);
        }
        Ok(Some((payload.to_vec(), next)))
    }
}

pub(super) fn padded(len: u64) -> u64 {
    (len + 7) & !7
}
