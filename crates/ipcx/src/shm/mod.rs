//! Shared memory: named and anonymous segments.
//!
//! A [`Segment`] is a POSIX shared-memory object (`shm:name`, in
//! `/dev/shm`) or an anonymous one (a sealed `memfd`, passed to another
//! process over a `unix:` link with [`crate::Link::send_fds`]). Every segment
//! starts with a [`SegmentHeader`]: magic, version and size, with the magic
//! written last, so a process that opens a segment still being built waits
//! instead of reading half-initialized memory.
//!
//! Rings, zero-copy loans and publish/subscribe over segments are the next
//! step; see `docs/ARCHITECTURE.md`.

mod segment;

pub use segment::{Segment, SegmentHeader};
