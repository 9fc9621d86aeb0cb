//! Zero-copy publish/subscribe over shared memory between real processes:
//! fan-out without loss, the three overflow policies, and crashes.

mod common;

use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::ErrorKind;
use ipcx::shm::{MAX_PUBLISHERS, Publisher, Subscriber};

fn unique() -> String {
    format!("shm:{}", common::abstract_name())
}

const FAN_OUT: u64 = 1_000_000;

/// The doorbell FIFO of the first subscriber of the channel `url`.
#[cfg(feature = "async")]
fn doorbell(url: &str) -> std::path::PathBuf {
    std::path::Path::new("/dev/shm").join(format!("{}.bell0", url.trim_start_matches("shm:")))
}

/// One publisher, four subscribers, a million messages with `block`: every
/// subscriber gets every message, in order.
#[test]
fn one_publisher_four_subscribers_lose_nothing() {
    let t = Test::start();
    if t.child_role().is_some() {
        let sub =
            Subscriber::open(&format!("{}?timeout=30s&wait=adaptive", param("URL"))).expect("open");
        ready("subscribed");
        for want in 0..FAN_OUT {
            let sample = sub.recv_timeout(common::PATIENCE).expect("recv");
            let got = u64::from_le_bytes(sample[..8].try_into().unwrap());
            assert_eq!(got, want, "message out of order or lost");
        }
        assert_eq!(sub.lost(), 0);
        return;
    }
    let url = unique();
    let mut publisher =
        Publisher::create(&format!("{url}?slots=1024&max_msg=64&wait=adaptive")).expect("create");
    let mut subs: Vec<_> = (0..4)
        .map(|_| t.spawn("subscriber", |c| set_param(c, "URL", &url)))
        .collect();
    for s in &mut subs {
        s.wait_ready();
    }
    publisher
        .wait_for_subscribers(4, Duration::from_secs(30))
        .expect("four subscribers");
    for i in 0..FAN_OUT {
        let mut loan = publisher.loan(8).expect("loan");
        loan.copy_from_slice(&i.to_le_bytes());
        loan.send().expect("send");
    }
    for s in subs {
        s.finish();
    }
}

/// The subscriber reads the message where the publisher wrote it.
#[test]
fn samples_are_read_in_place() {
    let _t = Test::start();
    let url = unique();
    let mut publisher = Publisher::create(&format!("{url}?max_msg=4KiB")).expect("create");
    let sub = Subscriber::open(&url).expect("open");
    let mut loan = publisher.loan(4096).expect("loan");
    loan.fill(0xab);
    let at = loan.offset();
    loan.send().expect("send");
    let sample = sub.recv_timeout(common::PATIENCE).expect("recv");
    assert_eq!(
        sample.offset(),
        at,
        "no copy: the same place in the segment"
    );
    assert!(sample.iter().all(|&b| b == 0xab));
}

/// Plain-data types travel typed, written and read in place; a message of
/// the wrong size is refused, not misread.
#[test]
fn typed_messages_round_trip_and_are_checked() {
    let _t = Test::start();
    let url = unique();
    let mut publisher = Publisher::create(&format!("{url}?max_msg=64")).expect("create");
    let sub = Subscriber::open(&url).expect("open");
    let mut tick = publisher.loan_as::<[u64; 2]>().expect("loan a [u64; 2]");
    *tick = [1_700_000_000, 4242];
    tick.send().expect("send");
    assert_eq!(
        *sub.recv_as::<[u64; 2]>().expect("recv a [u64; 2]"),
        [1_700_000_000, 4242]
    );
    publisher.send(&[0u8; 16]).expect("send 16 bytes");
    let err = sub
        .recv_as::<[u64; 4]>()
        .expect_err("16 bytes are not a [u64; 4]");
    assert!(err.to_string().contains("16 bytes"), "{err}");
}

