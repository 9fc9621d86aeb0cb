//! Work queues (push/pull): a [`Pusher`] binds and hands each job to one
//! of the [`Puller`]s that connect, load-balanced, and each job is
//! acknowledged. A job taken by a puller whose link breaks before it
//! acknowledged (its process died) goes to another puller, its delivery
//! count one higher: at-least-once delivery.
//!
//! Each puller takes at most `prefetch` unacknowledged jobs at a time
//! (default 1, as RabbitMQ's fair dispatch): a busy worker is not given
//! more while an idle one waits. On the link, after the schemas: the
//! puller sends `C` (u32: the jobs it takes at once) and `A` + id (u64)
//! per job done; the pusher sends `J`, id (u64), delivery count (u32),
//! payload. Integers little-endian.
//!
//! ```
//! # fn main() -> ipcx::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("ipcx-doc-wq-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let url = format!("unix:{}/jobs.sock", dir.display());
//! use ipcx::pattern::{Puller, Pusher};
//!
//! let jobs = Pusher::bind(&url)?;
//! jobs.push(b"resize photo 17")?;
//! let mut worker = Puller::connect(&url)?;
//! let job = worker.recv()?;
//! assert_eq!((&job.payload[..], job.deliveries), (&b"resize photo 17"[..], 1));
//! worker.ack(job.id)?;
//! jobs.wait_acked(std::time::Duration::from_secs(5))?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::typed::{Way, trade_schemas};
use crate::error::{Error, ErrorKind, Result};
use crate::{Link, Listener, RecvHalf, SendHalf};

const CREDIT: u8 = b'C';
const ACK: u8 = b'A';
const JOB: u8 = b'J';

fn ways(pusher: bool) -> [Way; 2] {
    [
        Way::named(pusher, "workqueue jobs".into(), 1),
        Way::named(!pusher, "workqueue acks".into(), 1),
    ]
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bad(why: &'static str) -> Error {
    Error::new(ErrorKind::Frame(crate::FrameError::Unexpected(why)), "recv")
}

/// A job waiting to be handed out.
#[derive(Debug, Clone)]
struct Job {
    id: u64,
    deliveries: u32,
    payload: Arc<[u8]>,
}

/// A connected puller, as the pusher sees it.
#[derive(Debug)]
struct Worker {
    tx: SendHalf,
    /// Jobs it may still take.
    credit: u32,
    /// Jobs it took and has not acknowledged.
    taken: HashMap<u64, Job>,
    /// Jobs acknowledged by it.
    done: u64,
}

#[derive(Debug, Default)]
struct State {
    waiting: VecDeque<Job>,
    workers: HashMap<u64, Worker>,
    next_worker: u64,
    /// Round-robin start among workers with credit.
    turn: u64,
    next_id: u64,
    acked: u64,
    redelivered: u64,
    /// Jobs dropped because no puller takes one that large.
    refused: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Something changed: a job acknowledged, a worker joined or left.
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    /// Hands waiting jobs to workers with credit, in turn, never waiting
    /// on one (the lock is held): a worker whose socket is full is passed
    /// over until the next pass (every ack, push, and ~100 ms). A worker
    /// whose link fails is dropped and its jobs wait again.
    fn dispatch(&self, st: &mut State) {
        let mut buf = Vec::new();
        let mut full: Vec<u64> = Vec::new();
        while let Some(job) = st.waiting.front().cloned() {
            let mut ids: Vec<u64> = st
                .workers
                .iter()
                .filter(|(id, w)| w.credit > 0 && !full.contains(id))
                .map(|(id, _)| *id)
                .collect();
            if ids.is_empty() {
                return;
            }
            ids.sort_unstable();
            let turn = st.turn;
            let id = ids.iter().copied().find(|id| *id >= turn).unwrap_or(ids[0]);
            st.turn = id + 1;
            buf.clear();
            buf.push(JOB);
            buf.extend_from_slice(&job.id.to_le_bytes());
            buf.extend_from_slice(&job.deliveries.to_le_bytes());
            buf.extend_from_slice(&job.payload);
            let Some(w) = st.workers.get_mut(&id) else {
                continue;
            };
            // Taken whole, or in part (the rest is pushed by `pump`).
            match w.tx.try_send(&buf) {
                Ok(()) => {
                    w.credit -= 1;
                    w.taken.insert(job.id, job);
                    st.waiting.pop_front();
                }
                Err(e) if *e.kind() == ErrorKind::WouldBlock => full.push(id),
                // Larger than this puller takes (its ?max_msg=): the job,
                // not the puller, is at fault; it is dropped and counted.
                Err(e) if matches!(e.kind(), ErrorKind::MessageTooLarge { .. }) => {
                    tracing::warn!(job = job.id, error = %e, "work queue: a job larger than a puller takes; dropped");
                    st.waiting.pop_front();
                    st.refused += 1;
                    self.changed.notify_all();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "work queue: a puller's link failed; its jobs go to others");
                    self.drop_worker(st, id);
                }
            }
        }
    }

    /// Pushes what the workers' links left unsent, without waiting, then
    /// hands out waiting jobs: what a full socket held back goes on.
    fn pump(&self, st: &mut State) {
        let mut failed = Vec::new();
        for (id, w) in st.workers.iter_mut() {
            if w.tx.has_unsent() && w.tx.try_flush().is_err() {
                failed.push(*id);
            }
        }
        for id in failed {
            self.drop_worker(st, id);
        }
        self.dispatch(st);
    }

    /// Takes worker `id` away; what it took and did not acknowledge waits
    /// again, first, one delivery more.
    fn drop_worker(&self, st: &mut State, id: u64) {
        if let Some(mut w) = st.workers.remove(&id) {
            // Its reader sees the end too, and so does the puller.
            w.tx.shutdown();
            let mut back: Vec<Job> = w.taken.into_values().collect();
            back.sort_by_key(|j| std::cmp::Reverse(j.id));
            for mut job in back {
                job.deliveries += 1;
                st.redelivered += 1;
                st.waiting.push_front(job);
            }
        }
        self.changed.notify_all();
    }
}

