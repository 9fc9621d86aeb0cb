//! The hello each end of a [`Link`] sends first: the peer's limits and
//! settings, checked before any message.

use std::time::{Duration, Instant};

use super::Link;
use crate::error::Result;
use crate::transport::half::{Rx, Tx};
use crate::wire::Hello;

impl Link {
    /// The largest message the peer accepts, once its handshake arrived
    /// (on a queue or a journal: its own limit, known at once).
    pub fn peer_max_msg(&self) -> Option<u64> {
        self.tx.peer_max_msg()
    }

    /// Waits up to `timeout` for the peer's hello: on return, the peer
    /// accepted this link and speaks the same protocol with compatible
    /// settings (CRC, limits).
    ///
    /// `connect` does not wait for it (the listener answers only when it
    /// accepts, and a connect must not depend on that); the first receive
    /// checks it anyway. Call this where a sender must know it was
    /// accepted before it goes on, as `ipcx send` does: a listener at its
    /// `?max_conns=` limit closes the connection unanswered, and this says
    /// so. A message that arrived right behind the hello is kept for the
    /// next receive.
    ///
    /// ```
    /// # fn main() -> ipcx::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("ipcx-doc-wc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let url = format!("unix:{}/app.sock", dir.display());
    /// let listener = ipcx::Listener::bind(&url)?;
    /// let mut client = ipcx::Link::connect(&url)?; // returns at once
    /// let _server = listener.accept()?;             // answers the hello
    /// client.wait_connected(std::time::Duration::from_secs(5))?;
    /// assert!(client.peer_max_msg().is_some());
    /// # drop(listener); std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub fn wait_connected(&mut self, timeout: Duration) -> Result<()> {
        self.finish_handshake(crate::deadline::far_after(timeout))
    }

    /// Sends our hello and, where this side also receives, expects the
    /// peer's as the first frame.
    pub(crate) fn begin_handshake(&mut self, crc: bool, max_msg: usize) -> Result<()> {
        self.send_hello(crc, max_msg)?;
        self.expect_hello(crc, max_msg);
        Ok(())
    }

    /// Sends our hello (where this side sends a byte stream).
    pub(crate) fn send_hello(&mut self, crc: bool, max_msg: usize) -> Result<()> {
        match &mut self.tx.tx {
            Tx::Stream(s) => s.send_hello(&Hello::new(crc, max_msg)),
            Tx::Shm(_) | Tx::Mq(_) | Tx::Journal(_) | Tx::None => Ok(()),
        }
    }

    /// Expects the peer's hello as the first frame (where this side
    /// receives a byte stream), to be checked against ours.
    pub(crate) fn expect_hello(&mut self, crc: bool, max_msg: usize) {
        if let Rx::Stream(s) = &mut self.rx.rx {
            s.expect_hello(Hello::new(crc, max_msg));
        }
    }

    /// Waits until the peer's hello arrived and matched ours.
    pub(crate) fn finish_handshake(&mut self, deadline: Instant) -> Result<()> {
        match &mut self.rx.rx {
            Rx::Stream(s) => s.await_hello(deadline),
            Rx::Shm(_) | Rx::Mq(_) | Rx::Journal(_) | Rx::None(_) => Ok(()),
        }
    }

    /// Reads what has arrived of the peer's hello; `true` once it matched.
    pub(crate) fn poll_handshake(&mut self) -> Result<bool> {
        match &mut self.rx.rx {
            Rx::Stream(s) => s.poll_hello(),
            Rx::Shm(_) | Rx::Mq(_) | Rx::Journal(_) | Rx::None(_) => Ok(true),
        }
    }
}
