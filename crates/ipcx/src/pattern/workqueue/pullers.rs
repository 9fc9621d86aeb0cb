//! The pusher's side of its pullers: accepting them (or connecting to
//! one again), their joining, and reading their acknowledgements.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::super::typed::trade_schemas;
use super::pusher::{Shared, State, Worker, lock};
use super::{ACK, CREDIT, ways};
use crate::error::Result;
use crate::pattern::bad;
use crate::{Link, Listener, RecvHalf};

/// Accepts pullers until the pusher is dropped.
pub(super) fn accept_loop(listener: &Listener, sh: &Arc<Shared>) {
    let s = sh.clone();
    super::super::accept_each(
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

/// A pusher that connected: every ~100 ms, pushes on what a full socket
/// held back and, when its puller is gone, connects again.
pub(super) fn connect_loop(url: &str, sh: &Arc<Shared>) {
    while !sh.stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(100));
        let gone = {
            let mut st = lock(&sh.state);
            sh.pump(&mut st);
            st.workers.is_empty()
        };
        // A pusher being dropped shut its puller's link: no connecting
        // again then.
        if !gone || sh.stop.load(Ordering::Acquire) {
            continue;
        }
        let joined = Link::connect(url).and_then(|link| join(link, sh));
        match joined.and_then(|(id, rx)| spawn_reader(id, rx, sh)) {
            Ok(()) => tracing::info!(url, "work queue: connected to a puller again"),
            Err(e) => tracing::debug!(url, error = %e, "work queue: no puller yet"),
        }
    }
}

/// Reads a joined puller's acknowledgements on a thread of its own (with
/// none, the puller is dropped again).
pub(super) fn spawn_reader(id: u64, rx: RecvHalf, sh: &Arc<Shared>) -> Result<()> {
    let s = sh.clone();
    let spawned = super::super::spawn("ipcx-push-acks", "connect", move || read_acks(id, rx, &s));
    spawned
        .map(drop)
        .inspect_err(|_| sh.drop_worker(&mut lock(&sh.state), id))
}

/// A joining puller: schemas, then its credit; added to the workers.
pub(super) fn join(mut link: Link, sh: &Shared) -> Result<(u64, RecvHalf)> {
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
            queue: false,
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
        if !sh.acked(&mut st, id, job) {
            return;
        }
    }
}

impl Shared {
    /// Worker `worker` acknowledged `job`: it is done, and the worker has
    /// room for one more. `false` once the worker is gone.
    pub(super) fn acked(&self, st: &mut State, worker: u64, job: u64) -> bool {
        let Some(w) = st.workers.get_mut(&worker) else {
            return false;
        };
        if let Some(done) = w.taken.remove(&job) {
            w.credit = w.credit.saturating_add(1);
            st.acked += 1;
            if let Some(store) = st.store.as_mut() {
                store.finished(job);
            }
            if let Some(q) = st.queue.as_mut() {
                q.forget(&done);
            }
        } else {
            tracing::warn!(
                job,
                "work queue: an ack for a job this puller does not hold; ignored"
            );
        }
        self.dispatch(st);
        self.changed.notify_all();
        true
    }
}
