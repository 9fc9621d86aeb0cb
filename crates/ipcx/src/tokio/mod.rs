//! The link API on tokio (feature `async`).
//!
//! [`AsyncLink`] drives the same decoder and the same resumable writer as
//! the blocking [`Link`](crate::Link); only the waiting differs: instead of `poll(2)`, it
//! awaits readiness from tokio's reactor, so a task waits without a thread.
//! An `shm:` link has no descriptor: each half awaits a doorbell FIFO its
//! peer rings after a change, only while the half is armed (asleep).
//! [`AsyncListener`] awaits a listening socket and the handshakes under
//! way on the reactor too, an `shm:` listener its doorbell, a FIFO
//! listener an inotify watch (then reads the hello on the blocking pool).
//! A socket connect awaits its listener on the reactor and a timer (a TCP
//! host name is resolved on the blocking pool; an IP address needs no
//! resolver). An `shm:` connect looks on a timer (pauses doubling up to
//! 20 or 50 ms, as the blocking connect sleeps) until
//! the segment is there and the endpoint free, and so does opening a
//! channel or an event (bounded by `?timeout=`, while they are absent or
//! being made), and a queue connect (`mq:`, `sysvmq:`) until the queue
//! is there. `fifo:` and `journal:` connects (bounded by `?timeout=` and
//! `?handshake_timeout=`) run on the blocking pool: awaited, they hold no
//! runtime thread.
//!
//! ```no_run
//! # async fn demo() -> ipcx::Result<()> {
//! use ipcx::tokio::{AsyncLink, AsyncListener};
//!
//! let mut listener = AsyncListener::bind("unix:@demo")?;
//! let mut client = AsyncLink::connect("unix:@demo").await?;
//! let mut server = listener.accept().await?;
//! client.send(b"hi").await?;
//! assert_eq!(server.recv().await?, b"hi");
//! # Ok(()) }
//! ```

use std::os::fd::{BorrowedFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use crate::error::{Error, ErrorKind, Result};
use crate::transport::shm::LinkBell;

mod bell;
mod combinators;
mod connect;
mod event;
mod eventfd;
mod link;
mod listener;
mod signals;
mod subscriber;

use bell::{Awaited, Bell};
pub use combinators::{RecvStream, SendSink};
pub use event::AsyncEvent;
pub use eventfd::AsyncEventFd;
pub use link::{AsyncLink, AsyncRecvHalf, AsyncSendHalf};
pub use listener::AsyncListener;
pub use signals::{AsyncSignals, termination};
pub use subscriber::AsyncSubscriber;

/// What a half of an [`AsyncLink`] awaits.
#[derive(Debug)]
enum Wake {
    /// The link's descriptor, on tokio's reactor.
    Fd(AsyncFd<OwnedFd>),
    /// An `shm:` link: the doorbell FIFO the peer rings, and which it is.
    Bell(Bell, LinkBell),
    /// Nothing: this half of a one-way FIFO has no descriptor.
    Nothing,
}

impl Wake {
    fn of(
        fd: Option<BorrowedFd<'_>>,
        doorbell: Option<LinkBell>,
        op: &'static str,
    ) -> Result<Wake> {
        Ok(match (fd, doorbell) {
            (_, Some(p)) => {
                let (seg, k) = p.segment();
                Wake::Bell(Bell::make(seg, k)?, p)
            }
            (Some(fd), None) => Wake::Fd(on_reactor(fd).map_err(|e| Error::io(op, e))?),
            (None, None) => Wake::Nothing,
        })
    }
}

/// Registers a duplicate of `fd` with tokio's reactor (a duplicate, so
/// that the two halves of one socket can each register: epoll keys on the
/// descriptor); must run inside a runtime.
fn on_reactor(fd: BorrowedFd<'_>) -> std::io::Result<AsyncFd<OwnedFd>> {
    register(crate::sys::fd::dup_cloexec(fd)?)
}

/// Puts a descriptor this module owns on tokio's reactor. (Registering
/// is `unsafe` in tokio since it cannot check I/O safety; `sys` knows no
/// tokio, so the one call lives here.)
#[allow(unsafe_code)]
fn register(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `OwnedFd` moves into the `AsyncFd`, so the descriptor
    // stays open, and names the same open file, until the `AsyncFd` drops
    // (and deregisters it).
    unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)
}

/// Opens what may not exist yet (a channel, an event) without holding a
/// thread: `open` looks once, given a deadline of now (so that what it
/// returns at the end is the error a blocking open gives at its deadline),
/// and a timer paces the looks until `timeout` passes. Only the errors of
/// a look that found nothing yet (absent, being made, owner-only while
/// its creator makes it) are tried again.
async fn open_on_timer<T>(
    timeout: std::time::Duration,
    mut open: impl FnMut(std::time::Instant) -> Result<T>,
) -> Result<T> {
    let deadline = crate::deadline::far_after(timeout);
    let mut backoff = crate::deadline::Backoff::new(std::time::Duration::from_millis(50));
    loop {
        let err = match open(std::time::Instant::now()) {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        let not_yet = match err.kind() {
            ErrorKind::TimedOut | ErrorKind::PermissionDenied => true,
            ErrorKind::Io => err
                .os_error()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound),
            _ => false,
        };
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if !not_yet || left.is_zero() {
            return Err(err);
        }
        tokio::time::sleep(backoff.next_pause().min(left)).await;
    }
}

/// Runs `f`, which may wait (bounded by the endpoint's timeouts), on
/// tokio's blocking pool, so the runtime's threads go on meanwhile.
async fn on_blocking_pool<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io(op, std::io::Error::other(e)))?
}

fn no_reactor(op: &'static str) -> Error {
    Error::new(
        ErrorKind::OneWay(
            "this end of a one-way FIFO has no descriptor for this way (add ?duplex=true)".into(),
        ),
        op,
    )
}
