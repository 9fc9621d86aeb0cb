//! The link API on tokio (feature `async`).
//!
//! [`AsyncLink`] drives the same decoder and the same resumable writer as
//! the blocking [`Link`]; only the waiting differs: instead of `poll(2)`, it
//! awaits readiness from tokio's reactor, so a task waits without a thread.
//! An `shm:` link has no descriptor: each half awaits a doorbell FIFO its
//! peer rings after a change, only while the half is armed (asleep).
//! Connecting (bounded by `?timeout=` and `?handshake_timeout=`) and
//! accepting (in 100 ms slices) run on tokio's blocking pool.
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
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use crate::error::{Error, ErrorKind, Result};
use crate::transport::shm::BellPlace;
use crate::transport::{Link, Listener, RecvHalf, SendHalf};
use crate::wire::KIND_DATA;

/// What a half of an [`AsyncLink`] awaits.
#[derive(Debug)]
enum Wake {
    /// The link's descriptor, on tokio's reactor.
    Fd(AsyncFd<OwnedFd>),
    /// An `shm:` link: the doorbell the peer rings, and its place.
    Bell(Bell, BellPlace),
    /// Nothing: this half of a one-way FIFO has no descriptor.
    Nothing,
}

impl Wake {
    fn of(fd: Option<BorrowedFd<'_>>, place: Option<BellPlace>, op: &'static str) -> Result<Wake> {
        Ok(match (fd, place) {
            (_, Some(p)) => {
                let (seg, k) = p.segment();
                Wake::Bell(Bell::make(seg, k)?, p)
            }
            (Some(fd), None) => {
                Wake::Fd(crate::sys::fd::register_with_reactor(fd).map_err(|e| Error::io(op, e))?)
            }
            (None, None) => Wake::Nothing,
        })
    }
}

fn no_reactor(op: &'static str) -> Error {
    Error::new(
        ErrorKind::Unsupported("this half of the link has no descriptor (a one-way FIFO)".into()),
        op,
    )
}

/// The receiving half of an [`AsyncLink`].
#[derive(Debug)]
pub struct AsyncRecvHalf {
    wake: Wake,
    /// `None` only while dropping (see `Drop`).
    half: Option<RecvHalf>,
}

/// A connecting half that sent and never read lingers for the listener's
/// hello before its socket closes (see `RecvHalf`'s `Drop`): a wait that
/// must not block a runtime thread, so it moves to the blocking pool, which
/// the runtime waits for when it shuts down.
impl Drop for AsyncRecvHalf {
    fn drop(&mut self) {
        let lingers = self.half.take_if(|h| h.lingers());
        if let (Some(half), Ok(rt)) = (lingers, tokio::runtime::Handle::try_current()) {
            rt.spawn_blocking(move || drop(half));
        }
    }
}

/// The sending half of an [`AsyncLink`].
#[derive(Debug)]
pub struct AsyncSendHalf {
    wake: Wake,
    half: SendHalf,
}

/// How a thing woken by a doorbell is awaited: its bell, how often to look
/// anyway, how to arm and disarm its bit, and how to tell that the other
/// side left (a flag: it rang nobody) or is gone (left or died).
struct Awaited<'a> {
    bell: &'a Bell,
    every: Duration,
    arm: &'a dyn Fn(),
    disarm: &'a dyn Fn(),
    left: &'a dyn Fn() -> bool,
    gone: &'a dyn Fn() -> bool,
}

