//! Publish/subscribe over sockets (`ipcx::pattern::{Publisher,
//! Subscriber}`) between processes: a million messages to eight
//! subscriber processes with `block`, none lost, duplicated or out of
//! order; filtering at the publisher; a slow subscriber under
//! `drop_oldest` (bounded, told what it lost) and `fail`; history for a
//! late subscriber; a hostile subscriber dropped while the others are
//! served.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::ErrorKind;
use ipcx::pattern::{Publisher, Subscriber};

const PATIENCE: Duration = Duration::from_secs(60);

/// In a child: subscribes to `URL` with `PATTERNS` (comma-separated),
/// says it joined, receives `COUNT` messages checking each is the next
/// number on topic `t.<n % 4>`, and says how many it got.
fn counting_subscriber() {
    let patterns: Vec<String> = param("PATTERNS").split(',').map(String::from).collect();
    let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let mut sub = Subscriber::connect(&param("URL"), &refs).expect("subscribe");
    ready("joined");
    let count: u64 = param("COUNT").parse().expect("a count");
    for n in 0..count {
        let d = sub.recv().expect("recv");
        let got = u64::from_le_bytes(d.payload[..8].try_into().expect("8 bytes"));
        assert_eq!(got, n, "message {n}: got {got}");
        assert_eq!(d.topic, format!("t.{}", n % 4));
    }
    assert_eq!(sub.lost(), 0);
    ready(&count.to_string());
}

/// 1 000 000 messages to 8 subscriber processes with `block`: each gets
/// every one, once, in order.
#[test]
fn a_million_messages_to_eight_subscribers() {
    let t = Test::start();
    if t.child_role().is_some() {
        return counting_subscriber();
    }
    let dir = t.scratch();
    let publisher = Publisher::bind(&dir.url("unix", "pub.sock")).expect("bind");
    const COUNT: u64 = 1_000_000;
    let mut children: Vec<_> = (0..8)
        .map(|_| {
            t.spawn("subscriber", |c| {
                let c = set_param(c, "URL", publisher.url());
                set_param(set_param(c, "PATTERNS", "t.>"), "COUNT", &COUNT.to_string())
            })
        })
        .collect();
    for c in &mut children {
        assert_eq!(c.wait_ready(), "joined");
    }
    publisher
        .wait_for_subscribers(8, PATIENCE)
        .expect("eight subscribers");
    let mut payload = [0u8; 24];
    for n in 0..COUNT {
        payload[..8].copy_from_slice(&n.to_le_bytes());
        let reached = publisher
            .publish(&format!("t.{}", n % 4), &payload)
            .expect("publish");
        assert_eq!(reached, 8);
    }
    publisher.flush(PATIENCE).expect("flush");
    for mut c in children {
        assert_eq!(c.wait_ready(), COUNT.to_string());
        c.finish();
    }
}

/// In a child: three subscribers with different patterns; each says
/// the topics of the messages it expects (`N1,N2,N3` of `COUNTS`).
fn three_subscribers() {
    let url = param("URL");
    let mut subs: Vec<Subscriber> = [&["sensors.*.front"][..], &["sensors.>"], &["other.thing"]]
        .iter()
        .map(|p| Subscriber::connect(&url, p).expect("subscribe"))
        .collect();
    ready("joined");
    let counts: Vec<usize> = param("COUNTS")
        .split(',')
        .map(|n| n.parse().expect("a count"))
        .collect();
    for (sub, n) in subs.iter_mut().zip(counts) {
        let topics: Vec<String> = (0..n)
            .map(|_| sub.recv_timeout(PATIENCE).expect("recv").topic)
            .collect();
        ready(&topics.join(" "));
    }
    // Connected until the test has read the publisher's counts.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Filtering happens at the publisher: each subscriber gets exactly the
/// messages its patterns match, and the publisher wrote nothing else to
/// it.
#[test]
fn the_publisher_filters() {
    let t = Test::start();
    if t.child_role().is_some() {
        return three_subscribers();
    }
    let dir = t.scratch();
    let publisher = Publisher::bind(&dir.url("unix", "f.sock")).expect("bind");
    let mut child = t.spawn("subscribers", |c| {
        set_param(set_param(c, "URL", publisher.url()), "COUNTS", "2,4,1")
            .stdin(std::process::Stdio::piped())
    });
    let stdin = child.take_stdin().expect("stdin");
    assert_eq!(child.wait_ready(), "joined");
    publisher
        .wait_for_subscribers(3, PATIENCE)
        .expect("three subscribers");
    let topics = [
        "sensors.lidar.front",
        "sensors.lidar.back",
        "sensors.radar.front",
        "sensors.radar.front.left",
        "sensors",
        "actuators.arm",
        "other.thing",
    ];
    for (i, t) in topics.iter().enumerate() {
        publisher.publish(t, &[i as u8]).expect("publish");
    }
    assert_eq!(
        child.wait_ready(),
        "sensors.lidar.front sensors.radar.front"
    );
    assert_eq!(
        child.wait_ready(),
        "sensors.lidar.front sensors.lidar.back sensors.radar.front sensors.radar.front.left"
    );
    assert_eq!(child.wait_ready(), "other.thing");
    publisher.flush(PATIENCE).expect("flush");
    let mut delivered: Vec<(Vec<String>, u64)> = publisher
        .subscribers()
        .into_iter()
        .map(|s| (s.patterns, s.delivered))
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        [
            (vec!["other.thing".to_string()], 1),
            (vec!["sensors.*.front".to_string()], 2),
            (vec!["sensors.>".to_string()], 4),
        ]
    );
    drop(stdin);
    child.finish();
}

