//! `shm:` links when a side is killed with `SIGKILL`: the survivor gets
//! `Closed` instead of waiting forever, and restarting needs no manual step.

mod common;

use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::{ErrorKind, Link, Listener};

fn unique() -> String {
    format!("shm:{}", common::abstract_name())
}

/// The serving side dies: the client's blocked `recv` returns `Closed`, and
/// a new server binds the same name at once (the dead one's segment is
/// reclaimed).
#[test]
fn killed_server_is_seen_and_replaced() {
    let t = Test::start();
    if t.child_role() == Some("client") {
        let mut link =
            Link::connect(&common::with_option(&param("URL"), "timeout=30s")).expect("connect");
        link.send(b"after restart").expect("send");
        return;
    }
    if t.child_role().is_some() {
        let l = Listener::bind(&param("URL")).expect("bind");
        ready("bound");
        let mut link = l.accept().expect("accept");
        link.send(b"hello").expect("send");
        std::thread::sleep(Duration::from_secs(120));
        return;
    }
    let url = unique();
    let mut server = t.spawn("server", |c| set_param(c, "URL", &url));
    server.wait_ready();
    let mut link = Link::connect(&format!("{url}?timeout=30s")).expect("connect");
    assert_eq!(link.recv_timeout(common::PATIENCE).expect("recv"), b"hello");
    server.kill();
    let err = link
        .recv_timeout(common::PATIENCE)
        .expect_err("recv after the server died");
    assert_eq!(*err.kind(), ErrorKind::Closed, "{err}");
    drop(link);

    // Restart: bind the same name in this process; no cleanup step.
    let listener = Listener::bind(&url).expect("bind over a dead server");
    let client = t.spawn("client", |c| set_param(c, "URL", &url));
    let mut link = listener
        .accept_timeout(Duration::from_secs(30))
        .expect("accept");
    assert_eq!(
        link.recv_timeout(common::PATIENCE).expect("recv"),
        b"after restart"
    );
    client.finish();
}

/// The connecting side dies while the server waits to receive, and again
/// while the server is blocked sending into a full ring: both return
/// `Closed`, and the next client is served on reset rings.
#[test]
fn killed_client_is_seen_and_the_next_is_served() {
    let t = Test::start();
    match t.child_role() {
        Some("client") => {
            let mut link =
                Link::connect(&common::with_option(&param("URL"), "timeout=30s")).expect("connect");
            link.send(b"after restart").expect("send");
            return;
        }
        Some(_) => {
            let _link =
                Link::connect(&common::with_option(&param("URL"), "timeout=30s")).expect("connect");
            ready("connected");
            std::thread::sleep(Duration::from_secs(120));
            return;
        }
        None => {}
    }
    let url = format!("{}?size=4KiB", unique());
    let listener = Listener::bind(&url).expect("bind");

    let mut victim = t.spawn("victim", |c| set_param(c, "URL", &url));
    let mut link = listener
        .accept_timeout(Duration::from_secs(30))
        .expect("accept");
    victim.wait_ready();
    victim.kill();
    let err = link
        .recv_timeout(common::PATIENCE)
        .expect_err("recv after the client died");
    assert_eq!(*err.kind(), ErrorKind::Closed, "{err}");
    drop(link);

    // Killed while the server is blocked on a full ring.
    let mut victim = t.spawn("victim", |c| set_param(c, "URL", &url));
    let mut link = listener
        .accept_timeout(Duration::from_secs(30))
        .expect("accept");
    victim.wait_ready();
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        victim.kill();
    });
    let big = vec![7u8; 1024];
    let err = loop {
        // Nobody reads: the 4 KiB ring fills, then send blocks until the
        // client is found dead.
        if let Err(e) = link.send(&big) {
            break e;
        }
    };
    killer.join().unwrap();
    assert_eq!(*err.kind(), ErrorKind::Closed, "{err}");
    drop(link);

    let client = t.spawn("client", |c| set_param(c, "URL", &url));
    let mut link = listener
        .accept_timeout(Duration::from_secs(30))
        .expect("accept the next");
    assert_eq!(
        link.recv_timeout(common::PATIENCE).expect("recv"),
        b"after restart"
    );
    client.finish();
}

/// The next peer is not accepted while the handler of the last one still
/// holds its link: resetting the rings under it would hand the new peer's
/// messages to the old handler.
#[test]
fn next_peer_waits_until_the_last_link_is_dropped() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link =
            Link::connect(&common::with_option(&param("URL"), "timeout=30s")).expect("connect");
        link.send(param("SAY").as_bytes()).expect("send");
        return;
    }
    let url = unique();
    let listener = Listener::bind(&url).expect("bind");
    let a = t.spawn("client", |c| {
        set_param(set_param(c, "URL", &url), "SAY", "a")
    });
    let mut first = listener
        .accept_timeout(Duration::from_secs(30))
        .expect("accept a");
    assert_eq!(first.recv_timeout(common::PATIENCE).expect("recv a"), b"a");
    a.finish();
    let b = t.spawn("client", |c| {
        set_param(set_param(c, "URL", &url), "SAY", "b")
    });
    let err = listener
        .accept_timeout(Duration::from_millis(300))
        .expect_err("the first link is still held");
    assert_eq!(*err.kind(), ErrorKind::TimedOut, "{err}");
    drop(first);
    let mut second = listener
        .accept_timeout(Duration::from_secs(30))
        .expect("accept b");
    assert_eq!(second.recv_timeout(common::PATIENCE).expect("recv b"), b"b");
    b.finish();
}

/// An `shm:` link served on tokio, with `?liveness=1h` so that only the
/// peer's doorbell can wake a waiting half: messages wait for the
/// receiver, a 100 000-byte echo waits for room in a 4 KiB ring part after
/// part, and the peer's exit ends the stream with `Closed` at once. A lost
/// ring would hang the test, and its watchdog fail it.
#[cfg(feature = "async")]
#[test]
fn async_link_halves_are_woken_by_doorbells() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link =
            Link::connect(&common::with_option(&param("URL"), "timeout=30s")).expect("connect");
        for size in [1usize, 3000, 100_000] {
            // Let the server's recv fall asleep first.
            std::thread::sleep(Duration::from_millis(5));
            let msg = common::payload(size, size as u64);
            link.send(&msg).expect("send");
            std::thread::sleep(Duration::from_millis(5));
            common::assert_same(
                &link.recv_timeout(common::PATIENCE).expect("recv"),
                &msg,
                "echo",
            );
        }
        return;
    }
    let url = format!("{}?size=4KiB&liveness=1h", unique());
    let rt = common::runtime();
    rt.block_on(async {
        let mut listener = ipcx::tokio::AsyncListener::bind(&url).expect("bind");
        let child = t.spawn("client", |c| set_param(c, "URL", &url));
        let mut link = listener.accept().await.expect("accept");
        loop {
            match link.recv().await {
                Ok(m) => link.send(&m).await.expect("echo"),
                Err(e) => {
                    assert_eq!(*e.kind(), ErrorKind::Closed, "{e}");
                    break;
                }
            }
        }
        child.finish();
    });
}
