//! Request/reply on tokio: [`AsyncServer`] runs each call's handler as a
//! task of its own (calls of one connection answered as they finish, in
//! any order), and [`AsyncClient`] makes calls from any number of tasks
//! over one link, a reader task handing each reply to its call. The
//! envelopes and schemas are those of the blocking ends: an
//! [`AsyncClient`] calls a [`Server`](super::Server), a
//! [`Client`](super::Client) calls an [`AsyncServer`].

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::super::typed::{Message, Way, decode, encode, trade_schemas_async};
use super::server::Counts;
use super::{
    DEFAULT_CALL_TIMEOUT, ERROR_REPLY, REPLY, REPLY_WAIT, REQUEST, Reply, bytes_ways, envelope,
    lock, open, panicked, typed_ways,
};
use crate::error::{Error, ErrorKind, Result};
use crate::tokio::{AsyncLink, AsyncListener, AsyncSendHalf};

/// Calls of one connection whose handlers may run at once; the next
/// call is read when one of them is answered.
const CALLS_AT_ONCE: usize = 1024;

/// How often the accepting loop says its state to `ipcx ls`.
const STATE_EVERY: Duration = Duration::from_millis(250);

/// A handler's future, boxed so that bytes and typed services share one
/// server loop.
type Answer = Pin<Box<dyn Future<Output = Reply> + Send>>;
type Handler = Arc<dyn Fn(Vec<u8>) -> Answer + Send + Sync>;

/// The answering end on tokio: each call's handler future runs as a task
/// of its own, the calls of one connection answered as they finish; the
/// same wire as [`Server`](super::Server), so blocking clients call it too.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ipcx::Result<()> {
/// # let dir = std::env::temp_dir().join(format!("ipcx-doc-arpc-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir).unwrap();
/// # let url = format!("unix:{}/stock.sock", dir.display());
/// use ipcx::pattern::{AsyncClient, AsyncServer};
///
/// let mut server = AsyncServer::bind(&url)?;
/// tokio::spawn(async move {
///     server
///         .serve(|sku: Vec<u8>| async move {
///             // Any awaiting here: a database, another service.
///             Ok(format!("{} in stock", sku.len()).into_bytes())
///         })
///         .await
/// });
/// let client = AsyncClient::connect(&url).await?;
/// assert_eq!(client.call(b"A-1").await?, b"3 in stock");
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncServer {
    listener: AsyncListener,
    counts: Arc<Counts>,
}

impl AsyncServer {
    /// Binds `url` (see [`Listener::bind`](crate::Listener::bind)); must
    /// run inside a tokio runtime.
    pub fn bind(url: &str) -> Result<AsyncServer> {
        Ok(AsyncServer {
            listener: AsyncListener::bind(url)?,
            counts: Arc::new(Counts::default()),
        })
    }

    /// The bound endpoint.
    pub fn endpoint(&self) -> &crate::Endpoint {
        self.listener.endpoint()
    }

    /// Calls answered so far, over every connection.
    pub fn served(&self) -> u64 {
        self.counts.served.load(Ordering::Relaxed)
    }

    /// Calls received and not answered yet, over every connection.
    pub fn in_flight(&self) -> u64 {
        self.counts.in_flight.load(Ordering::Relaxed)
    }