/// In a child: subscribes to `URL` (all topics), says so, waits for a
/// line on stdin, then takes what there is and says how many it got and
/// how many it was told it lost.
fn slow_subscriber() {
    let mut sub = Subscriber::connect(&param("URL"), &[">"]).expect("subscribe");
    ready("joined");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("stdin");
    let mut got = 0u64;
    let mut last = None;
    while let Ok(d) = sub.recv_timeout(Duration::from_millis(500)) {
        let n = u64::from_le_bytes(d.payload[..8].try_into().expect("8 bytes"));
        assert!(
            last.is_none_or(|l| n > l),
            "{n} after {last:?}: out of order"
        );
        last = Some(n);
        got += 1;
    }
    ready(&format!("{got} {}", sub.lost()));
}

/// A subscriber that does not read, under `drop_oldest`: the publisher
/// never blocks, keeps at most `?slots=` messages for it, and it is told
/// how many it lost: what it got plus what it lost is what was sent.
/// Under `fail`, a publish into its full queue is `Full` (and reaches
/// nobody).
#[test]
fn a_slow_subscriber_under_drop_oldest_and_fail() {
    let t = Test::start();
    if t.child_role().is_some() {
        return slow_subscriber();
    }
    let dir = t.scratch();
    let url = format!(
        "{}?slots=16&overflow=drop_oldest",
        dir.url("unix", "slow.sock")
    );
    let publisher = Publisher::bind(&url).expect("bind");
    let mut child = t.spawn("slow", |c| {
        set_param(c, "URL", publisher.url()).stdin(std::process::Stdio::piped())
    });
    let mut stdin = child.take_stdin().expect("stdin");
    assert_eq!(child.wait_ready(), "joined");
    publisher.wait_for_subscribers(1, PATIENCE).expect("joined");
    const SENT: u64 = 100_000;
    let mut payload = vec![0u8; 1024];
    for n in 0..SENT {
        payload[..8].copy_from_slice(&n.to_le_bytes());
        publisher
            .publish("t.a", &payload)
            .expect("publish never blocks");
        assert!(
            publisher.subscribers()[0].queued <= 16,
            "the queue is bounded"
        );
    }
    writeln!(stdin, "go").expect("write to the child");
    publisher.flush(PATIENCE).expect("flush");
    // Final once flushed; read before the subscriber leaves (a subscriber
    // that left is taken off the list).
    let dropped = publisher.subscribers()[0].lost;
    let said = child.wait_ready();
    let (got, lost) = said.split_once(' ').expect("two numbers");
    let (got, lost): (u64, u64) = (got.parse().expect("got"), lost.parse().expect("lost"));
    assert!(lost > 0, "nothing was dropped: {said}");
    assert_eq!(got + lost, SENT, "got {got}, lost {lost}");
    assert_eq!(dropped, lost);
    drop(stdin);
    child.finish();

    let url = format!("{}?slots=4&overflow=fail", dir.url("unix", "fail.sock"));
    let publisher = Publisher::bind(&url).expect("bind");
    let mut child = t.spawn("slow", |c| {
        set_param(c, "URL", publisher.url()).stdin(std::process::Stdio::piped())
    });
    let stdin = child.take_stdin().expect("stdin");
    assert_eq!(child.wait_ready(), "joined");
    publisher.wait_for_subscribers(1, PATIENCE).expect("joined");
    let big = vec![0u8; 1 << 20];
    let mut full = None;
    for n in 0..1000 {
        match publisher.publish("t.a", &big) {
            Ok(_) => {}
            Err(e) => {
                full = Some((n, e));
                break;
            }
        }
    }
    let (n, err) = full.expect("the queue filled");
    assert_eq!(*err.kind(), ErrorKind::Full, "after {n}: {err}");
    assert!(publisher.subscribers()[0].queued <= 4);
    drop(stdin);
    child.kill();
}

