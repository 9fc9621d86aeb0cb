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
//! woken); readers read with `pread` and check every record.
//!
//! One writer at a time: it holds `flock` on `dir/LOCK`, which the kernel
//! releases the moment its process dies (no timeout). Opening a writer
//! recovers the last segment: records are checked (length, CRC, sequence)
//! up to the committed end, anything after it (a record whose append had
//! not returned) and anything broken is cut off, and how many bytes were
//! dropped is reported.
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
//! [`ErrorKind::FellBehind`], which says how far behind it is.
//!
//! ```no_run
//! # fn main() -> ipcx::Result<()> {
//! let mut w = ipcx::journal::JournalWriter::open("journal:/var/lib/app/events")?;
//! let seq = w.append(b"order 42 filled")?;
//! let mut r = ipcx::journal::JournalReader::open("journal:/var/lib/app/events", 0)?;
//! let (first, payload) = r.next()?;
//! # let _ = (seq, first, payload); Ok(()) }
//! ```

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::endpoint::{Address, Endpoint, WaitStrategy};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;

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

const MAGIC: u64 = u64::from_le_bytes(*b"IPCXJRN1");
const VERSION: u32 = 1;
/// The header page; records start after it.
const HEADER: u64 = 4096;
/// Bytes before a record's payload.
const RECORD_HEAD: usize = 16;

/// A segment file: its descriptor and its header page, mapped.
#[derive(Debug)]
struct Segment {
    file: File,
    map: sys::shm::Mapping,
    first_seq: u64,
    size: u64,
}

/// The header page's fields, at fixed offsets.
const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
/// Bit 0: sealed (the writer moved on to the next segment).
const OFF_FLAGS: usize = 12;
const OFF_FIRST: usize = 16;
const OFF_SIZE: usize = 24;
const OFF_COMMITTED: usize = 32;
const OFF_NOTIFY: usize = 40;
/// Readers asleep on the futex: the writer wakes only when there are.
const OFF_WAITERS: usize = 44;

impl Segment {
    #[allow(unsafe_code)]
    fn word64(&self, off: usize) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned and at least HEADER bytes, so
        // `off` (a multiple of 8 below 48) is aligned and inside it; it
        // lives as long as `self`; an atomic may hold any bit pattern, so
        // whatever another process writes there is a valid value.
        unsafe { &*(self.map.as_ptr().add(off).cast::<AtomicU64>()) }
    }

    #[allow(unsafe_code)]
    fn word32(&self, off: usize) -> &AtomicU32 {
        // SAFETY: as for `word64`, at a multiple of 4.
        unsafe { &*(self.map.as_ptr().add(off).cast::<AtomicU32>()) }
    }

    fn committed(&self) -> u64 {
        self.word64(OFF_COMMITTED).load(Ordering::Acquire)
    }

    fn path(dir: &Path, first_seq: u64) -> PathBuf {
        dir.join(format!("{first_seq:020}.seg"))
    }

    /// Makes a new segment whose first record will be `first_seq`: under
    /// a temporary name until its header is written, then renamed, so
    /// that a segment file is never seen half made (a writer killed in
    /// between leaves only the temporary file, which the next removes).
    fn create(dir: &Path, first_seq: u64, size: u64) -> std::io::Result<Segment> {
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
        std::fs::rename(&tmp, &path)?;
        Ok(seg)
    }

    /// Opens an existing segment, checking its header.
    fn open(path: &Path, write: bool) -> Result<Segment> {
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
        if seg.word64(OFF_MAGIC).load(Ordering::Acquire) != MAGIC {
            return Err(bad(
                "the file's header has no ipcx journal magic: not a journal segment, \
                 or its header was overwritten; move it out of the journal directory"
                    .into(),
            ));
        }
        let version = seg.word32(OFF_VERSION).load(Ordering::Relaxed);
        if version != VERSION {
            return Err(Error::new(
                ErrorKind::VersionMismatch {
                    found: version,
                    expected: VERSION,
                },
                "open",
            )
            .at(path.display()));
        }
        seg.first_seq = seg.word64(OFF_FIRST).load(Ordering::Relaxed);
        Ok(seg)
    }

    /// Reads and checks the record at `pos` (within `end`), expecting
    /// sequence `seq`: its payload and where the next record starts;
    /// `None` if what is there is not a whole, correct record.
    fn record_at(&self, pos: u64, end: u64, seq: u64) -> std::io::Result<Option<(Vec<u8>, u64)>> {
        if pos + RECORD_HEAD as u64 > end {
            return Ok(None);
        }
        let mut head = [0u8; RECORD_HEAD];
        if !self.read(pos, &mut head)? {
            return Ok(None);
        }
        let len = u64::from(u32::from_le_bytes([head[0], head[1], head[2], head[3]]));
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let at_seq = u64::from_le_bytes([
            head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
        ]);
        let next = pos + RECORD_HEAD as u64 + padded(len);
        if at_seq != seq || next > end {
            return Ok(None);
        }
        let mut payload = vec![0u8; len as usize];
        if !self.read(pos + RECORD_HEAD as u64, &mut payload)? {
            return Ok(None);
        }
        if crc32c::crc32c_append(crc32c::crc32c(&head[8..16]), &payload) != crc {
            return Ok(None);
        }
        Ok(Some((payload, next)))
    }
}

