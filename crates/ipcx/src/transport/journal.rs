//! `journal:/dir` as a link: it receives what is appended to the journal
//! (from `?from=`, by default from the end), and sends by appending. The
//! journal's one-writer rule holds: a link takes the writer's lock at its
//! first send and keeps it, so a send while another process writes the
//! journal is [`ErrorKind::InUse`]; a link that only reads never takes it.
//!
//! A journal has no peers: as with a queue, a link reads what anyone
//! appends, its own records included, and two journals joined with
//! [`Link::unsplit`] make a duplex link.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{Link, Until};
use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{JournalReader, JournalWriter};
use crate::sys;

/// The receiving half of a journal link: a reader following the journal.
///
/// A journal has no descriptor that becomes readable: what event loops
/// (and tokio) wait on is an eventfd that a watcher thread (started when first asked
/// for) raises when the journal holds a record this half has not taken;
/// a receive that finds nothing lowers it.
#[derive(Debug)]
pub(crate) struct JournalRx {
    url: String,
    reader: JournalReader,
    msg: Vec<u8>,
    seq: u64,
    /// The sequence number this half takes next, for the watcher; locked
    /// while the watcher checks it and raises, and while this half moves
    /// it or lowers, so a raise is never for a record already taken.
    next: Arc<Mutex<u64>>,
    ready: OwnedFd,
    watcher: OnceLock<Arc<AtomicBool>>,
}

impl JournalRx {
    /// Waits for the next record, which this then holds.
    pub(crate) fn next(&mut self, until: Until) -> Result<()> {
        let got = match self.reader.next_until(until.deadline()) {
            Err(e) if *e.kind() == ErrorKind::WouldBlock && self.watcher.get().is_some() => {
                // Lowered, then one more look: a record the watcher saw
                // before it was lowered is found now.
                {
                    let _next = lock(&self.next);
                    let _ = sys::eventfd::take(self.ready.as_fd());
                }
                self.reader.next_until(Some(Instant::now()))
            }
            r => r,
        };
        let (seq, msg) = match got {
            Err(e) if *e.kind() == ErrorKind::WouldBlock && until != Until::NoWait => {
                return Err(Error::new(ErrorKind::TimedOut, "recv"));
            }
            r => r?,
        };
        self.seq = seq;
        self.msg = msg;
        *lock(&self.next) = seq + 1;
        Ok(())
    }

    /// For a poller told the eventfd is raised: whether a receive may
    /// find a record. Raised for records already taken, it is lowered
    /// (under the lock, so the watcher raises it again for any later one).
    pub(crate) fn confirm(&mut self) -> bool {
        let _next = lock(&self.next);
        if self.reader.may_have_more() {
            return true;
        }
        let _ = sys::eventfd::take(self.ready.as_fd());
        false
    }

    /// What an event loop waits on (the watcher starts on first use).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.watcher
            .get_or_init(|| watch(&self.url, &self.next, self.ready.as_fd()));
        self.ready.as_fd()
    }

    pub(crate) fn take_message(&mut self, out: &mut Vec<u8>) {
        std::mem::swap(out, &mut self.msg);
        self.msg.clear();
    }

    /// The sequence number of the record received last.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
}

impl Drop for JournalRx {
    fn drop(&mut self) {
        if let Some(stop) = self.watcher.get() {
            stop.store(true, Ordering::Release);
        }
    }
}

/// How long the watcher waits for a record before it looks at its stop
/// flag again.
const WATCH_SLICE: Duration = Duration::from_millis(50);

/// Starts the thread that follows the journal at `url` with a reader of
/// its own and raises `ready` whenever it holds a record past `next`;
/// returns its stop flag.
fn watch(url: &str, next: &Arc<Mutex<u64>>, ready: BorrowedFd<'_>) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = |url: String, next: Arc<Mutex<u64>>, ready: OwnedFd, stop: Arc<AtomicBool>| {
        let from = *lock(&next);
        let mut reader = JournalReader::open(&url, from)?;
        std::thread::Builder::new()
            .name("ipcx-journal-watch".into())
            .spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let journal_next = match reader.next_timeout(WATCH_SLICE) {
                        Ok((seq, _)) => seq + 1,
                        Err(e) if *e.kind() == ErrorKind::TimedOut => continue,
                        // Broken or left behind: raised once, so that the
                        // link's own receive meets the error; the watch ends.
                        Err(_) => {
                            let _ = sys::eventfd::add(ready.as_fd(), 1);
                            return;
                        }
                    };
                    let next = lock(&next);
                    if journal_next > *next {
                        let _ = sys::eventfd::add(ready.as_fd(), 1);
                    }
                }
            })
            .map_err(|e| Error::io("watch", e))?;
        Ok::<(), Error>(())
    };
    let started = sys::fd::dup_cloexec(ready)
        .map_err(|e| Error::io("watch", e))
        .and_then(|fd| start(url.to_string(), next.clone(), fd, stop.clone()));
    if let Err(e) = started {
        tracing::warn!(error = %e, "a journal link cannot be watched");
    }
    stop
}

/// The lock on a half's next sequence number (a panic while it was held
/// leaves a plain number, still right).
fn lock(next: &Mutex<u64>) -> std::sync::MutexGuard<'_, u64> {
    next.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The sending half: the journal's writer, opened at the first send.
#[derive(Debug)]
pub(crate) struct JournalTx {
    url: String,
    writer: Option<Box<JournalWriter>>,
}

impl JournalTx {
    /// Appends `msg` (the writer's lock is taken at the first send).
    pub(crate) fn send(&mut self, msg: &[u8]) -> Result<()> {
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self
                .writer
                .insert(Box::new(JournalWriter::open(&self.url)?)),
        };
        writer.append(msg).map(drop)
    }

    /// Makes every append so far durable, as `?durability=flush` asks.
    pub(crate) fn flush(&mut self) -> Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// How long a link waits for a journal another process is creating.
const CREATING: Duration = Duration::from_millis(500);

/// Opens a link on the journal at `ep` (made if missing), reading from
/// `?from=` or from its end.
pub(crate) fn connect(ep: &Endpoint) -> Result<Link> {
    let url = ep.url();
    let give_up = Instant::now() + CREATING;
    let mut backoff = crate::deadline::Backoff::new(Duration::from_millis(5));
    let next = loop {
        match crate::journal::stat(url) {
            Ok(s) => break s.next_seq,
            // None yet (or unreadable: then opening its writer says why).
            // Its writer makes segment 0; another process may be making
            // it too, and hold the lock meanwhile.
            Err(_) => match JournalWriter::open(url) {
                Ok(w) => drop(w),
                Err(e) if matches!(e.kind(), ErrorKind::InUse { .. }) => {
                    if !backoff.sleep_until(give_up) {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            },
        }
    };
    let from = ep.options().from.unwrap_or(next);
    let reader = JournalReader::open(url, from)?;
    let max = crate::journal::largest_record(ep.options().size as u64);
    let rx = JournalRx {
        url: url.to_string(),
        reader,
        msg: Vec::new(),
        seq: 0,
        next: Arc::new(Mutex::new(from)),
        ready: sys::eventfd::create(0, false).map_err(|e| Error::io("connect", e).at(ep))?,
        watcher: OnceLock::new(),
    };
    let tx = JournalTx {
        url: url.to_string(),
        writer: None,
    };
    Ok(Link::from_journal(ep, rx, tx, max))
}
