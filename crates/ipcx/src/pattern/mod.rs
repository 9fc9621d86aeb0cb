//! Messaging patterns on every link: typed messages and request/reply
//! now; publish/subscribe with topics and work queues next. This layer sees links,
//! listeners and the [`Poller`](crate::Poller) only — never a mechanism's
//! module or a system call — so each pattern works on every mechanism
//! whose capabilities it needs.

mod rpc;
mod typed;

pub use rpc::{Client, DEFAULT_CALL_TIMEOUT, Reply, Responder, Server, TypedClient, serve_link};
pub use typed::{Bytes, Message, Receiver, Sender, TypedLink};
