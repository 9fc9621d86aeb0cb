//! [`AsyncEventFd`].

use std::os::fd::{AsFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use crate::error::{Error, ErrorKind, Result};
use crate::sync::EventFd;

/// An [`EventFd`] awaited on tokio's reactor: a wait holds no thread.
///
/// ```no_run
/// # async fn demo(received: std::os::fd::OwnedFd) -> ipcx::Result<()> {
/// use ipcx::sync::EventFd;
/// let ready = ipcx::tokio::AsyncEventFd::new(EventFd::from_fd(received)?)?;
/// let times = ready.wait().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncEventFd {
    /// A duplicate of the descriptor, on the reactor.
    ready: AsyncFd<OwnedFd>,
    inner: EventFd,
}

impl AsyncEventFd {
    /// Puts `inner` on the reactor; must run inside a tokio runtime.
    pub fn new(inner: EventFd) -> Result<AsyncEventFd> {
        let ready = super::on_reactor(inner.as_fd()).map_err(|e| Error::io("register", e))?;
        Ok(AsyncEventFd { ready, inner })
    }

    /// Waits until the count is above zero and takes from it, as
    /// [`EventFd::wait`] does. Cancel-safe: a dropped wait took nothing.
    pub async fn wait(&self) -> Result<u64> {
        loop {
            let mut guard = self
                .ready
                .readable()
                .await
                .map_err(|e| Error::io("wait", e))?;
            match self.inner.try_wait()? {
                Some(n) => return Ok(n),
                None => guard.clear_ready(),
            }
        }
    }

    /// Adds `n` to the count, as [`EventFd::add`] does, awaiting room if
    /// the count would pass its largest value.
    pub async fn add(&self, n: u64) -> Result<()> {
        loop {
            let mut guard = self
                .ready
                .writable()
                .await
                .map_err(|e| Error::io("add", e))?;
            match self.inner.try_add(n) {
                Err(e) if *e.kind() == ErrorKind::WouldBlock => guard.clear_ready(),
                r => return r,
            }
        }
    }

    /// The eventfd underneath (its blocking API, its descriptor).
    pub fn get_ref(&self) -> &EventFd {
        &self.inner
    }

    /// Takes the eventfd off the reactor.
    pub fn into_inner(self) -> EventFd {
        self.inner
    }
}
