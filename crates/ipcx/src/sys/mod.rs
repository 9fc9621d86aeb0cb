//! Every call into the OS, and the only module with FFI `unsafe`.
//!
//! The contract: each function is a thin, safe wrapper over one system call
//! (or a short fixed sequence of them), returns `std::io::Result`, and
//! documents the man page it wraps. rustix is used first; libc only where
//! rustix has no call. Descriptors are created close-on-exec. A wait with a
//! deadline is a `poll(2)` here; a link that waits without one (the default
//! `?wait=block`) sleeps in a blocking `read`, as a bare program would.

pub mod eventfd;
pub mod fd;
pub mod fs;
pub mod futex;
pub mod mem;
pub mod mq;
pub mod netlink;
pub mod process;
pub mod pthread;
pub mod sem;
pub mod shm;
pub mod signal;
pub mod socket;
pub mod sysvmq;

/// Whole seconds of `d` for a `timespec`, capped so that a huge timeout
/// stays a far-away one instead of wrapping negative (which the kernel
/// reads as an error or an instant timeout).
pub(crate) fn secs(d: std::time::Duration) -> i64 {
    d.as_secs().min(i64::MAX as u64 / 2) as i64
}
