//! An `shm:` link whose segment another process scribbles on: the ring
//! cursors and record headers a peer can write are input. Each call returns
//! a message or a typed error ([`ErrorKind::Corrupt`] when the layout is
//! broken); none reads or writes outside the mapping, panics or hangs.
//!
//! The offsets below are the link's shared layout (`shm/link.rs`,
//! `shm/ring.rs`, held by their compile-time asserts): a 128-byte link
//! header, then the client-to-server ring (a 320-byte ring header with
//! `head` at 0 and `tail` at 64, then `cap` data bytes), then the
//! server-to-client ring.

mod common;

use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::shm::Segment;
use ipcx::{ErrorKind, Link, Listener};

const LINK_HEADER: usize = 128;
const RING_HEADER: usize = 320;
/// `?size=4KiB` gives rings of 4096 data bytes.
const CAP: usize = 4096;
const CLIENT_TO_SERVER: usize = LINK_HEADER;
const SERVER_TO_CLIENT: usize = LINK_HEADER + RING_HEADER + CAP;

fn unique() -> String {
    format!("shm:{}?size=4KiB", common::abstract_name())
}

/// In a child: writes `value` as the u64 at `offset` of the segment `URL`.
fn scribble_words() {
    let seg = Segment::open(&param("URL")).expect("open the segment");
    for pair in param("WORDS").split(',') {
        let (offset, value) = pair.split_once('=').expect("OFFSET=VALUE");
        let offset: usize = offset.parse().expect("offset");
        let value: u64 = value.parse().expect("value");
        // SAFETY: this test plays a hostile peer: racing the link's own
        // accesses is the point, and the bytes are plain integers to both.
        unsafe { seg.write_at(offset, &value.to_le_bytes()) }.expect("scribble");
    }
    ready("scribbled");
}

/// Writes `words` (`OFFSET=VALUE,...`) into the segment of `url` from
/// another process, and waits for it.
fn write_words(t: &Test, url: &str, words: &str) {
    t.spawn("words", |c| {
        set_param(set_param(c, "URL", url), "WORDS", words)
    })
    .finish();
}

/// The errors a receive from a scribbled link may return.
fn scribbled(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Corrupt(_) | ErrorKind::Closed | ErrorKind::TimedOut | ErrorKind::Frame(_)
    )
}

/// The client of these tests: connects, sends one message, then keeps
/// receiving with a time limit until told to stop by its stdin closing.
/// Any typed error is fine; a panic fails the child, and so the test.
fn client() {
    let mut link =
        Link::connect(&common::with_option(&param("URL"), "timeout=30s")).expect("connect");
    link.send(b"hello").expect("send");
    ready("sent");
    for _ in 0..20 {
        match link.recv_timeout(Duration::from_millis(50)) {
            Ok(_) => {}
            Err(e) => assert!(scribbled(e.kind()), "client: {e}"),
        }
    }
}

fn children(t: &Test) -> bool {
    match t.child_role() {
        Some("client") => client(),
        Some("words") => scribble_words(),
        Some(common::SCRIBBLER) => common::scribbler(),
        Some(other) => panic!("unknown role {other}"),
        None => return false,
    }
    true
}

/// Binds `url`, lets a client child connect and send "hello", receives it.
fn connected(t: &Test, url: &str) -> (Listener, Link, common::ChildProcess) {
    let mut listener = Listener::bind(url).expect("bind");
    let mut client = t.spawn("client", |c| set_param(c, "URL", url));
    let mut link = common::accept(&mut listener, &mut client);
    client.wait_ready();
    assert_eq!(link.recv().expect("recv"), b"hello");
    (listener, link, client)
}

