//! The pulling end of a work queue: a worker, connected to one pusher or
//! bound for the pushers that connect to it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::super::typed::trade_schemas;
use super::{CREDIT, Delivery, ways};
use crate::error::{Error, ErrorKind, Result};
use crate::pattern::bad;
use crate::{Link, Poller, Source};

/// The pulling end of a work queue: a worker.
#[derive(Debug)]
pub struct Puller {
    from: From,
    buf: Vec<u8>,
}

/// Where jobs come from: the pusher this puller connected to, or the
/// pushers that connect to it.
#[derive(Debug)]
enum From {
    One(Box<Link>),
    Many(Box<Pushers>),
    Queue(Box<super::queue::Taker>),
}

/// A puller that binds: its listener and the pushers that joined, in one
/// poller.
#[derive(Debug)]
struct Pushers {
    poller: Poller,
    listener: usize,
    prefetch: u32,
    /// The pusher whose job was taken last (the next wait starts past it).
    last: usize,
    /// Jobs taken and not acknowledged: the id given out → the pusher's
    /// key and its id for the job.
    held: HashMap<u64, (usize, u64)>,
    /// How many of `held` each pusher's key holds.
    holds: HashMap<usize, u32>,
    next_id: u64,
    /// Pushers that connected and whose schemas have not come yet.
    joining: super::super::Joining,
}

/// Joins a pusher on a new link: schemas, then the jobs taken at once.
fn join(link: &mut Link, prefetch: u32) -> Result<()> {
    trade_schemas(link, &ways(false))?;
    link.send(&credit_message(prefetch))
}

/// The message that tells a pusher how many jobs this puller takes.
fn credit_message(prefetch: u32) -> [u8; 5] {
    let mut m = [CREDIT; 5];
    m[1..].copy_from_slice(&prefetch.to_le_bytes());
    m
}

fn check_prefetch(prefetch: u32, op: &'static str) -> Result<()> {
    if prefetch == 0 {
        return Err(Error::new(
            ErrorKind::InvalidArgument("a puller takes at least one job at a time".into()),
            op,
        ));
    }
    Ok(())
}

impl Puller {
    /// Connects to the pusher at `url`, taking one job at a time.
    pub fn connect(url: &str) -> Result<Puller> {
        Puller::connect_with_prefetch(url, 1)
    }

    /// Connects, taking up to `prefetch` (≥ 1) unacknowledged jobs at a
    /// time. On `mq:/name` (a queue a pusher made), opens it and its
    /// reports queue; a puller there takes one job per receive.
    pub fn connect_with_prefetch(url: &str, prefetch: u32) -> Result<Puller> {
        check_prefetch(prefetch, "connect")?;
        if super::queue::is_queue(url)? {
            return Ok(Puller {
                from: From::Queue(Box::new(super::queue::Taker::connect(url)?)),
                buf: Vec::new(),
            });
        }
        let mut link = Link::connect(url)?;
        join(&mut link, prefetch)?;
        Ok(Puller {
            from: From::One(Box::new(link)),
            buf: Vec::new(),
        })
    }

    /// Binds `url` and takes jobs from the pushers that connect to it
    /// ([`Pusher::connect`](super::Pusher::connect)), up to `prefetch`
    /// (≥ 1) unacknowledged jobs from each. A pusher that leaves is let
    /// go (its jobs are its own: it hands out again what was not
    /// acknowledged when it connects again), and others may come. On a
    /// socket or `shm:` (one pusher at a time); a message queue or a FIFO
    /// is [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    pub fn bind(url: &str, prefetch: u32) -> Result<Puller> {
        check_prefetch(prefetch, "bind")?;
        if super::queue::is_queue(url)? {
            return Err(super::queue::no_bind(url));
        }
        let (poller, listener) = crate::pattern::bind_collecting(url, "puller")?;
        Ok(Puller {
            from: From::Many(Box::new(Pushers {
                poller,
                listener,
                prefetch,
                last: 0,
                held: HashMap::new(),
                holds: HashMap::new(),
                next_id: 0,
                joining: Default::default(),
            })),
            buf: Vec::new(),
        })
    }

    /// The next job, waiting as long as it takes; `Closed` once the
    /// pusher is gone (a puller that binds waits for the next pusher).
    pub fn recv(&mut self) -> Result<Delivery> {
        match &mut self.from {
            From::One(link) => {
                link.recv_into(&mut self.buf)?;
                Delivery::parse(&self.buf)
            }
            From::Many(p) => p.next_job(None),
            From::Queue(q) => q.recv(None, &mut self.buf),
        }
    }

    /// [`Puller::recv`], waiting at most `timeout` ([`ErrorKind::TimedOut`]).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Delivery> {
        match &mut self.from {
            From::One(link) => {
                self.buf = link.recv_timeout(timeout)?;
                Delivery::parse(&self.buf)
            }
            From::Many(p) => p.next_job(crate::deadline::after(timeout)),
            From::Queue(q) => q.recv(Some(timeout), &mut self.buf),
        }
    }

    /// Acknowledges job `id`: done; the pusher forgets it and hands this
    /// puller the next. For a puller that binds, a job whose pusher has
    /// left is acknowledged to nobody (`Ok`); an id this puller does not
    /// hold is [`ErrorKind::InvalidArgument`].
    pub fn ack(&mut self, id: u64) -> Result<()> {
        let many = matches!(self.from, From::Many(_));
        let (link, id) = match &mut self.from {
            From::One(link) => (&mut **link, id),
            From::Many(p) => match p.holder(id)? {
                Some(found) => found,
                None => return Ok(()),
            },
            From::Queue(q) => return q.ack(id),
        };
        match link.send(&super::ack_message(id)) {
            // Its pusher left just now; the next wait lets it go.
            Err(e) if many && e.is_closed() => Ok(()),
            r => r,
        }
    }
}

