//! A work queue on a POSIX message queue (`mq:/name`): the pusher puts
//! each job into the queue with its priority, and the pullers take from
//! it, the highest priority first, the kernel handing each job to one of
//! them. A message queue has no acknowledgements, so the pullers report
//! on a second queue, `/name.acks`: `T`, id, and who took it (a
//! [`Process`]) as soon as they have a job, `A`, id once it is done.
//!
//! The pusher keeps every job until it is acknowledged. A job whose taker
//! died goes into the queue again, one delivery more. A puller killed
//! between taking a job and reporting it leaves a job that is neither in
//! the queue nor reported: when the pusher's unreported jobs outnumber
//! the queue's messages for a second, it takes everything out of the
//! queue (those jobs go back in, in their order), waits 200 ms more for
//! late reports, and hands out again, one delivery more, the jobs still
//! unaccounted for. Delivery is at least once; a puller that reports late
//! may see its job given to another too.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::pusher::{Job, Shared, State, Worker, lock};
use super::{ACK, Delivery, TAKEN};
use crate::error::{Error, ErrorKind, Result};
use crate::{Link, Listener, Process, RecvHalf};

/// How long unreported jobs must outnumber the queue's messages before
/// the pusher looks in the queue.
const DEFICIT_WAIT: Duration = Duration::from_secs(1);
/// How long after looking it waits for late reports.
const REPORT_WAIT: Duration = Duration::from_millis(200);

/// Whether `url` is a POSIX message queue.
pub(super) fn is_queue(url: &str) -> Result<bool> {
    Ok(crate::Endpoint::parse(url)?.scheme() == crate::Scheme::Mq)
}

/// The reports queue of the work queue at `url`: its name with `.acks`.
pub(super) fn acks_url(url: &str) -> String {
    match url.split_once('?') {
        Some((name, query)) => format!("{name}.acks?{query}"),
        None => format!("{url}.acks"),
    }
}

/// What the pusher of a work queue on `mq:` keeps beside its jobs.
#[derive(Debug)]
pub(super) struct OnQueue {
    /// Takes from the jobs queue: to count what is in it, and to take it
    /// all out when jobs went missing.
    jobs: RecvHalf,
    /// Who took each job, as its puller reported.
    takers: HashMap<u64, Process>,
    /// The jobs put into the queue and not reported taken, lowest
    /// priority first: what a waiting job may outrank.
    queued: BTreeSet<(u32, u64)>,
    /// Since when unreported jobs outnumber the queue's messages.
    short_since: Option<Instant>,
    /// After a look in the queue: when, and the jobs still unaccounted for.
    looked: Option<(Instant, HashSet<u64>)>,
}

impl OnQueue {
    /// `job` went into the queue.
    pub(super) fn put(&mut self, job: &Job) {
        self.queued.insert((job.priority, job.id));
    }

    /// `job` is finished or waits again: where it was no longer matters.
    pub(super) fn forget(&mut self, job: &Job) {
        self.takers.remove(&job.id);
        self.queued.remove(&(job.priority, job.id));
    }
}

/// The queue's end of a pusher: the worker that feeds the jobs queue,
/// what watches it, and the reports to read. The listeners own the
/// queues' names (removed when they drop).
pub(super) struct Opened {
    pub(super) worker: Worker,
    pub(super) on_queue: OnQueue,
    pub(super) reports: RecvHalf,
    pub(super) listeners: (Listener, Listener),
}

/// Creates the jobs queue at `url` and its reports queue.
pub(super) fn open(url: &str) -> Result<Opened> {
    let jobs_listener = Listener::bind(url)?;
    let acks_listener = Listener::bind(&acks_url(url))?;
    let (jobs_rx, jobs_tx) = jobs_listener.accept()?.split();
    let (reports, _) = acks_listener.accept()?.split();
    Ok(Opened {
        worker: Worker {
            tx: jobs_tx,
            credit: u32::MAX,
            taken: HashMap::new(),
            queue: true,
        },
        on_queue: OnQueue {
            jobs: jobs_rx,
            takers: HashMap::new(),
            queued: BTreeSet::new(),
            short_since: None,
            looked: None,
        },
        reports,
        listeners: (jobs_listener, acks_listener),
    })
}