/// What [`Pusher::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkStats {
    /// Jobs not handed out yet.
    pub waiting: usize,
    /// Jobs handed out and not acknowledged yet.
    pub in_flight: usize,
    /// Jobs acknowledged.
    pub acked: u64,
    /// Jobs handed out again after their puller left without
    /// acknowledging them.
    pub redelivered: u64,
    /// Pullers connected.
    pub pullers: usize,
    /// Jobs dropped because they were larger than a puller takes (its
    /// `?max_msg=`).
    pub refused: u64,
}

/// The pushing end of a work queue; see the [module docs](self).
#[derive(Debug)]
pub struct Pusher {
    shared: Arc<Shared>,
    url: String,
}

impl Pusher {
    /// Binds `url` and hands jobs to the pullers that connect.
    pub fn bind(url: &str) -> Result<Pusher> {
        let listener = Listener::bind(url)?;
        let url = listener.endpoint().url().to_string();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("ipcx-push-accept".into())
            .spawn(move || accept_loop(&listener, &s))
            .map_err(|e| Error::io("bind", e))?;
        Ok(Pusher { shared, url })
    }

    /// The bound URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues a job (kept until a puller acknowledges it); returns its id.
    pub fn push(&self, payload: &[u8]) -> Result<u64> {
        let mut st = lock(&self.shared.state);
        let id = st.next_id;
        st.next_id += 1;
        st.waiting.push_back(Job {
            id,
            deliveries: 1,
            payload: Arc::from(payload),
        });
        self.shared.dispatch(&mut st);
        Ok(id)
    }

