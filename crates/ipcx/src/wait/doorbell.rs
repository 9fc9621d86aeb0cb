//! Doorbells: how a process that sleeps in tokio's reactor, not on a
//! futex, is woken by a process that changed shared memory.
//!
//! A doorbell is a FIFO beside a named segment (`/dev/shm/NAME.bellK`),
//! one per waiter place `K`. The waiter arms a bit in shared memory, checks
//! its condition once more, and awaits the FIFO readable; the notifier,
//! after its change, rings (writes a byte into) the doorbell of every armed
//! bit. An eventfd would be cheaper, but it cannot be handed to an
//! unrelated process without a socket or ptrace rights. The registry
//! removes a segment's doorbells with the segment.

use std::os::fd::AsFd;
use std::path::PathBuf;

use crate::sys;

/// The doorbell FIFO of waiter place `k` of the segment `name`.
pub(crate) fn path(name: &str, k: usize) -> PathBuf {
    std::path::Path::new(sys::shm::SHM_DIR).join(format!("{name}.bell{k}"))
}

/// Writes a byte into the doorbell of each place in `bells` of segment
/// `name`. The FIFO is opened anew each time (a place may get a new FIFO
/// from its next waiter), and read-write, so a vanished reader can never
/// make the write fail with `EPIPE` (and `SIGPIPE`); a full FIFO has rung
/// already.
pub(crate) fn ring(name: &str, mut bells: u64) {
    while bells != 0 {
        let k = bells.trailing_zeros() as usize;
        bells &= bells - 1;
        match sys::fs::open_fifo_rw(&path(name, k)) {
            Ok(fd) => {
                let _ = sys::fd::writev(fd.as_fd(), &[std::io::IoSlice::new(&[1])]);
            }
            // The waiter's periodic re-check finds the change anyway.
            Err(e) => tracing::debug!(error = %e, place = k, "a doorbell could not be rung"),
        }
    }
}

/// Makes the doorbell of place `k` of `name` afresh (one left by a dead
/// waiter in this place is stale) and opens it. It gets the segment's
/// read and write bits (`mode`), since whoever may write the segment must
/// be able to ring (open the FIFO read-write).
#[cfg(feature = "async")]
pub(crate) fn make(
    name: &str,
    k: usize,
    mode: u32,
) -> std::io::Result<(PathBuf, std::os::fd::OwnedFd)> {
    let p = path(name, k);
    sys::fs::remove(&p)?;
    sys::fs::create_fifo(&p, mode & 0o666)?;
    let fd = sys::fs::open_fifo_rw(&p)?;
    Ok((p, fd))
}

/// Empties a doorbell, so the next wait needs a fresh ring.
#[cfg(feature = "async")]
pub(crate) fn drain(fd: &std::os::fd::OwnedFd) {
    let mut buf = [0u8; 256];
    while matches!(sys::fd::read(fd.as_fd(), &mut buf), Ok(n) if n > 0) {}
}