/// The queue's worker id in the pusher's state.
pub(super) const QUEUE_WORKER: u64 = 0;

/// Reads the pullers' reports and watches the queue (every ~100 ms)
/// until the pusher is dropped; the queues go with it.
pub(super) fn serve(mut reports: RecvHalf, listeners: (Listener, Listener), sh: &Shared) {
    let mut last_pass = Instant::now();
    while !sh.stop.load(std::sync::atomic::Ordering::Acquire) {
        match reports.recv_timeout(Duration::from_millis(100)) {
            Ok(msg) => sh.report(&msg),
            Err(e) if *e.kind() == ErrorKind::TimedOut => {}
            Err(e) => {
                tracing::warn!(error = %e, "work queue: the reports queue failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if last_pass.elapsed() >= Duration::from_millis(100) {
            last_pass = Instant::now();
            let mut st = lock(&sh.state);
            sh.watch_queue(&mut st);
            sh.pump(&mut st);
            sh.changed.notify_all();
        }
    }
    drop(listeners);
}

impl Shared {
    /// A puller's report: `T` (it took a job, and who it is) or `A` (done).
    fn report(&self, msg: &[u8]) {
        let mut st = lock(&self.state);
        let Some((&kind, rest)) = msg.split_first() else {
            return tracing::warn!("work queue: an empty report; ignored");
        };
        let Some((id, rest)) = rest.split_first_chunk::<8>() else {
            return tracing::warn!("work queue: a report cut short; ignored");
        };
        let id = u64::from_le_bytes(*id);
        match (kind, rest.len()) {
            (ACK, 0) => {
                self.acked(&mut st, QUEUE_WORKER, id);
            }
            (TAKEN, 12) => {
                let mut who = [0; 12];
                who.copy_from_slice(rest);
                let held = (st.workers.get(&QUEUE_WORKER))
                    .and_then(|w| w.taken.get(&id))
                    .map(|job| job.priority);
                if let (Some(priority), Some(q)) = (held, st.queue.as_mut()) {
                    q.queued.remove(&(priority, id));
                    q.takers.insert(id, Process::from_bytes(who));
                }
            }
            _ => tracing::warn!(kind, "work queue: a report of an unknown kind; ignored"),
        }
    }

    /// Jobs whose taker died, or that went missing between the queue and
    /// a report, wait again.
    fn watch_queue(&self, st: &mut State) {
        let missing = missing_jobs(st);
        requeue(st, missing);
    }
}

/// Puts jobs back among the waiting: `(id, true)` was delivered (one
/// delivery more), `(id, false)` was only taken back out of the queue.
pub(super) fn requeue(st: &mut State, jobs: Vec<(u64, bool)>) {
    let State {
        workers,
        queue,
        waiting,
        redelivered,
        store,
        ..
    } = st;
    let Some(w) = workers.get_mut(&QUEUE_WORKER) else {
        return;
    };
    for (id, delivered) in jobs {
        let Some(mut job) = w.taken.remove(&id) else {
            continue;
        };
        if let Some(q) = queue.as_mut() {
            q.forget(&job);
        }
        w.credit = w.credit.saturating_add(1);
        if delivered {
            job.deliveries += 1;
            *redelivered += 1;
        } else if let Some(s) = store.as_mut() {
            s.not_handed_out(id);
        }
        waiting.add(job);
    }
}

/// Takes every message out of the jobs queue; returns the ids of the
/// jobs among them.
fn take_all(q: &mut OnQueue) -> HashSet<u64> {
    let mut found = HashSet::new();
    while let Ok(Some(msg)) = q.jobs.try_recv() {
        match Delivery::parse(&msg) {
            Ok(d) => {
                found.insert(d.id);
            }
            Err(e) => {
                tracing::warn!(error = %e, "work queue: a foreign message in the queue; dropped")
            }
        }
    }
    found
}

/// When a waiting job outranks one in the queue (which was full when it
/// came), takes the queue's jobs back out, so that they go in again in
/// order with the waiting ones: a job never waits behind one of lower
/// priority for longer than this takes.
pub(super) fn reorder(st: &mut State) {
    let Some(top) = st.waiting.first().map(|j| j.priority) else {
        return;
    };
    let Some(q) = st.queue.as_mut() else {
        return;
    };
    if q.queued.first().is_none_or(|&(lowest, _)| lowest >= top) {
        return;
    }
    let back = take_all(q).into_iter().map(|id| (id, false)).collect();
    requeue(st, back);
}

/// The jobs to hand out again: `(id, true)` for one a puller took (its
/// taker died, or it was never reported), `(id, false)` for one taken
/// back out of the queue.
fn missing_jobs(st: &mut State) -> Vec<(u64, bool)> {
    let (Some(q), Some(w)) = (st.queue.as_mut(), st.workers.get(&QUEUE_WORKER)) else {
        return Vec::new();
    };
    // Each taker looked at once, however many jobs it holds.
    let mut alive: HashMap<Process, bool> = HashMap::new();
    let mut out: Vec<(u64, bool)> = (q.takers.iter())
        .filter(|(_, p)| !*alive.entry(**p).or_insert_with(|| p.is_alive()))
        .map(|(id, _)| {
            tracing::info!(job = id, "work queue: its puller died; handed out again");
            (*id, true)
        })
        .collect();
    let unreported: HashSet<u64> = (w.taken.keys())
        .filter(|id| !q.takers.contains_key(id))
        .copied()
        .collect();
    if let Some((when, missing)) = q.looked.take() {
        if when.elapsed() < REPORT_WAIT {
            q.looked = Some((when, missing));
        } else {
            for id in missing.intersection(&unreported) {
                tracing::info!(
                    job = id,
                    "work queue: taken and never reported; handed out again"
                );
                out.push((*id, true));
            }
        }
        return out;
    }
    let depth = match q.jobs.queued() {
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "work queue: the queue's depth unknown");
            return out;
        }
        None => 0,
    };
    if unreported.len() <= depth {
        q.short_since = None;
        return out;
    }
    let since = *q.short_since.get_or_insert_with(Instant::now);
    if since.elapsed() < DEFICIT_WAIT {
        return out;
    }
    // Everything still in the queue comes out (and goes back in, in
    // order, from the waiting jobs); what is neither there nor reported
    // soon is lost.
    q.short_since = None;
    let found = take_all(q);
    out.extend(found.iter().map(|id| (*id, false)));
    let missing = unreported.difference(&found).copied().collect();
    q.looked = Some((Instant::now(), missing));
    out
}