/// A publisher that keeps `?history=2`: a subscriber that joins late with
/// `?history=2` first gets the last two of each topic it matches, then
/// what is published after.
#[test]
fn a_late_subscriber_gets_history() {
    let t = Test::start();
    if t.child_role().is_some() {
        let url = format!("{}?history=2", param("URL"));
        let mut sub = Subscriber::connect(&url, &["t.*"]).expect("subscribe");
        let mut seen: Vec<String> = (0..4)
            .map(|_| {
                let d = sub.recv_timeout(PATIENCE).expect("history");
                format!("{}={}", d.topic, String::from_utf8_lossy(&d.payload))
            })
            .collect();
        seen.sort();
        ready(&seen.join(" "));
        let d = sub.recv_timeout(PATIENCE).expect("live");
        ready(&format!(
            "{}={}",
            d.topic,
            String::from_utf8_lossy(&d.payload)
        ));
        return;
    }
    let dir = t.scratch();
    let url = format!("{}?history=2", dir.url("unix", "hist.sock"));
    let publisher = Publisher::bind(&url).expect("bind");
    for n in 0..5 {
        for topic in ["t.a", "t.b", "u.c"] {
            publisher
                .publish(topic, n.to_string().as_bytes())
                .expect("publish");
        }
    }
    let bare = publisher
        .url()
        .split('?')
        .next()
        .expect("a URL")
        .to_string();
    let mut child = t.spawn("late", |c| set_param(c, "URL", &bare));
    assert_eq!(child.wait_ready(), "t.a=3 t.a=4 t.b=3 t.b=4");
    publisher.publish("t.a", b"live").expect("publish");
    assert_eq!(child.wait_ready(), "t.a=live");
    child.finish();
}

/// Subscribers that break the protocol (garbage, a malformed pattern, a
/// subscription cut short) are dropped; the publisher goes on serving a
/// well-behaved one in another process.
#[test]
fn hostile_subscribers_are_dropped_and_the_rest_served() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut sub = Subscriber::connect(&param("URL"), &["t.>"]).expect("subscribe");
        ready("joined");
        let d = sub.recv_timeout(PATIENCE).expect("recv");
        ready(&String::from_utf8_lossy(&d.payload));
        return;
    }
    let dir = t.scratch();
    let publisher = Publisher::bind(&dir.url("unix", "h.sock")).expect("bind");
    let url = publisher.url().to_string();
    // The same schema as a subscriber, then a bad first message.
    let schema_then = |msg: &[u8]| {
        let mut link = ipcx::Link::connect(&url).expect("connect");
        let schema = link.recv_timeout(PATIENCE).expect("the publisher's schema");
        // A subscriber's schema mirrors the publisher's: flip each way's
        // direction byte (after the 8-byte magic: dir, version, len, name).
        let mut mine = schema.clone();
        let mut at = 8;
        while at < mine.len() {
            mine[at] ^= 1;
            let len = u16::from_le_bytes([mine[at + 5], mine[at + 6]]) as usize;
            at += 7 + len;
        }
        link.send(&mine).expect("send a schema");
        link.send(msg).expect("send");
        link
    };
    let _garbage = schema_then(b"\xffnot a subscription");
    let mut bad_pattern = vec![b'S', 0, 0, 0, 0, 1, 0, 4, 0];
    bad_pattern.extend_from_slice(b"a..b");
    let _bad = schema_then(&bad_pattern);
    let _short = schema_then(&[b'S', 0, 0, 0, 0, 3, 0, 9, 0, b'x']);
    let mut child = t.spawn("good", |c| set_param(c, "URL", &url));
    assert_eq!(child.wait_ready(), "joined");
    publisher
        .wait_for_subscribers(1, PATIENCE)
        .expect("the good one");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(publisher.subscribers().len(), 1, "only the good one joined");
    publisher.publish("t.x", b"served").expect("publish");
    assert_eq!(child.wait_ready(), "served");
    child.finish();
}

