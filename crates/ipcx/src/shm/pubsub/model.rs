//! Loom model of the publish/subscribe protocol (run by `scripts/loom`):
//! the real [`Publisher`] and [`Subscriber`] code over a channel whose
//! loom atomics are built in place in an anonymous segment, mapped twice
//! (the publisher's view and the subscriber's), as two processes would.
//! Two ring slots and four chunks, so the ring wraps, the publisher waits
//! for the subscriber (`block`) or overwrites (`drop_oldest`), and chunks
//! are reused: every message must arrive whole and in order, and under
//! `drop_oldest` a message is either read whole or counted as lost.

use std::os::fd::AsFd;

use super::*;
use crate::endpoint::{Overflow, WaitStrategy};
use crate::wait::EventCount;
use std::time::Duration;

const SLOTS: usize = 2;
const CHUNK: usize = 8;

/// Builds `value` in place at `offset` of the channel's segment.
fn build<T>(ch: &Channel, offset: usize, value: T) {
    assert!(offset + size_of::<T>() <= ch.seg.len());
    // SAFETY: in bounds (checked) and aligned (every offset comes from
    // `Layout`, whose parts are cache-line aligned); nobody else uses the
    // memory yet.
    unsafe { ch.seg.as_ptr().add(offset).cast::<T>().write(value) };
}

fn u32z() -> AtomicU32 {
    AtomicU32::new(0)
}

fn u64z() -> AtomicU64 {
    AtomicU64::new(0)
}

/// A fresh channel: the publisher's view and the subscriber's.
fn channel_pair() -> (Channel, Channel) {
    let layout = Layout::new(SLOTS, CHUNK);
    let seg = Segment::anonymous(layout.total).expect("anonymous segment");
    let fd = seg.as_fd().try_clone_to_owned().expect("dup");
    let ch = Channel { seg, layout };
    build(
        &ch,
        0,
        ChannelHeader {
            info: Line(Info {
                magic: u64z(),
                version: u32z(),
                overflow: u32z(),
                slots: u32z(),
                chunks: u32z(),
                chunk_size: u32z(),
                publisher_gone: u32z(),
                active: u64z(),
                doorbells: u64z(),
            }),
            tail: Line(u64z()),
            data: Line(EventCount::new(u32z(), u32z())),
            space: Line(EventCount::new(u32z(), u32z())),
            publishers: Line(Publishers {
                lock: u32z(),
                count: u32z(),
                released: u64z(),
                entries: std::array::from_fn(|_| PublisherEntry {
                    pid: u32z(),
                    loaned: u32z(),
                    start: u64z(),
                }),
            }),
            schema: Line(super::schema::SchemaField::empty()),
        },
    );
    // Only the first subscriber entry is ever claimed here.
    build(
        &ch,
        layout.subscribers,
        Line(SubscriberEntry {
            state: u32z(),
            pid: u32z(),
            start: u64z(),
            cursor: u64z(),
            lost: u64z(),
        }),
    );
    for i in 0..layout.slots {
        build(
            &ch,
            layout.ring + i * size_of::<Slot>(),
            Slot {
                seq: u64z(),
                chunk: u32z(),
                len: u32z(),
            },
        );
    }
    for c in 0..layout.chunks {
        build(&ch, layout.masks + c * MASK_STRIDE, Line(u64z()));
    }
    let other = Channel {
        seg: Segment::from_fd(fd).expect("second mapping"),
        layout,
    };
    (ch, other)
}

/// The publisher sends `0..count` (each chunk filled with its number);
/// returns what the subscriber received, in order.
fn run(overflow: Overflow, count: u8) -> (Vec<u8>, u64) {
    let (pch, sch) = channel_pair();
    let mut publisher = Publisher::init(pch, overflow, WaitStrategy::Block, Duration::ZERO);
    let subscriber = Subscriber::attach(sch, WaitStrategy::Block, Duration::ZERO).expect("attach");
    let sender = loom::thread::spawn(move || {
        for i in 0..count {
            let mut loan = publisher.loan(CHUNK).expect("loan");
            loan.fill(i);
            loan.send().expect("send");
        }
        publisher
    });
    let mut got = Vec::new();
    while got.last() != Some(&(count - 1)) {
        let sample = subscriber.recv().expect("recv");
        assert!(
            sample.iter().all(|&b| b == sample[0]),
            "a torn message: {:?}",
            &*sample
        );
        got.push(sample[0]);
    }
    let publisher = sender.join().expect("publisher thread");
    let lost = subscriber.lost();
    drop(subscriber);
    drop(publisher);
    (got, lost)
}

/// Explores interleavings with at most two preemptions: enough for the
/// races above (a mutation that skips the subscriber's re-check of the
/// slot is caught with two), and under half a minute.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(f);
}

#[test]
fn block_delivers_every_message_whole_and_in_order() {
    model(|| {
        let (got, lost) = run(Overflow::Block, 3);
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(lost, 0);
    });
}

#[test]
fn drop_oldest_never_delivers_a_torn_or_reordered_message() {
    model(|| {
        let (got, lost) = run(Overflow::DropOldest, 4);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
        assert_eq!(
            got.len() as u64 + lost,
            4,
            "each message read or counted lost"
        );
    });
}