/// Disarms a doorbell bit when dropped: the wait returned, or its future
/// was dropped.
struct Armed<'a>(&'a dyn Fn());

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
    async fn until<T>(
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

/// A [`Link`] for tokio.
#[derive(Debug)]
pub struct AsyncLink {
    rx: AsyncRecvHalf,
    tx: AsyncSendHalf,
}

impl AsyncLink {
    /// Connects to `url` (see [`Link::connect`]).
    pub async fn connect(url: &str) -> Result<AsyncLink> {
        let url = url.to_string();
        let link = tokio::task::spawn_blocking(move || Link::connect(&url))
            .await
            .map_err(|e| Error::io("connect", std::io::Error::other(e)))??;
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
        let (rx, tx) = link.split();
        rx.set_nonblocking()?;
        tx.set_nonblocking()?;
        Ok(AsyncLink {
            rx: AsyncRecvHalf {
                wake: Wake::of(rx.as_fd(), rx.shm_bell(), "recv")?,
                half: Some(rx),
            },
            tx: AsyncSendHalf {
                wake: Wake::of(tx.as_fd(), tx.shm_bell(), "send")?,
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

    /// Splits into halves for two tasks.
    pub fn split(self) -> (AsyncRecvHalf, AsyncSendHalf) {
        (self.rx, self.tx)
    }
}

impl AsyncRecvHalf {
    /// Receives one message.
    pub async fn recv(&mut self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.recv_into(&mut v).await?;
        Ok(v)
    }

    /// Receives one message into `buf`, replacing its contents.
    pub async fn recv_into(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        let half = self
            .half
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Closed, "recv"))?;
        if let Wake::Bell(bell, place) = &self.wake {
            return recv_shm(half, bell, place, buf).await;
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
    /// Sends one message.
    ///
    /// Cancelling (dropping) the future after part of the message was
    /// written leaves the stream mid-frame: the half is then marked failed
    /// and later sends return `Closed`, rather than corrupt the stream.
    pub async fn send(&mut self, msg: &[u8]) -> Result<()> {
        if let Wake::Bell(bell, place) = &self.wake {
            return send_shm(&mut self.half, bell, place, msg).await;
        }
        let (ch, mut out) = self.half.prepare(KIND_DATA, msg, &[])?;
        let guard = Unfinished(&mut self.half);
        loop {
            match out.write_some(&ch) {
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
    place: &BellPlace,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let awaited = Awaited {
        bell,
        every: place.liveness(),
        arm: &|| place.arm(),
        disarm: &|| place.disarm(),
        left: &|| place.peer_left(),
        gone: &|| place.peer_gone(),
    };
    awaited
        .until("recv", || {
            Ok(half.poll_once("recv")?.map(|()| half.take_message(buf)))
        })
        .await
}

/// Sends on an `shm:` link, awaiting space in the ring the same way. A
/// message longer than a ring record goes in parts: cancelled between two,
/// the half is marked failed (later sends return `Closed`), as for streams.
async fn send_shm(half: &mut SendHalf, bell: &Bell, place: &BellPlace, msg: &[u8]) -> Result<()> {
    let mut sent = 0;
    let mut g = MidMessage {
        half,
        partial: false,
    };
    let awaited = Awaited {
        bell,
        every: place.liveness(),
        arm: &|| place.arm(),
        disarm: &|| place.disarm(),
        left: &|| place.peer_left(),
        gone: &|| place.peer_gone(),
    };
    awaited
        .until("send", || {
            let done = g.half.try_send_shm(msg, &mut sent)?;
            g.partial = !done && sent > 0;
            Ok(done.then_some(()))
        })
        .await
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

/// A [`Listener`] for tokio.
///
/// `accept` runs the blocking accept in slices of 100 ms on tokio's
/// blocking pool, so dropping its future (in `select!`, say) loses nothing:
/// the slice in flight ends on its own and the listener, with any peers
/// still in their handshake, is there for the next `accept`.
#[derive(Debug)]
pub struct AsyncListener {
    inner: Arc<Mutex<Listener>>,
    endpoint: crate::Endpoint,
}

/// How long one blocking accept slice may take.
const ACCEPT_SLICE: Duration = Duration::from_millis(100);

impl AsyncListener {
    /// Binds the endpoint at `url` (see [`Listener::bind`]).
    pub fn bind(url: &str) -> Result<AsyncListener> {
        let listener = Listener::bind(url)?;
        Ok(AsyncListener {
            endpoint: listener.endpoint().clone(),
            inner: Arc::new(Mutex::new(listener)),
        })
    }

    /// The bound endpoint.
    pub fn endpoint(&self) -> &crate::Endpoint {
        &self.endpoint
    }

    /// Accepts the next peer whose handshake succeeded.
    pub async fn accept(&mut self) -> Result<AsyncLink> {
        loop {
            let listener = self.inner.clone();
            let slice = tokio::task::spawn_blocking(move || match listener.lock() {
                Ok(mut l) => l.accept_timeout(ACCEPT_SLICE),
                Err(_) => Err(Error::new(ErrorKind::Poisoned, "accept")),
            })
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
/// let prices = ipcx::tokio::AsyncSubscriber::open("shm:prices")?;
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
    /// [`Subscriber::open`](crate::shm::Subscriber::open); this waits, up to
    /// `?timeout=`, on the calling thread) and makes its doorbell. Must run
    /// inside a tokio runtime.
    pub fn open(url: &str) -> Result<AsyncSubscriber> {
        let liveness = crate::Endpoint::parse(url)?.options().liveness;
        let sub = crate::shm::Subscriber::open(url)?;
        let (seg, k) = sub.doorbell_place().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported("async subscribers need a named channel".into()),
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

/// A doorbell FIFO this process awaits in tokio's reactor (see
/// `shm/doorbell.rs`); removed when dropped.
#[derive(Debug)]
struct Bell {
    fd: AsyncFd<OwnedFd>,
    path: std::path::PathBuf,
}

impl Bell {
    fn make(seg: &crate::shm::Segment, k: usize) -> Result<Bell> {
        let io = |e| Error::io("open", e);
        let name = seg.name().ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported("a doorbell needs a named segment".into()),
                "open",
            )
        })?;
        let (path, fd) = crate::shm::doorbell::make(name, k, seg.mode()?).map_err(io)?;
        let fd =
            crate::sys::fd::register_with_reactor(std::os::fd::AsFd::as_fd(&fd)).map_err(io)?;
        Ok(Bell { fd, path })
    }

    /// Waits until rung (then empties the FIFO) or `timeout` passes; true
    /// if rung.
    async fn rung(&self, timeout: Option<Duration>) -> Result<bool> {
        let readable = async {
            let mut guard = self.fd.readable().await.map_err(|e| Error::io("wait", e))?;
            crate::shm::doorbell::drain(self.fd.get_ref());
            guard.clear_ready();
            Ok(true)
        };
        match timeout {
            Some(t) => tokio::time::timeout(t, readable).await.unwrap_or(Ok(false)),
            None => readable.await,
        }
    }
}

impl Drop for Bell {
    fn drop(&mut self) {
        let _ = crate::sys::fs::remove(&self.path);
    }
}

/// A named [`Event`](crate::sync::Event) awaited on tokio, without a thread
/// of its own: while it waits, it asks `set` (through a bit in the event)
/// to ring its doorbell, a FIFO tokio's reactor watches. Up to 64 async
/// waiters per event; blocking waiters are not counted.
///
/// ```no_run
/// # async fn demo() -> ipcx::Result<()> {
/// let mut warm = ipcx::tokio::AsyncEvent::open("cache-warm")?;
/// warm.wait().await?; // another process: Event::open("cache-warm")?.set()
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncEvent {
    /// Taken in `drop`, so the FIFO goes before the place is given up.
    bell: Option<Bell>,
    place: usize,
    /// How often a wait looks at the event without being rung.
    liveness: Duration,
    event: crate::sync::Event,
}

impl AsyncEvent {
    /// Opens the event `NAME` or `shm:NAME?liveness=20ms` (waiting up to
    /// `?timeout=` for it, on the calling thread) and makes its doorbell.
    /// A wait that is not rung looks at the event every `?liveness=`
    /// anyway (a setter of another user may be unable to ring). Must run
    /// inside a tokio runtime.
    pub fn open(name: &str) -> Result<AsyncEvent> {
        let liveness = if name.contains(':') {
            crate::Endpoint::parse(name)?.options().liveness
        } else {
            crate::shm::event::LIVENESS_INTERVAL
        };
        let mut e = AsyncEvent::from_event(crate::sync::Event::open(name)?)?;
        e.liveness = liveness;
        Ok(e)
    }

    /// Awaits an event this process already has open.
    pub fn from_event(event: crate::sync::Event) -> Result<AsyncEvent> {
        let (seg, place) = event.claim_bell()?;
        let bell = Bell::make(seg, place).inspect_err(|_| event.state().release_bell(place))?;
        Ok(AsyncEvent {
            bell: Some(bell),
            place,
            liveness: crate::shm::event::LIVENESS_INTERVAL,
            event,
        })
    }

    /// Waits until the event is set (an auto-reset event is taken, as by
    /// [`Event::wait`](crate::sync::Event::wait)). Cancel-safe: dropping the
    /// future takes nothing. One wait at a time per `AsyncEvent` (`&mut`):
    /// they share one doorbell.
    pub async fn wait(&mut self) -> Result<()> {
        let (state, place) = (self.event.state(), self.place);
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
            arm: &|| state.arm(place),
            disarm: &|| state.disarm(place),
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
        // The FIFO first: once the place is free, another process may make
        // its own at the same path.
        drop(self.bell.take());
        self.event.state().release_bell(self.place);
    }
}
