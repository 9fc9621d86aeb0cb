//! A socket publisher's subscribers: accepted, joined (schema, patterns,
//! history), and each written to by a thread of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::{JOIN_WAIT, Queue, Shared, Sub, lock, write_batch};
use crate::error::Result;
use crate::pattern::pubsub::{BATCH_BYTES, BATCH_HEAD, SUBSCRIBE, ways};
use crate::pattern::topic::Pattern;
use crate::pattern::typed::trade_schemas;
use crate::{Link, Listener};

/// Accepts subscribers until the publisher is dropped; each joins on a
/// thread of its own, which then writes its queue.
pub(super) fn accept_loop(listener: &Listener, sh: &Arc<Shared>) {
    let s = sh.clone();
    crate::pattern::accept_each(
        listener,
        "ipcx-pub-writer",
        || sh.stop.load(Ordering::Acquire),
        || describe(sh),
        move |link| match join(link, &s) {
            Ok((sub, rx)) => writer(&sub, rx, &s),
            Err(e) => tracing::warn!(error = %e, "pubsub: subscriber refused"),
        },
    );
}

/// What `ipcx ls` says of a publisher: its subscribers, their patterns,
/// and what was delivered and lost.
fn describe(sh: &Shared) -> String {
    let subs = lock(&sh.subs).clone();
    let mut patterns: Vec<&str> = subs
        .iter()
        .flat_map(|s| s.patterns.iter().map(Pattern::as_str))
        .collect();
    patterns.sort_unstable();
    patterns.dedup();
    let delivered: u64 = subs
        .iter()
        .map(|s| s.delivered.load(Ordering::Relaxed))
        .sum();
    let lost: u64 = subs
        .iter()
        .map(|s| s.lost_total.load(Ordering::Relaxed))
        .sum();
    format!(
        "publisher: {} subscribers [{}], {delivered} delivered, {lost} lost",
        subs.len(),
        patterns.join(" ")
    )
}

/// A joining subscriber: schemas, then its patterns and history request;
/// its history queued, then it is added to the subscribers.
pub(super) fn join(mut link: Link, sh: &Shared) -> Result<(Arc<Sub>, crate::RecvHalf)> {
    trade_schemas(&mut link, &ways(true))?;
    let peer = link.url().to_string();
    let msg = link.recv_timeout(JOIN_WAIT)?;
    let (history, patterns) = parse_subscribe(&msg)?;
    let (rx, tx) = link.split();
    let sub = Arc::new(Sub {
        peer,
        patterns,
        tx: Mutex::new((tx, Vec::new())),
        q: Mutex::new(Queue::default()),
        data: Condvar::new(),
        changed: Condvar::new(),
        delivered: AtomicU64::new(0),
        lost_total: AtomicU64::new(0),
    });
    let h = lock(&sh.history);
    if history > 0 {
        let mut q = lock(&sub.q);
        for (topic, kept) in h.iter() {
            if sub.wants(topic) {
                let skip = kept.len().saturating_sub(history);
                q.msgs.extend(kept.iter().skip(skip).cloned());
            }
        }
    }
    let mut subs = lock(&sh.subs);
    let mut next = (**subs).clone();
    next.push(sub.clone());
    *subs = Arc::new(next);
    drop(subs);
    drop(h);
    sh.joined.notify_all();
    Ok((sub, rx))
}

/// The history asked for and the patterns of a subscribe message.
fn parse_subscribe(msg: &[u8]) -> Result<(usize, Vec<Pattern>)> {
    let bad = |why| crate::pattern::unexpected("subscribe", why);
    let rest = msg
        .strip_prefix(&[SUBSCRIBE])
        .ok_or_else(|| bad("a subscriber's first message is no subscription"))?;
    let (history, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("a subscription cut short"))?;
    let (count, mut rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| bad("a subscription cut short"))?;
    let mut patterns = Vec::new();
    for _ in 0..u16::from_le_bytes(*count) {
        let (len, r) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| bad("a subscription cut short"))?;
        let len = usize::from(u16::from_le_bytes(*len));
        if r.len() < len {
            return Err(bad("a subscription cut short"));
        }
        let text = std::str::from_utf8(&r[..len]).map_err(|_| bad("a pattern not in UTF-8"))?;
        patterns.push(Pattern::parse(text)?);
        rest = &r[len..];
    }
    if !rest.is_empty() || patterns.is_empty() {
        return Err(bad("a subscription with bytes over, or no pattern"));
    }
    Ok((u32::from_le_bytes(*history) as usize, patterns))
}

