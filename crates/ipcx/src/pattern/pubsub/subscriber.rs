//! The subscribing end: joins a publisher with its patterns and takes
//! the messages of its batches one by one.

use std::time::{Duration, Instant};

use super::super::topic::{Pattern, check_topic};
use super::super::typed::trade_schemas;
use super::{BATCH, BATCH_HEAD, SUBSCRIBE, ways};
use crate::Link;
use crate::error::{Error, ErrorKind, Result};
use crate::pattern::bad;

/// One message a subscriber received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its topic.
    pub topic: String,
    /// Its bytes.
    pub payload: Vec<u8>,
}

/// The subscribing end of publish/subscribe over a socket.
#[derive(Debug)]
pub struct Subscriber {
    from: From,
    batch: Batch,
    lost: u64,
}

/// Where batches come from: the publisher this subscriber connected to,
/// or the publishers that connect to it.
#[derive(Debug)]
enum From {
    One(Box<Link>),
    Shm(Box<super::shm::ShmSubscriber>),
    Many(Box<Collecting>),
}

/// A subscriber that binds: its listener and the publishers that joined,
/// in one poller.
#[derive(Debug)]
struct Collecting {
    poller: crate::Poller,
    listener: usize,
    subscription: Vec<u8>,
    /// The publisher whose batch was read last.
    last: usize,
    /// Publishers that connected and whose schemas have not come yet.
    joining: super::super::Joining,
}

/// The batch being read, and where its next message starts.
#[derive(Debug, Default)]
struct Batch {
    buf: Vec<u8>,
    at: usize,
    left: u32,
}

/// `patterns`, checked: at least one, each well formed.
fn parse_patterns(patterns: &[&str]) -> Result<Vec<Pattern>> {
    let checked = patterns
        .iter()
        .map(|p| Pattern::parse(p))
        .collect::<Result<Vec<_>>>()?;
    if checked.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument("subscribe to at least one pattern (`>`: all)".into()),
            "subscribe",
        ));
    }
    Ok(checked)
}

/// The subscription message for `patterns` (checked) and `history`.
fn subscription(patterns: &[&str], history: usize) -> Result<Vec<u8>> {
    let checked = parse_patterns(patterns)?;
    let mut msg = vec![SUBSCRIBE];
    msg.extend_from_slice(&(history as u32).to_le_bytes());
    msg.extend_from_slice(&(checked.len() as u16).to_le_bytes());
    for p in &checked {
        msg.extend_from_slice(&(p.as_str().len() as u16).to_le_bytes());
        msg.extend_from_slice(p.as_str().as_bytes());
    }
    Ok(msg)
}

/// Trades schemas on a new link to a publisher and subscribes.
fn subscribe(link: &mut Link, subscription: &[u8]) -> Result<()> {
    trade_schemas(link, &ways(false))?;
    link.send(subscription)
}

impl Subscriber {
    /// Connects to the publisher at `url` and subscribes to `patterns`
    /// (`sensors.*.front`, `prices.>`); with `?history=N`, asks for up to
    /// the last N messages of each matching topic first. A malformed
    /// pattern is an error before anything is sent. On `shm:name`,
    /// attaches to the channel a publisher created (waiting up to its
    /// `?timeout=`) and keeps the messages its patterns match.
    pub fn connect(url: &str, patterns: &[&str]) -> Result<Subscriber> {
        if super::shm::is_shm(url)? {
            let chan = super::shm::ShmSubscriber::open(url, parse_patterns(patterns)?)?;
            return Ok(Subscriber {
                from: From::Shm(Box::new(chan)),
                batch: Batch::default(),
                lost: 0,
            });
        }
        let history = crate::Endpoint::parse(url)?.options().history;
        let msg = subscription(patterns, history)?;
        let mut link = Link::connect(url)?;
        subscribe(&mut link, &msg)?;
        Ok(Subscriber {
            from: From::One(Box::new(link)),
            batch: Batch::default(),
            lost: 0,
        })
    }

