use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::JOB;
use super::pullers::{accept_loop, connect_loop, join, spawn_reader};
use crate::error::{Error, ErrorKind, Result};
use crate::{Link, Listener, SendHalf};

pub(super) use crate::pattern::lock;

/// A job waiting to be handed out.
#[derive(Debug, Clone)]
pub(super) struct Job {
    pub(super) id: u64,
    pub(super) deliveries: u32,
    /// Higher goes first.
    pub(super) priority: u32,
    pub(super) payload: Arc<[u8]>,
}

impl Job {
    /// Its order among the waiting: the highest priority first, then the
    /// oldest.
    fn order(&self) -> (std::cmp::Reverse<u32>, u64) {
        (std::cmp::Reverse(self.priority), self.id)
    }
}

/// The jobs waiting, in the order they go out.
#[derive(Debug, Default)]
pub(super) struct Waiting(BTreeMap<(std::cmp::Reverse<u32>, u64), Job>);

impl Waiting {
    pub(super) fn add(&mut self, job: Job) {
        self.0.insert(job.order(), job);
    }

    pub(super) fn first(&self) -> Option<&Job> {
        self.0.first_key_value().map(|(_, j)| j)
    }

    fn take_first(&mut self) {
        self.0.pop_first();
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A connected puller, as the pusher sees it (or, on `mq:`, the queue
/// the pullers take from).
#[derive(Debug)]
pub(super) struct Worker {
    pub(super) tx: SendHalf,
    /// Jobs it may still take.
    pub(super) credit: u32,
    /// Jobs it took and has not acknowledged.
    pub(super) taken: HashMap<u64, Job>,
    /// It is a message queue: jobs go in with their priority.
    pub(super) queue: bool,
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) waiting: Waiting,
    /// By id, in order: the round robin walks them from `turn`.
    pub(super) workers: BTreeMap<u64, Worker>,
    pub(super) next_worker: u64,
    /// Round-robin start among workers with credit.
    pub(super) turn: u64,
    pub(super) next_id: u64,
    pub(super) acked: u64,
    pub(super) redelivered: u64,
    /// Jobs dropped because no puller takes one that large.
    pub(super) refused: u64,
    /// The journal of a durable pusher.
    pub(super) store: Option<super::store::Store>,
    /// The pullers' reports of a work queue on `mq:`.
    pub(super) queue: Option<super::queue::OnQueue>,
    /// Where a job's message is put together (reused).
    pub(super) out: Vec<u8>,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Something changed: a job acknowledged, a worker joined or left.
    pub(super) changed: Condvar,
    pub(super) stop: AtomicBool,
}

impl Shared {
    /// Hands waiting jobs to workers with credit, in turn, never waiting
    /// on one (the lock is held): a worker whose socket is full is passed
    /// over until the next pass (every ack, push, and ~100 ms). A worker
    /// whose link fails is dropped and its jobs wait again.
    pub(super) fn dispatch(&self, st: &mut State) {
        // On mq:, first what is in the queue goes back behind a waiting
        // job that outranks it.
        super::queue::reorder(st);
        let mut buf = std::mem::take(&mut st.out);
        let mut full: Vec<u64> = Vec::new();
        while let Some(job) = st.waiting.first().cloned() {
            // The next worker with credit, from `turn` on, round the end.
            let open = |(id, w): &(&u64, &Worker)| w.credit > 0 && !full.contains(id);
            let next = (st.workers.range(st.turn..).find(open))
                .or_else(|| st.workers.range(..st.turn).find(open))
                .map(|(id, _)| *id);
            let Some(id) = next else {
                break;
            };
            st.turn = id + 1;
            buf.clear();
            buf.push(JOB);
            buf.extend_from_slice(&job.id.to_le_bytes());
            buf.extend_from_slice(&job.deliveries.to_le_bytes());
            buf.extend_from_slice(&job.priority.to_le_bytes());
            crate::copy::extend(&mut buf, &job.payload);
            let State {
                workers,
                store,
                queue,
                ..
            } = &mut *st;
            let Some(w) = workers.get_mut(&id) else {
                continue;
            };
            // Recorded before it goes (a pusher killed just after the send
            // still counts this delivery when it is back), undone if it
            // did not go.
            if let Some(store) = store.as_mut() {
                store.handing_out(job.id);
            }
            // Taken whole, or in part (the rest is pushed by `pump`).
            let sent = if w.queue {
                w.tx.try_send_with_priority(&buf, job.priority)
            } else {
                w.tx.try_send(&buf)
            };
            match &sent {
                Ok(()) => {
                    w.credit -= 1;
                    if let (true, Some(q)) = (w.queue, queue.as_mut()) {
                        q.put(&job);
                    }
                    w.taken.insert(job.id, job.clone());
                }
                Err(_) => {
                    if let Some(store) = store.as_mut() {
                        store.not_handed_out(job.id);
                    }
                }
            }
            match sent {
                Ok(()) => {
                    st.waiting.take_first();
                }
                Err(e) if *e.kind() == ErrorKind::WouldBlock => full.push(id),
                // Larger than this puller takes (its ?max_msg=): the job,
                // not the puller, is at fault; it is dropped and counted.
                Err(e) if matches!(e.kind(), ErrorKind::MessageTooLarge { .. }) => {
                    tracing::warn!(job = job.id, error = %e, "work queue: a job larger than a puller takes; dropped");
                    st.waiting.take_first();
                    st.refused += 1;
                    if let Some(store) = st.store.as_mut() {
                        store.finished(job.id);
                    }
                    self.changed.notify_all();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "work queue: a puller's link failed; its jobs go to others");
                    self.drop_worker(st, id);
                }
            }
        }
        st.out = buf;
    }

    /// Pushes what the workers' links left unsent, without waiting, then
    /// hands out waiting jobs: what a full socket held back goes on.
    pub(super) fn pump(&self, st: &mut State) {
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
        if let Some(store) = st.store.as_mut() {
            store.compact();
        }
    }

    /// Takes worker `id` away; what it took and did not acknowledge waits
    /// again (at its old place: ahead of later jobs of its priority), one
    /// delivery more.
    pub(super) fn drop_worker(&self, st: &mut State, id: u64) {
        if let Some(mut w) = st.workers.remove(&id) {
            // Its reader sees the end too, and so does the puller.
            w.tx.shutdown();
            for mut job in w.taken.into_values() {
                if let Some(q) = st.queue.as_mut() {
                    q.forget(&job);
                }
                job.deliveries += 1;
                st.redelivered += 1;
                st.waiting.add(job);
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

/// The pushing end of a work queue; see the [module docs](super).
#[derive(Debug)]
pub struct Pusher {
    shared: Arc<Shared>,
    url: String,
    /// The accepting (or connecting) thread, joined when dropped.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Pusher {
    /// Binds `url` and hands jobs to the pullers that connect. On
    /// `mq:/name` it creates the POSIX message queue (and `/name.acks`,
    /// for the pullers' reports) and puts each job in with its priority;
    /// the pullers that connect take from it (see the
    /// [module docs](super)).
    pub fn bind(url: &str) -> Result<Pusher> {
        if super::queue::is_queue(url)? {
            return Pusher::on_queue(url, None);
        }
        Pusher::accepting(Listener::bind(url)?, None)
    }

    /// Binds `url` as [`Pusher::bind`] does, keeping the jobs in the
    /// journal at `journal` (`journal:/dir`, made if missing; its
    /// `?durability=` says what survives a power loss): `push` returns
    /// once the job is appended, and every hand-out and acknowledgement
    /// is recorded. A pusher that binds again with the same journal (after
    /// this one was killed, or restarted) hands out every job not
    /// acknowledged, each with the deliveries it had. One pusher per
    /// journal (another is [`ErrorKind::InUse`]). Segments that hold only
    /// finished jobs are removed as the queue moves on.
    pub fn bind_durable(url: &str, journal: &str) -> Result<Pusher> {
        let store = super::store::Store::open(journal)?;
        if super::queue::is_queue(url)? {
            return Pusher::on_queue(url, Some(store));
        }
        Pusher::accepting(Listener::bind(url)?, Some(store))
    }

    /// A pusher that feeds the message queue `url` and reads its pullers'
    /// reports, starting from what a journal held.
    fn on_queue(
        url: &str,
        store: Option<(super::store::Store, super::store::Recovered)>,
    ) -> Result<Pusher> {
        let super::queue::Opened {
            worker,
            on_queue,
            reports,
            listeners,
        } = super::queue::open(url)?;
        let mut pusher = Pusher::new(url);
        pusher.restore(store);
        {
            let mut st = lock(&pusher.shared.state);
            st.workers.insert(super::queue::QUEUE_WORKER, worker);
            st.next_worker = super::queue::QUEUE_WORKER + 1;
            st.queue = Some(on_queue);
            pusher.shared.dispatch(&mut st);
        }
        let s = pusher.shared.clone();
        let thread = super::super::spawn("ipcx-push-queue", "bind", move || {
            super::queue::serve(reports, listeners, &s)
        })?;
        pusher.thread = Some(thread);
        Ok(pusher)
    }

    /// Starts from what a journal held.
    fn restore(&mut self, store: Option<(super::store::Store, super::store::Recovered)>) {
        if let Some((store, recovered)) = store {
            let mut st = lock(&self.shared.state);
            st.next_id = recovered.next_id;
            st.redelivered = recovered.redelivered;
            for job in recovered.jobs {
                st.waiting.add(job);
            }
            st.store = Some(store);
        }
    }

    /// A pusher whose accepting thread takes pullers from `listener`,
    /// starting from what a journal held.
    fn accepting(
        listener: Listener,
        store: Option<(super::store::Store, super::store::Recovered)>,
    ) -> Result<Pusher> {
        let mut pusher = Pusher::new(listener.endpoint().url());
        pusher.restore(store);
        let s = pusher.shared.clone();
        let thread = super::super::spawn("ipcx-push-accept", "bind", move || {
            accept_loop(&listener, &s)
        })?;
        pusher.thread = Some(thread);
        Ok(pusher)
    }

    /// Connects to a puller that binds `url` (one that collects jobs:
    /// [`Puller::bind`](super::Puller::bind)); it is this pusher's one
    /// puller, joined when this returns. When its link breaks, what it
    /// did not acknowledge waits, and the pusher connects again every
    /// 100 ms until a puller is there.
    pub fn connect(url: &str) -> Result<Pusher> {
        let mut pusher = Pusher::new(url);
        let (id, rx) = join(Link::connect(url)?, &pusher.shared)?;
        let s = pusher.shared.clone();
        spawn_reader(id, rx, &s)?;
        let url = url.to_string();
        let thread = super::super::spawn("ipcx-push-connect", "connect", move || {
            connect_loop(&url, &s)
        })?;
        pusher.thread = Some(thread);
        Ok(pusher)
    }

    fn new(url: &str) -> Pusher {
        Pusher {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
                stop: AtomicBool::new(false),
            }),
            url: url.to_string(),
            thread: None,
        }
    }

    /// The bound URL (or the one connected to).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues a job (kept until a puller acknowledges it); returns its id.
    /// A durable pusher appends it to its journal first (an error there
    /// is returned, and the job is not queued).
    pub fn push(&self, payload: &[u8]) -> Result<u64> {
        self.push_with_priority(payload, 0)
    }

    /// [`Pusher::push`] with a priority: waiting jobs go out highest
    /// priority first, and in the order pushed within one priority (the
    /// default is 0). A job a puller already holds is not taken back.
    pub fn push_with_priority(&self, payload: &[u8], priority: u32) -> Result<u64> {
        let mut st = lock(&self.shared.state);
        let id = st.next_id;
        // Only a journal can bring ids this far (a counter from 0 never
        // gets there).
        let next = id.checked_add(1).ok_or_else(|| {
            Error::new(
                ErrorKind::LimitReached(
                    "job ids used up: give the work queue a new journal".into(),
                ),
                "push",
            )
            .at(&self.url)
        })?;
        let job = Job {
            id,
            deliveries: 1,
            priority,
            payload: Arc::from(payload),
        };
        if let Some(store) = st.store.as_mut() {
            store.pushed(&job)?;
        }
        st.next_id = next;
        st.waiting.add(job);
        self.shared.dispatch(&mut st);
        Ok(id)
    }

    /// Waits until every job pushed so far was acknowledged, at most
    /// `timeout` ([`ErrorKind::TimedOut`]; [`Pusher::stats`] says how many
    /// are left, and the time-out is logged with them).
    pub fn wait_acked(&self, timeout: Duration) -> Result<()> {
        let deadline = crate::deadline::far_after(timeout);
        let mut st = lock(&self.shared.state);
        loop {
            let in_flight: usize = st.workers.values().map(|w| w.taken.len()).sum();
            if st.waiting.is_empty() && in_flight == 0 {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    url = %self.url,
                    waiting = st.waiting.len(),
                    in_flight,
                    pullers = st.workers.len(),
                    "jobs still unacknowledged: are pullers connected and acking?"
                );
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
    /// Stops accepting (the listener is closed when this returns, within
    /// ~100 ms) and closes every puller's link (their `recv` then returns
    /// `Closed`); jobs not acknowledged are lost with the pusher, unless
    /// it keeps a journal (closed too: another pusher may bind it now).
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let store = {
            let mut st = lock(&self.shared.state);
            for w in st.workers.values_mut() {
                w.tx.shutdown();
            }
            st.store.take()
        };
        drop(store);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