/// Writes `sub`'s queue as batches until it leaves or the publisher goes;
/// then takes it off the subscribers.
pub(super) fn writer(sub: &Arc<Sub>, mut rx: crate::RecvHalf, sh: &Shared) {
    let mut batch = Vec::new();
    // The largest batch this subscriber takes (its ?max_msg=).
    let cap = lock(&sub.tx).0.peer_max_msg().map_or(BATCH_BYTES, |m| {
        (m as usize).saturating_sub(BATCH_HEAD).min(BATCH_BYTES)
    });
    let limit = lock(&sub.tx)
        .0
        .peer_max_msg()
        .map_or(usize::MAX, |m| m as usize);
    loop {
        let mut q = lock(&sub.q);
        if q.rest_pending {
            drop(q);
            let flushed = lock(&sub.tx).0.flush();
            let mut q = lock(&sub.q);
            q.rest_pending = false;
            q.writing = false;
            if flushed.is_err() {
                q.gone = true;
            }
            sub.changed.notify_all();
            continue;
        }
        // Asleep while there is nothing to write, or a publish is writing
        // at once (it wakes this when it is done and more is queued).
        while (q.msgs.is_empty() || q.writing) && !q.gone && !q.rest_pending {
            q.writer_asleep = true;
            let (guard, waited) = sub
                .data
                .wait_timeout(q, Duration::from_millis(100))
                .unwrap_or_else(PoisonError::into_inner);
            q = guard;
            q.writer_asleep = false;
            if sh.stop.load(Ordering::Acquire) && q.msgs.is_empty() {
                q.gone = true;
            }
            // Quiet: has the subscriber left? (It sends nothing after its
            // subscription, so anything but "nothing yet" means gone.)
            if waited.timed_out() && q.msgs.is_empty() && !matches!(rx.try_recv(), Ok(None)) {
                q.gone = true;
            }
        }
        if q.rest_pending {
            continue;
        }
        if q.gone && q.msgs.is_empty() {
            break;
        }
        batch.clear();
        let mut bytes = 0;
        while let Some(e) = q.msgs.front() {
            let size = 6 + e.topic.len() + e.payload.len();
            if BATCH_HEAD + size > limit {
                // More than this subscriber takes: lost, not its link.
                q.msgs.pop_front();
                q.lost += 1;
                sub.lost_total.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !batch.is_empty() && bytes + size > cap {
                break;
            }
            bytes += size;
            batch.extend(q.msgs.pop_front());
        }
        if batch.is_empty() {
            continue;
        }
        let lost = std::mem::take(&mut q.lost);
        q.writing = true;
        let room_waiters = q.room_waiters;
        drop(q);
        if room_waiters > 0 {
            sub.changed.notify_all();
        }
        let sent = write_batch(sub, &batch, lost, false);
        let mut q = lock(&sub.q);
        q.writing = false;
        if sent.is_err() {
            q.gone = true;
        }
        sub.changed.notify_all();
        if q.gone && q.msgs.is_empty() {
            break;
        }
    }
    let mut q = lock(&sub.q);
    q.gone = true;
    q.msgs.clear();
    drop(q);
    sub.changed.notify_all();
    let mut subs = lock(&sh.subs);
    let next: Vec<Arc<Sub>> = subs
        .iter()
        .filter(|s| !Arc::ptr_eq(s, sub))
        .cloned()
        .collect();
    *subs = Arc::new(next);
}