    /// Binds `url` and collects from the publishers that connect to it
    /// ([`Publisher::connect`](super::Publisher::connect)), subscribed to
    /// `patterns` at each. Each publisher's order is kept; a publisher
    /// that leaves is let go, and others may come. Not on `shm:`, whose
    /// channel its publisher creates, nor on a message queue or a FIFO
    /// ([`ErrorKind::Unsupported`]): bind a socket.
    pub fn bind(url: &str, patterns: &[&str]) -> Result<Subscriber> {
        if super::shm::is_shm(url)? {
            return Err(Error::new(
                ErrorKind::Unsupported(
                    "a shm: channel is created by its publisher (Publisher::bind); \
                     subscribers connect to it"
                        .into(),
                ),
                "bind",
            )
            .at(url));
        }
        let history = crate::Endpoint::parse(url)?.options().history;
        let subscription = subscription(patterns, history)?;
        let (poller, listener) = crate::pattern::bind_collecting(url, "subscriber")?;
        Ok(Subscriber {
            from: From::Many(Box::new(Collecting {
                poller,
                listener,
                subscription,
                last: 0,
                joining: Default::default(),
            })),
            batch: Batch::default(),
            lost: 0,
        })
    }

    /// The next message, waiting as long as it takes; `Closed` once the
    /// publisher is gone (a subscriber that binds waits for the next).
    pub fn recv(&mut self) -> Result<Delivery> {
        self.recv_until(None)
    }