/// The case that crashed the receiver: the peer's cursors moved past the
/// ring (head = cap - 1, tail = cap + 7). The receiver keeps its own head
/// and refuses the tail; the sender keeps its own tail and refuses the
/// consumer's head.
#[test]
fn cursors_past_the_ring_are_corrupt() {
    let t = Test::start();
    if children(&t) {
        return;
    }
    let url = unique();
    let (_listener, mut link, client) = connected(&t, &url);
    let words = format!(
        "{}={},{}={},{}={}",
        CLIENT_TO_SERVER,
        CAP - 1,
        CLIENT_TO_SERVER + 64,
        CAP + 7,
        SERVER_TO_CLIENT,
        u64::MAX - 5,
    );
    write_words(&t, &url, &words);
    let err = link
        .recv_timeout(Duration::from_secs(5))
        .expect_err("recv from a corrupt ring");
    assert!(matches!(err.kind(), ErrorKind::Corrupt(_)), "{err}");
    let err = link.send(b"x").expect_err("send into a corrupt ring");
    assert!(matches!(err.kind(), ErrorKind::Corrupt(_)), "{err}");
    // The half stays failed: no second look at memory known to be bad.
    let err = link
        .recv_timeout(Duration::from_secs(5))
        .expect_err("again");
    assert!(matches!(err.kind(), ErrorKind::Corrupt(_)), "{err}");
    drop(link);
    client.finish();
}

/// A tail that is plausible (one record ahead) over a record header that
/// claims more bytes than were published: refused before any byte is
/// copied.
#[test]
fn a_record_longer_than_published_is_corrupt() {
    let t = Test::start();
    if children(&t) {
        return;
    }
    let url = unique();
    let (_listener, mut link, client) = connected(&t, &url);
    // "hello" took 16 bytes (8 header, 5 padded to 8); the next record
    // would start at data offset 16.
    let data = CLIENT_TO_SERVER + RING_HEADER;
    let words = format!(
        "{}={},{}={}",
        data + 16,
        4000u64,
        CLIENT_TO_SERVER + 64,
        16 + 16,
    );
    write_words(&t, &url, &words);
    let err = link
        .recv_timeout(Duration::from_secs(5))
        .expect_err("recv of a lying record");
    assert!(matches!(err.kind(), ErrorKind::Corrupt(_)), "{err}");
    drop(link);
    client.finish();
}

/// Random bytes over the whole segment, headers and rings, written by
/// another process: every timed receive on both sides returns a message or
/// a typed error (the watchdog fails a hang; a crash fails the process).
#[test]
fn random_scribbles_give_typed_errors() {
    let t = Test::start();
    if children(&t) {
        return;
    }
    for seed in 1..=6u64 {
        let url = unique();
        let (_listener, mut link, client) = connected(&t, &url);
        let len = Segment::open(&url).expect("open the segment").len();
        common::scribble(&t, &url, &[(0, len)], seed);
        for _ in 0..5 {
            match link.recv_timeout(Duration::from_millis(20)) {
                Ok(_) => {}
                Err(e) => assert!(scribbled(e.kind()), "seed {seed}: {e}"),
            }
        }
        drop(link);
        client.finish();
    }
}

/// The roles of the claim tests: a process that stays alive (the stalled
/// claimer) and a client that connects and sends "in".
fn claim_children(t: &Test) -> bool {
    match t.child_role() {
        Some("stalled") => {
            ready("alive");
            std::thread::sleep(Duration::from_secs(120));
        }
        Some("client") => {
            let mut link = Link::connect(&common::with_option(&param("URL"), "timeout=30s"))
                .expect("connect past a dead claimer's claim");
            link.send(b"in").expect("send");
        }
        _ => return children(t),
    }
    true
}

/// Binds a link, starts a live process, and writes a claim as a client
/// would leave it: that process's pid with its start time moved by
/// `start_shift` (0: the live process itself; -1: an earlier process with
/// the same id, long gone). The claim word is at offset 80 of the header.
fn claimed_by(t: &Test, url: &str, start_shift: i64) -> (Listener, common::ChildProcess) {
    let listener = Listener::bind(url).expect("bind");
    (listener, claim(t, url, start_shift))
}

/// Writes the claim of [`claimed_by`] into the bound link at `url`.
fn claim(t: &Test, url: &str, start_shift: i64) -> common::ChildProcess {
    let mut stalled = t.spawn("stalled", |c| c);
    stalled.wait_ready();
    let pid = stalled.id();
    let start = ipcx::bench_support::start_time(pid).expect("the claimer's start time");
    let claim = ipcx::bench_support::pack_identity(pid, start.saturating_add_signed(start_shift));
    let words = format!("80={claim}");
    write_words(t, url, &words);
    stalled
}