impl Segment {
    /// Fills `buf` from `pos` by `pread` (never through a mapping: a
    /// segment someone truncates must give an error, not `SIGBUS`);
    /// `false` if the segment ends first.
    fn read(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<bool> {
        Ok(sys::fs::read_at(self.file.as_fd(), buf, pos)? == buf.len())
    }
}

fn padded(len: u64) -> u64 {
    (len + 7) & !7
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

/// What opening a writer found at the end of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// The sequence number the next append gets.
    pub next_seq: u64,
    /// Bytes cut off the end: a record whose append had not returned when
    /// its writer died, or a broken one.
    pub dropped_bytes: u64,
}

/// The one writer of a journal.
#[derive(Debug)]
pub struct JournalWriter {
    dir: PathBuf,
    _lock: File,
    seg: Segment,
    /// The whole current segment, mapped: records are copied in.
    data: sys::shm::Mapping,
    next_seq: u64,
    end: u64,
    durability: Durability,
    segment_size: u64,
    retain: Option<u64>,
    retain_age: Option<Duration>,
    recovery: Recovery,
    buf: Vec<u8>,
}

impl JournalWriter {
    /// Opens `journal:/dir` for appending (made if missing), as its only
    /// writer: another live writer is [`ErrorKind::InUse`]. Options:
    /// `?size=` (segment bytes, default 1 MiB), `?durability=none|flush|sync`.
    pub fn open(url: &str) -> Result<JournalWriter> {
        let (ep, dir) = parse(url)?;
        let o = ep.options();
        let io = |e| Error::io("open", e).at(&ep);
        std::fs::create_dir_all(&dir).map_err(io)?;
        let lock = sys::fs::open_private_file(&dir.join("LOCK"), true).map_err(io)?;
        // A lock is briefly held too by a child another thread forks
        // while the last writer's descriptor was open (until its exec
        // closes it): a live writer still holds it after 100 ms.
        let mut locked = false;
        for _ in 0..50 {
            locked = sys::fs::try_lock(&lock).map_err(io)?;
            if locked {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if !locked {
            return Err(Error::new(
                ErrorKind::occupied(format!(
                    "{} has a live writer (it holds {}/LOCK); one writer at a time",
                    dir.display(),
                    dir.display()
                )),
                "open",
            )
            .at(&ep));
        }
        // A segment a killed writer was still making.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".seg.tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let segment_size = (o.size as u64).max(HEADER * 2);
        let (seg, next_seq, end, dropped) = match segments(&dir)?.last() {
            None => (
                Segment::create(&dir, 0, segment_size).map_err(io)?,
                0,
                HEADER,
                0,
            ),
            Some((_, path)) => recover(Segment::open(path, true)?)?,
        };
        let data = writable(&seg).map_err(io)?;
        Ok(JournalWriter {
            dir,
            _lock: lock,
            seg,
            data,
            next_seq,
            end,
            durability: o.durability,
            segment_size,
            retain: o.retain.map(|n| n as u64),
            retain_age: o.retain_age,
            recovery: Recovery {
                next_seq,
                dropped_bytes: dropped,
            },
            buf: Vec::new(),
        })
    }

    /// What opening found at the end of the journal.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Appends `payload`; returns its sequence number. When it returns,
    /// the record survives this process being killed (and, with
    /// `?durability=sync`, a power loss).
    pub fn append(&mut self, payload: &[u8]) -> Result<u64> {
        let need = RECORD_HEAD as u64 + padded(payload.len() as u64);
        if payload.len() > u32::MAX as usize || HEADER + need > self.segment_size {
            return Err(Error::new(
                ErrorKind::MessageTooLarge {
                    len: payload.len() as u64,
                    max: self.segment_size - HEADER - RECORD_HEAD as u64,
                },
                "append",
            ));
        }
        if self.end + need > self.seg.size {
            self.roll()?;
        }
        let seq = self.next_seq;
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(payload);
        b.resize(need as usize, 0);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), payload);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        let io = |e| Error::io("append", e);
        // SAFETY: this writer alone writes the segment's record area (the
        // journal's lock), through this mapping only, and it is `&mut`;
        // readers in this process read only bytes below the committed end,
        // which this write is past.
        #[allow(unsafe_code)]
        unsafe { self.data.write(self.end as usize, b) }.map_err(io)?;
        if self.durability == Durability::Sync {
            self.data
                .sync(self.end as usize, need as usize)
                .map_err(io)?;
        }
        self.end += need;
        self.next_seq += 1;
        self.publish();
        Ok(seq)
    }

