//! A publisher over sockets: accepts subscribers, filters by their
//! patterns, and queues, coalesces and writes each one's messages. How
//! a subscriber joins, and its writer thread, are in `fanout/subscribers.rs`.

mod subscribers;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::super::topic::{Pattern, check_topic};
use super::BATCH;
use crate::endpoint::Overflow;
use crate::error::{Error, ErrorKind, Result};
use crate::pattern::lock;
use crate::{Link, Listener, SendHalf};
use subscribers::{accept_loop, join, writer};

/// A publish this soon after the last one is part of a burst: queued for
/// the subscriber's writer (which coalesces), not written at once.
const BURST: Duration = Duration::from_micros(50);

/// How long a joining subscriber may take to say what it wants.
const JOIN_WAIT: Duration = Duration::from_secs(10);

/// One message, shared by every queue it is in.
#[derive(Debug, Clone)]
struct Entry {
    topic: Arc<str>,
    payload: Arc<[u8]>,
}

/// A subscriber's queue at the publisher.
#[derive(Debug, Default)]
struct Queue {
    msgs: VecDeque<Entry>,
    /// Dropped since the last batch (`drop_oldest`).
    lost: u64,
    /// A batch is being written: nobody else writes meanwhile.
    writing: bool,
    /// The subscriber left (or its link failed).
    gone: bool,
    /// The writer sleeps for messages: the next one queued wakes it (and
    /// only then: a wake-up is a system call).
    writer_asleep: bool,
    /// Publishers sleeping for room (`block`).
    room_waiters: usize,
    /// A message written at once was taken in part: the writer finishes
    /// it (waiting for the subscriber) before anything else; `writing`
    /// stays set until then.
    rest_pending: bool,
}

#[derive(Debug)]
struct Sub {
    peer: String,
    patterns: Vec<Pattern>,
    tx: Mutex<(SendHalf, Vec<u8>)>,
    q: Mutex<Queue>,
    /// The writer waits on it for messages.
    data: Condvar,
    /// Publishers (`block`) and `flush` wait on it for room.
    changed: Condvar,
    delivered: AtomicU64,
    lost_total: AtomicU64,
}

impl Sub {
    fn wants(&self, topic: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(topic))
    }
}

/// What a publisher shares with its accepting and writing threads.
#[derive(Debug)]
struct Shared {
    /// The subscribers, replaced whole when one joins or leaves, so a
    /// publish takes them with one clone of an `Arc`.
    subs: Mutex<Arc<Vec<Arc<Sub>>>>,
    joined: Condvar,
    /// The last `keep` messages of each topic.
    history: Mutex<HashMap<Arc<str>, VecDeque<Entry>>>,
    keep: usize,
    slots: usize,
    overflow: Overflow,
    stop: AtomicBool,
    /// Nanoseconds since `epoch` of the last publish (bursts).
    last: AtomicU64,
    epoch: Instant,
}

/// What [`Publisher::subscribers`](super::Publisher::subscribers) reports of each subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberStats {
    /// Who it is (its link's URL at the publisher).
    pub peer: String,
    /// Its patterns.
    pub patterns: Vec<String>,
    /// Messages written to it.
    pub delivered: u64,
    /// Messages dropped for it (`drop_oldest`).
    pub lost: u64,
    /// Messages waiting in its queue now.
    pub queued: usize,
}

