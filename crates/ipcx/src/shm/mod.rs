//! Shared memory: segments, rings, and `shm:name` links.
//!
//! A [`Segment`] is a POSIX shared-memory object (`shm:name`, in
//! `/dev/shm`) or an anonymous one (a sealed `memfd`, passed to another
//! process over a `unix:` link with [`crate::Link::send_fds`]). Every segment
//! starts with a [`SegmentHeader`]: magic, version and size, with the magic
//! written last, so a process that opens a segment still being built waits
//! instead of reading half-initialized memory.
//!
//! `shm:name` links ([`crate::Listener::bind`], [`crate::Link::connect`])
//! carry messages through two single-producer single-consumer rings in one
//! segment, copying once on each side. [`Publisher`] and [`Subscriber`] are
//! zero-copy publish/subscribe: loans written in place, samples read in
//! place. See `docs/ARCHITECTURE.md`.
//!
//! # Trust model
//!
//! Whoever can write a segment (`?mode=`, 0600 by default) is trusted not
//! to write the bytes the protocol gives to another process (payloads under
//! a `Sample` or `Loan`, values under a guard): a concurrent write there is
//! a data race. Every *control* word read back (cursors, lengths, chunk
//! numbers, slots) is validated, so a hostile or buggy writer cannot make
//! this process touch memory outside the mapping, panic or hang; it gets a
//! typed error ([`crate::ErrorKind::Corrupt`] on links). A named segment is
//! a file in `/dev/shm` that a process of the same user can truncate
//! (`SIGBUS` on the lost pages); anonymous segments are sealed, and
//! [`Segment::from_fd`] refuses unsealed ones. The whole model is in
//! `docs/ARCHITECTURE.md`, "Trust model for shared memory".

pub(crate) mod duplex;
mod pubsub;
mod queue;
pub(crate) mod ring;
mod segment;

pub use duplex::LinkHeader;

/// What `ipcx ls` says of a segment holding an `shm:` link, a
/// publish/subscribe channel or a work queue: who is attached and how much
/// is in it; `None` for other segments.
pub fn describe(seg: &Segment) -> Option<String> {
    duplex::describe(seg)
        .or_else(|| pubsub::describe(seg))
        .or_else(|| queue::describe(seg))
}
pub use pubsub::{
    ChannelHeader, Loan, MAX_PUBLISHERS, MAX_SUBSCRIBERS, Publisher, SCHEMA_NAME_MAX, Sample,
    Schema, Subscriber, TypedLoan, TypedSample,
};
pub use queue::{Queue, QueueHeader};
pub use ring::RingHeader;
pub(crate) use segment::NotYet;
pub use segment::{Segment, SegmentHeader};
