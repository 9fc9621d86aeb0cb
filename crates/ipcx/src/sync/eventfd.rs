//! [`EventFd`]: the kernel's event counter (`eventfd(2)`), passed to other
//! processes as a descriptor.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::sys::fd::Interest;

/// What a wait takes from an [`EventFd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFdMode {
    /// A wait takes the whole count (and returns it): "something
    /// happened, this many times".
    Counter,
    /// A wait takes 1: a semaphore whose permits are the count.
    Semaphore,
}

/// A counter in the kernel behind a descriptor: [`EventFd::add`] raises
/// it, [`EventFd::wait`] sleeps until it is above zero and takes from it
/// (all of it, or 1 in [`EventFdMode::Semaphore`]).
///
/// It has no name: another process gets it by inheriting it or, more
/// often, through [`Link::send_fds`](crate::Link::send_fds) over `unix:`,
/// and takes it back with [`EventFd::from_fd`], which checks that the
/// descriptor is an eventfd and reads its mode from the kernel. Event
/// loops wait on it directly (it is readable when the count is above
/// zero); on tokio, [`AsyncEventFd`](crate::tokio::AsyncEventFd) awaits it.
///
/// The descriptor is non-blocking in every process that has it (the flag
/// belongs to the open file, which all of them share); waits sleep in
/// `poll(2)`.
///
/// ```
/// use ipcx::sync::{EventFd, EventFdMode};
/// # fn main() -> ipcx::Result<()> {
/// let jobs = EventFd::new(EventFdMode::Semaphore)?;
/// jobs.add(2)?;
/// assert_eq!(jobs.wait()?, 1);
/// assert_eq!(jobs.try_wait()?, Some(1));
/// assert_eq!(jobs.try_wait()?, None);
/// # Ok(()) }
/// ```
pub struct EventFd {
    fd: OwnedFd,
    mode: EventFdMode,
}

impl EventFd {
    /// A new eventfd at 0.
    pub fn new(mode: EventFdMode) -> Result<EventFd> {
        EventFd::with_count(0, mode)
    }

    /// A new eventfd holding `count`.
    pub fn with_count(count: u32, mode: EventFdMode) -> Result<EventFd> {
        let fd = sys::eventfd::create(count, mode == EventFdMode::Semaphore)
            .map_err(|e| Error::io("eventfd", e))?;
        Ok(EventFd { fd, mode })
    }

    /// Takes over a descriptor received from another process: refused
    /// ([`ErrorKind::Foreign`]) unless it is an eventfd, whose mode the
    /// kernel tells (Linux 6.6 and later; use
    /// [`EventFd::from_fd_with_mode`] on older kernels).
    pub fn from_fd(fd: OwnedFd) -> Result<EventFd> {
        match inspect(fd.as_fd())?.semaphore {
            Some(semaphore) => EventFd::adopt(fd, semaphore),
            None => Err(Error::new(
                ErrorKind::Unsupported(
                    "this kernel does not say an eventfd's mode (before Linux 6.6): use \
                     EventFd::from_fd_with_mode"
                        .into(),
                ),
                "from_fd",
            )),
        }
    }

    /// [`EventFd::from_fd`] with the mode given, for kernels that do not
    /// say it; refused if the kernel says otherwise.
    pub fn from_fd_with_mode(fd: OwnedFd, mode: EventFdMode) -> Result<EventFd> {
        let semaphore = mode == EventFdMode::Semaphore;
        match inspect(fd.as_fd())?.semaphore {
            Some(said) if said != semaphore => Err(Error::new(
                ErrorKind::Foreign(format!(
                    "the eventfd is in {} mode, not {mode:?} (pass the mode it was made with, or call from_fd)",
                    if said { "semaphore" } else { "counter" }
                )),
                "from_fd",
            )),
            _ => EventFd::adopt(fd, semaphore),
        }
    }

