//! [`AsyncListener`].

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::transport::Listener;

use super::AsyncLink;

/// A [`Listener`] for tokio.
///
/// `accept` runs the blocking accept in slices of 100 ms on tokio's
/// blocking pool, so dropping its future (in `select!`, say) loses nothing:
/// the slice in flight ends on its own and the listener, with any peers
/// still in their handshake, is there for the next `accept`.
#[derive(Debug)]
pub struct AsyncListener {
    inner: Arc<Listener>,
}

/// How long one blocking accept slice may take.
const ACCEPT_SLICE: Duration = Duration::from_millis(100);

impl AsyncListener {
    /// Binds the endpoint at `url` (see [`Listener::bind`]).
    pub fn bind(url: &str) -> Result<AsyncListener> {
        Ok(AsyncListener {
            inner: Arc::new(Listener::bind(url)?),
        })
    }

    /// The bound endpoint.
    pub fn endpoint(&self) -> &crate::Endpoint {
        self.inner.endpoint()
    }

    /// Accepts the next peer whose handshake succeeded.
    pub async fn accept(&mut self) -> Result<AsyncLink> {
        loop {
            let listener = self.inner.clone();
            let slice = tokio::task::spawn_blocking(move || listener.accept_timeout(ACCEPT_SLICE))
                .await
                .map_err(|e| Error::io("accept", std::io::Error::other(e)))?;
            match slice {
                Ok(link) => return AsyncLink::from_link(link),
                Err(e) if *e.kind() == ErrorKind::TimedOut => {}
                Err(e) => return Err(e),
            }
        }
    }
}
