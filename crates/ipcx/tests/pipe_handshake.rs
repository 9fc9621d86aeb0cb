//! The handshake on pipes and FIFOs waits without `poll(2)` (a polled pipe
//! makes every later write wake its queue): a FIFO listener waits for a
//! writer's bytes on an inotify watch and reads the hello without
//! blocking. What must still hold: a peer that leaves in the middle of its
//! hello is seen at once as gone, not after the handshake timeout.

mod common;

use std::io::Write;

use common::{Test, param, set_param};
use ipcx::{ErrorKind, FrameError, Listener};

/// A raw FIFO connector's ends: the reply FIFO opened for reading (kept
/// open, so the listener can answer), the request FIFO for writing; and
/// the hello frame it has to write.
fn raw_connector(path: &str) -> (std::fs::File, std::fs::File, Vec<u8>) {
    use ipcx::wire::{Hello, KIND_HELLO};
    use std::os::unix::fs::OpenOptionsExt;
    // Without waiting for a writer, as a connector does.
    let reply = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(format!("{path}.reply"))
        .expect("open the reply FIFO");
    let request = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the request FIFO");
    let hello = common::raw_frame(KIND_HELLO, &Hello::new(false, 1 << 20).encode());
    (reply, request, hello)
}

/// A raw FIFO connector that writes the first 10 bytes of a hello, a
/// moment later closes the request FIFO, and waits to be killed.
fn half_a_hello(path: &str) {
    let (reply, mut request, hello) = raw_connector(path);
    request.write_all(&hello[..10]).expect("write half a hello");
    // Most likely read by now: the end then comes to a listener that had
    // drained the FIFO (either order must end in the same error).
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(request);
    common::ready("gone");
    std::thread::sleep(std::time::Duration::from_secs(60));
    drop(reply);
}

#[test]
fn a_fifo_peer_that_leaves_mid_hello_is_seen_gone_at_once() {
    let t = Test::start();
    if t.child_role().is_some() {
        return half_a_hello(&param("PATH"));
    }
    let dir = t.scratch();
    let path = dir.path("f");
    // Waiting out the handshake timeout instead would end in another error
    // ("no hello in time").
    let url = format!("fifo:{}?handshake_timeout=10s", path.display());
    let listener = Listener::bind(&url).unwrap_or_else(|e| panic!("bind {url}: {e}"));
    let mut child = t.spawn("half", |c| {
        set_param(c, "PATH", &path.display().to_string())
    });
    let err = listener
        .accept_timeout(std::time::Duration::from_secs(30))
        .expect_err("a peer that left mid-hello");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Frame(FrameError::Truncated {
                got: 10,
                expected: 20,
                ..
            })
        ),
        "{err}"
    );
    child.wait_ready();
    child.kill();
}

/// An async FIFO accept waits for a writer on tokio's reactor (the inotify
/// watch), holding no thread of the blocking pool, and takes a connector
/// in another process once it writes.
#[cfg(feature = "async")]
#[test]
fn an_async_fifo_accept_holds_no_thread_while_it_waits() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = common::connect(&param("URL"));
        link.send(b"through the FIFO").expect("send");
        assert_eq!(link.recv().expect("reply"), b"seen");
        return;
    }
    const NAME: &str = "ipcx-fifo-acpt";
    let threads = || common::threads_named(NAME);
    let rt = common::named_runtime(NAME);
    let dir = t.scratch();
    let url = dir.url("fifo", "f");
    rt.block_on(async {
        let mut listener = ipcx::tokio::AsyncListener::bind(&url).expect("bind");
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(300), listener.accept()).await;
        assert!(waited.is_err(), "no connector yet");
        assert_eq!(threads(), 0, "no blocking-pool thread waited");
        let child = t.spawn("connector", |c| set_param(c, "URL", &url));
        let mut link = listener.accept().await.expect("accept");
        assert_eq!(link.recv().await.expect("recv"), b"through the FIFO");
        link.send(b"seen").await.expect("send");
        child.finish();
        // The next connector, once this link is gone (one peer at a time).
        let child = t.spawn("connector", |c| set_param(c, "URL", &url));
        let next = listener.accept();
        drop(link);
        let mut link = next.await.expect("accept the next");
        assert_eq!(link.recv().await.expect("recv"), b"through the FIFO");
        link.send(b"seen").await.expect("send");
        child.finish();
    });
}

/// A raw FIFO connector whose hello comes in two parts 300 ms apart,
/// followed by one message, "ping"; then it waits to be killed.
fn a_slow_hello(path: &str) {
    let (reply, mut request, hello) = raw_connector(path);
    request.write_all(&hello[..10]).expect("write half a hello");
    std::thread::sleep(std::time::Duration::from_millis(300));
    request.write_all(&hello[10..]).expect("write the rest");
    request
        .write_all(&common::raw_frame(ipcx::wire::KIND_DATA, b"ping"))
        .expect("write a message");
    std::thread::sleep(std::time::Duration::from_secs(60));
    drop(reply);
}

/// An async FIFO accept reads the hello on tokio's blocking pool; accepts
/// dropped while it runs (one every 30 ms, through a hello that takes
/// 300 ms) lose nothing: a later accept takes the link it brings.
#[cfg(feature = "async")]
#[test]
fn accepts_dropped_during_a_fifo_hello_lose_no_peer() {
    let t = Test::start();
    if t.child_role().is_some() {
        return a_slow_hello(&param("PATH"));
    }
    let dir = t.scratch();
    let path = dir.path("f");
    let url = format!("fifo:{}?handshake_timeout=10s", path.display());
    common::runtime().block_on(async {
        let mut listener = ipcx::tokio::AsyncListener::bind(&url).expect("bind");
        let mut child = t.spawn("slow", |c| {
            set_param(c, "PATH", &path.display().to_string())
        });
        let short = std::time::Duration::from_millis(30);
        let started = std::time::Instant::now();
        let mut link = loop {
            assert!(started.elapsed() < common::PATIENCE, "no peer accepted");
            if let Ok(got) = tokio::time::timeout(short, listener.accept()).await {
                break got.expect("accept");
            }
        };
        assert_eq!(link.recv().await.expect("recv"), b"ping");
        child.kill();
    });
}

/// A one-way FIFO (`?duplex=false`) goes from its connector to its
/// listener: the listener's end refuses to send and the connector's to
/// receive, with `OneWay` naming the way it goes, and the link still
/// carries what it can.
#[test]
fn a_one_way_fifo_refuses_the_other_way() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = common::connect(&param("URL"));
        let err = link.recv().expect_err("a connector's end only sends");
        assert!(
            matches!(err.kind(), ErrorKind::OneWay(why) if why.contains("only sends")),
            "{err}"
        );
        link.send(b"one way").expect("send");
        return;
    }
    let dir = t.scratch();
    let url = format!("{}?duplex=false", dir.url("fifo", "oneway"));
    let mut listener = Listener::bind(&url).expect("bind");
    let mut child = t.spawn("connector", |c| set_param(c, "URL", &url));
    let mut link = common::accept(&mut listener, &mut child);
    let err = link
        .send(b"back")
        .expect_err("a listener's end only receives");
    assert!(
        matches!(err.kind(), ErrorKind::OneWay(why) if why.contains("only receives")),
        "{err}"
    );
    assert_eq!(link.recv().expect("recv"), b"one way");
    child.finish();
}