    /// Makes every append so far durable (`fdatasync`); what
    /// `?durability=flush` calls per batch.
    pub fn flush(&mut self) -> Result<()> {
        self.data
            .sync(0, self.end as usize)
            .map_err(|e| Error::io("flush", e))
    }

    /// Publishes the committed end and wakes readers, if any sleep: a
    /// reader counts itself in `waiters` before its last look, so either
    /// it sees the new end or this sees it waiting.
    fn publish(&self) {
        self.seg
            .word64(OFF_COMMITTED)
            .store(self.end, Ordering::SeqCst);
        if self.seg.word32(OFF_WAITERS).load(Ordering::SeqCst) != 0 {
            let notify = self.seg.word32(OFF_NOTIFY);
            notify.fetch_add(1, Ordering::Release);
            let _ = sys::futex::wake(notify, sys::futex::ALL);
        }
    }

    /// Starts the next segment; the full one stays as it is.
    fn roll(&mut self) -> Result<()> {
        if self.durability != Durability::None {
            self.flush()?;
        }
        let next = Segment::create(&self.dir, self.next_seq, self.segment_size)
            .map_err(|e| Error::io("append", e).at(self.dir.display()))?;
        // Readers of the old one see it end where it ends: it is sealed,
        // and the new file says where to go on.
        self.seg.word32(OFF_FLAGS).fetch_or(1, Ordering::Release);
        let notify = self.seg.word32(OFF_NOTIFY);
        notify.fetch_add(1, Ordering::Release);
        let _ = sys::futex::wake(notify, sys::futex::ALL);
        self.data = writable(&next).map_err(|e| Error::io("append", e))?;
        self.seg = next;
        self.end = HEADER;
        self.retire()
    }