    /// Waits until every job pushed so far was acknowledged, at most
    /// `timeout` ([`ErrorKind::TimedOut`], saying how many are left).
    pub fn wait_acked(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        loop {
            let in_flight: usize = st.workers.values().map(|w| w.taken.len()).sum();
            if st.waiting.is_empty() && in_flight == 0 {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::new(ErrorKind::TimedOut, "wait_acked").at(&self.url));
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Counts of the queue now.
    pub fn stats(&self) -> WorkStats {
        let st = lock(&self.shared.state);
        WorkStats {
            waiting: st.waiting.len(),
            in_flight: st.workers.values().map(|w| w.taken.len()).sum(),
            acked: st.acked,
            redelivered: st.redelivered,
            pullers: st.workers.len(),
            refused: st.refused,
        }
    }
}

impl Drop for Pusher {
    /// Stops accepting and closes every puller's link (their `recv` then
    /// returns `Closed`); jobs not acknowledged are lost with the pusher.
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let mut st = lock(&self.shared.state);
        for w in st.workers.values_mut() {
            w.tx.shutdown();
        }
    }
}

/// Accepts pullers until the pusher is dropped.
fn accept_loop(listener: &Listener, sh: &Arc<Shared>) {
    let s = sh.clone();
    super::accept_each(
        listener,
        "ipcx-push-worker",
        || sh.stop.load(Ordering::Acquire),
        || {
            // Each pass also pushes on what full sockets held back.
            let mut st = lock(&sh.state);
            sh.pump(&mut st);
            format!(
                "work queue: {} pullers, {} waiting, {} in flight, {} acked, {} redelivered",
                st.workers.len(),
                st.waiting.len(),
                st.workers.values().map(|w| w.taken.len()).sum::<usize>(),
                st.acked,
                st.redelivered
            )
        },
        move |link| match join(link, &s) {
            Ok((id, rx)) => read_acks(id, rx, &s),
            Err(e) => tracing::warn!(error = %e, "work queue: puller refused"),
        },
    );
}

/// A joining puller: schemas, then its credit; added to the workers.
fn join(mut link: Link, sh: &Shared) -> Result<(u64, RecvHalf)> {
    trade_schemas(&mut link, &ways(true))?;
    let first = link.recv_timeout(Duration::from_secs(10))?;
    let credit = match first.split_first() {
        Some((&CREDIT, n)) if n.len() == 4 => u32::from_le_bytes([n[0], n[1], n[2], n[3]]),
        _ => return Err(bad("a puller's first message is no credit")),
    };
    if credit == 0 {
        return Err(bad("a puller that takes no job"));
    }
    let (rx, tx) = link.split();
    let mut st = lock(&sh.state);
    let id = st.next_worker;
    st.next_worker += 1;
    st.workers.insert(
        id,
        Worker {
            tx,
            credit,
            taken: HashMap::new(),
            done: 0,
        },
    );
    sh.dispatch(&mut st);
    sh.changed.notify_all();
    Ok((id, rx))
}

/// Reads a puller's acknowledgements until its link ends; then its
/// unacknowledged jobs go to the others.
fn read_acks(id: u64, mut rx: RecvHalf, sh: &Shared) {
    let mut buf = Vec::new();
    loop {
        let got = rx.recv_into(&mut buf);
        let mut st = lock(&sh.state);
        let acked = match (&got, buf.split_first()) {
            (Ok(()), Some((&ACK, n))) if n.len() == 8 => {
                Some(u64::from_le_bytes(n.try_into().unwrap_or([0; 8])))
            }
            _ => None,
        };
        let Some(job) = acked else {
            if let Some(e) = got.as_ref().err().filter(|e| !e.is_closed()) {
                tracing::warn!(error = %e, "work queue: a puller broke the protocol; dropped");
            }
            sh.drop_worker(&mut st, id);
            sh.dispatch(&mut st);
            return;
        };
        let Some(w) = st.workers.get_mut(&id) else {
            return;
        };
        if w.taken.remove(&job).is_some() {
            w.credit += 1;
            w.done += 1;
            st.acked += 1;
        } else {
            tracing::warn!(
                job,
                "work queue: an ack for a job this puller does not hold; ignored"
            );
        }
        sh.dispatch(&mut st);
        sh.changed.notify_all();
    }
}

/// One job a puller received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its id, to acknowledge it with ([`Puller::ack`]).
    pub id: u64,
    /// How many times it was handed out (1 the first time; more if a
    /// puller that took it left without acknowledging it).
    pub deliveries: u32,
    /// Its bytes.
    pub payload: Vec<u8>,
}

/// The pulling end of a work queue: a worker.
#[derive(Debug)]
pub struct Puller {
    link: Link,
    buf: Vec<u8>,
}

impl Puller {
    /// Connects to the pusher at `url`, taking one job at a time.
    pub fn connect(url: &str) -> Result<Puller> {
        Puller::connect_with_prefetch(url, 1)
    }

    /// Connects, taking up to `prefetch` (≥ 1) unacknowledged jobs at a
    /// time.
    pub fn connect_with_prefetch(url: &str, prefetch: u32) -> Result<Puller> {
        if prefetch == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument("a puller takes at least one job at a time".into()),
                "connect",
            ));
        }
        let mut link = Link::connect(url)?;
        trade_schemas(&mut link, &ways(false))?;
        let mut credit = vec![CREDIT];
        credit.extend_from_slice(&prefetch.to_le_bytes());
        link.send(&credit)?;
        Ok(Puller {
            link,
            buf: Vec::new(),
        })
    }

    /// The next job, waiting as long as it takes; `Closed` once the
    /// pusher is gone.
    pub fn recv(&mut self) -> Result<Delivery> {
        self.link.recv_into(&mut self.buf)?;
        self.parse()
    }

    /// [`Puller::recv`], waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Delivery> {
        self.buf = self.link.recv_timeout(timeout)?;
        self.parse()
    }

    fn parse(&self) -> Result<Delivery> {
        let rest = self
            .buf
            .strip_prefix(&[JOB])
            .ok_or_else(|| bad("a pusher's message that is no job"))?;
        let (id, rest) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("a job cut short"))?;
        let (deliveries, payload) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("a job cut short"))?;
        Ok(Delivery {
            id: u64::from_le_bytes(*id),
            deliveries: u32::from_le_bytes(*deliveries),
            payload: payload.to_vec(),
        })
    }

    /// Acknowledges job `id`: done; the pusher forgets it and hands this
    /// puller the next.
    pub fn ack(&mut self, id: u64) -> Result<()> {
        let mut m = vec![ACK];
        m.extend_from_slice(&id.to_le_bytes());
        self.link.send(&m)
    }
}
