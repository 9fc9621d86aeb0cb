//! A message on its way out: the headers and payload slices of one message,
//! written with `writev`/`sendmsg` and resumable after a partial write, so
//! the blocking and the async senders drive the same code.

use std::io::IoSlice;
use std::os::fd::BorrowedFd;

use super::channel::Channel;
use crate::wire;

/// A piece of an outgoing message.
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

/// A message on its way out: resumable after a partial or refused write, so
/// the blocking and the async senders drive the same code.
pub(crate) struct Outgoing<'a> {
    parts: Vec<Part<'a>>,
    /// Parts written per system call (one datagram, or everything).
    group: usize,
    next: usize,
    offset: usize,
    fds: &'a [BorrowedFd<'a>],
}

impl<'a> Outgoing<'a> {
    /// The message made of `parts`, written `group` parts per system call,
    /// with `fds` attached to its first byte.
    pub(crate) fn new(
        parts: Vec<Part<'a>>,
        group: usize,
        fds: &'a [BorrowedFd<'a>],
    ) -> Outgoing<'a> {
        Outgoing {
            parts,
            group,
            next: 0,
            offset: 0,
            fds,
        }
    }

    /// Writes what the channel takes; `true` when all is written.
    pub(crate) fn write_some(&mut self, ch: &Channel) -> std::io::Result<bool> {
        while self.next < self.parts.len() {
            // At most IOV_MAX (1024) slices per call.
            let end = (self.next + self.group.min(1024)).min(self.parts.len());
            let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(end - self.next);
            for (i, p) in self.parts[self.next..end].iter().enumerate() {
                let b = p.bytes();
                iov.push(IoSlice::new(if i == 0 { &b[self.offset..] } else { b }));
            }
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
                match ch.write(&iov, fds) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            // Advance past what was written.
            while n > 0 {
                let left = self.parts[self.next].bytes().len() - self.offset;
                if n >= left {
                    n -= left;
                    self.next += 1;
                    self.offset = 0;
                } else {
                    self.offset += n;
                    n = 0;
                }
            }
            while self.next < self.parts.len() && self.parts[self.next].bytes().is_empty() {
                self.next += 1;
            }
        }
        Ok(true)
    }
}
