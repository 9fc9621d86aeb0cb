//! Publish/subscribe with topics: over sockets (`unix:`, `tcp:`) a
//! [`Publisher`] binds and fans out to the [`Subscriber`]s that connect;
//! over `shm:name` the publisher creates a zero-copy channel the
//! subscribers attach to (below).
//!
//! A subscriber sends its patterns when it joins, and the publisher
//! filters: no byte of a topic a subscriber did not ask for goes to it.
//! Each subscriber has a bounded queue at the publisher (`?slots=`
//! messages, default 256) under the publisher's `?overflow=`: `block`
//! waits for the slowest subscriber, `drop_oldest` drops its oldest queued
//! message and tells it how many it lost, `fail` refuses the publish with
//! [`ErrorKind::Full`](crate::ErrorKind::Full). The publisher keeps the last
//! `?history=N` messages of each topic; a subscriber that joins with
//! `?history=N` first gets up to that many of each topic it matches.
//!
//! Messages are coalesced: each subscriber has a thread that writes what
//! is queued for it as one link message (up to 64 KiB of them), so a burst
//! goes out in few writes; a message published after a quiet moment is
//! written at once on the publishing thread, so a lone message waits for
//! nobody.
//!
//! On the link, after the schemas are traded (as typed links do), the
//! subscriber sends `S`, the history it asks for (u32) and its patterns
//! (u16 count, then u16 length and bytes each); the publisher sends
//! batches: `B`, the messages this subscriber lost since the last batch
//! (u64), a count (u32), and per message the topic (u16 length, bytes)
//! and payload (u32 length, bytes). All integers little-endian. The
//! subscriber checks every length against the message it came in.
//!
//! On `shm:name` each message is written once, in place, into a chunk of
//! the shared-memory channel ([`crate::shm::Publisher`]) as its topic and
//! payload, and each subscriber reads it there and keeps what its
//! patterns match: the publisher does not filter, and a subscriber passes
//! over the rest without copying it. The channel's `?slots=`, `?max_msg=`
//! and `?overflow=` apply (`drop_oldest`: `lost()` counts what was
//! overwritten); there is no history, and the subscriber cannot bind.
//!
//! ```
//! # fn main() -> ipcx::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("ipcx-doc-pubsub-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let url = format!("unix:{}/prices.sock", dir.display());
//! use ipcx::pattern::{Publisher, Subscriber};
//!
//! let publisher = Publisher::bind(&url)?;
//! let mut eu = Subscriber::connect(&url, &["prices.eu.>"])?;
//! publisher.wait_for_subscribers(1, std::time::Duration::from_secs(5))?;
//! publisher.publish("prices.us.aapl", b"227.1")?; // not for `eu`
//! publisher.publish("prices.eu.sap", b"241.5")?;
//! let d = eu.recv()?;
//! assert_eq!((d.topic.as_str(), &d.payload[..]), ("prices.eu.sap", &b"241.5"[..]));
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

mod fanout;
mod publisher;
mod shm;
mod subscriber;

pub use fanout::SubscriberStats;
pub use publisher::Publisher;
pub use subscriber::{Delivery, Subscriber};

use super::typed::Way;

/// What a subscriber sends first: its history request and patterns.
const SUBSCRIBE: u8 = b'S';
/// What a publisher sends: a batch of messages.
const BATCH: u8 = b'B';
/// Bytes before a batch's messages: kind, lost, count.
const BATCH_HEAD: usize = 13;
/// A batch holds messages up to this many bytes (more if one is larger).
const BATCH_BYTES: usize = 64 << 10;

/// The schema ways of a publisher (`publisher`) or subscriber end.
fn ways(publisher: bool) -> [Way; 2] {
    [
        Way::named(publisher, "pubsub deliveries".into(), 1),
        Way::named(!publisher, "pubsub subscription".into(), 1),
    ]
}