    /// Removes whole segments, oldest first, while the journal holds more
    /// than `?retain=` bytes or its oldest is older than `?retain_age=`
    /// (never the one being written). Readers still in a removed one read
    /// on; one that needs it later gets [`ErrorKind::FellBehind`].
    fn retire(&self) -> Result<()> {
        if self.retain.is_none() && self.retain_age.is_none() {
            return Ok(());
        }
        let all = segments(&self.dir)?;
        let mut total: u64 = all.len() as u64 * self.segment_size;
        for (first, path) in &all {
            if *first == self.seg.first_seq {
                break;
            }
            let too_big = self.retain.is_some_and(|max| total > max);
            let too_old = self.retain_age.is_some_and(|age| {
                std::fs::metadata(path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|e| e > age))
            });
            if !too_big && !too_old {
                break;
            }
            std::fs::remove_file(path).map_err(|e| Error::io("retain", e).at(path.display()))?;
            total -= self.segment_size;
        }
        Ok(())
    }
}

/// The whole segment mapped for the writer, every page made writable at
/// once: an append then takes no page fault (it would, once per page, and
/// that is its tail latency).
fn writable(seg: &Segment) -> std::io::Result<sys::shm::Mapping> {
    let map = sys::shm::Mapping::new(seg.file.as_fd(), seg.size as usize)?;
    if let Err(e) = map.populate_for_writing() {
        tracing::debug!(error = %e, "journal: pages not made writable ahead (an older kernel?)");
    }
    Ok(map)
}

/// Checks the last segment's records up to its committed end and cuts
/// off what is after the last good one.
fn recover(seg: Segment) -> Result<(Segment, u64, u64, u64)> {
    let io = |e| Error::io("recover", e);
    let committed = seg.committed().clamp(HEADER, seg.size);
    let (mut pos, mut seq) = (HEADER, seg.first_seq);
    while let Some((_, next)) = seg.record_at(pos, committed, seq).map_err(io)? {
        pos = next;
        seq += 1;
    }
    // Bytes written after the last good record (a torn append, or
    // damage): counted up to the last non-zero byte, then zeroed.
    let mut tail = vec![0u8; (seg.size - pos) as usize];
    let got = sys::fs::read_at(seg.file.as_fd(), &mut tail, pos).map_err(io)?;
    let dropped = tail[..got]
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1);
    if dropped > 0 {
        sys::fs::write_all_at(seg.file.as_fd(), &vec![0; dropped as usize], pos).map_err(io)?;
        tracing::warn!(
            dropped,
            next_seq = seq,
            "journal: cut off a torn or broken tail"
        );
    }
    seg.word64(OFF_COMMITTED).store(pos, Ordering::Release);
    Ok((seg, seq, pos, dropped))
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
    while let Some((_, next)) = seg
        .record_at(pos, end, next_seq)
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

/// A reader of a journal: replays from a sequence number, then follows
/// the writer live.
#[derive(Debug)]
pub struct JournalReader {
    dir: PathBuf,
    seg: Segment,
    pos: u64,
    next_seq: u64,
    wait: WaitStrategy,
    spin: Duration,
}

impl JournalReader {
    /// Opens `journal:/dir` to read from sequence number `from` (0: the
    /// start). Waits follow `?wait=` (block: a futex in the segment's
    /// header; spin; adaptive: `?spin=` of spinning, then block).
    pub fn open(url: &str, from: u64) -> Result<JournalReader> {
        let (ep, dir) = parse(url)?;
        let o = ep.options();
        let all = segments(&dir)?;
        let Some((_, path)) = all
            .iter()
            .rev()
            .find(|(first, _)| *first <= from)
            .or(all.first())
        else {
            return Err(Error::new(
                ErrorKind::InvalidEndpoint(format!(
                    "{} holds no journal: open its writer first",
                    dir.display()
                )),
                "open",
            )
            .at(&ep));
        };
        let seg = Segment::open(path, false)?;
        if from < seg.first_seq {
            return Err(Error::new(
                ErrorKind::FellBehind {
                    wanted: from,
                    oldest: seg.first_seq,
                },
                "open",
            )
            .at(&ep));
        }
        let mut r = JournalReader {
            dir,
            pos: HEADER,
            next_seq: seg.first_seq,
            seg,
            wait: o.wait,
            spin: o.spin,
        };
        while r.next_seq < from {
            let end = r.next_seq;
            r.next_until(Some(Instant::now()))
                .map_err(|e| match e.kind() {
                    ErrorKind::WouldBlock => Error::new(
                        ErrorKind::OutOfBounds(format!(
                            "sequence {from} was not appended yet (the journal ends before {end})"
                        )),
                        "open",
                    )
                    .at(&ep),
                    _ => e,
                })?;
        }
        Ok(r)
    }

