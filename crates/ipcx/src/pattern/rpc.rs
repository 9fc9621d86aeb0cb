//! Request/reply: a [`Client`] makes calls over one link, many in flight
//! at once from any number of threads, each matched to its reply by a
//! correlation id; a [`Server`] answers them with a handler.
//!
//! Every message on the link is an envelope: a kind byte (request,
//! reply, error reply), the call's id (u64, little-endian), the body.
//! Each end first trades its schema (as typed links do): bytes for
//! [`Client`] and [`Server::serve`], the request and response types for
//! [`TypedClient`] and [`Server::serve_typed`].
//!
//! No thread waits on the client's behalf: a caller whose reply has not
//! come reads the link itself if no other caller is reading, handing the
//! replies it meets to their callers; a lone caller reads its own reply
//! with no hand-off. A call has a timeout (and gives up its reply when
//! it passes); an error the handler returned is [`ErrorKind::Remote`], a
//! failure of the link any other kind. A reply nobody waits for (its call
//! timed out, or its id is unknown) is dropped and counted
//! ([`Client::unmatched`]).
//!
//! The server serves each connection on a thread of its own and runs the
//! handler there, without a hand-off ([`Server::serve`]), or on a pool of
//! threads ([`Server::serve_pool`]). A handler that panics answers its
//! call with an error and the server goes on; a peer that breaks the
//! envelope is dropped and the others are served.
//!
//! ```
//! # fn main() -> ipcx::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("ipcx-doc-rpc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let url = format!("unix:{}/calc.sock", dir.display());
//! use ipcx::pattern::{Server, TypedClient};
//!
//! let server = Server::bind(&url)?;
//! std::thread::spawn(move || server.serve_typed(|(a, b): (u64, u64)| Ok::<u64, String>(a + b)));
//! let calc = TypedClient::<(u64, u64), u64>::connect(&url)?;
//! assert_eq!(calc.call(&(2, 3))?, 5);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::typed::{Message, Way, decode, encode, trade_schemas};
use crate::error::{Error, ErrorKind, Result};
use crate::{Link, Listener, RecvHalf, SendHalf};

const REQUEST: u8 = 1;
const REPLY: u8 = 2;
const ERROR_REPLY: u8 = 3;
/// Kind byte and id.
const HEAD: usize = 9;

/// How long a pool thread waits for a client to take a reply.
const REPLY_WAIT: Duration = Duration::from_secs(5);

/// How long a call waits for its reply unless told otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The envelope of a message: kind, id, body.
fn envelope(kind: u8, id: u64, body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEAD + body.len());
    out.push(kind);
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(body);
}

/// Kind, id and body of an envelope; `None` if it is too short.
fn open(msg: &[u8]) -> Option<(u8, u64, &[u8])> {
    let (&kind, rest) = msg.split_first()?;
    let (id, body) = rest.split_first_chunk::<8>()?;
    Some((kind, u64::from_le_bytes(*id), body))
}

/// The schema ways of an RPC end: what it sends and receives, marked as
/// call envelopes (a typed link of the same types is not a peer).
fn rpc_ways(client: bool, request: (String, u32), response: (String, u32)) -> [Way; 2] {
    let way = |sends, (name, v): (String, u32)| Way::named(sends, format!("rpc {name}"), v);
    [way(client, request), way(!client, response)]
}

