//! [`AsyncSignals`] and [`termination`].

use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use tokio::io::unix::AsyncFd;

use crate::error::{Error, Result};
use crate::signal::{Received, Signals, Termination};

/// A [`Signals`] subscription awaited on tokio: [`AsyncSignals::recv`], or
/// a [`Stream`] of signals.
///
/// ```no_run
/// # async fn demo() -> ipcx::Result<()> {
/// let hup = ipcx::signal::number("SIGHUP")?;
/// let mut reloads = ipcx::tokio::AsyncSignals::new(&[hup])?;
/// while let Ok(signal) = reloads.recv().await {
///     println!("reload asked by {:?}", signal.sender);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncSignals {
    /// A duplicate of the subscription's pipe, on the reactor.
    ready: AsyncFd<OwnedFd>,
    inner: Signals,
}

impl AsyncSignals {
    /// Subscribes to `signals` (see [`Signals::new`]); must run inside a
    /// tokio runtime.
    pub fn new(signals: &[i32]) -> Result<AsyncSignals> {
        AsyncSignals::from_signals(Signals::new(signals)?)
    }

    /// Puts a subscription on the reactor.
    pub fn from_signals(inner: Signals) -> Result<AsyncSignals> {
        let ready = super::on_reactor(inner.as_fd()).map_err(|e| Error::io("register", e))?;
        Ok(AsyncSignals { ready, inner })
    }

    /// Waits for the next signal. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Received> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Received>> {
        loop {
            let mut guard =
                ready!(self.ready.poll_read_ready(cx)).map_err(|e| Error::io("signal", e))?;
            match self.inner.take_one()? {
                Some(r) => return Poll::Ready(Ok(r)),
                None => guard.clear_ready(),
            }
        }
    }
}

/// Signals as they arrive; the stream ends at the first error.
impl Stream for AsyncSignals {
    type Item = Received;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Received>> {
        self.get_mut().poll_recv(cx).map(Result::ok)
    }
}

/// Completes at the first `SIGINT` or `SIGTERM`: graceful shutdown as a
/// future, to `select!` against the work.
///
/// ```no_run
/// # async fn demo() -> ipcx::Result<()> {
/// let stop = ipcx::tokio::termination()?;
/// let why = stop.await?;
/// std::process::exit(why.exit_code());
/// # }
/// ```
pub fn termination() -> Result<impl std::future::Future<Output = Result<Termination>> + Send> {
    let mut signals = AsyncSignals::from_signals(Signals::termination()?)?;
    Ok(async move {
        loop {
            if let Some(t) = Termination::of(signals.recv().await?.signal) {
                return Ok(t);
            }
        }
    })
}
