//! POSIX message queues (`mq_overview(7)`). On Linux a queue descriptor is
//! a file descriptor: it is held as an `OwnedFd` (closing it is
//! `mq_close`), waited on with `poll(2)`, and `fstat` gives its identity.
//! Nothing here needs `/dev/mqueue` to be mounted.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// A queue's attributes (`struct mq_attr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Most messages it holds.
    pub max_msgs: usize,
    /// Largest message, in bytes.
    pub msg_size: usize,
    /// Messages in it now.
    pub depth: usize,
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(format!("/{name}")).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Opens the queue `/NAME` for reading and writing, non-blocking and
/// close-on-exec; with `create`, makes it (failing if it exists) with
/// `mode` and the given limits. See `mq_open(3)`.
pub fn open(name: &str, create: Option<(u32, usize, usize)>) -> io::Result<OwnedFd> {
    open_with(name, create, libc::O_NONBLOCK)
}

/// `open` in blocking mode: `mq_send`/`mq_receive` sleep in the kernel
/// (the bare baseline of a benchmark).
pub fn open_blocking(name: &str, create: Option<(u32, usize, usize)>) -> io::Result<OwnedFd> {
    open_with(name, create, 0)
}

fn open_with(
    name: &str,
    create: Option<(u32, usize, usize)>,
    extra: libc::c_int,
) -> io::Result<OwnedFd> {
    let n = c_name(name)?;
    let flags = libc::O_RDWR | extra | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated name; with O_CREAT, the mode and a valid
    // attr pointer follow, as mq_open(3) reads them.
    let mqd = unsafe {
        match create {
            None => libc::mq_open(n.as_ptr(), flags),
            Some((mode, max_msgs, msg_size)) => {
                let mut attr: libc::mq_attr = std::mem::zeroed();
                attr.mq_maxmsg = max_msgs as libc::c_long;
                attr.mq_msgsize = msg_size as libc::c_long;
                libc::mq_open(
                    n.as_ptr(),
                    flags | libc::O_CREAT | libc::O_EXCL,
                    mode as libc::mode_t,
                    &mut attr as *mut libc::mq_attr,
                )
            }
        }
    };
    if mqd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on Linux an mqd_t is a new file descriptor this process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(mqd) })
}

/// The queue's attributes. See `mq_getattr(3)`.
pub fn attr(fd: BorrowedFd<'_>) -> io::Result<Attr> {
    // SAFETY: a zeroed mq_attr is valid to be filled in.
    let mut a: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: an open queue descriptor and a valid attr pointer.
    if unsafe { libc::mq_getattr(fd.as_raw_fd(), &mut a) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Attr {
        max_msgs: a.mq_maxmsg as usize,
        msg_size: a.mq_msgsize as usize,
        depth: a.mq_curmsgs as usize,
    })
}

/// Sends `msg` with `priority` without waiting (`WouldBlock` when full).
/// See `mq_send(3)`.
pub fn send(fd: BorrowedFd<'_>, msg: &[u8], priority: u32) -> io::Result<()> {
    // SAFETY: `msg` is valid for its length.
    let r = unsafe { libc::mq_send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), priority) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes the oldest message of the highest priority into `buf` (at least
/// the queue's message size) without waiting (`WouldBlock` when empty);
/// returns its length and priority. See `mq_receive(3)`.
pub fn receive(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, u32)> {
    let mut priority = 0u32;
    // SAFETY: `buf` is valid for writing its length.
    let n = unsafe {
        libc::mq_receive(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut priority,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((n as usize, priority))
}

/// Removes the name `/NAME` (open descriptors keep working). See
/// `mq_unlink(3)`.
pub fn unlink(name: &str) -> io::Result<()> {
    let n = c_name(name)?;
    // SAFETY: a NUL-terminated name.
    if unsafe { libc::mq_unlink(n.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Device and inode of the queue `/NAME` now, if it exists (an open and a
/// `fstat`, so that a record can tell its queue from a newer one).
pub fn identity(name: &str) -> io::Result<(u64, u64)> {
    let fd = open(name, None)?;
    super::fs::identity_of(&fd)
}

/// A system limit from `/proc/sys/fs/mqueue/` (`msg_max`, `msgsize_max`,
/// `queues_max`, `msg_default`, `msgsize_default`).
pub fn limit(file: &str) -> io::Result<usize> {
    let text = std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{file}"))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("/proc/sys/fs/mqueue/{file} is not a number")))
}
