//! [`AsyncLink`] and its halves.

use std::os::fd::{BorrowedFd, OwnedFd};

use crate::endpoint::Scheme;
use crate::error::{Error, ErrorKind, Result};
use crate::transport::shm::LinkBell;
use crate::transport::{Link, RecvHalf, SendHalf, Until};
use crate::wire::KIND_DATA;

use super::{Awaited, Bell, Wake, no_reactor};

/// The receiving half of an [`AsyncLink`].
#[derive(Debug)]
pub struct AsyncRecvHalf {
    wake: Wake,
    /// `None` only while dropping (see `Drop`).
    half: Option<RecvHalf>,
}

/// A connecting half that sent and never read lingers for the listener's
/// hello before its socket closes (see `RecvHalf`'s `Drop`), or TCP would
/// reset away what it sent: a wait that must not block a runtime thread,
/// so a task awaits the hello on the reactor (up to `?handshake_timeout=`).
/// A runtime that shuts down first drops the task, and the half then
/// waits for the hello on the thread that shuts it down.
impl Drop for AsyncRecvHalf {
    fn drop(&mut self) {
        let Some(half) = self.half.take_if(|h| h.lingers()) else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        match std::mem::replace(&mut self.wake, Wake::Nothing) {
            Wake::Fd(ready) => drop(rt.spawn(linger(half, ready))),
            _ => drop(rt.spawn_blocking(move || drop(half))),
        }
    }
}

/// Reads the peer's hello, and whatever came after it, until the hello is
/// in or the linger's deadline passes; then the half closes without
/// waiting again.
async fn linger(mut half: RecvHalf, ready: tokio::io::unix::AsyncFd<OwnedFd>) {
    let Some(deadline) = half.linger_deadline() else {
        return;
    };
    let hello = async {
        let mut sink = Vec::new();
        while half.lingers() {
            match half.poll_once("recv") {
                Ok(Some(())) => half.take_message(&mut sink),
                Ok(None) => match ready.readable().await {
                    Ok(mut guard) => guard.clear_ready(),
                    Err(_) => return,
                },
                Err(_) => return,
            }
        }
    };
    if tokio::time::timeout_at(deadline.into(), hello)
        .await
        .is_err()
    {
        tracing::debug!("no hello before close");
    }
    half.give_up_hello();
}

/// The sending half of an [`AsyncLink`].
#[derive(Debug)]
pub struct AsyncSendHalf {
    wake: Wake,
    half: SendHalf,
}

/// A [`Link`] for tokio.
#[derive(Debug)]
pub struct AsyncLink {
    rx: AsyncRecvHalf,
    tx: AsyncSendHalf,
}

impl AsyncLink {
    /// Connects to `url` (see [`Link::connect`]). A socket, `shm:` or
    /// queue link connects on the reactor, waiting for its listener or
    /// queue to appear (or an `shm:` endpoint to come free) with a timer (a
    /// TCP host name is resolved on tokio's blocking pool first); `fifo:`
    /// and `journal:` connect on the blocking pool (bounded by
    /// `?timeout=`). The runtime needs its timer and I/O
    /// drivers (`enable_all`).
    pub async fn connect(url: &str) -> Result<AsyncLink> {
        let ep = crate::Endpoint::parse(url)?;
        let link = match ep.scheme() {
            Scheme::Unix | Scheme::UnixSeq | Scheme::Tcp => {
                super::connect::socket_link(&ep).await?
            }
            Scheme::Shm => super::connect::shm_link(&ep).await?,
            Scheme::Mq | Scheme::SysvMq => super::connect::queue_link(&ep).await?,
            _ => super::on_blocking_pool("connect", move || Link::connect_endpoint(&ep)).await?,
        };
        AsyncLink::from_link(link)
    }

    /// Moves a connected link onto the reactor; must run inside a tokio runtime.
    pub fn from_link(link: Link) -> Result<AsyncLink> {
        if !link.capabilities().pollable {
            return Err(Error::new(
                ErrorKind::Unsupported(format!(
                    "{} links have no descriptor for the reactor yet; use the blocking API \
                     on a blocking thread",
                    link.url().split(':').next().unwrap_or("this")
                )),
                "register",
            ));
        }
        let (rx, mut tx) = link.split();
        tx.flush_lingering()?;
        rx.set_nonblocking()?;
        tx.set_nonblocking()?;
        Ok(AsyncLink {
            rx: AsyncRecvHalf {
                wake: Wake::of(rx.reactor_fd(), rx.shm_bell(), "recv")?,
                half: Some(rx),
            },
            tx: AsyncSendHalf {
                wake: Wake::of(tx.descriptor(), tx.shm_bell(), "send")?,
                half: tx,
            },
        })
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.tx.send(msg).await
    }

