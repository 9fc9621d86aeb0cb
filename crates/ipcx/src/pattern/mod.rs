//! Messaging patterns on every link: typed messages, request/reply,
//! publish/subscribe with topics, and work queues. This layer sees links,
//! listeners and the [`Poller`](crate::Poller) only — never a mechanism's
//! module or a system call — so each pattern works on every mechanism
//! whose capabilities it needs.

pub mod plain;
pub mod pubsub;
mod rpc;
mod topic;
mod typed;
pub mod workqueue;

pub use plain::{Plain, PlainReceiver, PlainSender};
pub use pubsub::{Delivery, Publisher, Subscriber, SubscriberStats};
#[cfg(feature = "async")]
pub use rpc::{AsyncClient, AsyncServer, AsyncTypedClient};
pub use rpc::{Client, DEFAULT_CALL_TIMEOUT, Reply, Responder, Server, TypedClient, serve_link};
pub use topic::{Pattern, TOPIC_MAX, check_topic};
pub use typed::{Bytes, Message, Receiver, Sender, TypedLink};
pub use workqueue::{Puller, Pusher, WorkStats};

/// Locks `m`, also when a thread panicked holding it: the pattern layer's
/// state stays consistent across a panicking handler.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A peer's message that breaks the pattern's protocol (`why`), as `op`
/// found it.
fn unexpected(op: &'static str, why: &'static str) -> crate::Error {
    crate::Error::new(
        crate::ErrorKind::Frame(crate::FrameError::Unexpected(why)),
        op,
    )
}

/// [`unexpected`], found by a receive.
fn bad(why: &'static str) -> crate::Error {
    unexpected("recv", why)
}

/// Starts `f` on a thread named `name`; that the system gives none is an
/// error of `op`.
fn spawn(
    name: &str,
    op: &'static str,
    f: impl FnOnce() + Send + 'static,
) -> crate::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| crate::Error::io(op, e))
}