    /// Serves until accepting fails: each connection on a task of its
    /// own, each call's `handler` future on a task of its own (up to 1024
    /// at once per connection). A handler that panics answers its call
    /// with an error.
    pub async fn serve<F, Fut>(&mut self, handler: F) -> Result<()>
    where
        F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Reply> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |body| Box::pin(handler(body)));
        self.accept_each(bytes_ways(false).to_vec(), handler).await
    }

    /// Serves a typed service (as [`AsyncServer::serve`]): `handler`
    /// takes a `Req` and answers a `Resp`, or an error text.
    pub async fn serve_typed<Req, Resp, F, Fut>(&mut self, handler: F) -> Result<()>
    where
        Req: Message,
        Resp: Message,
        F: Fn(Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Resp, String>> + Send + 'static,
    {
        let ways = typed_ways::<Req, Resp>(false);
        let handler: Handler = Arc::new(move |body: Vec<u8>| {
            // Decoded and called here: the future holds no `Req`.
            let called = decode::<Req>(&body).map(&handler);
            Box::pin(async move {
                let resp = called.map_err(|e| e.to_string())?.await?;
                let mut out = Vec::new();
                encode(&resp, &mut out).map_err(|e| e.to_string())?;
                Ok(out)
            })
        });
        self.accept_each(ways.to_vec(), handler).await
    }

    async fn accept_each(&mut self, ways: Vec<Way>, handler: Handler) -> Result<()> {
        let url = self.listener.endpoint().url().to_string();
        let mut said = String::new();
        loop {
            if let Some(now) = self.counts.changed(&mut said) {
                self.listener.set_state(&now).await;
            }
            // Dropping an accept loses nothing (see AsyncListener).
            let Ok(accepted) = tokio::time::timeout(STATE_EVERY, self.listener.accept()).await
            else {
                continue;
            };
            let mut link = accepted?;
            let (ways, handler, counts, url) = (
                ways.clone(),
                handler.clone(),
                self.counts.clone(),
                url.clone(),
            );
            tokio::spawn(async move {
                match trade_schemas_async(&mut link, &url, &ways).await {
                    Ok(()) => {
                        counts.connections.fetch_add(1, Ordering::Relaxed);
                        serve_conn(link, handler, &counts).await;
                        counts.connections.fetch_sub(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(error = %e, "rpc: peer refused"),
                }
            });
        }
    }
}

/// Serves one connection: reads its calls and runs each handler as a
/// task; a writer task sends the replies as they come.
async fn serve_conn(link: AsyncLink, handler: Handler, counts: &Arc<Counts>) {
    let (mut rx, tx) = link.split();
    let (replies, queue) = mpsc::channel::<Vec<u8>>(CALLS_AT_ONCE);
    let writer = tokio::spawn(write_replies(tx, queue, counts.clone()));
    let room = Arc::new(Semaphore::new(CALLS_AT_ONCE));
    let mut buf = Vec::new();
    loop {
        let Ok(permit) = room.clone().acquire_owned().await else {
            break;
        };
        match rx.recv_into(&mut buf).await {
            Ok(()) => {}
            Err(e) if e.is_closed() => break,
            Err(e) => {
                tracing::warn!(error = %e, "rpc: connection failed; dropped");
                break;
            }
        }
        let Some((REQUEST, id, body)) = open(&buf) else {
            tracing::warn!("rpc: a message that is no call (kind, id, body); peer dropped");
            break;
        };
        if replies.is_closed() {
            // The writer gave up on this client.
            break;
        }
        counts.in_flight.fetch_add(1, Ordering::Relaxed);
        let answer = CatchUnwind::call(&handler, crate::copy::to_vec(body));
        tokio::spawn(run_call(
            id,
            answer,
            replies.clone(),
            counts.clone(),
            permit,
        ));
    }
    drop(replies);
    let _ = writer.await;
}

/// Runs one call's handler and queues its reply.
async fn run_call(
    id: u64,
    answer: CatchUnwind,
    replies: mpsc::Sender<Vec<u8>>,
    counts: Arc<Counts>,
    _room: OwnedSemaphorePermit,
) {
    let reply = answer.await;
    counts.in_flight.fetch_sub(1, Ordering::Relaxed);
    let mut out = Vec::new();
    match &reply {
        Ok(body) => envelope(REPLY, id, body, &mut out),
        Err(why) => envelope(ERROR_REPLY, id, why.as_bytes(), &mut out),
    }
    let _ = replies.send(out).await;
}

/// Sends a connection's replies; a client that does not take one within
/// `REPLY_WAIT` is shut out (its link's sending side closed).
async fn write_replies(
    mut tx: AsyncSendHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    counts: Arc<Counts>,
) {
    while let Some(out) = queue.recv().await {
        match tokio::time::timeout(REPLY_WAIT, tx.send(&out)).await {
            Ok(Ok(())) => {
                counts.served.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) if e.is_closed() => return,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "rpc: a reply could not be sent; client dropped");
                return tx.close();
            }
            Err(_) => {
                tracing::warn!("rpc: a client does not take its replies; dropped");
                return tx.close();
            }
        }
    }
}

