//! Every call into the OS, and the only module with FFI `unsafe`.
//!
//! The contract: each function is a thin, safe wrapper over one system call
//! (or a short fixed sequence of them), returns `std::io::Result`, and
//! documents the man page it wraps. rustix is used first; libc only where
//! rustix has no call. Descriptors are created close-on-exec and, for links,
//! non-blocking: waiting is done here with `poll(2)`, never by a blocking read,
//! so every wait can have a deadline.

pub mod fd;
pub mod fs;
pub mod futex;
pub mod process;
pub mod shm;
pub mod socket;
