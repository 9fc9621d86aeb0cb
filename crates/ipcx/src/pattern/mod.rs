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