/// `drop_oldest`: a subscriber that fell behind gets the newest messages,
/// in order, and is told how many it lost.
#[test]
fn drop_oldest_counts_what_was_lost() {
    let _t = Test::start();
    let url = unique();
    let mut publisher = Publisher::create(&format!("{url}?slots=4&max_msg=8&overflow=drop_oldest"))
        .expect("create");
    let sub = Subscriber::open(&url).expect("open");
    for i in 0u64..10 {
        publisher.send(&i.to_le_bytes()).expect("send never waits");
    }
    let got: Vec<u64> = (0..4)
        .map(|_| {
            u64::from_le_bytes(
                sub.recv_timeout(common::PATIENCE).expect("recv")[..8]
                    .try_into()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [6, 7, 8, 9]);
    assert_eq!(sub.lost(), 6);
}

/// `fail`: a full ring refuses the message instead of waiting.
#[test]
fn fail_refuses_when_the_ring_is_full() {
    let _t = Test::start();
    let url = unique();
    let mut publisher =
        Publisher::create(&format!("{url}?slots=4&max_msg=8&overflow=fail")).expect("create");
    let sub = Subscriber::open(&url).expect("open");
    for i in 0u64..4 {
        publisher.send(&i.to_le_bytes()).expect("room for four");
    }
    let err = publisher.send(b"fifth").expect_err("the ring is full");
    assert_eq!(*err.kind(), ErrorKind::Full);
    drop(sub.recv_timeout(common::PATIENCE).expect("recv"));
    publisher.send(b"now fits").expect("room again");
}

/// `fail` on the loan path: when subscribers hold every chunk the ring
/// does not, `loan` returns `Full` at once instead of waiting for one to
/// come back. (A subscriber process holds 64 samples; the ring holds the
/// other 4 of the channel's 68 chunks.)
#[test]
fn fail_refuses_a_loan_when_subscribers_hold_every_chunk() {
    const HELD: usize = 64;
    let t = Test::start();
    if t.child_role().is_some() {
        let sub = Subscriber::open(&format!("{}?timeout=30s", param("URL"))).expect("open");
        ready("subscribed");
        let held: Vec<_> = (0..HELD)
            .map(|_| sub.recv_timeout(Duration::from_secs(30)).expect("recv"))
            .collect();
        ready("holding");
        std::thread::sleep(Duration::from_secs(120));
        drop(held);
        return;
    }
    let url = unique();
    let mut publisher =
        Publisher::create(&format!("{url}?slots=4&max_msg=8&overflow=fail")).expect("create");
    let mut child = t.spawn("holder", |c| set_param(c, "URL", &url));
    child.wait_ready();
    publisher
        .wait_for_subscribers(1, Duration::from_secs(30))
        .expect("subscriber");
    let mut sent = 0u64;
    while sent < HELD as u64 {
        match publisher.send(&sent.to_le_bytes()) {
            Ok(()) => sent += 1,
            // The ring is full until the holder reads: try again.
            Err(e) if *e.kind() == ErrorKind::Full => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("send {sent}: {e}"),
        }
    }
    assert_eq!(child.wait_ready(), "holding");
    for i in 0u64..4 {
        publisher
            .send(&i.to_le_bytes())
            .expect("the ring's own four");
    }
    // In a thread, so that a loan that waits fails this test, not the run.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = publisher.loan(8).map(|_| ()).map_err(|e| e.kind().clone());
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Err(ErrorKind::Full)) => {}
        Ok(other) => panic!("loan with every chunk held: {other:?}"),
        Err(_) => panic!("loan waited for a chunk instead of returning Full"),
    }
    child.kill();
}