fn bytes_ways(client: bool) -> [Way; 2] {
    rpc_ways(client, ("bytes".into(), 1), ("bytes".into(), 1))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the callers of one client share.
#[derive(Debug)]
struct State {
    /// The receiving half, when no caller is reading it.
    rx: Option<RecvHalf>,
    /// Ids of the calls waiting for a reply.
    waiting: HashSet<u64>,
    /// Replies that came for waiting calls, not yet taken.
    replies: HashMap<u64, std::result::Result<Vec<u8>, String>>,
    /// The link failed: every call fails so.
    broken: Option<Error>,
}

/// The calling end of request/reply over one link; `Sync`: threads share
/// it and their calls are in flight together.
#[derive(Debug)]
pub struct Client {
    url: String,
    tx: Mutex<(SendHalf, Vec<u8>)>,
    state: Mutex<State>,
    replied: Condvar,
    next_id: AtomicU64,
    unmatched: AtomicU64,
    timeout: Duration,
}

impl Client {
    /// Connects to the server at `url` (see [`Link::connect`]).
    pub fn connect(url: &str) -> Result<Client> {
        Client::from_link(Link::connect(url)?)
    }

    /// Calls over `link` (schemas are traded on it first).
    pub fn from_link(link: Link) -> Result<Client> {
        Client::with_ways(link, &bytes_ways(true))
    }

    fn with_ways(mut link: Link, ways: &[Way]) -> Result<Client> {
        trade_schemas(&mut link, ways)?;
        let url = link.url().to_string();
        let (rx, tx) = link.split();
        Ok(Client {
            url,
            tx: Mutex::new((tx, Vec::new())),
            state: Mutex::new(State {
                rx: Some(rx),
                waiting: HashSet::new(),
                replies: HashMap::new(),
                broken: None,
            }),
            replied: Condvar::new(),
            next_id: AtomicU64::new(1),
            unmatched: AtomicU64::new(0),
            timeout: DEFAULT_CALL_TIMEOUT,
        })
    }

    /// The timeout of [`Client::call`] from now on (default
    /// [`DEFAULT_CALL_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Calls with `request` and waits for the reply, at most the client's
    /// timeout ([`ErrorKind::TimedOut`]).
    pub fn call(&self, request: &[u8]) -> Result<Vec<u8>> {
        self.call_timeout(request, self.timeout)
    }

    /// [`Client::call`], waiting at most `timeout`. When it passes, the
    /// call is given up: a reply that comes later is dropped.
    pub fn call_timeout(&self, request: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let deadline = crate::deadline::after(timeout);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = lock(&self.state);
            if let Some(e) = &st.broken {
                return Err(again(e, &self.url));
            }
            st.waiting.insert(id);
        }
        let sent = {
            let mut tx = lock(&self.tx);
            let (half, buf) = &mut *tx;
            envelope(REQUEST, id, request, buf);
            // A server that stopped reading holds the call no longer than
            // its timeout (and the next caller no longer than theirs).
            match deadline {
                Some(d) => half.send_timeout(buf, d.saturating_duration_since(Instant::now())),
                None => half.send(buf),
            }
        };
        if let Err(e) = sent {
            lock(&self.state).waiting.remove(&id);
            return Err(e);
        }
        self.await_reply(id, deadline)
    }

    /// Waits for the reply to call `id`: reading the link if nobody else
    /// is, else until a reader hands it over.
    fn await_reply(&self, id: u64, deadline: Option<Instant>) -> Result<Vec<u8>> {
        let mut st = lock(&self.state);
        loop {
            if let Some(r) = st.replies.remove(&id) {
                st.waiting.remove(&id);
                return r.map_err(|why| Error::new(ErrorKind::Remote(why), "call").at(&self.url));
            }
            if let Some(e) = st.broken.as_ref().map(|e| again(e, &self.url)) {
                st.waiting.remove(&id);
                return Err(e);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                st.waiting.remove(&id);
                return Err(Error::new(ErrorKind::TimedOut, "call").at(&self.url));
            }
            match st.rx.take() {
                Some(mut rx) => {
                    drop(st);
                    let got = match left {
                        Some(left) => rx.recv_timeout(left),
                        None => rx.recv(),
                    };
                    st = lock(&self.state);
                    st.rx = Some(rx);
                    match got {
                        Ok(m) => self.dispatch(&mut st, &m),
                        Err(e) if *e.kind() == ErrorKind::TimedOut => {}
                        Err(e) => st.broken = Some(e),
                    }
                    self.replied.notify_all();
                }
                None => {
                    st = match left {
                        Some(left) => {
                            self.replied
                                .wait_timeout(st, left)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0
                        }
                        None => self
                            .replied
                            .wait(st)
                            .unwrap_or_else(PoisonError::into_inner),
                    };
                }
            }
        }
    }

    /// Hands a reply to its call, or counts it as unmatched.
    fn dispatch(&self, st: &mut State, msg: &[u8]) {
        let Some((kind, id, body)) = open(msg).filter(|(k, ..)| *k == REPLY || *k == ERROR_REPLY)
        else {
            st.broken = Some(
                Error::new(
                    ErrorKind::Frame(crate::FrameError::Unexpected(
                        "a message that is no call reply (kind, id, body)",
                    )),
                    "call",
                )
                .at(&self.url),
            );
            return;
        };
        if !st.waiting.contains(&id) {
            self.unmatched.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let r = if kind == REPLY {
            Ok(body.to_vec())
        } else {
            Err(String::from_utf8_lossy(body).into_owned())
        };
        st.replies.insert(id, r);
    }

    /// Replies dropped because no call waited for them (it timed out, or
    /// the id was never a call of this client).
    pub fn unmatched(&self) -> u64 {
        self.unmatched.load(Ordering::Relaxed)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        lock(&self.state).waiting.len()
    }
}

/// The same kind as `e` again, for a later call (a broken link answers
/// every call so).
fn again(e: &Error, url: &str) -> Error {
    Error::new(e.kind().clone(), "call").at(url)
}

/// A [`Client`] of a typed service: requests of `Req`, responses of
/// `Resp`, checked against the server's at connect.
#[derive(Debug)]
pub struct TypedClient<Req: Message, Resp: Message> {
    client: Client,
    _t: PhantomData<fn(Req) -> Resp>,
}

impl<Req: Message, Resp: Message> TypedClient<Req, Resp> {
    /// Connects to the service at `url`.
    pub fn connect(url: &str) -> Result<TypedClient<Req, Resp>> {
        TypedClient::from_link(Link::connect(url)?)
    }

    /// Calls over `link`.
    pub fn from_link(link: Link) -> Result<TypedClient<Req, Resp>> {
        let ways = rpc_ways(
            true,
            (Req::name().into_owned(), Req::VERSION),
            (Resp::name().into_owned(), Resp::VERSION),
        );
        Ok(TypedClient {
            client: Client::with_ways(link, &ways)?,
            _t: PhantomData,
        })
    }

    /// Calls with `request`, waiting at most the client's timeout.
    pub fn call(&self, request: &Req) -> Result<Resp> {
        self.call_timeout(request, self.client.timeout)
    }

    /// Calls with `request`, waiting at most `timeout`.
    pub fn call_timeout(&self, request: &Req, timeout: Duration) -> Result<Resp> {
        let mut buf = Vec::new();
        encode(request, &mut buf)?;
        decode(&self.client.call_timeout(&buf, timeout)?)
    }

    /// The untyped client underneath (timeouts, counters).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// What a handler returns: the response, or an error text the caller
/// gets as [`ErrorKind::Remote`].
pub type Reply = std::result::Result<Vec<u8>, String>;

/// A handler shared by the threads that run it.
type Handler = Arc<dyn Fn(&[u8]) -> Reply + Send + Sync>;

/// The answering end: a listener whose peers call.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    counts: Arc<Counts>,
}

/// A server's counts, for its users and `ipcx ls`.
#[derive(Debug, Default)]
struct Counts {
    served: AtomicU64,
    in_flight: AtomicU64,
    connections: AtomicU64,
}

impl Server {
    /// Binds `url` (see [`Listener::bind`]).
    pub fn bind(url: &str) -> Result<Server> {
        Ok(Server::from_listener(Listener::bind(url)?))
    }

    /// Answers the peers of `listener`.
    pub fn from_listener(listener: Listener) -> Server {
        Server {
            listener,
            counts: Arc::new(Counts::default()),
        }
    }

    /// The listener underneath (its endpoint, its descriptor).
    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// Calls answered so far, over every connection.
    pub fn served(&self) -> u64 {
        self.counts.served.load(Ordering::Relaxed)
    }

    /// Calls received and not answered yet, over every connection.
    pub fn in_flight(&self) -> u64 {
        self.counts.in_flight.load(Ordering::Relaxed)
    }

    /// Serves forever (until accepting fails): each connection on a
    /// thread of its own, where `handler` answers its calls in order.
    pub fn serve<F>(&self, handler: F) -> Result<()>
    where
        F: Fn(&[u8]) -> Reply + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.accept_each(&bytes_ways(false), move |link, served| {
            let handler = handler.clone();
            serve_inline(link, served, move |body| handler(body));
        })
    }

    /// Serves forever with `threads` threads running `handler`: each
    /// connection's thread reads its calls and hands them to the pool;
    /// replies go back as they are ready, in any order.
    pub fn serve_pool<F>(&self, threads: usize, handler: F) -> Result<()>
    where
        F: Fn(&[u8]) -> Reply + Send + Sync + 'static,
    {
        let pool = Pool::new(threads.max(1), Arc::new(handler));
        self.accept_each(&bytes_ways(false), move |link, served| {
            serve_pooled(link, served, &pool);
        })
    }

    /// Serves a typed service forever (as [`Server::serve`]): `handler`
    /// takes a `Req` and answers a `Resp`, or an error text.
    pub fn serve_typed<Req, Resp, F>(&self, handler: F) -> Result<()>
    where
        Req: Message,
        Resp: Message,
        F: Fn(Req) -> std::result::Result<Resp, String> + Send + Sync + 'static,
    {
        let ways = rpc_ways(
            false,
            (Req::name().into_owned(), Req::VERSION),
            (Resp::name().into_owned(), Resp::VERSION),
        );
        let handler = Arc::new(handler);
        self.accept_each(&ways, move |link, served| {
            let handler = handler.clone();
            serve_inline(link, served, move |body| {
                let req = decode::<Req>(body).map_err(|e| e.to_string())?;
                let resp = handler(req)?;
                let mut out = Vec::new();
                encode(&resp, &mut out).map_err(|e| e.to_string())?;
                Ok(out)
            });
        })
    }

    /// Accepts peers forever; each that trades the right schema is served
    /// by `serve` on a thread of its own.
    fn accept_each<S>(&self, ways: &[Way], serve: S) -> Result<()>
    where
        S: Fn(Link, Arc<Counts>) + Clone + Send + 'static,
    {
        let mut said = String::new();
        loop {
            let c = &self.counts;
            let now = format!(
                "rpc server: {} connections, {} calls in flight, {} served",
                c.connections.load(Ordering::Relaxed),
                c.in_flight.load(Ordering::Relaxed),
                c.served.load(Ordering::Relaxed)
            );
            if now != said {
                self.listener.set_state(&now);
                said = now;
            }
            let mut link = match self.listener.accept_timeout(Duration::from_millis(250)) {
                Ok(link) => link,
                Err(e) if *e.kind() == ErrorKind::TimedOut => continue,
                Err(e) => return Err(e),
            };
            let (ways, serve, counts) = (ways.to_vec(), serve.clone(), self.counts.clone());
            let spawned = std::thread::Builder::new()
                .name("ipcx-rpc-conn".into())
                .spawn(move || match trade_schemas(&mut link, &ways) {
                    Ok(()) => {
                        counts.connections.fetch_add(1, Ordering::Relaxed);
                        serve(link, counts.clone());
                        counts.connections.fetch_sub(1, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(error = %e, "rpc: peer refused"),
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "rpc: no thread for a connection; dropped");
            }
        }
    }
}

/// The answering end of one link, for a caller that runs its own loop
/// (a [`Poller`](crate::Poller), its own threads): takes calls one by one
/// and answers each by its id, in any order.
#[derive(Debug)]
pub struct Responder {
    rx: RecvHalf,
    tx: SendHalf,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Responder {
    /// Answers the calls on `link` (schemas are traded on it first).
    pub fn from_link(mut link: Link) -> Result<Responder> {
        trade_schemas(&mut link, &bytes_ways(false))?;
        let (rx, tx) = link.split();
        Ok(Responder {
            rx,
            tx,
            buf: Vec::new(),
            out: Vec::new(),
        })
    }

    /// The next call: its id and request. `Closed` once the caller left;
    /// a message that is no call is [`ErrorKind::Frame`].
    pub fn recv(&mut self) -> Result<(u64, &[u8])> {
        self.rx.recv_into(&mut self.buf)?;
        match open(&self.buf) {
            Some((REQUEST, id, body)) => Ok((id, body)),
            _ => Err(Error::new(
                ErrorKind::Frame(crate::FrameError::Unexpected(
                    "a message that is no call (kind, id, body)",
                )),
                "recv",
            )),
        }
    }

    /// Answers call `id` with `body`.
    pub fn reply(&mut self, id: u64, body: &[u8]) -> Result<()> {
        envelope(REPLY, id, body, &mut self.out);
        self.tx.send(&self.out)
    }

    /// Answers call `id` with an error (the caller gets
    /// [`ErrorKind::Remote`] with `why`).
    pub fn reply_error(&mut self, id: u64, why: &str) -> Result<()> {
        envelope(ERROR_REPLY, id, why.as_bytes(), &mut self.out);
        self.tx.send(&self.out)
    }
}

/// Answers the calls of the one peer at the other end of `link` (a
/// server that connected, to a client that binds) with `handler`, until
/// the peer leaves.
pub fn serve_link<F>(mut link: Link, handler: F) -> Result<()>
where
    F: Fn(&[u8]) -> Reply + Send + Sync,
{
    trade_schemas(&mut link, &bytes_ways(false))?;
    serve_inline(link, Arc::new(Counts::default()), handler);
    Ok(())
}

/// Runs `handler` on a call's body, a panic answered as an error.
fn answer(handler: &(dyn Fn(&[u8]) -> Reply + Send + Sync), body: &[u8]) -> Reply {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(body))).unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(format!("the handler panicked: {what}"))
    })
}

