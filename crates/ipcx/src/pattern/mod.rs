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

/// Accepts peers on `listener` until `stop()` says so, each served by
/// `serve` on a thread of its own named `thread`. Between waits (at most
/// 100 ms apart) `state()` is the endpoint's line in `ipcx ls`, written
/// when it changed. An accept that fails is logged, and the loop goes on.
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
    while !stop() {
        let now = state();
        if now != said {
            listener.set_state(&now);
            said = now;
        }
        let link = match listener.accept_timeout(std::time::Duration::from_millis(100)) {
            Ok(link) => link,
            Err(e) if *e.kind() == crate::ErrorKind::TimedOut => continue,
            Err(e) => {
                tracing::warn!(url = %listener.endpoint(), error = %e, "accept failed");
                continue;
            }
        };
        let serve = serve.clone();
        let spawned = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || serve(link));
        if let Err(e) = spawned {
            tracing::warn!(url = %listener.endpoint(), error = %e, "no thread for a peer; dropped");
        }
    }
}

/// For an end that binds and reads its peers in one poller (a subscriber
/// or a puller): accepts a peer that connected to the listener at key
/// `listener`, without waiting for one, runs `join` on its link (the
/// pattern's handshake), and adds it to the poller. What fails is logged
/// as the pattern's (`what`): nothing stops reading the others.
fn accept_into(
    poller: &mut crate::Poller,
    listener: usize,
    what: &str,
    join: impl FnOnce(&mut crate::Link) -> crate::Result<()>,
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
    match join(&mut link) {
        Ok(()) => {
            if let Err(r) = poller.add(crate::Source::Link(link)) {
                tracing::warn!(error = %r.error, "{what}: a peer cannot be watched");
            }
        }
        Err(e) => tracing::warn!(error = %e, "{what}: a peer refused"),
    }
}