/// `fail` does not refuse forever because of a dead subscriber.
#[test]
fn fail_retires_a_dead_subscriber() {
    let t = Test::start();
    if t.child_role().is_some() {
        let _sub = Subscriber::open(&format!("{}?timeout=30s", param("URL"))).expect("open");
        ready("subscribed");
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    let url = unique();
    let mut publisher =
        Publisher::create(&format!("{url}?slots=4&max_msg=8&overflow=fail")).expect("create");
    let mut child = t.spawn("idle", |c| set_param(c, "URL", &url));
    child.wait_ready();
    publisher
        .wait_for_subscribers(1, Duration::from_secs(30))
        .expect("subscriber");
    for i in 0u64..4 {
        publisher.send(&i.to_le_bytes()).expect("room for four");
    }
    child.kill();
    publisher
        .send(b"fifth")
        .expect("the dead subscriber is retired, not waited for");
    assert_eq!(publisher.subscribers(), 0);
}

/// A subscriber killed while holding samples never blocks a `block`
/// publisher for long: it is retired and its chunks come back.
#[test]
fn killed_subscriber_is_retired_and_its_chunks_return() {
    let t = Test::start();
    if t.child_role().is_some() {
        let sub = Subscriber::open(&format!("{}?timeout=30s", param("URL"))).expect("open");
        let held: Vec<_> = (0..3)
            .map(|_| sub.recv_timeout(common::PATIENCE).expect("recv"))
            .collect();
        ready(&held.len().to_string());
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    let url = unique();
    let mut publisher = Publisher::create(&format!("{url}?slots=16&max_msg=64")).expect("create");
    let all_free = publisher.free_chunks();
    let mut child = t.spawn("holder", |c| set_param(c, "URL", &url));
    publisher
        .wait_for_subscribers(1, Duration::from_secs(30))
        .expect("subscriber");
    for i in 0u64..3 {
        publisher.send(&i.to_le_bytes()).expect("send");
    }
    assert_eq!(child.wait_ready(), "3");
    child.kill();
    // Far more than the ring holds: only possible once the dead one is retired.
    for i in 3u64..200 {
        publisher
            .send(&i.to_le_bytes())
            .expect("send past a dead subscriber");
    }
    assert_eq!(publisher.subscribers(), 0);
    // With no subscriber left, nobody will read the ring: every chunk is free.
    assert_eq!(publisher.free_chunks(), all_free, "no chunk leaked");
}

/// A publisher killed between `loan` and `send` never delivers the
/// half-written message; the subscriber gets `Closed`, and a new publisher
/// takes the name over with no manual step.
#[test]
fn killed_publisher_never_delivers_a_loan() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut publisher = Publisher::create(&param("URL")).expect("create");
        publisher
            .wait_for_subscribers(1, Duration::from_secs(30))
            .expect("subscriber");
        publisher.send(b"whole").expect("send");
        let mut loan = publisher.loan(4).expect("loan");
        loan.copy_from_slice(b"half");
        ready("loaned");
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    let url = unique();
    let mut child = t.spawn("publisher", |c| set_param(c, "URL", &url));
    let sub = Subscriber::open(&format!("{url}?timeout=30s")).expect("open");
    assert_eq!(
        &*sub.recv_timeout(common::PATIENCE).expect("recv"),
        b"whole"
    );
    child.wait_ready();
    child.kill();
    let err = sub
        .recv_timeout(common::PATIENCE)
        .expect_err("nothing more may arrive");
    assert_eq!(*err.kind(), ErrorKind::Closed, "{err}");
    drop(sub);
    let mut again = Publisher::create(&url).expect("a new publisher reclaims the name");
    again.send(b"fresh").expect("send");
}

/// A tokio task awaits messages from a publisher in another process; each
/// one arrives after the subscriber went to sleep on its doorbell, and the
/// publisher's exit ends the stream with `Closed`. The liveness poll is an
/// hour, so only the doorbell can wake the subscriber in time: if it did
/// not ring, the watchdog would fail the test. The doorbell FIFO goes with
/// the channel. The open waits for the channel on a timer: no thread of
/// the blocking pool runs.
#[cfg(feature = "async")]
#[test]
fn async_subscriber_awaits_without_a_thread() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut publisher = Publisher::create(&param("URL")).expect("create");
        publisher
            .wait_for_subscribers(1, Duration::from_secs(30))
            .expect("subscriber");
        for i in 0u64..50 {
            // Give the subscriber time to fall asleep between messages.
            std::thread::sleep(Duration::from_millis(2));
            publisher.send(&i.to_le_bytes()).expect("send");
        }
        return;
    }
    let url = unique();
    const NAME: &str = "ipcx-sub-open";
    let rt = common::named_runtime(NAME);
    // The open awaits a channel that the publisher, started from the same
    // runtime thread while the open waits, makes: an open that blocked the
    // thread would never see it.
    let child = rt.block_on(async {
        let sub_url = format!("{url}?timeout=30s&liveness=1h");
        let open = ipcx::tokio::AsyncSubscriber::open(&sub_url);
        let start = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            t.spawn("publisher", |c| set_param(c, "URL", &url))
        };
        let (sub, child) = tokio::join!(open, start);
        let sub = sub.expect("open");
        assert!(
            doorbell(&url).exists(),
            "the doorbell FIFO exists while subscribed"
        );
        // In a task of its own (`tokio::spawn` takes only `Send` futures).
        tokio::spawn(async move {
            for want in 0u64..50 {
                let sample = sub.recv().await.expect("recv");
                assert_eq!(u64::from_le_bytes(sample[..8].try_into().unwrap()), want);
            }
            let err = sub.recv().await.expect_err("the publisher is gone");
            assert_eq!(*err.kind(), ErrorKind::Closed, "{err}");
        })
        .await
        .expect("the subscribing task");
        child
    });
    child.finish();
    assert!(
        !doorbell(&url).exists(),
        "the doorbell goes with the channel"
    );
    assert_eq!(common::threads_named(NAME), 0, "a blocking-pool thread ran");
}