    /// Receives one message.
    pub async fn recv(&mut self) -> Result<Vec<u8>> {
        self.rx.recv().await
    }

    /// Receives one message into `buf`, replacing its contents.
    pub async fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.rx.recv_into(buf).await
    }

    /// Sends one message with `priority` (`mq:` links; see
    /// [`Link::send_with_priority`]).
    pub async fn send_with_priority(&mut self, msg: &[u8], priority: u32) -> Result<()> {
        self.tx.send_with_priority(msg, priority).await
    }

    /// Receives one message and its priority (`mq:` links; `0` on others).
    pub async fn recv_with_priority(&mut self) -> Result<(Vec<u8>, u32)> {
        let msg = self.rx.recv().await?;
        Ok((msg, self.rx.last_priority()))
    }

    /// Sends one message with file descriptors (Unix sockets only).
    pub async fn send_fds(&mut self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        self.tx.send_fds(msg, fds).await
    }

    /// Receives one message and the file descriptors sent with it.
    pub async fn recv_fds(&mut self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        self.rx.recv_fds().await
    }

    /// Closes the link: the peer's next receive returns `Closed` once it
    /// has read what was sent.
    pub fn close(self) {
        self.tx.close();
    }

    /// Splits into halves for two tasks.
    pub fn split(self) -> (AsyncRecvHalf, AsyncSendHalf) {
        (self.rx, self.tx)
    }

    /// Joins two halves of the same link again.
    pub fn unsplit(rx: AsyncRecvHalf, tx: AsyncSendHalf) -> AsyncLink {
        AsyncLink { rx, tx }
    }
}

impl AsyncRecvHalf {
    /// The priority of the message received last (`mq:` links; `0` on
    /// others).
    pub fn last_priority(&self) -> u32 {
        self.half.as_ref().map_or(0, RecvHalf::last_priority)
    }

    /// Receives one message.
    pub async fn recv(&mut self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.recv_into(&mut v).await?;
        Ok(v)
    }

    /// Receives one message and the file descriptors sent with it.
    pub async fn recv_fds(&mut self) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
        let msg = self.recv().await?;
        let fds = self
            .half
            .as_mut()
            .map(RecvHalf::take_fds)
            .unwrap_or_default();
        Ok((msg, fds))
    }

    /// Receives one message into `buf`, replacing its contents.
    pub async fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let half = self
            .half
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Closed, "recv"))?;
        if let Wake::Bell(bell, doorbell) = &self.wake {
            return recv_shm(half, bell, doorbell, buf).await;
        }
        loop {
            if half.poll_once("recv")?.is_some() {
                half.take_message(buf);
                return Ok(());
            }
            let Wake::Fd(ready) = &self.wake else {
                return Err(no_reactor("recv"));
            };
            let mut guard = ready.readable().await.map_err(|e| Error::io("recv", e))?;
            // Safe to forget the readiness: the loop reads again right away.
            guard.clear_ready();
        }
    }
}

impl AsyncSendHalf {
    /// Sends one message with `priority`, as
    /// [`Link::send_with_priority`] does (`mq:` links; other links take
    /// only priority 0).
    pub async fn send_with_priority(&mut self, msg: &[u8], priority: u32) -> Result<()> {
        if !self.half.is_queue() {
            if priority == 0 {
                return Box::pin(self.send(msg)).await;
            }
            return Err(Error::new(
                ErrorKind::Unsupported("only mq: links carry priorities".into()),
                "send",
            ));
        }
        // A System V queue has no descriptor that says it has room: it
        // is tried again after a pause (from 1 ms, up to 5 ms), as its blocking
        // sends with a deadline do.
        let mut backoff = crate::deadline::Backoff::new(std::time::Duration::from_millis(5));
        loop {
            match self.half.send_with_priority(msg, priority, Until::NoWait) {
                Err(e) if *e.kind() == ErrorKind::WouldBlock => match &self.wake {
                    Wake::Fd(ready) => {
                        let mut g = ready.writable().await.map_err(|e| Error::io("send", e))?;
                        g.clear_ready();
                    }
                    _ => {
                        tokio::time::sleep(backoff.next_pause()).await;
                    }
                },
                r => return r,
            }
        }
    }

