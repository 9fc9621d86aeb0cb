//! The one writer of a journal: appends, recovery, rolling and retention.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::segment::{
    HEADER, MIRROR_MAX, OFF_COMMITTED, OFF_NOTIFY, OFF_WAITERS, RECORD_HEAD, ReadAhead, Segment,
    padded,
};
use super::{Durability, parse, segments};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// What opening a writer found at the end of the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// The sequence number the next append gets.
    pub next_seq: u64,
    /// Bytes cut off the end: a record torn because its writer died while
    /// writing it, or a broken one, and what followed it.
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
        let give_up = std::time::Instant::now() + Duration::from_millis(100);
        let mut backoff = crate::deadline::Backoff::new(Duration::from_millis(2));
        let locked = loop {
            let locked = sys::fs::try_lock(&lock).map_err(io)?;
            if locked || !backoff.sleep_until(give_up) {
                break locked;
            }
        };
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
        let all = segments(&dir)?;
        // A writer killed between starting a segment and sealing the one
        // before left it unsealed: readers look past a sealed one at once.
        if let [.., (_, before), _] = all.as_slice() {
            Segment::open(before, true)?.seal();
        }
        let (seg, next_seq, end, dropped) = match all.last() {
            None => (
                Segment::create(&dir, 0, segment_size, o.durability != Durability::None)
                    .map_err(io)?,
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

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
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
        crate::copy::extend(b, payload);
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
        if b.len() <= MIRROR_MAX {
            self.seg.mirror(self.end, b);
        } else {
            self.seg.unmirror();
        }
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

    /// Removes the whole segments every record of which comes before
    /// sequence number `seq` (never the one being written): for a user of
    /// the journal that knows it needs nothing older. Returns how many
    /// went. A reader still in one reads on; one that needs it later gets
    /// [`ErrorKind::FellBehind`].
    pub fn release_before(&mut self, seq: u64) -> Result<usize> {
        let all = segments(&self.dir)?;
        let mut gone = 0;
        for pair in all.windows(2) {
            let [(first, path), (next_first, _)] = pair else {
                break;
            };
            if *first == self.seg.first_seq || *next_first > seq {
                break;
            }
            std::fs::remove_file(path).map_err(|e| Error::io("release", e).at(path.display()))?;
            gone += 1;
        }
        Ok(gone)
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
        let durable = self.durability != Durability::None;
        let next = Segment::create(&self.dir, self.next_seq, self.segment_size, durable)
            .map_err(|e| Error::io("append", e).at(self.dir.display()))?;
        // Readers of the old one see it end where it ends: it is sealed,
        // and the new file says where to go on.
        self.seg.seal();
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

/// Checks the last segment's records in order and cuts off what is after
/// the last good one.
fn recover(seg: Segment) -> Result<(Segment, u64, u64, u64)> {
    let io = |e| Error::io("recover", e);
    let (mut pos, mut seq) = (HEADER, seg.first_seq);
    // The file only: after a power loss the header page may have reached
    // the disk with a mirrored record whose own page did not.
    let mut ahead = ReadAhead::file_only();
    seg.unmirror();
    // Past the committed end too: a synced record is on disk before the
    // header page that says it is committed (`?durability=sync` syncs the
    // record's pages only), and a record is whole or not by itself.
    while let Some((_, next)) = ahead.record_at(&seg, pos, seg.size, seq).map_err(io)? {
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