/// A killed async subscriber leaves its doorbell FIFO; the channel's owner
/// removes it with the segment.
#[cfg(feature = "async")]
#[test]
fn doorbells_of_killed_subscribers_are_cleaned_up() {
    let t = Test::start();
    if t.child_role().is_some() {
        let rt = common::runtime();
        rt.block_on(async {
            let _sub = ipcx::tokio::AsyncSubscriber::open(&format!("{}?timeout=30s", param("URL")))
                .await
                .expect("open");
            ready("subscribed");
            tokio::time::sleep(Duration::from_secs(120)).await;
        });
        return;
    }
    let url = unique();
    let publisher = Publisher::create(&url).expect("create");
    let mut child = t.spawn("async-subscriber", |c| set_param(c, "URL", &url));
    child.wait_ready();
    child.kill();
    let bell = doorbell(&url);
    assert!(bell.exists(), "SIGKILL leaves the doorbell behind");
    drop(publisher);
    assert!(!bell.exists(), "the owner removes it with the channel");
}

/// An async subscriber that is dropped and opened again (the same place,
/// the same pid, the doorbell FIFO the first left, which the publisher
/// keeps open) is still rung.
#[cfg(feature = "async")]
#[test]
fn a_reopened_async_subscriber_is_rung() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut publisher = Publisher::create(&param("URL")).expect("create");
        publisher
            .wait_for_subscribers(1, Duration::from_secs(30))
            .expect("first");
        std::thread::sleep(Duration::from_millis(50));
        publisher.send(b"a").expect("send a");
        // Then "b" every 10 ms until the second subscriber got one and left.
        for i in 0..6000 {
            std::thread::sleep(Duration::from_millis(10));
            publisher.send(b"b").expect("send b");
            if i > 5 && publisher.subscribers() == 0 {
                break;
            }
        }
        return;
    }
    let url = unique();
    let child = t.spawn("publisher", |c| set_param(c, "URL", &url));
    let rt = common::runtime();
    rt.block_on(async {
        let sub_url = format!("{url}?timeout=30s&liveness=1h");
        let open = || ipcx::tokio::AsyncSubscriber::open(&sub_url);
        let first = open().await.expect("open");
        assert_eq!(&*first.recv().await.expect("recv a"), b"a");
        drop(first);
        assert!(
            doorbell(&url).exists(),
            "the doorbell stays for the next subscriber"
        );
        let second = open().await.expect("open again");
        assert_eq!(&*second.recv().await.expect("recv b"), b"b");
    });
    child.finish();
}

const PER_PUBLISHER: u64 = 5_000;

/// Two more publishers, each in its own process, attach to a channel and
/// publish at once: the subscriber gets every message of each, in each
/// publisher's order, none torn or lost.
#[test]
fn several_publishers_take_turns() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut publisher =
            Publisher::open(&format!("{}?timeout=30s", param("URL"))).expect("attach");
        publisher
            .wait_for_subscribers(1, Duration::from_secs(30))
            .expect("subscriber");
        let id: u64 = param("ID").parse().unwrap();
        for seq in 0..PER_PUBLISHER {
            let mut loan = publisher.loan(16).expect("loan");
            loan[..8].copy_from_slice(&id.to_le_bytes());
            loan[8..].copy_from_slice(&seq.to_le_bytes());
            loan.send().expect("send");
        }
        return;
    }
    let url = unique();
    let _creator = Publisher::create(&format!("{url}?slots=64&max_msg=16")).expect("create");
    let sub = Subscriber::open(&url).expect("open");
    let children: Vec<_> = (1..=2u64)
        .map(|id| {
            t.spawn("publisher", |c| {
                set_param(set_param(c, "URL", &url), "ID", &id.to_string())
            })
        })
        .collect();
    let mut next = [0u64; 3];
    for _ in 0..2 * PER_PUBLISHER {
        let sample = sub.recv_timeout(common::PATIENCE).expect("recv");
        let id = u64::from_le_bytes(sample[..8].try_into().unwrap()) as usize;
        let seq = u64::from_le_bytes(sample[8..16].try_into().unwrap());
        assert!(id == 1 || id == 2, "a torn message: id {id}");
        assert_eq!(seq, next[id], "publisher {id} out of order");
        next[id] += 1;
    }
    assert_eq!(next[1..], [PER_PUBLISHER, PER_PUBLISHER]);
    for c in children {
        c.finish();
    }
}

