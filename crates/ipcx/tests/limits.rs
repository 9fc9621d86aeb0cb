//! `?max_conns=`: a listener at its limit refuses new peers at once, counts
//! them, and takes peers again when a connection goes away.

mod common;

use std::time::Duration;

use common::{ChildProcess, Test, param, ready, set_param};
use ipcx::{ErrorKind, Link, Listener};

#[test]
fn listener_refuses_peers_over_max_conns() {
    let t = Test::start();
    if t.child_role().is_some() {
        return client();
    }
    let dir = t.scratch();
    let url = format!("{}?max_conns=2", dir.url("unix", "s.sock"));
    let mut listener = Listener::bind(&url).expect("bind");
    let spawn = |listener: &mut Listener| -> (ChildProcess, Option<Link>) {
        let mut child = t.spawn("client", |c| set_param(c, "URL", &url));
        let link = listener.accept_timeout(Duration::from_secs(30)).ok();
        let _ = child.wait_ready();
        (child, link)
    };

    let (c1, first) = spawn(&mut listener);
    let (c2, second) = spawn(&mut listener);
    assert!(
        first.is_some() && second.is_some(),
        "two peers fit under max_conns=2"
    );
    assert_eq!(listener.connections(), 2);

    let mut third = t.spawn("client", |c| set_param(c, "URL", &url));
    // The listener sees (and refuses) the third peer while it accepts.
    while listener.refused() == 0 {
        match listener.accept_timeout(Duration::from_millis(100)) {
            Err(e) if *e.kind() == ErrorKind::TimedOut => {}
            other => panic!("a third peer must not be accepted: {other:?}"),
        }
    }
    let said = third.wait_ready();
    assert!(
        said.starts_with("refused") && said.contains("max_conns"),
        "third client: {said}"
    );
    assert_eq!(listener.connections(), 2);
    third.finish();

    // One peer leaves: there is room again.
    drop(first);
    c1.finish();
    let (c4, fourth) = spawn(&mut listener);
    assert!(fourth.is_some(), "a peer fits again once one left");
    drop((second, fourth));
    c2.finish();
    c4.finish();
}

/// Connects, waits for the listener's answer, says how it went, and holds
/// the link until the server drops it.
fn client() {
    let connected = Link::connect(&param("URL"))
        .and_then(|mut link| link.wait_connected(Duration::from_secs(30)).map(|()| link));
    match connected {
        Ok(mut link) => {
            ready("connected");
            let _ = link.recv();
        }
        Err(e) => ready(&format!("refused: {e}")),
    }
}

/// A timeout too large for `Instant` means no deadline, everywhere: in the
/// URL (`?timeout=`, `?handshake_timeout=`, `?spin=`) and in calls
/// (`recv_timeout(Duration::MAX)`). Each of these used to panic adding the
/// duration to `Instant::now()`; the listener panicked as soon as a peer
/// connected.
#[test]
fn huge_timeouts_mean_no_deadline() {
    const HUGE: &str = "10000000000000000000s";
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = Link::connect(&param("URL")).expect("connect");
        link.send(b"hello").expect("send");
        assert_eq!(
            link.recv_timeout(Duration::MAX).expect("recv_timeout(MAX)"),
            b"bye"
        );
        return;
    }
    let dir = t.scratch();
    let shm = format!("shm:{}", common::abstract_name());
    for url in [
        dir.url("unix", "s.sock"),
        format!("{shm}?wait=adaptive&spin={HUGE}"),
    ] {
        let url = common::with_option(&url, &format!("timeout={HUGE}"));
        let url = if url.starts_with("unix") {
            common::with_option(&url, &format!("handshake_timeout={HUGE}"))
        } else {
            url
        };
        let mut listener = Listener::bind(&url).expect("bind");
        let mut child = t.spawn("client", |c| set_param(c, "URL", &url));
        let mut link = common::accept(&mut listener, &mut child);
        assert_eq!(
            link.recv_timeout(Duration::MAX).expect("recv_timeout(MAX)"),
            b"hello",
            "{url}"
        );
        link.send(b"bye").expect("send");
        child.finish();
    }
}

/// A FIFO serves one peer at a time: a second connector is refused (after
/// its timeout) instead of writing its hello into the first one's stream;
/// once the first leaves, the next connects.
#[test]
fn fifo_serves_one_peer_at_a_time() {
    let t = Test::start();
    match t.child_role() {
        Some("first") => {
            let mut link = Link::connect(&param("URL")).expect("connect");
            link.send(b"first").expect("send");
            ready("connected");
            let _ = link.recv();
            return;
        }
        Some("second") => {
            let url = common::with_option(&param("URL"), "timeout=300ms");
            match Link::connect(&url) {
                Err(e) if matches!(e.kind(), ErrorKind::InUse { .. }) => ready("refused"),
                other => ready(&format!("unexpected: {:?}", other.map(|_| ()))),
            }
            return;
        }
        Some(_) => {
            let mut link = Link::connect(&param("URL")).expect("connect");
            link.send(b"third").expect("send");
            let _ = link.recv();
            return;
        }
        None => {}
    }
    let dir = t.scratch();
    let url = dir.url("fifo", "one.fifo");
    let mut listener = Listener::bind(&url).expect("bind");
    let mut first = t.spawn("first", |c| set_param(c, "URL", &url));
    let mut link = common::accept(&mut listener, &mut first);
    first.wait_ready();
    assert_eq!(link.recv().expect("recv"), b"first");

    let mut second = t.spawn("second", |c| set_param(c, "URL", &url));
    assert_eq!(second.wait_ready(), "refused");
    second.finish();
    // The first peer's stream is intact: nothing of the second landed in it.
    link.send(b"bye").expect("send");
    drop(link);
    first.finish();

    let mut third = t.spawn("third", |c| set_param(c, "URL", &url));
    let mut link = common::accept(&mut listener, &mut third);
    assert_eq!(link.recv().expect("recv"), b"third");
    drop(link);
    third.finish();
}

