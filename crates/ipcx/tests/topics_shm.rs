//! Publish/subscribe with topics on `shm:` (`ipcx::pattern::{Publisher,
//! Subscriber}` over the zero-copy channel) between processes: each
//! subscriber keeps exactly what its patterns match, in the publisher's
//! order, none lost under `block`; a message that is not topic and payload
//! (a foreign publisher wrote it) is an error naming what is wrong and the
//! next is read; what the shm: form refuses.

mod common;

use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::ErrorKind;
use ipcx::pattern::{Pattern, Publisher, Subscriber};

const PATIENCE: Duration = Duration::from_secs(60);

const TOPICS: [&str; 4] = [
    "sensors.lidar.front",
    "sensors.lidar.back",
    "sensors.radar.front",
    "misc.x",
];

/// In a child: subscribes with `PATTERNS` (comma-separated) and checks
/// that it gets, of the `N` messages published (message n on topic
/// `TOPICS[n % 4]`, its number as payload), exactly those its patterns
/// match, in order; says how many.
fn topic_subscriber() {
    let patterns: Vec<String> = param("PATTERNS").split(',').map(String::from).collect();
    let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let mut sub = Subscriber::connect(&param("URL"), &refs).expect("subscribe");
    ready("joined");
    let parsed: Vec<Pattern> = refs
        .iter()
        .map(|p| Pattern::parse(p).expect("a pattern"))
        .collect();
    let n: u64 = param("N").parse().expect("N");
    let wanted = (0..n).filter(|i| parsed.iter().any(|p| p.matches(TOPICS[(i % 4) as usize])));
    let mut count = 0;
    for want in wanted {
        let d = sub.recv_timeout(PATIENCE).expect("recv");
        assert_eq!(d.topic, TOPICS[(want % 4) as usize]);
        assert_eq!(d.payload, want.to_le_bytes(), "message {want}");
        count += 1;
    }
    assert_eq!(sub.lost(), 0);
    // Nothing else came: what was not matched was passed over.
    let more = sub
        .recv_timeout(Duration::from_millis(100))
        .expect_err("no more");
    assert_eq!(*more.kind(), ErrorKind::TimedOut, "{more}");
    ready(&count.to_string());
}

#[test]
fn each_subscriber_keeps_what_its_patterns_match() {
    let t = Test::start();
    if t.child_role().is_some() {
        return topic_subscriber();
    }
    let url = format!("shm:{}", common::abstract_name());
    let publisher = Publisher::bind(&format!("{url}?slots=1024&max_msg=64")).expect("bind");
    const N: u64 = 200_000;
    let patterns = ["sensors.*.front", "sensors.>", "other.thing,misc.*"];
    let mut subs: Vec<_> = patterns
        .iter()
        .map(|p| {
            t.spawn("subscriber", |c| {
                set_param(
                    set_param(set_param(c, "URL", &url), "PATTERNS", p),
                    "N",
                    &N.to_string(),
                )
            })
        })
        .collect();
    for s in &mut subs {
        assert_eq!(s.wait_ready(), "joined");
    }
    publisher
        .wait_for_subscribers(3, PATIENCE)
        .expect("three subscribers");
    assert_eq!(publisher.subscriber_count(), 3);
    for n in 0..N {
        let reached = publisher
            .publish(TOPICS[(n % 4) as usize], &n.to_le_bytes())
            .expect("publish");
        assert_eq!(reached, 3);
    }
    // Two of four topics end in `.front`, three are sensors, one misc.
    let counts: Vec<String> = subs
        .into_iter()
        .map(|mut s| {
            let said = s.wait_ready();
            s.finish();
            said
        })
        .collect();
    assert_eq!(counts, [N / 2, N * 3 / 4, N / 4].map(|c| c.to_string()));
}

/// In a child: subscribes to everything and says what each of three
/// receives gave: an error's kind, or the topic.
fn reporting_subscriber() {
    let mut sub = Subscriber::connect(&param("URL"), &[">"]).expect("subscribe");
    ready("joined");
    for _ in 0..4 {
        match sub.recv_timeout(PATIENCE) {
            Ok(d) => ready(&format!("topic {}", d.topic)),
            Err(e) => ready(&format!("error {e}")),
        }
    }
}

#[test]
fn a_foreign_message_is_an_error_and_the_next_is_read() {
    let t = Test::start();
    if t.child_role().is_some() {
        return reporting_subscriber();
    }
    let url = format!("shm:{}", common::abstract_name());
    let publisher = Publisher::bind(&format!("{url}?max_msg=64")).expect("bind");
    let mut sub = t.spawn("subscriber", |c| set_param(c, "URL", &url));
    assert_eq!(sub.wait_ready(), "joined");
    publisher
        .wait_for_subscribers(1, PATIENCE)
        .expect("a subscriber");
    // Another publisher of the channel that writes raw bytes.
    let mut raw = ipcx::shm::Publisher::open(&url).expect("open");
    raw.send(&[7]).expect("too short for a topic");
    raw.send(&[200, 0, b'a'])
        .expect("a topic longer than the message");
    raw.send(&[4, 0, b'a', b'.', b'.', b'b'])
        .expect("an empty level");
    publisher.publish("ok.then", b"fine").expect("publish");
    assert!(sub.wait_ready().contains("too short for a topic"));
    assert!(sub.wait_ready().contains("shorter than its topic"));
    assert!(sub.wait_ready().contains("malformed topic"));
    assert_eq!(sub.wait_ready(), "topic ok.then");
    sub.finish();
}

#[test]
fn what_the_shm_form_refuses() {
    let url = format!("shm:{}", common::abstract_name());
    let bind = Subscriber::bind(&url, &[">"]).expect_err("a subscriber cannot bind shm:");
    assert!(
        matches!(bind.kind(), ErrorKind::Unsupported(m) if m.contains("created by its publisher")),
        "{bind}"
    );
    let publisher = Publisher::bind(&format!("{url}?max_msg=64")).expect("bind");
    let topic = publisher
        .publish("a..b", b"x")
        .expect_err("a malformed topic");
    assert!(
        matches!(topic.kind(), ErrorKind::InvalidArgument(_)),
        "{topic}"
    );
    let large = publisher
        .publish("big", &[0; 64])
        .expect_err("more than a chunk");
    assert!(
        matches!(large.kind(), ErrorKind::MessageTooLarge { max: 64, .. }),
        "{large}"
    );
    // Nobody subscribed yet: published to none.
    assert_eq!(publisher.publish("t", b"x").expect("publish"), 0);
    let sub = Subscriber::connect(&url, &["t.>", "x.*.>"]);
    assert!(sub.is_ok(), "{sub:?}");
    let empty = Subscriber::connect(&url, &[]).expect_err("no pattern");
    assert!(
        matches!(empty.kind(), ErrorKind::InvalidArgument(_)),
        "{empty}"
    );
}
