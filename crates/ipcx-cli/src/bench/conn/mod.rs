//! The two sides of a benchmark connection, through ipcx or through the bare
//! OS mechanism (plain blocking read/write of fixed-size messages, no ipcx).

use std::io;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;

use anyhow::{Result, bail};
use ipcx::shm::{Publisher, Segment, Subscriber};
use ipcx::{Link, Listener};
use rustix::net::SocketAddrUnix;

use crate::bench::raw::{RawPacket, RawShm, RawStream, seqpacket};
use patterns::{Answers, Journals, PubSub, Typed, ZeroCopy, follow};
use queues::{QueuePair, RawQueues};

mod mech;
mod patterns;
mod queues;
mod setup;

pub use mech::{Impl, Mech};
pub use setup::prepare;

/// What [`Conn::recv_seq`] read of a message.
pub struct Got {
    pub seq: u64,
    pub extra: u64,
    pub len: usize,
    /// Sum of one byte per cache line, when the message was touched.
    pub sum: u64,
}

/// One side of a connection that moves fixed-size messages.
pub trait Conn {
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Receives one whole message of `size` bytes into `buf`.
    fn recv(&mut self, buf: &mut Vec<u8>, size: usize) -> io::Result<()>;

    /// Sends a `size`-byte message starting with `seq` and `extra`; with
    /// `fill`, every byte is written first.
    fn send_seq(
        &mut self,
        size: usize,
        seq: u64,
        extra: u64,
        fill: bool,
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        scratch.resize(size, 0);
        write_message(scratch, seq, extra, fill);
        self.send(scratch)
    }

    /// Receives one message; with `touch`, reads one byte per cache line.
    fn recv_seq(&mut self, size: usize, touch: bool, buf: &mut Vec<u8>) -> io::Result<Got> {
        self.recv(buf, size)?;
        Ok(read(buf, touch))
    }
}

/// Writes a message as a sender does: with `fill`, every byte first; then
/// the sequence number and extra word at its start.
pub(super) fn write_message(msg: &mut [u8], seq: u64, extra: u64, fill: bool) {
    if fill {
        msg.fill(seq as u8);
    }
    msg[..8].copy_from_slice(&seq.to_le_bytes());
    msg[8..16].copy_from_slice(&extra.to_le_bytes());
}

/// Reads a message's stamp and, with `touch`, every cache line.
fn read(msg: &[u8], touch: bool) -> Got {
    let word = |i: usize| u64::from_le_bytes(msg[i..i + 8].try_into().expect("8 bytes"));
    Got {
        seq: word(0),
        extra: word(8),
        len: msg.len(),
        sum: if touch {
            msg.iter().step_by(64).map(|&b| u64::from(b)).sum()
        } else {
            0
        },
    }
}

impl Conn for Link {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        Link::send(self, msg).map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        self.recv_into(buf).map_err(io::Error::other)
    }
}

/// Keeps the listener (and its socket file) alive as long as the link.
struct ListenerLink {
    _listener: Listener,
    link: Link,
}

impl Conn for ListenerLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        Conn::send(&mut self.link, msg)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, size: usize) -> io::Result<()> {
        Conn::recv(&mut self.link, buf, size)
    }
}