/// Accepts peers on `listener` until `stop()` says so, each served by
/// `serve` on a thread of its own named `thread`. Between waits (at most
/// 100 ms apart) `state()` is the endpoint's line in `ipcx ls`, written
/// when it changed. An accept that fails is logged, and tried again after
/// a pause (a full descriptor table would otherwise spin the loop).
fn accept_each<S>(
    listener: &crate::Listener,
    thread: &str,
    stop: impl Fn() -> bool,
    mut state: impl FnMut() -> String,
    serve: S,
) where
    S: Fn(crate::Link) + Clone + Send + 'static,
{
    let mut said = String::new();
    while let Err(e) = accept_until_failure(listener, thread, &stop, &mut state, &serve, &mut said)
    {
        tracing::warn!(url = %listener.endpoint(), error = %e, "accept failed; trying again");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// [`accept_each`] until `stop()` says so (`Ok`) or an accept fails
/// (that error); `said` is the state line written last.
fn accept_until_failure<S>(
    listener: &crate::Listener,
    thread: &str,
    stop: &impl Fn() -> bool,
    state: &mut impl FnMut() -> String,
    serve: &S,
    said: &mut String,
) -> crate::Result<()>
where
    S: Fn(crate::Link) + Clone + Send + 'static,
{
    while !stop() {
        let now = state();
        if now != *said {
            listener.set_state(&now);
            *said = now;
        }
        let link = match listener.accept_timeout(std::time::Duration::from_millis(100)) {
            Ok(link) => link,
            Err(e) if *e.kind() == crate::ErrorKind::TimedOut => continue,
            Err(e) => return Err(e),
        };
        let serve = serve.clone();
        let spawned = crate::pattern::spawn(thread, "accept", move || serve(link));
        if let Err(e) = spawned {
            tracing::warn!(url = %listener.endpoint(), error = %e, "no thread for a peer; dropped");
        }
    }
    Ok(())
}

/// A poller holding a listener bound at `url`, for an end that binds and
/// collects from the peers that connect (a subscriber, a puller: `role`),
/// and the listener's key. Refused before anything is made: a message
/// queue (its listener hands out the queue itself, not a peer that
/// connected) and a FIFO (a poller cannot hold its listener: its accept
/// reads a hello blocking).
fn bind_collecting(url: &str, role: &str) -> crate::Result<(crate::Poller, usize)> {
    let ep = crate::Endpoint::parse(url)?;
    let why = match ep.scheme() {
        crate::Scheme::Mq | crate::Scheme::SysvMq => "a message queue, which has none",
        crate::Scheme::Fifo => "a FIFO, whose peers a poller cannot take in",
        _ => "",
    };
    if !why.is_empty() {
        return Err(crate::Error::new(
            crate::ErrorKind::Unsupported(format!(
                "a {role} that binds collects from peers that connect; {}: is {why} \
                 (bind a unix:, unixseq:, tcp: or shm: endpoint)",
                ep.scheme()
            )),
            "bind",
        )
        .at(url));
    }
    let mut poller = crate::Poller::new()?;
    let listener = poller.add(crate::Source::Listener(crate::Listener::bind_endpoint(
        &ep,
    )?))?;
    Ok((poller, listener))
}

/// The peers of an end that binds and reads them in one poller (a
/// subscriber or a puller) whose schemas have not come yet: each is
/// joined when its schema arrives, and none is waited for, so a peer that
/// connects and stays silent holds nobody up (it is let go after the
/// schema wait, 10 s).
#[derive(Debug, Default)]
struct Joining {
    since: std::collections::HashMap<usize, std::time::Instant>,
}

/// What a ready key of a binding end's poller is.
enum Ready {
    /// A peer whose schema just checked out: the pattern's own step next.
    Joined,
    /// A joining peer with nothing whole yet, or one let go.
    Nothing,
    /// A peer that joined before: read it.
    Member,
}

impl Joining {
    /// Accepts a peer that connected to the listener at key `listener`,
    /// without waiting for one, sends it this end's schema (`mine`) and
    /// watches it for the peer's.
    fn accept(
        &mut self,
        poller: &mut crate::Poller,
        listener: usize,
        mine: &[typed::Way],
        what: &str,
    ) {
        let Some(crate::Source::Listener(l)) = poller.get_mut(listener) else {
            return;
        };
        let mut link = match l.accept_timeout(std::time::Duration::ZERO) {
            Ok(link) => link,
            Err(e) => {
                if *e.kind() != crate::ErrorKind::TimedOut {
                    tracing::warn!(error = %e, "{what}: accepting a peer failed");
                }
                return;
            }
        };
        if let Err(e) = link.send(&typed::encode_schema(mine)) {
            return tracing::warn!(error = %e, "{what}: a peer refused");
        }
        match poller.add(crate::Source::Link(link)) {
            Ok(key) => {
                self.since.insert(key, std::time::Instant::now());
            }
            Err(r) => tracing::warn!(error = %r.error, "{what}: a peer cannot be watched"),
        }
    }

    /// Key `key` is ready: a joining peer's schema is read (if whole) and
    /// checked; a peer that fails it is let go.
    fn ready(
        &mut self,
        poller: &mut crate::Poller,
        key: usize,
        mine: &[typed::Way],
        what: &str,
    ) -> Ready {
        if !self.since.contains_key(&key) {
            return Ready::Member;
        }
        let Some(crate::Source::Link(link)) = poller.get_mut(key) else {
            self.since.remove(&key);
            return Ready::Nothing;
        };
        let got = match link.try_recv() {
            Ok(None) => return Ready::Nothing,
            Ok(Some(msg)) => Ok(msg),
            Err(e) => Err(e),
        };
        self.since.remove(&key);
        let url = link.url().to_string();
        match typed::check_schema(&url, mine, got) {
            Ok(()) => Ready::Joined,
            Err(e) => {
                if !e.is_closed() {
                    tracing::warn!(error = %e, "{what}: a peer refused");
                }
                poller.remove(key);
                Ready::Nothing
            }
        }
    }

    /// Lets go the peers that sent no schema within the wait; returns how
    /// long the poller may sleep before the next is due (`None`: no peer
    /// is joining).
    fn expire(&mut self, poller: &mut crate::Poller, what: &str) -> Option<std::time::Duration> {
        let now = std::time::Instant::now();
        self.since.retain(|key, since| {
            let late = now.duration_since(*since) >= typed::SCHEMA_WAIT;
            if late {
                tracing::warn!(
                    "{what}: a peer sent no schema within {:?}; let go",
                    typed::SCHEMA_WAIT
                );
                poller.remove(*key);
            }
            !late
        });
        self.since
            .values()
            .map(|since| (*since + typed::SCHEMA_WAIT).saturating_duration_since(now))
            .min()
    }
}