/// Messages of 1 MiB (more than a batch, or a socket, holds) go whole and
/// in order; a lone one after a quiet moment (written at once, taken in
/// part by the socket) arrives whole with no publish after it.
#[test]
fn large_messages() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut sub = Subscriber::connect(&param("URL"), &[">"]).expect("subscribe");
        for n in 0..20u8 {
            let d = sub.recv_timeout(PATIENCE).expect("recv");
            assert_eq!(d.payload.len(), 1 << 20);
            assert!(d.payload.iter().all(|&b| b == n), "message {n}");
        }
        ready("all");
        let d = sub.recv_timeout(PATIENCE).expect("the lone one");
        assert!(d.payload.len() == 1 << 20 && d.payload.iter().all(|&b| b == 99));
        ready("lone");
        return;
    }
    let dir = t.scratch();
    let publisher = Publisher::bind(&dir.url("unix", "big.sock")).expect("bind");
    let mut child = t.spawn("big", |c| set_param(c, "URL", publisher.url()));
    publisher.wait_for_subscribers(1, PATIENCE).expect("joined");
    for n in 0..20u8 {
        publisher
            .publish("big.one", &vec![n; 1 << 20])
            .expect("publish");
    }
    assert_eq!(child.wait_ready(), "all");
    std::thread::sleep(Duration::from_millis(5));
    publisher
        .publish("big.one", &vec![99; 1 << 20])
        .expect("publish");
    assert_eq!(child.wait_ready(), "lone");
    child.finish();
}

/// A subscriber that binds collects from publishers that connect to it:
/// two publisher processes, each publishing 1000 numbered messages on its
/// own topic; every message arrives, each publisher's in order.
#[test]
fn a_subscriber_that_binds_collects_from_publishers() {
    let t = Test::start();
    if t.child_role().is_some() {
        return connecting_publisher();
    }
    let dir = t.scratch();
    let url = dir.url("unix", "collect.sock");
    let mut sub = Subscriber::bind(&url, &["from.*"]).expect("bind");
    let mut children: Vec<_> = ["a", "b"]
        .iter()
        .map(|me| {
            t.spawn("publisher", |c| {
                set_param(set_param(c, "URL", &url), "ME", me).stdin(std::process::Stdio::piped())
            })
        })
        .collect();
    let mut next = std::collections::HashMap::new();
    for _ in 0..2000 {
        let d = sub.recv_timeout(PATIENCE).expect("recv");
        let n = u32::from_le_bytes(d.payload[..4].try_into().expect("4 bytes"));
        let want = next.entry(d.topic.clone()).or_insert(0u32);
        assert_eq!(n, *want, "{}: out of order", d.topic);
        *want += 1;
    }
    assert_eq!(next.get("from.a"), Some(&1000));
    assert_eq!(next.get("from.b"), Some(&1000));
    for c in &mut children {
        assert_eq!(c.wait_ready(), "sent");
        drop(c.take_stdin());
    }
    for c in children {
        c.finish();
    }
}