impl Pushers {
    /// Waits for a job from any pusher until `deadline`; accepts and
    /// joins the pushers that connect meanwhile.
    fn next_job(&mut self, deadline: Option<Instant>) -> Result<Delivery> {
        use super::super::Ready;
        loop {
            let due = self.joining.expire(&mut self.poller, "work queue");
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let wait = match (left, due) {
                (Some(l), Some(d)) => Some(l.min(d)),
                (l, d) => l.or(d),
            };
            let mut keys = self.poller.wait(wait)?.to_vec();
            // From just past the pusher served last: a busy pusher does not
            // starve the others.
            let first = keys.iter().position(|k| *k > self.last).unwrap_or(0);
            keys.rotate_left(first);
            for key in keys {
                if key == self.listener {
                    self.joining
                        .accept(&mut self.poller, key, &ways(false), "work queue");
                    continue;
                }
                match self
                    .joining
                    .ready(&mut self.poller, key, &ways(false), "work queue")
                {
                    Ready::Joined => self.give_credit(key),
                    Ready::Nothing => {}
                    Ready::Member => {
                        if let Some(job) = self.take(key) {
                            return Ok(job);
                        }
                    }
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::new(ErrorKind::TimedOut, "recv"));
            }
        }
    }

    /// A pusher joined: it is told how many jobs this puller takes.
    fn give_credit(&mut self, key: usize) {
        let Some(Source::Link(link)) = self.poller.get_mut(key) else {
            return;
        };
        if let Err(e) = link.send(&credit_message(self.prefetch)) {
            tracing::warn!(error = %e, "work queue: a pusher left while joining");
            self.poller.remove(key);
        }
    }

    /// The job pusher `key` sent, if one is whole; a pusher that left or
    /// broke the protocol is let go.
    fn take(&mut self, key: usize) -> Option<Delivery> {
        let Some(Source::Link(link)) = self.poller.get_mut(key) else {
            return None;
        };
        let got = link
            .try_recv()
            .and_then(|m| m.map(|m| Delivery::parse(&m)).transpose());
        let holds = self.holds.get(&key).copied().unwrap_or(0);
        let failed = match got {
            Ok(None) => return None,
            // A pusher that hands out more than it was given credit for
            // would fill `held` without end: it broke the protocol.
            Ok(Some(_)) if holds >= self.prefetch => {
                bad("a pusher sent more jobs than the puller takes at once")
            }
            Ok(Some(mut job)) => {
                self.last = key;
                let id = self.next_id;
                self.next_id += 1;
                self.held.insert(id, (key, job.id));
                self.holds.insert(key, holds + 1);
                job.id = id;
                return Some(job);
            }
            Err(e) => e,
        };
        if !failed.is_closed() {
            tracing::warn!(error = %failed, "work queue: a pusher failed; let go");
        }
        self.poller.remove(key);
        // Its key may be given to the next pusher: its jobs are forgotten.
        self.held.retain(|_, (k, _)| *k != key);
        self.holds.remove(&key);
        None
    }

    /// The link and the pusher's id of job `id`; `None` when its pusher
    /// has left.
    fn holder(&mut self, id: u64) -> Result<Option<(&mut Link, u64)>> {
        let Some((key, theirs)) = self.held.remove(&id) else {
            return Err(Error::new(
                ErrorKind::InvalidArgument(format!(
                    "job {id} is not held by this puller (acknowledged already?)"
                )),
                "ack",
            ));
        };
        if let Some(n) = self.holds.get_mut(&key) {
            *n = n.saturating_sub(1);
        }
        Ok(match self.poller.get_mut(key) {
            Some(Source::Link(link)) => Some((link, theirs)),
            _ => None,
        })
    }
}
