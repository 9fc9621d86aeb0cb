//! The publishing end: over sockets a fan-out to connected subscribers
//! ([`fanout`](super::fanout)), over `shm:` a zero-copy channel
//! ([`shm`](super::shm)).

use std::time::Duration;

use super::fanout::{Fanout, SubscriberStats};
use super::shm::ShmPublisher;
use crate::error::Result;

/// The publishing end of publish/subscribe; see the [module docs](super).
#[derive(Debug)]
pub struct Publisher {
    ends: Ends,
}

#[derive(Debug)]
enum Ends {
    Sockets(Fanout),
    Shm(Box<ShmPublisher>),
}

impl Publisher {
    /// Binds `url` and accepts subscribers from now on: `unix:`,
    /// `unixseq:`, `tcp:` (`?history=`, `?slots=`, `?overflow=`), or
    /// creates the channel `shm:name` (`?slots=`, `?max_msg=`,
    /// `?overflow=`; no history).
    pub fn bind(url: &str) -> Result<Publisher> {
        let ends = if super::shm::is_shm(url)? {
            Ends::Shm(Box::new(ShmPublisher::create(url)?))
        } else {
            Ends::Sockets(Fanout::bind(url)?)
        };
        Ok(Publisher { ends })
    }

    /// Connects to a subscriber that binds `url` (one that collects from
    /// publishers: [`Subscriber::bind`](super::Subscriber::bind)); it is
    /// this publisher's one subscriber, joined when this returns. On
    /// `shm:`, opens the channel another publisher created, as one more
    /// of its publishers (at most [`MAX_PUBLISHERS`](crate::shm::MAX_PUBLISHERS)).
    pub fn connect(url: &str) -> Result<Publisher> {
        let ends = if super::shm::is_shm(url)? {
            Ends::Shm(Box::new(ShmPublisher::open(url)?))
        } else {
            Ends::Sockets(Fanout::connect(url)?)
        };
        Ok(Publisher { ends })
    }

    /// The bound URL (with the port the OS picked for `tcp://…:0`).
    pub fn url(&self) -> &str {
        match &self.ends {
            Ends::Sockets(f) => f.url(),
            Ends::Shm(s) => s.url(),
        }
    }

    /// Publishes `payload` on `topic` to every subscriber whose patterns
    /// match it; returns how many (on `shm:`, the subscribers attached:
    /// each filters for itself). A malformed topic is an error; so is a
    /// full queue with `?overflow=fail` ([`ErrorKind::Full`](crate::ErrorKind::Full),
    /// sent to nobody).
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<usize> {
        match &self.ends {
            Ends::Sockets(f) => f.publish(topic, payload),
            Ends::Shm(s) => s.publish(topic, payload),
        }
    }

    /// Waits until at least `n` subscribers have joined, at most
    /// `timeout` ([`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut)).
    pub fn wait_for_subscribers(&self, n: usize, timeout: Duration) -> Result<()> {
        match &self.ends {
            Ends::Sockets(f) => f.wait_for_subscribers(n, timeout),
            Ends::Shm(s) => s.wait_for_subscribers(n, timeout),
        }
    }

    /// Waits until every message queued so far was written (or its
    /// subscriber left), at most `timeout`. On `shm:` a published
    /// message is in the channel already: nothing to wait for.
    pub fn flush(&self, timeout: Duration) -> Result<()> {
        match &self.ends {
            Ends::Sockets(f) => f.flush(timeout),
            Ends::Shm(_) => Ok(()),
        }
    }

    /// The subscribers now, with their patterns and counts (sockets; on
    /// `shm:` the subscribers filter for themselves and the publisher
    /// knows only how many there are: [`Publisher::subscriber_count`]).
    pub fn subscribers(&self) -> Vec<SubscriberStats> {
        match &self.ends {
            Ends::Sockets(f) => f.subscribers(),
            Ends::Shm(_) => Vec::new(),
        }
    }

    /// How many subscribers there are now.
    pub fn subscriber_count(&self) -> usize {
        match &self.ends {
            Ends::Sockets(f) => f.subscribers().len(),
            Ends::Shm(s) => s.subscribers(),
        }
    }
}
