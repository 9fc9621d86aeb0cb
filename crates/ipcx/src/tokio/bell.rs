//! Doorbells on tokio: a FIFO the reactor watches, and how a thing woken
//! by one is awaited.

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::error::{Error, ErrorKind, Result};

/// How a thing woken by a doorbell is awaited: its bell, how often to look
/// anyway, how to arm and disarm its bit, and how to tell that the other
/// side left (a flag: it rang nobody) or is gone (left or died).
pub(super) struct Awaited<'a> {
    pub(super) bell: &'a Bell,
    pub(super) every: Duration,
    pub(super) arm: &'a (dyn Fn() + Sync),
    pub(super) disarm: &'a (dyn Fn() + Sync),
    pub(super) left: &'a (dyn Fn() -> bool + Sync),
    pub(super) gone: &'a (dyn Fn() -> bool + Sync),
}

/// Disarms a doorbell bit when dropped: the wait returned, or its future
/// was dropped.
pub(super) struct Armed<'a>(&'a (dyn Fn() + Sync));

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        (self.0)();
    }
}

impl Awaited<'_> {
    /// The one wait of everything on a doorbell: look; arm the bit; look
    /// again (the ringer fences between its change and reading the bits,
    /// so either this look sees the change or the ringer sees the bit);
    /// await a ring, or look anyway every `every`. Not rung and the other
    /// side gone: a last look (what it did before leaving still counts),
    /// else `Closed`. Cancel-safe as far as `look` is.
    pub(super) async fn until<T>(
        &self,
        op: &'static str,
        mut look: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        loop {
            if let Some(v) = look()? {
                return Ok(v);
            }
            (self.arm)();
            let armed = Armed(self.disarm);
            if let Some(v) = look()? {
                return Ok(v);
            }
            let rung = !(self.left)() && self.bell.rung(Some(self.every)).await?;
            drop(armed);
            if !rung && (self.gone)() {
                return look()?.ok_or_else(|| Error::new(ErrorKind::Closed, op));
            }
        }
    }
}

/// A doorbell FIFO this process awaits in tokio's reactor (see
/// `wait/doorbell.rs`); it stays for the next waiter with its number.
#[derive(Debug)]
pub(super) struct Bell {
    fd: AsyncFd<OwnedFd>,
}

impl Bell {
    pub(super) fn make(seg: &crate::shm::Segment, k: usize) -> Result<Bell> {
        let io = |e| Error::io("open", e);
        let name = seg.name().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument(
                    "a doorbell needs a named segment (shm:NAME), not an anonymous one".into(),
                ),
                "open",
            )
        })?;
        let fd = crate::wait::doorbell::make(name, k, seg.mode()?).map_err(io)?;
        let fd = super::register(fd).map_err(io)?;
        Ok(Bell { fd })
    }

    /// Waits until rung (then empties the FIFO) or `timeout` passes; true
    /// if rung.
    pub(super) async fn rung(&self, timeout: Option<Duration>) -> Result<bool> {
        let readable = async {
            let mut guard = self.fd.readable().await.map_err(|e| Error::io("wait", e))?;
            crate::wait::doorbell::drain(self.fd.get_ref());
            guard.clear_ready();
            Ok(true)
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, readable).await.unwrap_or(Ok(false)),
            None => readable.await,
        }
    }
}
