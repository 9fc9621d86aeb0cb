//! The answering end: [`Server`], [`Responder`], [`serve_link`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::super::typed::{Message, Way, decode, encode, trade_schemas};
use super::{
    ERROR_REPLY, HEAD, REPLY, REPLY_WAIT, REQUEST, Reply, bytes_ways, envelope, lock, open,
    panicked, typed_ways,
};
use crate::error::Result;
use crate::{Link, Listener, RecvHalf, SendHalf};

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
pub(super) struct Counts {
    pub(super) served: AtomicU64,
    pub(super) in_flight: AtomicU64,
    pub(super) connections: AtomicU64,
}

impl Counts {
    /// The endpoint's line in `ipcx ls`, when it is not what was `said`
    /// last (which it then becomes).
    #[cfg(feature = "async")]
    pub(super) fn changed(&self, said: &mut String) -> Option<String> {
        let now = self.state();
        (now != *said).then(|| {
            said.clone_from(&now);
            now
        })
    }

    fn state(&self) -> String {
        format!(
            "rpc server: {} connections, {} calls in flight, {} served",
            self.connections.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed),
            self.served.load(Ordering::Relaxed)
        )
    }
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
        let ways = typed_ways::<Req, Resp>(false);
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

    /// Accepts peers until an accept fails; each that trades the right
    /// schema is served by `serve` on a thread of its own.
    fn accept_each<S>(&self, ways: &[Way], serve: S) -> Result<()>
    where
        S: Fn(Link, Arc<Counts>) + Clone + Send + 'static,
    {
        let (ways, counts) = (ways.to_vec(), self.counts.clone());
        let serve = move |mut link: Link| match trade_schemas(&mut link, &ways) {
            Ok(()) => {
                counts.connections.fetch_add(1, Ordering::Relaxed);
                serve(link, counts.clone());
                counts.connections.fetch_sub(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "rpc: peer refused"),
        };
        crate::pattern::accept_until_failure(
            &self.listener,
            "ipcx-rpc-conn",
            &|| false,
            &mut || self.counts.state(),
            &serve,
            &mut String::new(),
        )
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
    /// a message that is no call is [`ErrorKind::Frame`](crate::ErrorKind::Frame).
    pub fn recv(&mut self) -> Result<(u64, &[u8])> {
        self.rx.recv_into(&mut self.buf)?;
        match open(&self.buf) {
            Some((REQUEST, id, body)) => Ok((id, body)),
            _ => Err(crate::pattern::bad(
                "a message that is no call (kind, id, body)",
            )),
        }
    }

    /// Answers call `id` with `body`.
    pub fn reply(&mut self, id: u64, body: &[u8]) -> Result<()> {
        envelope(REPLY, id, body, &mut self.out);
        self.tx.send(&self.out)
    }

    /// Answers call `id` with an error (the caller gets
    /// [`ErrorKind::Remote`](crate::ErrorKind::Remote) with `why`).
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
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(body)))
        .unwrap_or_else(|p| Err(panicked(&*p)))
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

/// A call for the pool: its body, id, and where its connection's replies
/// queue.
struct Job {
    id: u64,
    body: Vec<u8>,
    replies: std::sync::mpsc::SyncSender<Vec<u8>>,
    counts: Arc<Counts>,
}

/// Replies of one connection waiting for its writer; a client that lets
/// this many pile up has its replies dropped (its writer, stuck, shuts it
/// within `REPLY_WAIT`).
const REPLY_QUEUE: usize = 256;

impl Pool {
    fn new(threads: usize, handler: Handler) -> Pool {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(threads * 64);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads {
            let (queue, handler) = (queue.clone(), handler.clone());
            let spawned = crate::pattern::spawn("ipcx-rpc-pool", "serve", move || {
                loop {
                    let Ok(job) = lock(&queue).recv() else { return };
                    let reply = answer(&*handler, &job.body);
                    let mut out = Vec::new();
                    match &reply {
                        Ok(body) => envelope(REPLY, job.id, body, &mut out),
                        Err(why) => envelope(ERROR_REPLY, job.id, why.as_bytes(), &mut out),
                    }
                    job.counts.in_flight.fetch_sub(1, Ordering::Relaxed);
                    // Never waits on a client: its writer sends.
                    match job.replies.try_send(out) {
                        Ok(()) => {}
                        Err(std::sync::mpsc::TrySendError::Full(_)) => {
                            tracing::warn!("rpc: a client does not take its replies; one dropped");
                        }
                        // The connection is gone.
                        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {}
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

/// Serves one connection, handing its calls to the pool; a writer thread
/// of its own sends the replies as they come (a client that takes none
/// within `REPLY_WAIT` is shut).
fn serve_pooled(link: Link, counts: Arc<Counts>, pool: &Pool) {
    let (mut rx, mut tx) = link.split();
    let (replies, queue) = std::sync::mpsc::sync_channel::<Vec<u8>>(REPLY_QUEUE);
    let c = counts.clone();
    let writer = crate::pattern::spawn("ipcx-rpc-writer", "serve", move || {
        for out in queue {
            if let Err(e) = tx.send_timeout(&out, REPLY_WAIT) {
                if !e.is_closed() {
                    tracing::warn!(error = %e, "rpc: a client does not take its replies; dropped");
                }
                tx.shutdown();
                return;
            }
            c.served.fetch_add(1, Ordering::Relaxed);
        }
    });
    if let Err(e) = writer {
        return tracing::warn!(error = %e, "rpc: no writer thread for a connection; dropped");
    }
    let mut buf = Vec::new();
    while let Some(id) = next_call(&mut rx, &mut buf) {
        let job = Job {
            id,
            body: crate::copy::to_vec(&buf[HEAD..]),
            replies: replies.clone(),
            counts: counts.clone(),
        };
        counts.in_flight.fetch_add(1, Ordering::Relaxed);
        if pool.jobs.send(job).is_err() {
            return;
        }
    }
}
