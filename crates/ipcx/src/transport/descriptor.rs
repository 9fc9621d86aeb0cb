//! One open descriptor of a link, and how bytes move through it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::sys;
use crate::wire::{FrameError, ReadSource};

/// What sits behind a descriptor; decides which calls move the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdKind {
    /// A pipe or FIFO end.
    Pipe,
    /// A Unix stream socket (carries descriptors).
    UnixStream,
    /// A Unix seqpacket socket (carries descriptors, keeps boundaries).
    UnixSeq,
    /// A TCP socket.
    Tcp,
}

impl FdKind {
    pub(crate) fn is_socket(self) -> bool {
        self != FdKind::Pipe
    }
    pub(crate) fn is_packet(self) -> bool {
        self == FdKind::UnixSeq
    }
    pub(crate) fn passes_fds(self) -> bool {
        matches!(self, FdKind::UnixStream | FdKind::UnixSeq)
    }
}

/// Holds one place in a listener's connection count until dropped.
#[derive(Debug)]
pub(crate) struct ServedSlot(Arc<AtomicUsize>);

impl ServedSlot {
    /// Takes a place if fewer than `max` are taken.
    pub(crate) fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<ServedSlot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ServedSlot(count.clone()))
    }
}

impl Drop for ServedSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A descriptor of a link, shared by its two halves.
///
/// Links that wait by blocking keep the descriptor in blocking mode, so a
/// receive that may wait forever is one `read` that sleeps in the kernel,
/// exactly like a bare blocking read; every other receive first checks
/// readiness without waiting. Spinning and async links keep it non-blocking.
#[derive(Debug)]
pub(crate) struct Descriptor {
    fd: OwnedFd,
    kind: FdKind,
    blocking: AtomicBool,
    /// A FIFO's read end opened before its writer: it reads as the end of
    /// the stream until the writer comes.
    eof_until_writer: bool,
    /// The listener's count of served connections, once this one is
    /// served (not while its hello is pending).
    slot: std::sync::OnceLock<ServedSlot>,
}

impl Descriptor {
    /// A link's descriptor, non-blocking.
    pub(crate) fn new(fd: OwnedFd, kind: FdKind) -> Descriptor {
        Descriptor {
            fd,
            kind,
            blocking: AtomicBool::new(false),
            eof_until_writer: false,
            slot: std::sync::OnceLock::new(),
        }
    }

    /// A pipe or FIFO end, asking the kernel for a 1 MiB
    /// buffer (the unprivileged maximum) so large messages cross in fewer
    /// wake-ups.
    pub(crate) fn pipe(fd: OwnedFd) -> Arc<Descriptor> {
        Arc::new(Descriptor::pipe_end(fd))
    }

    /// A FIFO's read end opened before any writer (see
    /// [`Descriptor::eof_until_writer`]).
    pub(crate) fn fifo_before_writer(fd: OwnedFd) -> Arc<Descriptor> {
        Arc::new(Descriptor {
            eof_until_writer: true,
            ..Descriptor::pipe_end(fd)
        })
    }

    fn pipe_end(fd: OwnedFd) -> Descriptor {
        // An optimization only: the default size works too.
        let _ = rustix::pipe::fcntl_setpipe_size(&fd, 1 << 20);
        Descriptor::new(fd, FdKind::Pipe)
    }

    /// Whether a read that finds nothing may mean "no writer yet" rather
    /// than the end: read only once bytes are there.
    pub(crate) fn eof_until_writer(&self) -> bool {
        self.eof_until_writer
    }

    /// Counts this connection as served until the descriptor drops.
    pub(crate) fn hold(&self, slot: ServedSlot) {
        let _ = self.slot.set(slot);
    }

    /// Switches the descriptor between blocking and non-blocking mode.
    pub(crate) fn set_blocking(&self, on: bool) -> io::Result<()> {
        sys::fd::set_nonblocking(self.fd(), !on)?;
        self.blocking.store(on, Ordering::Release);
        Ok(())
    }

    /// Whether a read may sleep in the kernel.
    pub(crate) fn is_blocking(&self) -> bool {
        self.blocking.load(Ordering::Acquire)
    }

