//! Topics on `shm:`, built on the zero-copy channel
//! ([`crate::shm::Publisher`], [`crate::shm::Subscriber`]): each message
//! is written once into a chunk of shared memory as its topic (u16
//! length, bytes) and payload, and every subscriber reads it in place,
//! keeping what its patterns match. The publisher does not filter (it
//! writes each message once, for everyone); a subscriber passes over
//! what it did not ask for without copying its payload. The channel's
//! own `?slots=`, `?max_msg=` and `?overflow=` hold, and what a
//! subscriber lost under `drop_oldest` it is told (`lost()`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::super::topic::{Pattern, check_topic};
use super::Delivery;
use crate::error::{Error, ErrorKind, Result};

/// Whether `url` names a shared-memory channel.
pub(super) fn is_shm(url: &str) -> Result<bool> {
    Ok(crate::Endpoint::parse(url)?.scheme() == crate::Scheme::Shm)
}

use crate::pattern::bad;
use crate::pattern::lock;

/// A publisher of topics on a `shm:` channel.
#[derive(Debug)]
pub(super) struct ShmPublisher {
    chan: Mutex<crate::shm::Publisher>,
    url: String,
}

impl ShmPublisher {
    /// Creates the channel `url`.
    pub(super) fn create(url: &str) -> Result<ShmPublisher> {
        Ok(ShmPublisher {
            chan: Mutex::new(crate::shm::Publisher::create(url)?),
            url: url.to_string(),
        })
    }

    /// Opens the channel `url` another publisher created.
    pub(super) fn open(url: &str) -> Result<ShmPublisher> {
        Ok(ShmPublisher {
            chan: Mutex::new(crate::shm::Publisher::open(url)?),
            url: url.to_string(),
        })
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// Writes topic and payload into a loaned chunk and sends it; returns
    /// the subscribers attached.
    pub(super) fn publish(&self, topic: &str, payload: &[u8]) -> Result<usize> {
        check_topic(topic)?;
        let mut chan = lock(&self.chan);
        let mut loan = chan.loan(2 + topic.len() + payload.len())?;
        let (head, rest) = loan.split_at_mut(2);
        head.copy_from_slice(&(topic.len() as u16).to_le_bytes());
        let (t, p) = rest.split_at_mut(topic.len());
        t.copy_from_slice(topic.as_bytes());
        p.copy_from_slice(payload);
        loan.send()?;
        Ok(chan.subscribers())
    }

    pub(super) fn subscribers(&self) -> usize {
        lock(&self.chan).subscribers()
    }

    /// Waits until `n` subscribers are attached, without holding the
    /// channel from other publishing threads meanwhile.
    pub(super) fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> Result<()> {
        let deadline = crate::deadline::far_after(timeout);
        let mut backoff = crate::deadline::Backoff::new(Duration::from_millis(1));
        while self.subscribers() < n {
            if !backoff.sleep_until(deadline) {
                return Err(Error::new(ErrorKind::TimedOut, "wait_for_subscribers").at(&self.url));
            }
        }
        Ok(())
    }
}

/// A subscriber to topics on a `shm:` channel.
#[derive(Debug)]
pub(super) struct ShmSubscriber {
    chan: crate::shm::Subscriber,
    patterns: Vec<Pattern>,
    /// The topic of the message being looked at, copied out (reused, so a
    /// message no pattern matches costs no allocation).
    topic: Vec<u8>,
}

impl ShmSubscriber {
    pub(super) fn open(url: &str, patterns: Vec<Pattern>) -> Result<ShmSubscriber> {
        Ok(ShmSubscriber {
            chan: crate::shm::Subscriber::open(url)?,
            topic: Vec::new(),
            patterns,
        })
    }

    pub(super) fn lost(&self) -> u64 {
        self.chan.lost()
    }

    /// The next message whose topic a pattern matches, waiting until
    /// `deadline` (`None`: as long as it takes). A message that is not
    /// topic and payload (another kind of publisher wrote it) is an error
    /// naming what is wrong; the next receive goes on.
    pub(super) fn recv_until(&mut self, deadline: Option<Instant>) -> Result<Delivery> {
        loop {
            let sample = match deadline {
                None => self.chan.recv()?,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    match self.chan.try_recv()? {
                        Some(s) => s,
                        None if left.is_zero() => {
                            return Err(Error::new(ErrorKind::TimedOut, "recv"));
                        }
                        None => self.chan.recv_timeout(left)?,
                    }
                }
            };
            // Copied out before it is checked: the bytes are another
            // process's and may change under us.
            let (tlen, rest) = sample
                .split_first_chunk::<2>()
                .ok_or_else(|| bad("a shm: message too short for a topic"))?;
            let tlen = usize::from(u16::from_le_bytes(*tlen));
            if rest.len() < tlen {
                return Err(bad("a shm: message shorter than its topic"));
            }
            self.topic.clear();
            self.topic.extend_from_slice(&rest[..tlen]);
            let topic = std::str::from_utf8(&self.topic)
                .ok()
                .filter(|t| check_topic(t).is_ok())
                .ok_or_else(|| bad("a shm: message with a malformed topic"))?;
            if self.patterns.iter().any(|p| p.matches(topic)) {
                let topic = topic.to_string();
                let payload = crate::copy::to_vec(&rest[tlen..]);
                return Ok(Delivery { topic, payload });
            }
        }
    }
}
