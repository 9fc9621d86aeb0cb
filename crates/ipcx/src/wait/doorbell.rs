//! Doorbells: how a process that sleeps in tokio's reactor, not on a
//! futex, is woken by a process that changed shared memory.
//!
//! A doorbell is a FIFO beside a named segment (`/dev/shm/NAME.bellK`),
//! one per doorbell number `K`. The waiter arms a bit in shared memory, checks
//! its condition once more, and awaits the FIFO readable; the notifier,
//! after its change, rings (writes a byte into) the doorbell of every armed
//! bit. An eventfd would be cheaper, but it cannot be handed to an
//! unrelated process without a socket or ptrace rights. The registry
//! removes a segment's doorbells with the segment.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::sys;

/// The doorbell FIFO number `k` of the segment `name`.
pub(crate) fn path(name: &str, k: usize) -> PathBuf {
    std::path::Path::new(sys::shm::SHM_DIR).join(format!("{name}.bell{k}"))
}

/// Rings the doorbells of one segment, keeping open each FIFO it rang:
/// a ring is then one `write`. A doorbell's FIFO lives as long as
/// the segment (each waiter with that number reuses it, see [`make`]), so
/// a kept descriptor stays that doorbell; a write that fails other than
/// on a full FIFO (which has rung already) opens it afresh next time.
#[derive(Debug, Default)]
pub(crate) struct Ringer {
    open: Mutex<Vec<(usize, OwnedFd)>>,
}

impl Ringer {
    /// Writes a byte into each doorbell whose bit is set in `bells`, of the
    /// segment `name`. FIFOs are opened read-write, so a vanished waiter
    /// can never make the write fail with `EPIPE` (and `SIGPIPE`); a full
    /// FIFO has rung already.
    pub(crate) fn ring(&self, name: &str, mut bells: u64) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        while bells != 0 {
            let k = bells.trailing_zeros() as usize;
            bells &= bells - 1;
            let kept = open.iter().position(|(number, _)| *number == k);
            let fd = match kept {
                Some(i) => &open[i].1,
                None => match sys::fs::open_fifo_rw(&path(name, k)) {
                    Ok(fd) => {
                        open.push((k, fd));
                        &open[open.len() - 1].1
                    }
                    // The waiter's periodic re-check finds the change anyway.
                    Err(e) => {
                        tracing::debug!(error = %e, number = k, "a doorbell could not be rung");
                        continue;
                    }
                },
            };
            match sys::fd::writev(fd.as_fd(), &[std::io::IoSlice::new(&[1])]) {
                Ok(_) => {}
                // Full: it has rung already, unless it is a FIFO nobody
                // reads any more (removed and made anew): then reopen.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if sys::fs::link_count(fd.as_fd()).is_ok_and(|n| n == 0) {
                        open.retain(|(number, _)| *number != k);
                    }
                }
                Err(_) => open.retain(|(number, _)| *number != k),
            }
        }
    }
}

/// Opens doorbell `k` of `name` for a waiter: the FIFO an earlier
/// waiter with that number left (emptied of its old rings), so that
/// ringers' kept descriptors stay right; made afresh when there is none
/// or it cannot be opened. A new one gets the segment's read and write
/// bits (`mode`), since whoever may write the segment must be able to
/// ring (open the FIFO read-write). It goes with the segment (the
/// registry removes it).
pub(crate) fn make(name: &str, k: usize, mode: u32) -> std::io::Result<OwnedFd> {
    let p = path(name, k);
    if let Ok(fd) = sys::fs::open_fifo_rw(&p) {
        // Only our own: one another user put there could be read or rung
        // by them.
        if sys::fs::owner_and_mode(&p).is_ok_and(|(uid, _)| uid == sys::process::euid()) {
            drain(&fd);
            return Ok(fd);
        }
    }
    sys::fs::remove(&p)?;
    sys::fs::create_fifo(&p, mode & 0o666)?;
    sys::fs::open_fifo_rw(&p)
}

/// Empties a doorbell, so the next wait needs a fresh ring: at most
/// [`DRAIN_MAX`] bytes, so that a process that keeps writing into it
/// (anyone who may ring may) costs a waiter another look, never a loop.
pub(crate) fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 256];
    for _ in 0..DRAIN_MAX / buf.len() {
        if !matches!(sys::fd::read(fd.as_fd(), &mut buf), Ok(n) if n == buf.len()) {
            return;
        }
    }
}

/// The most one [`drain`] reads (a pipe's default capacity).
const DRAIN_MAX: usize = 64 * 1024;