    /// The next message if one is there now.
    pub fn try_recv(&mut self) -> Result<Option<Delivery>> {
        match self.recv_until(Some(Instant::now())) {
            Ok(d) => Ok(Some(d)),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// [`Subscriber::recv`], waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Delivery> {
        self.recv_until(crate::deadline::after(timeout))
    }

    /// Messages the publisher dropped for this subscriber so far
    /// (`?overflow=drop_oldest` when it fell behind), as far as the
    /// batches received say.
    pub fn lost(&self) -> u64 {
        match &self.from {
            From::Shm(chan) => chan.lost(),
            _ => self.lost,
        }
    }

    fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Delivery> {
        loop {
            if let Some(d) = self.batch.next()? {
                return Ok(d);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let buf = match &mut self.from {
                From::One(link) => match left {
                    None => {
                        let mut buf = std::mem::take(&mut self.batch.buf);
                        link.recv_into(&mut buf)?;
                        buf
                    }
                    Some(left) if left.is_zero() => match link.try_recv()? {
                        Some(b) => b,
                        None => return Err(Error::new(ErrorKind::TimedOut, "recv")),
                    },
                    Some(left) => link.recv_timeout(left)?,
                },
                // Message by message, read in place: no batches.
                From::Shm(chan) => return chan.recv_until(deadline),
                From::Many(c) => match next_batch(
                    &mut c.poller,
                    c.listener,
                    &c.subscription,
                    &mut c.last,
                    &mut c.joining,
                    left,
                )? {
                    Some(b) => b,
                    None if left.is_some_and(|l| l.is_zero())
                        || deadline.is_some_and(|d| Instant::now() >= d) =>
                    {
                        return Err(Error::new(ErrorKind::TimedOut, "recv"));
                    }
                    None => continue,
                },
            };
            self.lost = self.lost.saturating_add(self.batch.start(buf)?);
        }
    }
}

/// One wait of a subscriber that binds: a new publisher is accepted and,
/// once its schema came, subscribed at; a batch from one is returned; a
/// publisher that left or broke the protocol is let go.
fn next_batch(
    poller: &mut crate::Poller,
    listener: usize,
    subscription: &[u8],
    last: &mut usize,
    joining: &mut super::super::Joining,
    left: Option<Duration>,
) -> Result<Option<Vec<u8>>> {
    use super::super::Ready;
    let due = joining.expire(poller, "pubsub");
    let wait = match (left, due) {
        (Some(l), Some(d)) => Some(l.min(d)),
        (l, d) => l.or(d),
    };
    let mut keys = poller.wait(wait)?.to_vec();
    // The ready ones from just past the last served: a busy publisher
    // does not starve the others.
    let first = keys.iter().position(|k| *k > *last).unwrap_or(0);
    keys.rotate_left(first);
    for key in keys {
        if key == listener {
            // Never waits: a peer that connected and left (or is still
            // silent) is no reason to stop reading the others.
            joining.accept(poller, key, &ways(false), "pubsub");
            continue;
        }
        let ready = joining.ready(poller, key, &ways(false), "pubsub");
        let Some(crate::Source::Link(link)) = poller.get_mut(key) else {
            continue;
        };
        match ready {
            Ready::Joined => {
                if let Err(e) = link.send(subscription) {
                    tracing::warn!(error = %e, "pubsub: a publisher left while joining");
                    poller.remove(key);
                }
            }
            Ready::Nothing => {}
            Ready::Member => match link.try_recv() {
                Ok(Some(batch)) => {
                    *last = key;
                    return Ok(Some(batch));
                }
                Ok(None) => {}
                Err(e) => {
                    if !e.is_closed() {
                        tracing::warn!(error = %e, "pubsub: a publisher failed; let go");
                    }
                    poller.remove(key);
                }
            },
        }
    }
    Ok(None)
}

impl Batch {
    /// Takes a new batch: checks its head; returns what it says was lost.
    fn start(&mut self, buf: Vec<u8>) -> Result<u64> {
        if buf.len() < BATCH_HEAD || buf[0] != BATCH {
            return Err(bad("a publisher's message that is no batch"));
        }
        let mut lost = [0u8; 8];
        lost.copy_from_slice(&buf[1..9]);
        let mut count = [0u8; 4];
        count.copy_from_slice(&buf[9..13]);
        self.left = u32::from_le_bytes(count);
        self.buf = buf;
        self.at = BATCH_HEAD;
        Ok(u64::from_le_bytes(lost))
    }

    /// The next message of the batch, its lengths checked against it. A
    /// broken batch is reported once and dropped.
    fn next(&mut self) -> Result<Option<Delivery>> {
        let r = self.take();
        if r.is_err() {
            (self.at, self.left) = (0, 0);
        }
        r
    }

    fn take(&mut self) -> Result<Option<Delivery>> {
        if self.left == 0 {
            let over = self.at != 0 && self.at != self.buf.len();
            self.at = 0;
            if over {
                return Err(bad("bytes after the last message of a batch"));
            }
            return Ok(None);
        }
        let rest = &self.buf[self.at..];
        let (tlen, rest) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| bad("a batch cut short (topic length)"))?;
        let tlen = usize::from(u16::from_le_bytes(*tlen));
        if rest.len() < tlen {
            return Err(bad("a batch cut short (topic)"));
        }
        let (topic, rest) = rest.split_at(tlen);
        let (plen, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("a batch cut short (payload length)"))?;
        let plen = u32::from_le_bytes(*plen) as usize;
        if rest.len() < plen {
            return Err(bad("a batch cut short (payload)"));
        }
        let topic = std::str::from_utf8(topic)
            .ok()
            .filter(|t| check_topic(t).is_ok())
            .ok_or_else(|| bad("a batch with a malformed topic"))?
            .to_string();
        let payload = crate::copy::to_vec(&rest[..plen]);
        self.at += 2 + tlen + 4 + plen;
        self.left -= 1;
        Ok(Some(Delivery { topic, payload }))
    }
}

impl Iterator for Subscriber {
    type Item = Result<Delivery>;

    /// The next message; `None` once the publisher is gone.
    fn next(&mut self) -> Option<Result<Delivery>> {
        match self.recv() {
            Err(e) if e.is_closed() => None,
            r => Some(r),
        }
    }
}