/// A puller's ends on a work queue on `mq:`: the jobs queue, the reports
/// queue, and who it is.
#[derive(Debug)]
pub(super) struct Taker {
    jobs: Link,
    reports: Link,
    me: Process,
}

impl Taker {
    pub(super) fn connect(url: &str) -> Result<Taker> {
        Ok(Taker {
            jobs: Link::connect(url)?,
            reports: Link::connect(&acks_url(url))?,
            me: Process::current(),
        })
    }

    /// The next job, reported taken at once.
    pub(super) fn recv(
        &mut self,
        timeout: Option<Duration>,
        buf: &mut Vec<u8>,
    ) -> Result<Delivery> {
        match timeout {
            None => self.jobs.recv_into(buf)?,
            Some(t) => *buf = self.jobs.recv_timeout(t)?,
        }
        let job = Delivery::parse(buf)?;
        let mut report = [TAKEN; 21];
        report[1..9].copy_from_slice(&job.id.to_le_bytes());
        report[9..].copy_from_slice(&self.me.to_bytes());
        self.reports.send(&report)?;
        Ok(job)
    }

    pub(super) fn ack(&mut self, id: u64) -> Result<()> {
        self.reports.send(&super::ack_message(id))
    }
}

/// What a puller on a queue cannot do.
pub(super) fn no_bind(url: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported(
            "a work queue on mq: is made by its pusher (Pusher::bind); pullers connect".into(),
        ),
        "bind",
    )
    .at(url)
}
