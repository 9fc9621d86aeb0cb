//! Messaging patterns on every link: typed messages, request/reply,
//! publish/subscribe with topics, and work queues. This layer sees links,
//! listeners and the [`Poller`](crate::Poller) only — never a mechanism's
//! module or a system call — so each pattern works on every mechanism
//! whose capabilities it needs.

pub mod pubsub;
mod rpc;
mod topic;
mod typed;
pub mod workqueue;

pub use pubsub::{Delivery, Publisher, Subscriber, SubscriberStats};
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
