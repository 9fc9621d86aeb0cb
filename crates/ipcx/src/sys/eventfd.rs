//! `eventfd(2)`: a kernel counter behind a descriptor.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::event::EventfdFlags;

/// The largest count an eventfd holds; a write that would pass it waits.
pub const MAX: u64 = u64::MAX - 1;

/// A new eventfd holding `initial`, close-on-exec and non-blocking; each
/// read takes 1 with `semaphore`, the whole count without.
pub fn create(initial: u32, semaphore: bool) -> io::Result<OwnedFd> {
    let mut flags = EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK;
    flags.set(EventfdFlags::SEMAPHORE, semaphore);
    Ok(rustix::event::eventfd(initial, flags)?)
}

/// Takes from the count (`WouldBlock` at 0): 1 in semaphore mode, all of
/// it otherwise.
pub fn take(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut b = [0u8; 8];
    match rustix::io::read(fd, &mut b)? {
        8 => Ok(u64::from_ne_bytes(b)),
        n => Err(io::Error::other(format!(
            "an eventfd read gave {n} bytes, not 8"
        ))),
    }
}

/// Adds `n` (at most [`MAX`]) to the count (`WouldBlock` if it would pass
/// [`MAX`]).
pub fn add(fd: BorrowedFd<'_>, n: u64) -> io::Result<()> {
    rustix::io::write(fd, &n.to_ne_bytes())?;
    Ok(())
}

/// What `/proc/self/fdinfo` says of an eventfd descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// The count now.
    pub count: u64,
    /// Whether reads take 1 (`None`: the kernel does not say, before 6.6).
    pub semaphore: Option<bool>,
}

/// `Ok(None)` when `fd` is not an eventfd; what it holds otherwise. See
/// `proc(5)` (`/proc/self/fd`, `/proc/self/fdinfo`).
pub fn inspect(fd: BorrowedFd<'_>) -> io::Result<Option<Info>> {
    let n = fd.as_raw_fd();
    let target = std::fs::read_link(format!("/proc/self/fd/{n}"))?;
    if target.as_os_str() != "anon_inode:[eventfd]" {
        return Ok(None);
    }
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{n}"))?;
    let field = |name: &str, radix: u32| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), radix).ok())
    };
    // The kernel prints the count in hexadecimal.
    let count = field("eventfd-count:", 16)
        .ok_or_else(|| io::Error::other("no eventfd-count in /proc/self/fdinfo"))?;
    Ok(Some(Info {
        count,
        semaphore: field("eventfd-semaphore:", 10).map(|s| s != 0),
    }))
}