/// The next call on `link`: its id and body; `None` when the peer left or
/// broke the envelope (then it is dropped, and said so).
fn next_call(link: &mut RecvHalf, buf: &mut Vec<u8>) -> Option<u64> {
    match link.recv_into(buf) {
        Ok(()) => {}
        Err(e) if e.is_closed() => return None,
        Err(e) => {
            tracing::warn!(error = %e, "rpc: connection failed; dropped");
            return None;
        }
    }
    match open(buf) {
        Some((REQUEST, id, _)) => Some(id),
        _ => {
            tracing::warn!("rpc: a message that is no call (kind, id, body); peer dropped");
            None
        }
    }
}

/// Serves one connection, the handler on this thread.
fn serve_inline<H>(link: Link, counts: Arc<Counts>, handler: H)
where
    H: Fn(&[u8]) -> Reply + Send + Sync,
{
    let (mut rx, mut tx) = link.split();
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    while let Some(id) = next_call(&mut rx, &mut buf) {
        counts.in_flight.fetch_add(1, Ordering::Relaxed);
        let reply = answer(&handler, &buf[HEAD..]);
        counts.in_flight.fetch_sub(1, Ordering::Relaxed);
        match &reply {
            Ok(body) => envelope(REPLY, id, body, &mut out),
            Err(why) => envelope(ERROR_REPLY, id, why.as_bytes(), &mut out),
        }
        if tx.send(&out).is_err() {
            return;
        }
        counts.served.fetch_add(1, Ordering::Relaxed);
    }
}

