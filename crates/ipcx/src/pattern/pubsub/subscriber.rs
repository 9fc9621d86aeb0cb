//! The subscribing end: joins a publisher with its patterns and takes
//! the messages of its batches one by one.

use std::time::Duration;

use super::super::topic::{Pattern, check_topic};
use super::super::typed::trade_schemas;
use super::{BATCH, BATCH_HEAD, SUBSCRIBE, ways};
use crate::Link;
use crate::error::{Error, ErrorKind, Result};
use crate::wire::FrameError;

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
    link: Link,
    /// The batch being read, and where its next message starts.
    batch: Vec<u8>,
    at: usize,
    left: u32,
    lost: u64,
}

fn bad(why: &'static str) -> Error {
    Error::new(ErrorKind::Frame(FrameError::Unexpected(why)), "recv")
}

impl Subscriber {
    /// Connects to the publisher at `url` and subscribes to `patterns`
    /// (`sensors.*.front`, `prices.>`); with `?history=N`, asks for up to
    /// the last N messages of each matching topic first. A malformed
    /// pattern is an error before anything is sent.
    pub fn connect(url: &str, patterns: &[&str]) -> Result<Subscriber> {
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
        let history = crate::Endpoint::parse(url)?.options().history;
        let mut link = Link::connect(url)?;
        trade_schemas(&mut link, &ways(false))?;
        let mut msg = vec![SUBSCRIBE];
        msg.extend_from_slice(&(history as u32).to_le_bytes());
        msg.extend_from_slice(&(checked.len() as u16).to_le_bytes());
        for p in &checked {
            msg.extend_from_slice(&(p.as_str().len() as u16).to_le_bytes());
            msg.extend_from_slice(p.as_str().as_bytes());
        }
        link.send(&msg)?;
        Ok(Subscriber {
            link,
            batch: Vec::new(),
            at: 0,
            left: 0,
            lost: 0,
        })
    }

    /// The next message, waiting as long as it takes; `Closed` once the
    /// publisher is gone.
    pub fn recv(&mut self) -> Result<Delivery> {
        loop {
            if let Some(d) = self.next_in_batch()? {
                return Ok(d);
            }
            let mut batch = std::mem::take(&mut self.batch);
            self.link.recv_into(&mut batch)?;
            self.start(batch)?;
        }
    }

    /// The next message if one is there now.
    pub fn try_recv(&mut self) -> Result<Option<Delivery>> {
        loop {
            if let Some(d) = self.next_in_batch()? {
                return Ok(Some(d));
            }
            match self.link.try_recv()? {
                Some(batch) => self.start(batch)?,
                None => return Ok(None),
            }
        }
    }

    /// [`Subscriber::recv`], waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Delivery> {
        let deadline = crate::deadline::after(timeout);
        loop {
            if let Some(d) = self.next_in_batch()? {
                return Ok(d);
            }
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(std::time::Instant::now())
            });
            let batch = self.link.recv_timeout(left)?;
            self.start(batch)?;
        }
    }

    /// Messages the publisher dropped for this subscriber so far
    /// (`?overflow=drop_oldest` when it fell behind), as far as the
    /// batches received say.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Takes a new batch: checks its head.
    fn start(&mut self, batch: Vec<u8>) -> Result<()> {
        if batch.len() < BATCH_HEAD || batch[0] != BATCH {
            return Err(bad("a publisher's message that is no batch"));
        }
        let mut lost = [0u8; 8];
        lost.copy_from_slice(&batch[1..9]);
        self.lost += u64::from_le_bytes(lost);
        let mut count = [0u8; 4];
        count.copy_from_slice(&batch[9..13]);
        self.left = u32::from_le_bytes(count);
        self.batch = batch;
        self.at = BATCH_HEAD;
        Ok(())
    }

    /// The next message of the current batch, its lengths checked
    /// against the batch.
    fn next_in_batch(&mut self) -> Result<Option<Delivery>> {
        if self.left == 0 {
            if self.at != 0 && self.at != self.batch.len() {
                return Err(bad("bytes after the last message of a batch"));
            }
            return Ok(None);
        }
        let rest = &self.batch[self.at..];
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
        let payload = rest[..plen].to_vec();
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
