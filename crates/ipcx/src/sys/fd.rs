//! Reading, writing and waiting on descriptors.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};

/// What a wait is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Data to read, or end of stream.
    Read,
    /// Room to write.
    Write,
}

impl Interest {
    fn flags(self) -> PollFlags {
        match self {
            Interest::Read => PollFlags::IN,
            Interest::Write => PollFlags::OUT,
        }
    }
}

/// Turns `O_NONBLOCK` on or off. See `fcntl(2)`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let mut fl = rustix::fs::fcntl_getfl(fd)?;
    fl.set(rustix::fs::OFlags::NONBLOCK, on);
    Ok(rustix::fs::fcntl_setfl(fd, fl)?)
}

/// Waits until `fd` is ready for `interest` (or has an error or hang-up),
/// or until `deadline`. Returns `false` on timeout. See `poll(2)`.
pub fn wait(fd: BorrowedFd<'_>, interest: Interest, deadline: Option<Instant>) -> io::Result<bool> {
    let mut fds = [PollFd::from_borrowed_fd(fd, interest.flags())];
    Ok(wait_many(&mut fds, deadline)? > 0)
}

/// How many bytes `fd` (a pipe, a FIFO or a socket) holds unread, asked
/// without `poll(2)`, which leaves a mark on a pipe (see
/// [`crate::transport`]'s quiet handshake). See `ioctl(2)` `FIONREAD`.
pub fn bytes_ready(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::io::ioctl_fionread(fd)?)
}

/// A watch for writes into the file at `path` (a FIFO): `watch` (an
/// inotify descriptor, non-blocking) becomes readable once a process wrote
/// into it. See `inotify(7)` `IN_MODIFY`. Returns the watch's number.
pub fn watch_writes(watch: BorrowedFd<'_>, path: &std::path::Path) -> io::Result<i32> {
    use rustix::fs::inotify::WatchFlags;
    Ok(rustix::fs::inotify::add_watch(
        watch,
        path,
        WatchFlags::MODIFY | WatchFlags::DONT_FOLLOW,
    )?)
}

/// Ends the watch `wd` of [`watch_writes`] and discards the events `watch`
/// holds.
pub fn unwatch(watch: BorrowedFd<'_>, wd: i32) {
    // Already gone with its file: nothing to end.
    let _ = rustix::fs::inotify::remove_watch(watch, wd);
    drain_events(watch);
}

/// Discards what the inotify descriptor `watch` (non-blocking) holds.
pub fn drain_events(watch: BorrowedFd<'_>) {
    let mut buf = [0u8; 1024];
    while matches!(rustix::io::read(watch, &mut buf), Ok(n) if n > 0) {}
}

/// A non-blocking inotify descriptor. See `inotify_init1(2)`.
pub fn watcher() -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::inotify::CreateFlags;
    Ok(rustix::fs::inotify::init(
        CreateFlags::CLOEXEC | CreateFlags::NONBLOCK,
    )?)
}

/// Runs `op` on the non-blocking `fd` until it stops saying `WouldBlock`
/// (or `EINTR`), waiting for `interest` in between; `Ok(None)` once
/// `deadline` passed with `op` still blocked.
pub fn when_ready<T>(
    fd: BorrowedFd<'_>,
    interest: Interest,
    deadline: Option<Instant>,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<Option<T>> {
    loop {
        match op() {
            Ok(v) => return Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if !wait(fd, interest, deadline)? {
            return Ok(None);
        }
    }
}

/// Polls several descriptors until one is ready or `deadline`; returns how
/// many are ready (0 on timeout). See `poll(2)`.
pub fn wait_many(fds: &mut [PollFd<'_>], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                Some(Timespec {
                    tv_sec: super::secs(left),
                    tv_nsec: i64::from(left.subsec_nanos()),
                })
            }
        };
        match rustix::event::poll(fds, timeout.as_ref()) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A pollable entry for [`wait_many`].
pub fn poll_entry(fd: BorrowedFd<'_>, interest: Interest) -> PollFd<'_> {
    PollFd::from_borrowed_fd(fd, interest.flags())
}

/// `read(2)`.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    Ok(rustix::io::read(fd, buf)?)
}

/// `read(2)` of at most `max` bytes into the spare capacity of `out`,
/// growing it as needed, without zeroing the bytes first.
pub fn read_append(fd: BorrowedFd<'_>, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    out.reserve(max);
    let spare = &mut out.spare_capacity_mut()[..max];
    let (init, _) = rustix::io::read(fd, spare)?;
    let n = init.len();
    let len = out.len();
    // SAFETY: `read` initialized the first `n` bytes of the spare capacity,
    // which start at `len`, and `n <= max <= capacity - len`.
    unsafe { out.set_len(len + n) };
    Ok(n)
}

/// `writev(2)`; one slice goes by `write(2)`, which costs less.
pub fn writev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    match bufs {
        [one] => Ok(rustix::io::write(fd, one)?),
        _ => Ok(rustix::io::writev(fd, bufs)?),
    }
}

/// True when the descriptor is open in this process. See `fcntl(2)` `F_GETFD`.
pub fn is_open(fd: impl AsFd) -> bool {
    rustix::io::fcntl_getfd(fd).is_ok()
}

/// A close-on-exec duplicate of `fd` (the same open file). See `dup(2)`.
#[cfg_attr(not(feature = "async"), allow(dead_code))]
pub fn dup_cloexec(fd: BorrowedFd<'_>) -> io::Result<std::os::fd::OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0)?)
}