    fn adopt(fd: OwnedFd, semaphore: bool) -> Result<EventFd> {
        sys::fd::set_nonblocking(fd.as_fd(), true).map_err(|e| Error::io("from_fd", e))?;
        let mode = if semaphore {
            EventFdMode::Semaphore
        } else {
            EventFdMode::Counter
        };
        Ok(EventFd { fd, mode })
    }

    /// What a wait takes.
    pub fn mode(&self) -> EventFdMode {
        self.mode
    }

    /// Adds `n` to the count, waking waiters. The count holds at most
    /// 2^64 - 2: an `add` that would pass it waits until waits take
    /// enough; a larger `n` is refused.
    pub fn add(&self, n: u64) -> Result<()> {
        self.add_until(n, None)
    }

    /// [`EventFd::add`] without waiting: [`ErrorKind::WouldBlock`] if the
    /// count would pass its largest value.
    pub fn try_add(&self, n: u64) -> Result<()> {
        self.add_until(n, Some(std::time::Instant::now()))
    }

    fn add_until(&self, n: u64, deadline: Option<std::time::Instant>) -> Result<()> {
        if n > sys::eventfd::MAX {
            return Err(Error::new(
                ErrorKind::InvalidArgument(format!(
                    "{n} is more than an eventfd holds ({})",
                    sys::eventfd::MAX
                )),
                "add",
            ));
        }
        self.retry("add", Interest::Write, deadline, || {
            sys::eventfd::add(self.fd.as_fd(), n)
        })
    }

    /// Waits until the count is above zero and takes from it: the whole
    /// count (returned) in [`EventFdMode::Counter`], 1 in
    /// [`EventFdMode::Semaphore`].
    pub fn wait(&self) -> Result<u64> {
        self.take_until(None)
    }

    /// [`EventFd::wait`], at most `timeout` ([`ErrorKind::TimedOut`]).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u64> {
        self.take_until(crate::deadline::after(timeout))
            .map_err(|e| match e.kind() {
                ErrorKind::WouldBlock => Error::new(ErrorKind::TimedOut, "wait"),
                _ => e,
            })
    }

    /// Takes what a wait would, if the count is above zero now.
    pub fn try_wait(&self) -> Result<Option<u64>> {
        match self.take_until(Some(std::time::Instant::now())) {
            Ok(n) => Ok(Some(n)),
            Err(e) if *e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn take_until(&self, deadline: Option<std::time::Instant>) -> Result<u64> {
        self.retry("wait", Interest::Read, deadline, || {
            sys::eventfd::take(self.fd.as_fd())
        })
    }

    /// The count now, as the kernel reports it (for display: another
    /// process may change it at once).
    pub fn count(&self) -> Result<u64> {
        Ok(inspect(self.fd.as_fd())?.count)
    }

    /// Runs `op` until it does not find the descriptor busy, waiting for
    /// `interest` in between, until `deadline` (`WouldBlock` then).
    fn retry<T>(
        &self,
        what: &'static str,
        interest: Interest,
        deadline: Option<std::time::Instant>,
        op: impl FnMut() -> std::io::Result<T>,
    ) -> Result<T> {
        match sys::fd::when_ready(self.fd.as_fd(), interest, deadline, op) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(Error::new(ErrorKind::WouldBlock, what)),
            Err(e) => Err(Error::io(what, e)),
        }
    }
}

/// What the kernel says of `fd`, refusing anything but an eventfd.
fn inspect(fd: BorrowedFd<'_>) -> Result<sys::eventfd::Info> {
    match sys::eventfd::inspect(fd).map_err(|e| Error::io("from_fd", e))? {
        Some(info) => Ok(info),
        None => Err(Error::new(
            ErrorKind::Foreign(
                "the descriptor is not an eventfd (pass one from eventfd(2) or an EventFd)".into(),
            ),
            "from_fd",
        )),
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl From<EventFd> for OwnedFd {
    fn from(e: EventFd) -> OwnedFd {
        e.fd
    }
}

impl fmt::Debug for EventFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFd")
            .field("fd", &self.fd.as_raw_fd())
            .field("mode", &self.mode)
            .finish()
    }
}