/// The socket side of a [`Publisher`](super::Publisher).
#[derive(Debug)]
pub(super) struct Fanout {
    shared: Arc<Shared>,
    url: String,
    /// The accepting thread (which owns the listener), joined when
    /// dropped: the endpoint is gone when the drop returns.
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl Fanout {
    /// Binds `url` (`unix:`, `unixseq:`, `tcp:`; `?history=`,
    /// `?slots=`, `?overflow=`) and accepts subscribers from now on.
    pub(super) fn bind(url: &str) -> Result<Fanout> {
        let listener = Listener::bind(url)?;
        let mut publisher = Fanout::new(listener.endpoint());
        let s = publisher.shared.clone();
        let thread = super::super::spawn("ipcx-pub-accept", "bind", move || {
            accept_loop(&listener, &s)
        })?;
        publisher.accepting = Some(thread);
        Ok(publisher)
    }

    /// Connects to a subscriber that binds `url` (one that collects from
    /// publishers: [`Subscriber::bind`](super::Subscriber::bind)); it is
    /// this publisher's one subscriber, joined when this returns.
    pub(super) fn connect(url: &str) -> Result<Fanout> {
        let link = Link::connect(url)?;
        let ep = crate::Endpoint::parse(url)?;
        let publisher = Fanout::new(&ep);
        let (sub, rx) = join(link, &publisher.shared)?;
        let s = publisher.shared.clone();
        super::super::spawn("ipcx-pub-writer", "connect", move || writer(&sub, rx, &s))?;
        Ok(publisher)
    }

    fn new(ep: &crate::Endpoint) -> Fanout {
        let o = ep.options();
        Fanout {
            shared: Arc::new(Shared {
                subs: Mutex::new(Arc::new(Vec::new())),
                joined: Condvar::new(),
                history: Mutex::new(HashMap::new()),
                keep: o.history,
                slots: o.slots,
                overflow: o.overflow,
                stop: AtomicBool::new(false),
                last: AtomicU64::new(0),
                epoch: Instant::now(),
            }),
            url: ep.url().to_string(),
            accepting: None,
        }
    }

    /// The bound URL (with the port the OS picked for `tcp://…:0`).
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// Publishes `payload` on `topic` to every subscriber whose patterns
    /// match it; returns how many. A malformed topic is an error; so is a
    /// full queue with `?overflow=fail` ([`ErrorKind::Full`], sent to
    /// nobody).
    pub(super) fn publish(&self, topic: &str, payload: &[u8]) -> Result<usize> {
        check_topic(topic)?;
        let sh = &*self.shared;
        let now = sh.epoch.elapsed().as_nanos() as u64;
        let burst =
            now.saturating_sub(sh.last.swap(now, Ordering::Relaxed)) < BURST.as_nanos() as u64;
        let entry = Entry {
            topic: Arc::from(topic),
            payload: Arc::from(payload),
        };
        // `fail` first: a refused message is sent to nobody and kept
        // nowhere.
        if sh.overflow == Overflow::Fail {
            let subs = lock(&sh.subs).clone();
            if let Some(full) = subs
                .iter()
                .find(|s| s.wants(topic) && lock(&s.q).msgs.len() >= sh.slots)
            {
                return Err(Error::new(ErrorKind::Full, "publish").at(&full.peer));
            }
        }
        // The history and the subscribers, taken together: a subscriber
        // joining gets a message either from the history or live, once.
        let subs = if sh.keep > 0 {
            let mut h = lock(&sh.history);
            let kept = h.entry(entry.topic.clone()).or_default();
            if kept.len() == sh.keep {
                kept.pop_front();
            }
            kept.push_back(entry.clone());
            lock(&sh.subs).clone()
        } else {
            lock(&sh.subs).clone()
        };
        let wanting: Vec<&Arc<Sub>> = subs.iter().filter(|s| s.wants(topic)).collect();
        let mut reached = 0;
        for sub in wanting {
            if self.deliver(sub, &entry, burst) {
                reached += 1;
            }
        }
        Ok(reached)
    }

    /// Queues (or, after a quiet moment, writes) `entry` for `sub`;
    /// `false` if it is gone.
    fn deliver(&self, sub: &Sub, entry: &Entry, burst: bool) -> bool {
        let sh = &*self.shared;
        let mut q = lock(&sub.q);
        if q.gone {
            return false;
        }
        if !burst && q.msgs.is_empty() && !q.writing {
            // Nothing ahead of it: written now, on this thread, if the
            // link takes it without waiting.
            q.writing = true;
            drop(q);
            let sent = write_batch(sub, std::slice::from_ref(entry), 0, true);
            let rest = lock(&sub.tx).0.has_unsent();
            q = lock(&sub.q);
            match sent {
                // Taken in part: the writer finishes it, so that this
                // publish does not wait for the subscriber.
                Ok(true) if rest => {
                    q.rest_pending = true;
                    q.writer_asleep = false;
                    sub.data.notify_one();
                    return true;
                }
                Ok(true) => {
                    q.writing = false;
                    wake_writer(sub, &mut q);
                    sub.changed.notify_all();
                    return true;
                }
                Ok(false) => {
                    q.writing = false;
                    wake_writer(sub, &mut q);
                }
                // More than this subscriber takes (its ?max_msg=): lost
                // for it, told with its next batch; its link stays.
                Err(e) if matches!(e.kind(), ErrorKind::MessageTooLarge { .. }) => {
                    q.writing = false;
                    q.lost += 1;
                    sub.lost_total.fetch_add(1, Ordering::Relaxed);
                    wake_writer(sub, &mut q);
                    return false;
                }
                Err(_) => {
                    q.writing = false;
                    q.gone = true;
                    sub.changed.notify_all();
                    sub.data.notify_all();
                    return false;
                }
            }
        }
        while q.msgs.len() >= sh.slots && !q.gone {
            match sh.overflow {
                Overflow::DropOldest => {
                    q.msgs.pop_front();
                    q.lost += 1;
                    sub.lost_total.fetch_add(1, Ordering::Relaxed);
                }
                // `fail` was checked before; one that filled since waits.
                Overflow::Block | Overflow::Fail => {
                    q.room_waiters += 1;
                    q = sub.changed.wait(q).unwrap_or_else(PoisonError::into_inner);
                    q.room_waiters -= 1;
                }
            }
        }
        if q.gone {
            return false;
        }
        q.msgs.push_back(entry.clone());
        wake_writer(sub, &mut q);
        true
    }

    /// Waits until at least `n` subscribers have joined, at most
    /// `timeout` ([`ErrorKind::TimedOut`]).
    pub(super) fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = crate::deadline::far_after(timeout);
        let mut subs = lock(&self.shared.subs);
        while subs.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new(ErrorKind::TimedOut, "wait_for_subscribers").at(&self.url));
            }
            subs = self
                .shared
                .joined
                .wait_timeout(subs, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(())
    }

    /// Waits until every message queued so far was written (or its
    /// subscriber left), at most `timeout`.
    pub(super) fn flush(&self, timeout: Duration) -> Result<()> {
        let deadline = crate::deadline::far_after(timeout);
        let subs = lock(&self.shared.subs).clone();
        for sub in subs.iter() {
            let mut q = lock(&sub.q);
            while (!q.msgs.is_empty() || q.writing) && !q.gone {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::new(ErrorKind::TimedOut, "flush").at(&self.url));
                }
                q = sub
                    .changed
                    .wait_timeout(q, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        Ok(())
    }

    /// The subscribers now, with their patterns and counts.
    pub(super) fn subscribers(&self) -> Vec<SubscriberStats> {
        lock(&self.shared.subs)
            .iter()
            .map(|s| SubscriberStats {
                peer: s.peer.clone(),
                patterns: s.patterns.iter().map(|p| p.as_str().to_string()).collect(),
                delivered: s.delivered.load(Ordering::Relaxed),
                lost: s.lost_total.load(Ordering::Relaxed),
                queued: lock(&s.q).msgs.len(),
            })
            .collect()
    }
}

