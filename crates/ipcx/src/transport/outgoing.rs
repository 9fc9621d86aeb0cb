//! A message on its way out: the headers and payload slices of one message,
//! written with `writev`/`sendmsg` and resumable after a partial write, so
//! the blocking and the async senders drive the same code.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::BorrowedFd;

use super::descriptor::Descriptor;
use crate::wire;

/// Most slices handed to one `writev`/`sendmsg` (a 16 MiB message is 32).
const MAX_IOV: usize = 64;

/// A piece of an outgoing message.
#[derive(Clone, Copy)]
pub(crate) enum Part<'a> {
    Head([u8; wire::HEADER_LEN]),
    Body(&'a [u8]),
}

impl Part<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Part::Head(h) => h,
            Part::Body(b) => b,
        }
    }
}

/// The pieces of one message: inline for the usual one or two (a header
/// and a payload), so sending allocates nothing; on the heap for a message
/// split into several frames.
pub(crate) enum Parts<'a> {
    Inline([Part<'a>; 2], usize),
    Heap(Vec<Part<'a>>),
}

impl<'a> Parts<'a> {
    pub(crate) fn one(a: Part<'a>) -> Parts<'a> {
        Parts::Inline([a, Part::Body(&[])], 1)
    }

    pub(crate) fn two(a: Part<'a>, b: Part<'a>) -> Parts<'a> {
        Parts::Inline([a, b], 2)
    }

    fn as_slice(&self) -> &[Part<'a>] {
        match self {
            Parts::Inline(p, n) => &p[..*n],
            Parts::Heap(v) => v,
        }
    }
}

/// A message on its way out: resumable after a partial or refused write, so
/// the blocking and the async senders drive the same code.
pub(crate) struct Outgoing<'a> {
    parts: Parts<'a>,
    /// Parts written per system call (one datagram, or everything).
    group: usize,
    next: usize,
    offset: usize,
    fds: &'a [BorrowedFd<'a>],
}

impl<'a> Outgoing<'a> {
    /// The message made of `parts`, written `group` parts per system call,
    /// with `fds` attached to its first byte.
    pub(crate) fn new(parts: Parts<'a>, group: usize, fds: &'a [BorrowedFd<'a>]) -> Outgoing<'a> {
        Outgoing {
            parts,
            group,
            next: 0,
            offset: 0,
            fds,
        }
    }

    /// Whether some of the message has been written (it cannot be taken
    /// back).
    pub(crate) fn started(&self) -> bool {
        self.next > 0 || self.offset > 0
    }

    /// What is still to write, copied: one buffer per system call (a
    /// datagram each; a stream's all in one).
    pub(crate) fn rest(&self) -> VecDeque<Vec<u8>> {
        let parts = &self.parts.as_slice()[self.next..];
        let mut offset = self.offset;
        parts
            .chunks(self.group.min(parts.len()).max(1))
            .map(|group| {
                let mut buf = Vec::new();
                for p in group {
                    buf.extend_from_slice(&p.bytes()[offset..]);
                    offset = 0;
                }
                buf
            })
            .collect()
    }

    /// Writes what the descriptor takes; `true` when all is written. With
    /// `dont_wait`, never sleeps (see [`Descriptor::write`]).
    pub(crate) fn write_some(&mut self, ch: &Descriptor, dont_wait: bool) -> std::io::Result<bool> {
        let parts = self.parts.as_slice();
        while self.next < parts.len() {
            let end = (self.next + self.group.min(MAX_IOV)).min(parts.len());
            // Most writes are of one or two slices: no 64-slice array to
            // clear for them.
            let (mut few, mut many);
            let slices: &mut [IoSlice<'_>] = if end - self.next <= 2 {
                few = [IoSlice::new(&[]); 2];
                &mut few[..end - self.next]
            } else {
                many = [IoSlice::new(&[]); MAX_IOV];
                &mut many[..end - self.next]
            };
            for (i, p) in parts[self.next..end].iter().enumerate() {
                let b = p.bytes();
                slices[i] = IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
            }
            let iov = &*slices;
            let want: usize = iov.iter().map(|s| s.len()).sum();
            if want == 0 {
                self.next = end;
                continue;
            }
            let fds = if self.next == 0 && self.offset == 0 {
                self.fds
            } else {
                &[]
            };
            let mut n = loop {
                match ch.write(iov, fds, dont_wait) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            // Advance past what was written.
            while n > 0 {
                let left = parts[self.next].bytes().len() - self.offset;
                if n >= left {
                    n -= left;
                    self.next += 1;
                    self.offset = 0;
                } else {
                    self.offset += n;
                    n = 0;
                }
            }
            while self.next < parts.len() && parts[self.next].bytes().is_empty() {
                self.next += 1;
            }
        }
        Ok(true)
    }
}
