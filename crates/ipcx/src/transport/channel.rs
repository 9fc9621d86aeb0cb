//! One open descriptor of a link, and how bytes move through it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sys;
use crate::wire::ReadSource;

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
pub(crate) struct ConnSlot(Arc<AtomicUsize>);

impl ConnSlot {
    /// Takes a place if fewer than `max` are taken.
    pub(crate) fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<ConnSlot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnSlot(count.clone()))
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A non-blocking descriptor of a link, shared by its two halves.
#[derive(Debug)]
pub(crate) struct Channel {
    fd: OwnedFd,
    kind: FdKind,
    _slot: Option<ConnSlot>,
}

impl Channel {
    pub(crate) fn new(fd: OwnedFd, kind: FdKind) -> Channel {
        Channel {
            fd,
            kind,
            _slot: None,
        }
    }

    pub(crate) fn with_slot(fd: OwnedFd, kind: FdKind, slot: ConnSlot) -> Channel {
        Channel {
            fd,
            kind,
            _slot: Some(slot),
        }
    }

    pub(crate) fn kind(&self) -> FdKind {
        self.kind
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Writes some of `bufs`, attaching `fds` to the first byte.
    pub(crate) fn write(&self, bufs: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        if self.kind.is_socket() {
            sys::socket::send(self.fd(), bufs, fds)
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

    /// A [`ReadSource`] that queues received descriptors onto `fds`.
    pub(crate) fn source<'a>(&'a self, fds: &'a mut VecDeque<OwnedFd>) -> ChannelSource<'a> {
        ChannelSource { ch: self, fds }
    }
}

pub(crate) struct ChannelSource<'a> {
    ch: &'a Channel,
    fds: &'a mut VecDeque<OwnedFd>,
}

impl ReadSource for ChannelSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ch.kind.passes_fds() {
            sys::socket::recv(self.ch.fd(), buf, self.fds)
        } else {
            sys::fd::read(self.ch.fd(), buf)
        }
    }

    fn read_append(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        // Only the rest of a payload is read this way; descriptors always
        // arrive with a frame's first bytes, which `read` takes.
        sys::fd::read_append(self.ch.fd(), out, max)
    }
}