    pub(crate) fn kind(&self) -> FdKind {
        self.kind
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Writes some of `bufs`, attaching `fds` to the first byte. With
    /// `dont_wait` the call never sleeps, even in blocking mode: a socket is
    /// asked per call (`MSG_DONTWAIT`); a pipe end, which has no such flag,
    /// is non-blocking for the call (only its sending half writes it).
    pub(crate) fn write(
        &self,
        bufs: &[IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
        dont_wait: bool,
    ) -> io::Result<usize> {
        if self.kind.is_socket() {
            sys::socket::send(self.fd(), bufs, fds, dont_wait)
        } else if dont_wait && self.is_blocking() {
            sys::fd::set_nonblocking(self.fd(), true)?;
            let written = sys::fd::writev(self.fd(), bufs);
            // What was written counts whatever the restore says.
            if let Err(e) = sys::fd::set_nonblocking(self.fd(), false) {
                tracing::warn!(error = %e, "a pipe end stays non-blocking");
            }
            written
        } else {
            sys::fd::writev(self.fd(), bufs)
        }
    }

    /// Stops traffic in both directions (sockets), so the peer sees the end.
    pub(crate) fn shutdown(&self, write_only: bool) {
        if self.kind.is_socket() {
            sys::socket::shutdown(self.fd(), write_only);
        }
    }

    /// A [`ReadSource`] that queues received descriptors onto `fds`. With
    /// `may_block`, a read on a blocking descriptor sleeps until data comes;
    /// otherwise every read returns `WouldBlock` instead of sleeping.
    /// At most `max_fds` descriptors per message are accepted.
    /// A blocking read paces itself with `pace` (see [`Pace`]).
    pub(crate) fn source<'a>(
        &'a self,
        fds: &'a mut VecDeque<OwnedFd>,
        max_fds: usize,
        may_block: bool,
        pace: &'a mut Pace,
    ) -> DescriptorSource<'a> {
        DescriptorSource {
            ch: self,
            fds,
            check_first: !may_block && self.is_blocking(),
            may_block,
            max_fds,
            pace,
        }
    }
}

pub(crate) struct DescriptorSource<'a> {
    ch: &'a Descriptor,
    fds: &'a mut VecDeque<OwnedFd>,
    /// Poll before reading, since the descriptor blocks and we must not.
    check_first: bool,
    max_fds: usize,
    may_block: bool,
    pace: &'a mut Pace,
}

/// Reads that bring less than this are small (see [`Pace`]): fewer than
/// about six 64-byte frames.
const SMALL_READ: usize = 512;

/// Read coalescing on a byte stream (`?coalesce=`,
/// [`Options::coalesce`](crate::Options::coalesce)): after a blocking read
/// that brought little, the next one waits `delay` (spinning) before it
/// reads, so that it takes in one call what a streaming writer sends
/// meanwhile. A reader that keeps pace with a writer of small messages
/// otherwise reads them one per call, and each read contends with the
/// writer for the pipe or socket: on two cores, 64-byte frames read one by
/// one cap a stream below the bare `write`/`read` pair, while batches of a
/// few make it faster (docs/BENCHMARKS.md). What it costs: a message that
/// arrives within `delay` after a small read waits up to `delay` more; a
/// message that arrives later, or the first of a burst, none.
///
/// On a packet socket a read after a small one takes every datagram
/// already queued, up to [`sys::socket::BATCH`], in one call.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    delay: std::time::Duration,
    small: bool,
    /// What the read after the one that gives a batch's good datagrams
    /// returns: what was wrong with the next one, or the end of the stream
    /// (an empty datagram), whatever the batch took after it.
    held: Option<io::Result<usize>>,
}

impl Pace {
    pub(crate) fn new(delay: std::time::Duration) -> Pace {
        Pace {
            delay,
            small: false,
            held: None,
        }
    }
}

impl DescriptorSource<'_> {
    fn ready(&self) -> io::Result<()> {
        if self.check_first
            && !sys::fd::wait(
                self.ch.fd(),
                sys::fd::Interest::Read,
                Some(std::time::Instant::now()),
            )?
        {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }
}