    /// The next record and its sequence number, waiting for the writer
    /// as long as it takes.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<(u64, Vec<u8>)> {
        self.next_until(None)
    }

    /// The next record if there is one now.
    pub fn try_next(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        match self.next_until(Some(Instant::now())) {
            Ok(r) => Ok(Some(r)),
            Err(e) if *e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`JournalReader::next`], at most `timeout` ([`ErrorKind::TimedOut`]).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<(u64, Vec<u8>)> {
        match self.next_until(crate::deadline::after(timeout)) {
            Err(e) if *e.kind() == ErrorKind::WouldBlock => {
                Err(Error::new(ErrorKind::TimedOut, "next"))
            }
            r => r,
        }
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Result<(u64, Vec<u8>)> {
        let io = |e| Error::io("next", e);
        let spin_end = Instant::now() + self.spin;
        loop {
            let notify = self.seg.word32(OFF_NOTIFY).load(Ordering::Acquire);
            let committed = self.seg.committed();
            if committed > self.seg.size {
                return Err(Error::new(
                    ErrorKind::Corrupt(format!(
                        "a committed end of {committed} in a segment of {} bytes",
                        self.seg.size
                    )),
                    "next",
                ));
            }
            if self.pos < committed {
                return match self
                    .seg
                    .record_at(self.pos, committed, self.next_seq)
                    .map_err(io)?
                {
                    Some((payload, next)) => {
                        self.pos = next;
                        self.next_seq += 1;
                        Ok((self.next_seq - 1, payload))
                    }
                    None => Err(Error::new(
                        ErrorKind::Corrupt(format!(
                            "the record of sequence {} at byte {} is broken",
                            self.next_seq, self.pos
                        )),
                        "next",
                    )),
                };
            }
            // The writer moved on to a new segment that starts here (once
            // its header is written: until then, as if not there).
            let path = Segment::path(&self.dir, self.next_seq);
            if self.seg.first_seq != self.next_seq && path.exists() {
                if let Ok(seg) = Segment::open(&path, false) {
                    self.seg = seg;
                    self.pos = HEADER;
                    continue;
                }
            }
            // Sealed, and its successor gone: retention removed the segment
            // this reader needs next (it fell behind by more than the
            // journal keeps).
            if self.seg.word32(OFF_FLAGS).load(Ordering::Acquire) & 1 != 0 && !path.exists() {
                let oldest = segments(&self.dir)?.first().map_or(self.next_seq, |s| s.0);
                return Err(Error::new(
                    ErrorKind::FellBehind {
                        wanted: self.next_seq,
                        oldest,
                    },
                    "next",
                ));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(ErrorKind::WouldBlock, "next"));
            }
            let spinning = match self.wait {
                WaitStrategy::Spin => true,
                WaitStrategy::Adaptive => Instant::now() < spin_end,
                WaitStrategy::Block => false,
            };
            if spinning {
                std::hint::spin_loop();
                continue;
            }
            // Sleep until the writer publishes (or a slice passes: a new
            // segment is found by looking).
            let slice = deadline.map_or(Duration::from_millis(50), |d| {
                d.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50))
            });
            let waiters = self.seg.word32(OFF_WAITERS);
            waiters.fetch_add(1, Ordering::SeqCst);
            if self.seg.word64(OFF_COMMITTED).load(Ordering::SeqCst) <= self.pos {
                let _ = sys::futex::wait(self.seg.word32(OFF_NOTIFY), notify, Some(slice));
            }
            waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
