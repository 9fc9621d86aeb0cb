//! [`AsyncListener`].

use std::future::poll_fn;
use std::os::fd::OwnedFd;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::transport::{Link, Listener, Polled};

use super::AsyncLink;

/// A [`Listener`] for tokio.
///
/// On sockets (`unix:`, `unixseq:`, `tcp:`), `accept` awaits the listening
/// socket and the connections whose hello is due on tokio's reactor, and
/// checks them without waiting when one is readable: no thread is held.
/// An `shm:` listener awaits a doorbell FIFO the connector rings once
/// connected (and looks anyway every `?liveness=`, 20 ms, while a claimer
/// holds the endpoint, every second or `?liveness=` if longer otherwise,
/// for a claimer that died or a ring that never came, or every 5 ms while its last peer
/// is still there, as the blocking accept does); an `mq:` or `sysvmq:`
/// one awaits the eventfd the link it handed out before raises when it
/// is dropped. A FIFO listener awaits a writer's first
/// bytes on the reactor too (an inotify watch of the FIFO), then finishes
/// the handshake on tokio's blocking pool, the one accept that takes a
/// thread there. Either way, dropping the future (in `select!`, say) loses
/// nothing: the listener, with any peers still in their handshake, is
/// there for the next `accept`, and so is the link a blocking slice still
/// running took.
#[derive(Debug)]
pub struct AsyncListener {
    inner: Arc<Listener>,
    /// A blocking accept still running on the pool, which a dropped
    /// `accept` future left: the next `accept` takes what it brings.
    slice: Option<tokio::task::JoinHandle<Result<Link>>>,
}

/// How long one blocking accept slice may take.
const ACCEPT_SLICE: Duration = Duration::from_millis(100);

impl AsyncListener {
    /// Binds the endpoint at `url` (see [`Listener::bind`]).
    pub fn bind(url: &str) -> Result<AsyncListener> {
        Ok(AsyncListener {
            inner: Arc::new(Listener::bind(url)?),
            slice: None,
        })
    }

    /// The bound endpoint.
    pub fn endpoint(&self) -> &crate::Endpoint {
        self.inner.endpoint()
    }

    /// What the endpoint is doing, one line shown by `ipcx ls` (see
    /// [`Listener::set_state`]); the file is written on tokio's blocking
    /// pool, not the runtime's thread.
    pub async fn set_state(&self, state: &str) {
        let (inner, state) = (self.inner.clone(), state.to_string());
        let _ = tokio::task::spawn_blocking(move || inner.set_state(&state)).await;
    }

    /// Accepts the next peer whose handshake succeeded.
    pub async fn accept(&mut self) -> Result<AsyncLink> {
        loop {
            if self.slice.is_some()
                && let Some(link) = self.accept_slice().await?
            {
                return Ok(link);
            }
            match self.inner.poll_accept()? {
                Polled::Link(link) => return AsyncLink::from_link(*link),
                Polled::Wait(fds, wake) => readable(fds, wake).await?,
                Polled::Blocking => {
                    if let Some(link) = self.accept_slice().await? {
                        return Ok(link);
                    }
                }
            }
        }
    }

    /// One blocking accept of at most [`ACCEPT_SLICE`] on the blocking
    /// pool (a FIFO listener whose writer has written),
    /// or the end of the one a dropped future left; `None` when it timed
    /// out.
    async fn accept_slice(&mut self) -> Result<Option<AsyncLink>> {
        let running = match &mut self.slice {
            Some(running) => running,
            None => {
                let listener = self.inner.clone();
                self.slice.insert(tokio::task::spawn_blocking(move || {
                    listener.accept_timeout(ACCEPT_SLICE)
                }))
            }
        };
        // Awaited in place: dropped here, the slice stays for the next call.
        let joined = running.await;
        self.slice = None;
        match joined.map_err(|e| Error::io("accept", std::io::Error::other(e)))? {
            Ok(link) => AsyncLink::from_link(link).map(Some),
            Err(e) if *e.kind() == ErrorKind::TimedOut => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Waits until one of `fds` is readable, or until `wake`.
async fn readable(fds: Vec<OwnedFd>, wake: Option<Instant>) -> Result<()> {
    let io = |e| Error::io("accept", e);
    let watched = fds
        .into_iter()
        .map(super::register)
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io)?;
    let mut timer = pin!(wake.map(|w| tokio::time::sleep_until(w.into())));
    poll_fn(|cx| {
        for fd in &watched {
            if let Poll::Ready(ready) = fd.poll_read_ready(cx) {
                return Poll::Ready(ready.map(drop).map_err(io));
            }
        }
        match timer.as_mut().as_pin_mut().map(|t| t.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    })
    .await
}
