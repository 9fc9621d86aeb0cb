//! A reader of a journal: replays, then follows the writer live.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::segment::{
    HEADER, OFF_COMMITTED, OFF_FLAGS, OFF_NOTIFY, OFF_WAITERS, ReadAhead, Segment,
};
use super::{parse, segments};
use crate::endpoint::WaitStrategy;
use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// How often a reader caught up at the end of an unsealed segment looks
/// for a next one (a writer killed while starting it never sealed it).
const LOOK_INTERVAL: Duration = Duration::from_millis(50);

/// A reader of a journal: replays from a sequence number, then follows
/// the writer live.
#[derive(Debug)]
pub struct JournalReader {
    dir: PathBuf,
    seg: Segment,
    ahead: ReadAhead,
    /// When to look for a next segment while this one is not sealed.
    next_look: Instant,
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
            ahead: ReadAhead::default(),
            next_look: Instant::now(),
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

    /// Whether a next read may find something without waiting: a record
    /// published past this reader, or its segment finished (a next one to
    /// move to, or an error to give). Reads nothing.
    pub(crate) fn may_have_more(&self) -> bool {
        self.pos < self.seg.committed()
            || self.seg.word32(OFF_FLAGS).load(Ordering::Acquire) & 1 != 0
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

    pub(crate) fn next_until(&mut self, deadline: Option<Instant>) -> Result<(u64, Vec<u8>)> {
        let io = |e| Error::io("next", e);
        let spin_end = crate::deadline::far_after(self.spin);
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
                    .ahead
                    .record_at(&self.seg, self.pos, committed, self.next_seq)
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
            // its header is written: until then, as if not there). It
            // seals this one first, unless it was killed in between (the
            // next writer seals it then): an unsealed segment is looked
            // past only now and then, and before giving up, so a reader
            // that spins costs no system call per turn.
            let sealed = self.seg.word32(OFF_FLAGS).load(Ordering::Acquire) & 1 != 0;
            let expired = deadline.is_some_and(|d| Instant::now() >= d);
            if sealed || expired || Instant::now() >= self.next_look {
                self.next_look = Instant::now() + LOOK_INTERVAL;
                let path = Segment::path(&self.dir, self.next_seq);
                if self.seg.first_seq != self.next_seq
                    && path.exists()
                    && let Ok(seg) = Segment::open(&path, false)
                {
                    self.seg = seg;
                    self.ahead.clear();
                    self.pos = HEADER;
                    continue;
                }
                // Sealed, and its successor gone: retention removed the
                // segment this reader needs next (it fell behind by more
                // than the journal keeps).
                if sealed && !path.exists() {
                    let oldest = segments(&self.dir)?.first().map_or(self.next_seq, |s| s.0);
                    return Err(Error::new(
                        ErrorKind::FellBehind {
                            wanted: self.next_seq,
                            oldest,
                        },
                        "next",
                    ));
                }
            }
            if expired {
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
            let slice = deadline.map_or(LOOK_INTERVAL, |d| {
                d.saturating_duration_since(Instant::now())
                    .min(LOOK_INTERVAL)
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
