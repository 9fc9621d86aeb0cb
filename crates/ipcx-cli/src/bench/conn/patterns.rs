//! Cells above plain links: zero-copy publish/subscribe, journals, typed
//! links, calls and topics.

use std::io;

use anyhow::Result;
use ipcx::pattern::Bytes;
use ipcx::shm::{Publisher, Subscriber};
use ipcx::{Link, Listener};

use super::{Conn, Got, read, write_message};

/// Zero-copy publish/subscribe, one channel each way: a message is written
/// where it will be read (a loan) and read where it was written (a sample).
pub(super) struct ZeroCopy {
    pub(super) publisher: Publisher,
    pub(super) subscriber: Subscriber,
}

impl Conn for ZeroCopy {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.publisher.send(msg).map_err(io::Error::other)
    }

    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        let sample = self.subscriber.recv().map_err(io::Error::other)?;
        buf.clear();
        buf.extend_from_slice(&sample);
        Ok(())
    }

    fn send_seq(
        &mut self,
        size: usize,
        seq: u64,
        extra: u64,
        fill: bool,
        _: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut loan = self.publisher.loan(size).map_err(io::Error::other)?;
        write_message(&mut loan, seq, extra, fill);
        loan.send().map_err(io::Error::other)
    }

    fn recv_seq(&mut self, _size: usize, touch: bool, _: &mut Vec<u8>) -> io::Result<Got> {
        let sample = self.subscriber.recv().map_err(io::Error::other)?;
        Ok(read(&sample, touch))
    }
}

/// A journal each way: appends go into one, messages come from following
/// the other.
pub(super) struct Journals {
    pub(super) w: Box<ipcx::journal::JournalWriter>,
    pub(super) r: ipcx::journal::JournalReader,
}

/// A reader of the journal at `url` from its start, once its writer made
/// it (up to 30 s).
pub(super) fn follow(url: &str) -> Result<ipcx::journal::JournalReader> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match ipcx::journal::JournalReader::open(url, 0) {
            Ok(r) => return Ok(r),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
}

impl Conn for Journals {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.w.append(msg).map(drop).map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        let (_, payload) = self.r.next().map_err(io::Error::other)?;
        *buf = payload;
        Ok(())
    }
}

/// A typed link of blobs: the message a typed application would send (a
/// value it fills, then sends) and receive (decoded into a value it
/// keeps, `recv_into`).
pub(super) struct Typed {
    link: ipcx::pattern::TypedLink<Bytes, Bytes>,
    out: Bytes,
    /// Received into, reusing its allocation (`recv_into`), then swapped
    /// with the caller's buffer.
    inn: Bytes,
}

impl Typed {
    pub(super) fn new(link: Link) -> Result<Typed> {
        Ok(Typed {
            link: ipcx::pattern::TypedLink::from_link(link)?,
            out: Bytes::default(),
            inn: Bytes::default(),
        })
    }
}

impl Conn for Typed {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.out.extend_from_slice(msg);
        self.link.send(&self.out).map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        self.link
            .recv_into(&mut self.inn)
            .map_err(io::Error::other)?;
        std::mem::swap(buf, &mut self.inn.0);
        Ok(())
    }
    /// The value is filled in place and sent, as an application would.
    fn send_seq(
        &mut self,
        size: usize,
        seq: u64,
        extra: u64,
        fill: bool,
        _scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        self.out.resize(size, 0);
        write_message(&mut self.out, seq, extra, fill);
        self.link.send(&self.out).map_err(io::Error::other)
    }
}

/// The calling side of the rpc cells: a message sent is a call, and its
/// reply the next message received; a receive with no reply waiting makes
/// an empty call (the throughput run: one call per message).
pub(super) struct Calls {
    pub(super) client: ipcx::pattern::Client,
    pub(super) reply: Option<Vec<u8>>,
    pub(super) _listener: Listener,
}

impl Conn for Calls {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.reply = Some(self.client.call(msg).map_err(io::Error::other)?);
        Ok(())
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        *buf = match self.reply.take() {
            Some(r) => r,
            None => self.client.call(&[]).map_err(io::Error::other)?,
        };
        Ok(())
    }
}

/// The answering side: a message received is a call (its id kept), and a
/// message sent answers it; a send with no call waiting takes the next.
pub(super) struct Answers {
    pub(super) responder: ipcx::pattern::Responder,
    pub(super) pending: Option<u64>,
}

impl Conn for Answers {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let id = match self.pending.take() {
            Some(id) => id,
            None => self.responder.recv().map_err(io::Error::other)?.0,
        };
        self.responder.reply(id, msg).map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        let (id, body) = self.responder.recv().map_err(io::Error::other)?;
        buf.clear();
        buf.extend_from_slice(body);
        self.pending = Some(id);
        Ok(())
    }
}

/// A publisher each way: a message sent is published (topic `bench.m`),
/// one received is the next delivery of the other side's publisher.
pub(super) struct PubSub {
    pub(super) publisher: ipcx::pattern::Publisher,
    pub(super) subscriber: ipcx::pattern::Subscriber,
}

impl Conn for PubSub {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.publisher
            .publish("bench.m", msg)
            .map(drop)
            .map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        *buf = self.subscriber.recv().map_err(io::Error::other)?.payload;
        Ok(())
    }
}