/// Handlers on a fixed set of threads, fed by the connections' threads.
#[derive(Clone)]
struct Pool {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

/// A call for the pool: its body, id, and the connection to answer on.
struct Job {
    id: u64,
    body: Vec<u8>,
    tx: Arc<Mutex<SendHalf>>,
    counts: Arc<Counts>,
}

impl Pool {
    fn new(threads: usize, handler: Handler) -> Pool {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(threads * 64);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads {
            let (queue, handler) = (queue.clone(), handler.clone());
            let spawned = std::thread::Builder::new()
                .name("ipcx-rpc-pool".into())
                .spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let Ok(job) = lock(&queue).recv() else { return };
                        let reply = answer(&*handler, &job.body);
                        match &reply {
                            Ok(body) => envelope(REPLY, job.id, body, &mut out),
                            Err(why) => envelope(ERROR_REPLY, job.id, why.as_bytes(), &mut out),
                        }
                        job.counts.in_flight.fetch_sub(1, Ordering::Relaxed);
                        // A client that stopped reading its replies holds a
                        // pool thread at most REPLY_WAIT; then its link is
                        // shut, so it cannot tie up the pool.
                        let mut tx = lock(&job.tx);
                        match tx.send_timeout(&out, REPLY_WAIT) {
                            Ok(()) => {
                                job.counts.served.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "rpc: a client does not take its replies; dropped");
                                tx.shutdown();
                            }
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "rpc: a pool thread could not start");
            }
        }
        Pool { jobs }
    }
}

/// Serves one connection, handing its calls to the pool.
fn serve_pooled(link: Link, counts: Arc<Counts>, pool: &Pool) {
    let (mut rx, tx) = link.split();
    let tx = Arc::new(Mutex::new(tx));
    let mut buf = Vec::new();
    while let Some(id) = next_call(&mut rx, &mut buf) {
        let job = Job {
            id,
            body: buf[HEAD..].to_vec(),
            tx: tx.clone(),
            counts: counts.clone(),
        };
        counts.in_flight.fetch_add(1, Ordering::Relaxed);
        if pool.jobs.send(job).is_err() {
            return;
        }
    }
}