/// The child's side: connects as `prepare` told it.
pub fn connect(mech: Mech, imp: Impl, url: &str, url2: &str, size: usize) -> Result<Box<dyn Conn>> {
    Ok(match (mech, imp) {
        (Mech::Sync | Mech::Journal, _) => {
            bail!("sync and journal cells are measured on their own, not over links")
        }
        (Mech::Typed, Impl::Ipcx) => Box::new(Typed::new(Link::connect(url)?)?),
        // The driver calls; the peer answers.
        (Mech::RpcUnix | Mech::RpcTcp, Impl::Ipcx) => Box::new(Answers {
            responder: ipcx::pattern::Responder::from_link(Link::connect(url)?)?,
            pending: None,
        }),
        (Mech::RpcUnix, Impl::Raw) => connect(Mech::Unix, Impl::Raw, url, url2, size)?,
        (Mech::Pubsub, Impl::Raw) => connect(Mech::Unix, Impl::Raw, url, url2, size)?,
        // The peer publishes on `url2`, and subscribes to the driver's.
        (Mech::Pubsub, Impl::Ipcx) => {
            let publisher = ipcx::pattern::Publisher::bind(url2)?;
            let subscriber =
                ipcx::pattern::Subscriber::connect(&format!("{url}&timeout=30s"), &[">"])?;
            publisher.wait_for_subscribers(1, std::time::Duration::from_secs(30))?;
            Box::new(PubSub {
                publisher,
                subscriber,
            })
        }
        (Mech::RpcTcp, Impl::Raw) => connect(Mech::Tcp, Impl::Raw, url, url2, size)?,
        (Mech::Typed, Impl::Raw) => Box::new(Link::connect(url)?),
        (Mech::ShmZc | Mech::ShmZcUntouched, _) => {
            // The driver publishes on `-ping`; the peer answers on `-pong`.
            let (base, query) = url.split_once('?').unwrap_or((url, ""));
            let pong = Publisher::create(&format!("{base}-pong?slots=64&max_msg={size}&{query}"))?;
            let ping = Subscriber::open(&format!("{base}-ping?timeout=30s&{query}"))?;
            pong.wait_for_subscribers(1, std::time::Duration::from_secs(30))?;
            Box::new(ZeroCopy {
                publisher: pong,
                subscriber: ping,
            })
        }
        // SAFETY: the bench peer is started by ipcx::spawn, adopts the pipe
        // first thing, and runs no other thread yet.
        (Mech::Pipe, Impl::Ipcx) => Box::new(unsafe { Link::from_inherited() }?),
        // The peer takes from the driver's queue and answers on the other.
        (Mech::Mq | Mech::Sysvmq, Impl::Ipcx) => Box::new(QueuePair {
            tx: Link::connect(&format!("{url2}?timeout=30s"))?,
            rx: Link::connect(&format!("{url}?timeout=30s"))?,
            _listeners: None,
        }),
        (Mech::Mq | Mech::Sysvmq, Impl::Raw) => Box::new(RawQueues::open(mech, url2, url)?),
        // The peer writes the journal the driver follows, and follows the
        // driver's.
        (Mech::JournalTail, _) => Box::new(Journals {
            w: Box::new(ipcx::journal::JournalWriter::open(url2)?),
            r: follow(url)?,
        }),
        (_, Impl::Ipcx) => Box::new(Link::connect(url)?),
        (Mech::Pipe, Impl::Raw) => {
            // Duplicates of fds 0 and 1, unbuffered: std's stdin and stdout buffer.
            use std::os::fd::AsFd;
            let r = std::fs::File::from(io::stdin().as_fd().try_clone_to_owned()?);
            let w = std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
            Box::new(RawStream { r, w })
        }
        (Mech::Fifo, Impl::Raw) => {
            let r = std::fs::File::open(url)?;
            let w = std::fs::OpenOptions::new().write(true).open(url2)?;
            Box::new(RawStream { r, w })
        }
        (Mech::Unix, Impl::Raw) => {
            let s = UnixStream::connect(url)?;
            Box::new(RawStream {
                r: s.try_clone()?,
                w: s,
            })
        }
        (Mech::Tcp, Impl::Raw) => {
            let s = TcpStream::connect(url)?;
            s.set_nodelay(true)?;
            Box::new(RawStream {
                r: s.try_clone()?,
                w: s,
            })
        }
        (Mech::Unixseq, Impl::Raw) => {
            let fd = seqpacket()?;
            rustix::net::connect(&fd, &SocketAddrUnix::new(url)?)?;
            Box::new(RawPacket(fd))
        }
        (Mech::Shm, Impl::Raw) => Box::new(RawShm::new(
            Segment::open(&format!("{url}?timeout=10s"))?,
            false,
        )),
    })
}