/// One of two publishers is killed holding a loan: the survivor frees its
/// place and its chunk (nothing half-written is ever delivered), a new
/// publisher can take the place, and no chunk is left behind.
#[test]
fn killed_second_publishers_loan_is_reclaimed() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut publisher =
            Publisher::open(&format!("{}?timeout=30s", param("URL"))).expect("attach");
        let mut loan = publisher.loan(8).expect("loan");
        loan.copy_from_slice(b"half....");
        ready("loaned");
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    let url = unique();
    let creator = Publisher::create(&format!("{url}?slots=8&max_msg=8")).expect("create");
    let sub = Subscriber::open(&url).expect("open");
    let all_free = creator.free_chunks();
    // More rounds than places: each dead place is freed and taken again.
    for round in 0..MAX_PUBLISHERS + 1 {
        let mut child = t.spawn("publisher", |c| set_param(c, "URL", &url));
        child.wait_ready();
        assert_eq!(
            creator.free_chunks(),
            all_free - 1,
            "round {round}: one on loan"
        );
        child.kill();
        assert!(
            creator.recover(),
            "round {round}: the dead publisher was found"
        );
        assert_eq!(
            creator.free_chunks(),
            all_free,
            "round {round}: its chunk came back"
        );
    }
    assert!(
        sub.try_recv().expect("try_recv").is_none(),
        "no loan was ever delivered"
    );
}

/// Another process scribbles over the ring, the masks and the subscriber
/// places: timed receives and `?overflow=fail` sends still return, a
/// message or a typed error, never a panic or a hang (the watchdog would
/// fail a hang), and nothing outside the segment is touched.
#[test]
fn scribbled_channel_never_panics_or_hangs() {
    let t = Test::start();
    if t.child_role() == Some(common::SCRIBBLER) {
        return common::scribbler();
    }
    for seed in 1..=8u64 {
        let url = unique();
        let mut publisher =
            Publisher::create(&format!("{url}?slots=8&max_msg=64&overflow=fail")).expect("create");
        let sub = Subscriber::open(&url).expect("open");
        publisher.send(b"before").expect("send");
        let len = ipcx::shm::Segment::open(&url)
            .expect("open the segment")
            .len();
        let header = std::mem::size_of::<ipcx::shm::ChannelHeader>();
        // Everything after the header but the payload chunks (the last
        // half of the segment is more than all of them).
        common::scribble(&t, &url, &[(header, (len - header) / 2)], seed);
        for _ in 0..4 {
            let got = sub.recv_timeout(Duration::from_millis(5)).map(|s| s.len());
            common::typed("recv_timeout", got);
            common::typed("send", publisher.send(b"after"));
        }
        let _recovered: bool = publisher.recover();
        let _free: usize = publisher.free_chunks();
    }
}

/// A channel whose header its creator has not written yet (here a plain
/// segment, whose channel magic stays 0) is waited for, not refused: the
/// blocking open times out naming the header, and an async open keeps
/// looking (and at its deadline says the same).
#[test]
fn a_channel_header_still_being_written_is_waited_for() {
    let _t = Test::start();
    let url = unique();
    let _seg = ipcx::shm::Segment::create(&format!("{url}?size=1MiB")).expect("a plain segment");
    let err = Subscriber::open(&format!("{url}?timeout=50ms")).expect_err("not a channel yet");
    assert_eq!(*err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(
        err.to_string().contains("channel header not yet written"),
        "{err}"
    );
    #[cfg(feature = "async")]
    {
        let rt = common::runtime();
        let patient = format!("{url}?timeout=30s");
        let waited = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_millis(300),
                ipcx::tokio::AsyncSubscriber::open(&patient),
            )
            .await
        });
        assert!(waited.is_err(), "the async open gave up at once");
        let brief = format!("{url}?timeout=50ms");
        let err = rt
            .block_on(ipcx::tokio::AsyncSubscriber::open(&brief))
            .expect_err("not a channel yet");
        assert_eq!(*err.kind(), ErrorKind::TimedOut, "{err}");
    }
}
