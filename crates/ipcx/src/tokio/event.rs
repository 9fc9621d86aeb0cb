//! [`AsyncEvent`].

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

use super::{Awaited, Bell};

/// A named [`Event`](crate::sync::Event) awaited on tokio, without a thread
/// of its own: while it waits, it asks `set` (through a bit in the event)
/// to ring its doorbell, a FIFO tokio's reactor watches. Up to 64 async
/// waiters per event; blocking waiters are not counted.
///
/// ```no_run
/// # async fn demo() -> ipcx::Result<()> {
/// let mut warm = ipcx::tokio::AsyncEvent::open("cache-warm").await?;
/// warm.wait().await?; // another process: Event::open("cache-warm")?.set()
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncEvent {
    /// Taken in `drop`, so it leaves the reactor before its number is
    /// given up.
    bell: Option<Bell>,
    number: usize,
    /// How often a wait looks at the event without being rung.
    liveness: Duration,
    event: crate::sync::Event,
}

impl AsyncEvent {
    /// Opens the event `NAME` or `shm:NAME?liveness=20ms` (waiting up to
    /// `?timeout=` for it: a timer paces the looks, and no thread waits)
    /// and makes its doorbell. A wait that is not rung looks at the event every
    /// `?liveness=` anyway (a setter of another user may be unable to
    /// ring).
    pub async fn open(name: &str) -> Result<AsyncEvent> {
        // As the blocking open reads it: `NAME` is `shm:NAME`.
        let options = if name.contains(':') {
            crate::Endpoint::parse(name)?
        } else {
            crate::Endpoint::parse(&format!("shm:{name}"))?
        }
        .options()
        .clone();
        let liveness = options.liveness;
        let event = super::open_on_timer(options.timeout, |now| {
            crate::sync::Event::open_until(name, Some(now))
        })
        .await?;
        let mut e = AsyncEvent::from_event(event)?;
        e.liveness = liveness;
        Ok(e)
    }

    /// Awaits an event this process already has open.
    pub fn from_event(event: crate::sync::Event) -> Result<AsyncEvent> {
        let (seg, number) = event.claim_bell()?;
        let bell = Bell::make(seg, number).inspect_err(|_| event.state().release_bell(number))?;
        Ok(AsyncEvent {
            bell: Some(bell),
            number,
            liveness: crate::wait::LIVENESS_INTERVAL,
            event,
        })
    }

    /// Waits until the event is set (an auto-reset event is taken, as by
    /// [`Event::wait`](crate::sync::Event::wait)). Cancel-safe: dropping the
    /// future takes nothing. One wait at a time per `AsyncEvent` (`&mut`):
    /// they share one doorbell.
    pub async fn wait(&mut self) -> Result<()> {
        let (state, number) = (self.event.state(), self.number);
        let bell = self
            .bell
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Closed, "wait"))?;
        // An event has no other side to lose; the look every `?liveness=`
        // covers a setter that could not ring (another user without access
        // to the FIFO): latency, never a hang.
        let awaited = Awaited {
            bell,
            every: self.liveness,
            arm: &|| state.arm(number),
            disarm: &|| state.disarm(number),
            left: &|| false,
            gone: &|| false,
        };
        awaited
            .until("wait", || Ok(state.try_take().then_some(())))
            .await
    }

    /// The event underneath, to set, reset or wait on blocking.
    pub fn get_ref(&self) -> &crate::sync::Event {
        &self.event
    }
}

impl Drop for AsyncEvent {
    fn drop(&mut self) {
        // Off the reactor before the number is free for another waiter.
        drop(self.bell.take());
        self.event.state().release_bell(self.number);
    }
}