impl Drop for Fanout {
    /// Writes what is queued (at most 5 s), then lets the subscribers go
    /// and stops accepting (the listener is closed when this returns).
    fn drop(&mut self) {
        let _ = self.flush(Duration::from_secs(5));
        self.shared.stop.store(true, Ordering::Release);
        for sub in lock(&self.shared.subs).iter() {
            lock(&sub.q).gone = true;
            sub.changed.notify_all();
            sub.data.notify_all();
        }
        if let Some(t) = self.accepting.take() {
            let _ = t.join();
        }
    }
}

/// Wakes `sub`'s writer if it sleeps and has something to do.
fn wake_writer(sub: &Sub, q: &mut Queue) {
    if q.writer_asleep && !q.msgs.is_empty() && !q.writing {
        q.writer_asleep = false;
        sub.data.notify_one();
    }
}

/// Encodes `entries` (with `lost`) as one batch and sends it; with
/// `no_wait`, only if the link takes it at once (`Ok(false)` if not).
fn write_batch(sub: &Sub, entries: &[Entry], lost: u64, no_wait: bool) -> Result<bool> {
    let mut tx = lock(&sub.tx);
    let (half, buf) = &mut *tx;
    buf.clear();
    buf.push(BATCH);
    buf.extend_from_slice(&lost.to_le_bytes());
    buf.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        buf.extend_from_slice(&(e.topic.len() as u16).to_le_bytes());
        buf.extend_from_slice(e.topic.as_bytes());
        buf.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
        crate::copy::extend(buf, &e.payload);
    }
    let sent = if no_wait {
        half.try_send(buf)
    } else {
        half.send(buf)
    };
    match sent {
        Ok(()) => {
            sub.delivered
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            Ok(true)
        }
        Err(e) if *e.kind() == ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}
