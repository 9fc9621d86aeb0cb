//! Messaging patterns on every link: typed messages now; publish/subscribe
//! with topics, request/reply and work queues next. This layer sees links,
//! listeners and the [`Poller`](crate::Poller) only — never a mechanism's
//! module or a system call — so each pattern works on every mechanism
//! whose capabilities it needs.

mod typed;

pub use typed::{Bytes, Message, Receiver, Sender, TypedLink};
