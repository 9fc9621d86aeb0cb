//! [`AsyncSubscriber`].

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

use super::{Awaited, Bell};

/// A shared-memory [`Subscriber`](crate::shm::Subscriber) for tokio: it
/// awaits a message without a thread of its own.
///
/// While it waits, it asks the publisher (through a bit in the channel
/// header) to ring its doorbell: a FIFO beside the segment
/// (`/dev/shm/NAME.bellK`) that tokio's reactor watches. A busy channel
/// rings nobody: the subscriber finds messages without waiting.
///
/// ```no_run
/// # async fn demo() -> ipcx::Result<()> {
/// let prices = ipcx::tokio::AsyncSubscriber::open("shm:prices").await?;
/// let sample = prices.recv().await?;
/// println!("{} bytes", sample.len());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncSubscriber {
    // Dropped before the subscriber, whose drop disarms the doorbell.
    bell: Bell,
    /// How often a wait checks that the publisher lives (`?liveness=`).
    liveness: Duration,
    sub: crate::shm::Subscriber,
}

impl AsyncSubscriber {
    /// Attaches to the channel `url` (see
    /// [`Subscriber::open`](crate::shm::Subscriber::open), which waits up to
    /// `?timeout=` for it: here a timer paces the looks, and no thread
    /// waits) and makes its doorbell.
    pub async fn open(url: &str) -> Result<AsyncSubscriber> {
        let ep = crate::Endpoint::parse(url)?;
        let liveness = ep.options().liveness;
        let sub = super::open_on_timer(ep.options().timeout, |now| {
            crate::shm::Subscriber::open_until(&ep, now)
        })
        .await?;
        let (seg, k) = sub.doorbell().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidArgument(
                    "async subscribers need a named channel: open it by its shm:NAME".into(),
                ),
                "open",
            )
        })?;
        let bell = Bell::make(seg, k).map_err(|e| e.at(url))?;
        Ok(AsyncSubscriber {
            bell,
            liveness,
            sub,
        })
    }

    /// Waits for the next message; the sample borrows it in shared memory.
    pub async fn recv(&self) -> Result<crate::shm::Sample<'_>> {
        let sub = &self.sub;
        let awaited = Awaited {
            bell: &self.bell,
            every: self.liveness,
            arm: &|| sub.arm_doorbell(),
            disarm: &|| sub.disarm_doorbell(),
            left: &|| false,
            gone: &|| sub.closed(),
        };
        awaited.until("recv", || sub.try_recv()).await
    }

    /// The subscriber underneath, for `lost()` and the blocking API.
    pub fn get_ref(&self) -> &crate::shm::Subscriber {
        &self.sub
    }
}

impl Drop for AsyncSubscriber {
    fn drop(&mut self) {
        self.sub.disarm_doorbell();
    }
}