/// A handler's future, a panic in it made an error reply.
struct CatchUnwind(Answer);

impl CatchUnwind {
    /// Calls `handler` (its synchronous part may panic too: a typed
    /// service decodes and calls the user's function there).
    fn call(handler: &Handler, body: Vec<u8>) -> CatchUnwind {
        let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(body)));
        CatchUnwind(called.unwrap_or_else(|p| {
            let reply = Err(panicked(&*p));
            Box::pin(async move { reply })
        }))
    }
}

impl Future for CatchUnwind {
    type Output = Reply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Reply> {
        let fut = &mut self.0;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx)))
            .unwrap_or_else(|p| Poll::Ready(Err(panicked(&*p))))
    }
}

/// What the calls of one [`AsyncClient`] share with its reader task.
#[derive(Debug, Default)]
struct Calls {
    /// Each waiting call's way to its reply.
    waiting: HashMap<u64, oneshot::Sender<Reply>>,
    /// The link failed: every call fails so.
    broken: Option<Error>,
}

/// The calling end on tokio: calls from any number of tasks over one
/// link, each matched to its reply by id by a reader task.
/// A call's future may be dropped (cancelled, or lost a `select!`): its
/// reply, when it comes, is dropped and counted.
#[derive(Debug)]
pub struct AsyncClient {
    url: String,
    tx: tokio::sync::Mutex<(AsyncSendHalf, Vec<u8>)>,
    calls: Arc<Mutex<Calls>>,
    next_id: AtomicU64,
    unmatched: Arc<AtomicU64>,
    timeout: Duration,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for AsyncClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl AsyncClient {
    /// Connects to the server at `url` (see
    /// [`Link::connect`](crate::Link::connect)); must run inside a tokio
    /// runtime.
    pub async fn connect(url: &str) -> Result<AsyncClient> {
        AsyncClient::with_ways(url, &bytes_ways(true)).await
    }

    async fn with_ways(url: &str, ways: &[Way]) -> Result<AsyncClient> {
        let mut link = AsyncLink::connect(url).await?;
        trade_schemas_async(&mut link, url, ways).await?;
        let (mut rx, tx) = link.split();
        let calls = Arc::new(Mutex::new(Calls::default()));
        let unmatched = Arc::new(AtomicU64::new(0));
        let (c, u, at) = (calls.clone(), unmatched.clone(), url.to_string());
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            let broke = loop {
                if let Err(e) = rx.recv_into(&mut buf).await {
                    break e.at(&at);
                }
                let reply = open(&buf).filter(|(k, ..)| *k == REPLY || *k == ERROR_REPLY);
                let Some((kind, id, body)) = reply else {
                    break crate::pattern::unexpected(
                        "call",
                        "a message that is no call reply (kind, id, body)",
                    )
                    .at(&at);
                };
                let waiter = lock(&c).waiting.remove(&id);
                let reply = if kind == REPLY {
                    Ok(crate::copy::to_vec(body))
                } else {
                    Err(String::from_utf8_lossy(body).into_owned())
                };
                // A call gone (timed out, cancelled) or an id never called.
                if waiter.is_none_or(|w| w.send(reply).is_err()) {
                    u.fetch_add(1, Ordering::Relaxed);
                }
            };
            let mut calls = lock(&c);
            calls.broken = Some(broke);
            // Every waiting call learns it from `broken`.
            calls.waiting.clear();
        });
        Ok(AsyncClient {
            url: url.to_string(),
            tx: tokio::sync::Mutex::new((tx, Vec::new())),
            calls,
            next_id: AtomicU64::new(1),
            unmatched,
            timeout: DEFAULT_CALL_TIMEOUT,
            reader,
        })
    }

    /// The timeout of [`AsyncClient::call`] from now on (default
    /// [`DEFAULT_CALL_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Calls with `request` and waits for the reply, at most the client's
    /// timeout ([`ErrorKind::TimedOut`]); an error the handler returned is
    /// [`ErrorKind::Remote`].
    pub async fn call(&self, request: &[u8]) -> Result<Vec<u8>> {
        self.call_timeout(request, self.timeout).await
    }

    /// [`AsyncClient::call`], waiting at most `timeout`. A time-out that
    /// comes while the request is partly written (the server reads
    /// nothing) leaves the link mid-frame, so it is marked failed and later
    /// calls return `Closed` (see [`AsyncSendHalf::send`]); one that comes
    /// while the reply is awaited leaves the link as it was.
    pub async fn call_timeout(&self, request: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, reply) = oneshot::channel();
        {
            let mut calls = lock(&self.calls);
            if let Some(e) = &calls.broken {
                return Err(Error::new(e.kind().clone(), "call").at(&self.url));
            }
            calls.waiting.insert(id, answer);
        }
        // However the call ends (a reply, a timeout, dropped), it stops
        // waiting.
        let _forget = Forget(&self.calls, id);
        let call = async {
            {
                let mut tx = self.tx.lock().await;
                let (half, buf) = &mut *tx;
                envelope(REQUEST, id, request, buf);
                half.send(buf).await?;
            }
            match reply.await {
                Ok(r) => r.map_err(|why| Error::new(ErrorKind::Remote(why), "call").at(&self.url)),
                Err(_) => Err(self.broken()),
            }
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::TimedOut, "call").at(&self.url)))
    }

    /// Why the link failed (its reader stopped).
    fn broken(&self) -> Error {
        let kind = lock(&self.calls)
            .broken
            .as_ref()
            .map_or(ErrorKind::Closed, |e| e.kind().clone());
        Error::new(kind, "call").at(&self.url)
    }

    /// Replies dropped because no call waited for them (it timed out or
    /// was cancelled, or the id was never a call of this client).
    pub fn unmatched(&self) -> u64 {
        self.unmatched.load(Ordering::Relaxed)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        lock(&self.calls).waiting.len()
    }
}