impl ReadSource for DescriptorSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(r) = self.pace.held.take() {
            return r;
        }
        self.ready()?;
        if self.may_block && self.pace.small && !self.pace.delay.is_zero() {
            let start = std::time::Instant::now();
            while start.elapsed() < self.pace.delay {
                std::hint::spin_loop();
            }
        }
        let n = self.read_now(buf)?;
        self.pace.small = n < SMALL_READ;
        Ok(n)
    }

    fn read_append(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        // Only the rest of a payload is read this way; descriptors always
        // arrive with a frame's first bytes, which `read` takes.
        self.ready()?;
        self.pace.small = false;
        sys::fd::read_append(self.ch.fd(), out, max)
    }
}

impl DescriptorSource<'_> {
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.ch.kind.passes_fds() {
            return sys::fd::read(self.ch.fd(), buf);
        }
        let batch = self.ch.kind.is_packet() && self.pace.small && buf.len() >= 2 * PACKET_SLOT;
        let (bytes, datagrams) = if batch {
            self.recv_datagrams(buf)?
        } else {
            let r = sys::socket::recv(self.ch.fd(), buf, self.fds, !self.may_block)?;
            check_received(&r, buf.len(), sys::socket::MAX_FDS)?;
            (r.bytes, 1)
        };
        // Bytes in flight hold at most the current message's descriptors
        // and those of each frame read since; more is a flood.
        if self.fds.len() > (datagrams + 1) * self.max_fds {
            return Err(io::Error::other(FrameError::Fds(format!(
                "{} received ahead of their messages (limit {} per message, ?max_fds=)",
                self.fds.len(),
                self.max_fds
            ))));
        }
        Ok(bytes)
    }

    /// Datagrams several per call, after a small read (see [`Pace`]):
    /// each into a slot that holds the largest frame a sender makes, then
    /// moved up behind the first, as one read of a stream would have left
    /// them. Returns the bytes and the datagrams taken.
    fn recv_datagrams(&mut self, buf: &mut [u8]) -> io::Result<(usize, usize)> {
        let mut got = [sys::socket::Received::default(); sys::socket::BATCH];
        let mut slots: [&mut [u8]; sys::socket::BATCH] = Default::default();
        let mut k = 0;
        for (slot, chunk) in slots.iter_mut().zip(buf.chunks_exact_mut(PACKET_SLOT)) {
            *slot = chunk;
            k += 1;
        }
        let taken = sys::socket::recv_batch(
            self.ch.fd(),
            &mut slots[..k],
            self.fds,
            !self.may_block,
            &mut got,
            self.max_fds,
        )?;
        let mut total = 0;
        for (i, r) in got[..taken].iter().enumerate() {
            if let Err(e) = check_received(r, PACKET_SLOT, self.max_fds) {
                if i == 0 {
                    return Err(e);
                }
                self.pace.held = Some(Err(e));
                break;
            }
            if r.bytes == 0 {
                // The end of the stream (the peer's, or an empty datagram,
                // which no sender makes): the next read gives it.
                if i > 0 {
                    self.pace.held = Some(Ok(0));
                }
                break;
            }
            if i > 0 {
                buf.copy_within(i * PACKET_SLOT..i * PACKET_SLOT + r.bytes, total);
            }
            total += r.bytes;
        }
        Ok((total, taken))
    }
}

/// Room for one datagram of a batch: as much as a single read gives one.
const PACKET_SLOT: usize = crate::wire::PACKET_MAX;

/// A datagram cut short (`room` bytes read), or descriptors the kernel
/// had to close (there was room for `fd_room`): errors.
fn check_received(r: &sys::socket::Received, room: usize, fd_room: usize) -> io::Result<()> {
    if r.truncated {
        return Err(io::Error::other(FrameError::PacketTruncated(room)));
    }
    if r.fds_truncated {
        return Err(io::Error::other(FrameError::Fds(format!(
            "more than {fd_room} sent with one message; the kernel closed the rest \
             (the limit per message is ?max_fds=, at most {})",
            sys::socket::MAX_FDS
        ))));
    }
    Ok(())
}