    /// Ends this direction: the peer's next receive returns `Closed` once
    /// it has read what was sent.
    pub fn close(mut self) {
        self.half.shutdown();
    }

    /// Sends one message.
    ///
    /// Cancelling (dropping) the future after part of the message was
    /// written leaves the stream mid-frame: the half is then marked failed
    /// and later sends return `Closed`, rather than corrupt the stream.
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_fds(msg, &[]).await
    }

    /// Sends one message with file descriptors (Unix sockets only), as
    /// [`AsyncSendHalf::send`] does.
    pub async fn send_fds(&mut self, msg: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
        if let Wake::Bell(bell, doorbell) = &self.wake {
            if !fds.is_empty() {
                return Err(self.half.passes_no_fds());
            }
            return send_shm(&mut self.half, bell, doorbell, msg).await;
        }
        if self.half.is_queue() {
            if !fds.is_empty() {
                return Err(self.half.passes_no_fds());
            }
            return self.send_with_priority(msg, 0).await;
        }
        let (ch, mut out) = self.half.prepare(KIND_DATA, msg, fds)?;
        let guard = Unfinished(&mut self.half);
        loop {
            match out.write_some(&ch, true) {
                Ok(_) => {
                    std::mem::forget(guard);
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let Wake::Fd(ready) = &self.wake else {
                        return Err(no_reactor("send"));
                    };
                    let mut g = ready.writable().await.map_err(|e| Error::io("send", e))?;
                    g.clear_ready();
                }
                Err(e) => {
                    let err = guard.0.write_failed(e);
                    std::mem::forget(guard);
                    return Err(err);
                }
            }
        }
    }
}

/// Receives from an `shm:` link: look, arm the doorbell, look again, await
/// the ring (or a look every liveness interval, which also notices a peer
/// that died). Cancel-safe: a message is taken only when returned.
async fn recv_shm(
    half: &mut RecvHalf,
    bell: &Bell,
    doorbell: &LinkBell,
    buf: &mut Vec<u8>,
) -> Result<()> {
    await_shm(bell, doorbell, "recv", || {
        Ok(half.poll_once("recv")?.map(|()| half.take_message(buf)))
    })
    .await
}

/// Sends on an `shm:` link, awaiting space in the ring the same way. A
/// message longer than a ring record goes in parts: cancelled between two,
/// the half is marked failed (later sends return `Closed`), as for streams.
async fn send_shm(half: &mut SendHalf, bell: &Bell, doorbell: &LinkBell, msg: &[u8]) -> Result<()> {
    let mut sent = 0;
    let mut g = MidMessage {
        half,
        partial: false,
    };
    await_shm(bell, doorbell, "send", || {
        let done = g.half.try_send_shm(msg, &mut sent)?;
        g.partial = !done && sent > 0;
        Ok(done.then_some(()))
    })
    .await
}

/// Awaits `look` on an `shm:` link's doorbell; the other side left or
/// died is the link's peer flag and liveness.
async fn await_shm<T>(
    bell: &Bell,
    doorbell: &LinkBell,
    op: &'static str,
    look: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let awaited = Awaited {
        bell,
        every: doorbell.liveness(),
        arm: &|| doorbell.arm(),
        disarm: &|| doorbell.disarm(),
        left: &|| doorbell.peer_left(),
        gone: &|| doorbell.peer_gone(),
    };
    awaited.until(op, look).await
}

/// Marks an `shm:` half failed if a send stops with a message half in the
/// ring (an error, or its future dropped).
struct MidMessage<'a> {
    half: &'a mut SendHalf,
    partial: bool,
}

impl Drop for MidMessage<'_> {
    fn drop(&mut self) {
        if self.partial {
            let _ = self
                .half
                .write_failed(std::io::Error::other("send stopped mid-message"));
        }
    }
}

/// Marks the half failed if a send stops midway (its future was dropped).
struct Unfinished<'a>(&'a mut SendHalf);

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .write_failed(std::io::Error::other("send cancelled mid-message"));
    }
}