/// Takes a call off the waiting list when it ends.
struct Forget<'a>(&'a Mutex<Calls>, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.0).waiting.remove(&self.1);
    }
}

/// An [`AsyncClient`] of a typed service: requests of `Req`, responses of
/// `Resp`; a server of other types is refused at connect, naming both.
#[derive(Debug)]
pub struct AsyncTypedClient<Req: Message, Resp: Message> {
    client: AsyncClient,
    _t: PhantomData<fn(Req) -> Resp>,
}

impl<Req: Message, Resp: Message> AsyncTypedClient<Req, Resp> {
    /// Connects to the typed service at `url`.
    pub async fn connect(url: &str) -> Result<AsyncTypedClient<Req, Resp>> {
        let ways = typed_ways::<Req, Resp>(true);
        Ok(AsyncTypedClient {
            client: AsyncClient::with_ways(url, &ways).await?,
            _t: PhantomData,
        })
    }

    /// Calls with `request` (as [`AsyncClient::call`]).
    pub async fn call(&self, request: &Req) -> Result<Resp> {
        self.call_timeout(request, self.client.timeout).await
    }

    /// Calls with `request`, waiting at most `timeout`.
    pub async fn call_timeout(&self, request: &Req, timeout: Duration) -> Result<Resp> {
        let mut body = Vec::new();
        encode(request, &mut body)?;
        decode(&self.client.call_timeout(&body, timeout).await?)
    }

    /// The bytes client underneath (timeouts, counts).
    pub fn client(&mut self) -> &mut AsyncClient {
        &mut self.client
    }
}
