//! The bare OS baselines of a benchmark cell: plain blocking reads and
//! writes of fixed-size messages on a stream or a seqpacket socket, and a
//! spinning mailbox in bare shared memory — no ipcx on either side.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;

use ipcx::shm::Segment;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use super::conn::Conn;

/// A byte stream read with `read_exact`: a message is `size` bytes.
pub struct RawStream<R, W> {
    pub(super) r: R,
    pub(super) w: W,
}

impl<R: Read, W: Write> Conn for RawStream<R, W> {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.w.write_all(msg)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, size: usize) -> io::Result<()> {
        buf.resize(size, 0);
        self.r.read_exact(buf)
    }
}

/// A seqpacket socket: a message is one datagram.
pub struct RawPacket(pub(super) OwnedFd);

impl Conn for RawPacket {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        rustix::net::send(&self.0, msg, SendFlags::NOSIGNAL)?;
        Ok(())
    }
    fn recv(&mut self, buf: &mut Vec<u8>, size: usize) -> io::Result<()> {
        buf.resize(size, 0);
        let (n, _) = rustix::net::recv(&self.0, &mut buf[..], RecvFlags::empty())?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

pub(super) fn seqpacket() -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Bare shared memory: one mailbox per direction, each a sequence counter,
/// an acknowledgement counter (each on its own cache line) and the payload.
/// The sender waits (spinning) until its last message was taken, copies the
/// payload in and bumps the sequence; the receiver spins on the sequence,
/// copies the payload out and acknowledges. One copy on each side, as in
/// ipc-bench's shared-memory test.
pub struct RawShm {
    seg: Segment,
    out: usize,
    inn: usize,
    sent: u64,
    received: u64,
}

/// The two cache lines before each mailbox's payload.
const MAILBOX_HEAD: usize = 128;
/// In the sequence's line of a mailbox: set when its sender hung up, so the
/// other side's last wait ends at once (not after the 10 s silence limit).
const HUNG_UP: usize = 8;

impl RawShm {
    fn mailbox_len(size: usize) -> usize {
        MAILBOX_HEAD + size.div_ceil(64) * 64
    }

    pub fn segment_size(size: usize) -> usize {
        2 * RawShm::mailbox_len(size)
    }

    pub(super) fn new(seg: Segment, driver: bool) -> RawShm {
        let half = seg.len() / 2;
        let (out, inn) = if driver { (0, half) } else { (half, 0) };
        RawShm {
            seg,
            out,
            inn,
            sent: 0,
            received: 0,
        }
    }

    fn spin_until(&self, mut ready: impl FnMut() -> bool) -> io::Result<()> {
        let start = std::time::Instant::now();
        let hung_up = word(&self.seg, self.inn + HUNG_UP)?;
        let mut n = 0u32;
        while !ready() {
            if hung_up.load(std::sync::atomic::Ordering::Acquire) != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the raw shm peer hung up",
                ));
            }
            std::hint::spin_loop();
            n = n.wrapping_add(1);
            if n.is_multiple_of(1 << 20) && start.elapsed() > std::time::Duration::from_secs(10) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "raw shm peer silent for 10 s",
                ));
            }
        }
        Ok(())
    }
}

/// A control word of the mailboxes (sequence, acknowledgement, hang-up).
fn word(seg: &Segment, offset: usize) -> io::Result<&std::sync::atomic::AtomicU64> {
    // SAFETY: the mailbox layout gives these words their own places, used
    // only as atomics by both processes; the payload bytes are elsewhere
    // (from MAILBOX_HEAD on).
    unsafe { seg.atomic_u64(offset) }.map_err(io::Error::other)
}

impl Drop for RawShm {
    fn drop(&mut self) {
        if let Ok(hung_up) = word(&self.seg, self.out + HUNG_UP) {
            hung_up.store(1, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Conn for RawShm {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let seq = word(&self.seg, self.out)?;
        let ack = word(&self.seg, self.out + 64)?;
        let sent = self.sent;
        self.spin_until(|| ack.load(std::sync::atomic::Ordering::Acquire) == sent)?;
        // SAFETY: the peer acknowledged the previous message (`ack`, with
        // acquire), so it no longer reads the mailbox; it reads again only
        // after `seq` is stored with release below.
        unsafe { self.seg.write_at(self.out + MAILBOX_HEAD, msg) }.map_err(io::Error::other)?;
        self.sent += 1;
        seq.store(self.sent, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    fn recv(&mut self, buf: &mut Vec<u8>, size: usize) -> io::Result<()> {
        let seq = word(&self.seg, self.inn)?;
        let ack = word(&self.seg, self.inn + 64)?;
        let want = self.received + 1;
        self.spin_until(|| seq.load(std::sync::atomic::Ordering::Acquire) >= want)?;
        buf.resize(size, 0);
        // SAFETY: the sender published this message (`seq`, with acquire)
        // and writes the mailbox again only after `ack` below.
        unsafe { self.seg.read_at(self.inn + MAILBOX_HEAD, buf) }.map_err(io::Error::other)?;
        self.received = want;
        ack.store(want, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}