/// A client connects past the claim and sends "in".
fn client_gets_in(t: &Test, url: &str, listener: &mut Listener) {
    let mut client = t.spawn("client", |c| set_param(c, "URL", url));
    let mut link = common::accept(listener, &mut client);
    assert_eq!(link.recv_timeout(common::PATIENCE).expect("recv"), b"in");
    drop(link);
    client.finish();
}

/// A claim is undone only when its claimer is dead. A live process that
/// claimed the link and stalls keeps it (a second client is refused, not
/// connected beside it); once the claimer is dead, the next client
/// connects.
#[test]
fn a_claim_is_undone_only_when_its_claimer_died() {
    let t = Test::start();
    if claim_children(&t) {
        return;
    }
    let url = unique();
    let (mut listener, mut stalled) = claimed_by(&t, &url, 0);
    // The listener looks at the claim while it waits: alive, so kept.
    assert!(matches!(
        listener.accept_timeout(Duration::from_millis(1500)),
        Err(e) if *e.kind() == ErrorKind::TimedOut
    ));
    let err = Link::connect(&format!("{url}&timeout=300ms")).expect_err("a second client");
    assert!(matches!(err.kind(), ErrorKind::InUse { .. }), "{err}");
    stalled.kill();
    client_gets_in(&t, &url, &mut listener);
}

/// A claim whose pid lives but whose start time is not that process's is
/// a dead claimer's (its id was reused): undone, and the next client
/// connects. Checks that liveness compares start times, not just ids.
#[test]
fn a_claim_by_a_reused_pid_is_undone() {
    let t = Test::start();
    if claim_children(&t) {
        return;
    }
    let url = unique();
    let (mut listener, mut stalled) = claimed_by(&t, &url, -1);
    client_gets_in(&t, &url, &mut listener);
    stalled.kill();
}

/// The same on tokio, where an idle listener awaits its doorbell, which a
/// dead claimer never rings: the listener's next look (within a second)
/// undoes the claim, and the client connects (and rings).
#[cfg(feature = "async")]
#[test]
fn an_async_listener_gets_a_client_past_a_dead_claim() {
    let t = Test::start();
    if claim_children(&t) {
        return;
    }
    let url = unique();
    common::runtime().block_on(async {
        let mut listener = ipcx::tokio::AsyncListener::bind(&url).expect("bind");
        let mut accepting = std::pin::pin!(listener.accept());
        // Awaiting its doorbell before the claim is written (the same
        // accept throughout: a new one would look at the claim first).
        let short = Duration::from_millis(100);
        let waited = tokio::time::timeout(short, &mut accepting).await;
        assert!(waited.is_err(), "no client yet");
        let mut stalled = claim(&t, &url, -1);
        let client = t.spawn("client", |c| set_param(c, "URL", &url));
        let mut link = tokio::time::timeout(common::PATIENCE, accepting)
            .await
            .expect("accepted in time")
            .expect("accept");
        assert_eq!(link.recv().await.expect("recv"), b"in");
        drop(link);
        client.finish();
        stalled.kill();
    });
}

/// A blocking accept on an endpoint nobody claimed sleeps on the state
/// word for long (`?liveness=1h`: an hour): the connector in another
/// process wakes it when it claims and when it connected.
#[test]
fn a_blocking_accept_is_woken_by_its_connector() {
    let t = Test::start();
    if claim_children(&t) {
        return;
    }
    let url = format!("{}&liveness=1h", unique());
    let listener = Listener::bind(&url).expect("bind");
    let client = t.spawn("client", |c| set_param(c, "URL", &url));
    // No timeout: one would end the sleep itself (the watchdog fails a
    // hang).
    let mut link = listener.accept().expect("woken by the connector");
    assert_eq!(link.recv_timeout(common::PATIENCE).expect("recv"), b"in");
    drop(link);
    client.finish();
}
