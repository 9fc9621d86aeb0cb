//! The calling end: [`Client`] and [`TypedClient`].

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::super::typed::{Message, Way, decode, encode, trade_schemas};
use super::{
    DEFAULT_CALL_TIMEOUT, ERROR_REPLY, REPLY, REQUEST, bytes_ways, envelope, lock, open, typed_ways,
};
use crate::error::{Error, ErrorKind, Result};
use crate::{Link, RecvHalf, SendHalf};

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
                crate::pattern::unexpected(
                    "call",
                    "a message that is no call reply (kind, id, body)",
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
            Ok(crate::copy::to_vec(body))
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
        let ways = typed_ways::<Req, Resp>(true);
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