/// In a child: opens `n` connections to the socket `PATH` that never say
/// a word, and holds them until killed.
fn silent_crowd(n: usize) {
    let path = param("PATH");
    let _held: Vec<_> = (0..n)
        .map(|_| std::os::unix::net::UnixStream::connect(&path).expect("connect raw"))
        .collect();
    ready("connected");
    std::thread::sleep(Duration::from_secs(120));
}

/// Connections that never say hello (slowloris) hold no place among the
/// served: with `?max_conns=2`, a hundred silent connections from another
/// process neither lock out a client that speaks nor grow without bound
/// (`?max_pending=` keeps the newest few).
#[test]
fn silent_connections_cannot_lock_out_a_client() {
    let t = Test::start();
    match t.child_role() {
        Some("silent") => return silent_crowd(100),
        Some(_) => {
            let mut link = Link::connect(&param("URL")).expect("connect");
            link.wait_connected(Duration::from_secs(30))
                .expect("accepted despite the silent crowd");
            link.send(b"hi").expect("send");
            let _ = link.recv();
            return;
        }
        None => {}
    }
    let dir = t.scratch();
    let path = dir.path("s.sock");
    let url = format!(
        "unix:{}?max_conns=2&max_pending=8&handshake_timeout=1h",
        path.display()
    );
    let mut listener = Listener::bind(&url).expect("bind");
    let mut silent = t.spawn("silent", |c| {
        set_param(c, "PATH", &path.display().to_string())
    });
    silent.wait_ready();
    // The listener meets the silent crowd before the client.
    assert!(matches!(
        listener.accept_timeout(Duration::from_millis(200)),
        Err(e) if *e.kind() == ErrorKind::TimedOut
    ));
    assert_eq!(listener.connections(), 0, "silent peers are not served");
    let mut client = t.spawn("client", |c| set_param(c, "URL", &url));
    let mut link = common::accept(&mut listener, &mut client);
    assert_eq!(link.recv().expect("recv"), b"hi");
    assert_eq!(listener.connections(), 1);
    drop(link);
    client.finish();
    silent.kill();
}

/// `AsyncListener::accept` awaits sockets on the reactor and holds no
/// thread: with tokio's only blocking thread taken, it still meets a
/// crowd of silent connections and then serves the client that speaks.
/// An accept given up (a timeout drops its future) loses nothing.
#[cfg(feature = "async")]
#[test]
fn async_accept_holds_no_thread() {
    let t = Test::start();
    match t.child_role() {
        Some("silent") => return silent_crowd(20),
        Some(_) => {
            let mut link = Link::connect(&param("URL")).expect("connect");
            link.send(b"hi").expect("send");
            assert_eq!(link.recv().expect("recv"), b"bye");
            return;
        }
        None => {}
    }
    let dir = t.scratch();
    let path = dir.path("s.sock");
    let url = format!("unix:{}?handshake_timeout=1h", path.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .expect("a tokio runtime");
    let (release, held) = std::sync::mpsc::channel::<()>();
    let blocker = rt.spawn_blocking(move || held.recv());
    let mut listener = {
        let _entered = rt.enter();
        ipcx::tokio::AsyncListener::bind(&url).expect("bind")
    };
    let mut silent = t.spawn("silent", |c| {
        set_param(c, "PATH", &path.display().to_string())
    });
    silent.wait_ready();
    rt.block_on(async {
        let early = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(
            early.is_err(),
            "an accept with only silent peers, cut short"
        );
    });
    let client = t.spawn("client", |c| set_param(c, "URL", &url));
    rt.block_on(async {
        let mut link = tokio::time::timeout(Duration::from_secs(30), listener.accept())
            .await
            .expect("accepted without a blocking thread")
            .expect("accept");
        assert_eq!(link.recv().await.expect("recv"), b"hi");
        link.send(b"bye").await.expect("send");
    });
    client.finish();
    release.send(()).expect("release the blocking thread");
    rt.block_on(blocker)
        .expect("the blocker")
        .expect("released");
    silent.kill();
}

/// `accept` takes `&self`, as std's listeners do: two threads share one
/// listener and each accepts one of two clients (other processes).
#[test]
fn threads_share_a_listener() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = Link::connect(&param("URL")).expect("connect");
        link.send(b"hi").expect("send");
        let _ = link.recv();
        return;
    }
    let dir = t.scratch();
    let url = dir.url("unix", "shared.sock");
    let listener = Listener::bind(&url).expect("bind");
    let clients: Vec<_> = (0..2)
        .map(|_| t.spawn("client", |c| set_param(c, "URL", &url)))
        .collect();
    std::thread::scope(|s| {
        let accepted: Vec<_> = (0..2)
            .map(|_| {
                let listener = &listener;
                s.spawn(move || {
                    let mut link = listener
                        .accept_timeout(Duration::from_secs(30))
                        .expect("accept");
                    link.recv_timeout(common::PATIENCE).expect("recv")
                })
            })
            .collect();
        for a in accepted {
            assert_eq!(a.join().expect("thread"), b"hi");
        }
    });
    for c in clients {
        c.finish();
    }
}