/// What a subscriber cannot take or has stopped taking is handled without
/// hurting the others: a message over its `?max_msg=` is counted lost and
/// its link stays; a subscriber that leaves while its topics are quiet is
/// noticed without a publish; a peer that connects to a binding
/// subscriber and leaves at once does not stop it.
#[test]
fn limits_departures_and_drive_by_peers() {
    let t = Test::start();
    if t.child_role() == Some("publisher") {
        return connecting_publisher();
    }
    if t.child_role().is_some() {
        let url = format!("{}?max_msg=1KiB", param("URL"));
        let mut sub = Subscriber::connect(&url, &["t.>"]).expect("subscribe");
        ready("joined");
        for n in 0..10u8 {
            let d = sub.recv_timeout(PATIENCE).expect("a small one");
            assert_eq!(d.payload, [n]);
        }
        ready(&sub.lost().to_string());
        return;
    }
    let dir = t.scratch();
    let publisher = Publisher::bind(&dir.url("unix", "lim.sock")).expect("bind");
    let mut child = t.spawn("small", |c| set_param(c, "URL", publisher.url()));
    assert_eq!(child.wait_ready(), "joined");
    publisher.wait_for_subscribers(1, PATIENCE).expect("joined");
    publisher.publish("t.big", &[7; 4096]).expect("publish");
    for n in 0..10u8 {
        publisher.publish("t.small", &[n]).expect("publish");
    }
    assert_eq!(child.wait_ready(), "1", "the large one counted lost");
    child.finish();
    let give_up = std::time::Instant::now() + PATIENCE;
    while !publisher.subscribers().is_empty() {
        assert!(
            std::time::Instant::now() < give_up,
            "the subscriber that left is still there"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let url = dir.url("unix", "drive.sock");
    let mut sub = Subscriber::bind(&url, &[">"]).expect("bind");
    let path = dir.path("drive.sock");
    drop(std::os::unix::net::UnixStream::connect(&path).expect("a drive-by connect"));
    let mut child = t.spawn("publisher", |c| {
        set_param(set_param(c, "URL", &url), "ME", "z").stdin(std::process::Stdio::piped())
    });
    for n in 0..1000u32 {
        let d = sub.recv_timeout(PATIENCE).expect("recv after the drive-by");
        assert_eq!(d.payload, n.to_le_bytes());
    }
    assert_eq!(child.wait_ready(), "sent");
    drop(child.take_stdin());
    child.finish();
}

/// In a child: a publisher that connects to the subscriber binding `URL`
/// and publishes 1000 numbered messages on `from.<ME>`, then stays until
/// its stdin closes.
fn connecting_publisher() {
    let publisher = Publisher::connect(&format!("{}?timeout=30s", param("URL")))
        .expect("connect to the subscriber");
    let topic = format!("from.{}", param("ME"));
    for n in 0..1000u32 {
        publisher
            .publish(&topic, &n.to_le_bytes())
            .expect("publish");
    }
    publisher.flush(PATIENCE).expect("flush");
    ready("sent");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// A peer that connects to a binding subscriber and stays silent (no
/// schema) holds nobody up: a publisher that connects after it is read
/// at once (it waited out the silent one's 10 s schema wait before).
#[test]
fn a_silent_peer_does_not_hold_a_binding_subscriber() {
    let t = Test::start();
    if t.child_role() == Some("publisher") {
        return connecting_publisher();
    }
    if t.child_role().is_some() {
        let _silent = ipcx::Link::connect(&param("URL")).expect("connect");
        ready("connected");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        return;
    }
    let dir = t.scratch();
    let url = dir.url("unix", "silent.sock");
    let mut sub = Subscriber::bind(&url, &["from.*"]).expect("bind");
    let mut silent = t.spawn("silent", |c| {
        set_param(c, "URL", &url).stdin(std::process::Stdio::piped())
    });
    assert_eq!(silent.wait_ready(), "connected");
    // The subscriber meets the silent peer first.
    let none = sub
        .recv_timeout(Duration::from_millis(200))
        .expect_err("nothing yet");
    assert_eq!(*none.kind(), ErrorKind::TimedOut);
    let mut publisher = t.spawn("publisher", |c| {
        set_param(set_param(c, "URL", &url), "ME", "p").stdin(std::process::Stdio::piped())
    });
    // Not a speed claim: the blocking join stalled for the silent peer's
    // 10 s schema wait; 8 s tells the two apart.
    let first = sub
        .recv_timeout(Duration::from_secs(8))
        .expect("the publisher, at once");
    assert_eq!(first.topic, "from.p");
    for _ in 1..1000 {
        sub.recv_timeout(PATIENCE).expect("recv");
    }
    assert_eq!(publisher.wait_ready(), "sent");
    drop(publisher.take_stdin());
    publisher.finish();
    drop(silent.take_stdin());
    silent.finish();
}
