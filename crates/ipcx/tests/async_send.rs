//! Every future of the tokio API is `Send`, so it can run under
//! `tokio::spawn` on a multi-threaded runtime: these compile only if it is
//! (a compile check; the link's futures also run once under `tokio::spawn`
//! over a real link, so the check is not vacuous).
//! And an `shm:` accept waits on the reactor, not on a thread.
#![cfg(feature = "async")]

mod common;

use ipcx::tokio::{AsyncEvent, AsyncLink, AsyncListener, AsyncSubscriber};

fn spawnable<T: Send>(_: &T) {}

/// A TCP port nobody listens on (now).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

type Connecting = tokio::task::JoinHandle<ipcx::Result<AsyncLink>>;

/// A task connecting to `url` (waiting up to 30 s), 300 ms after it
/// started: still waiting, unless it found somebody.
async fn connect_waiting(url: &str) -> Connecting {
    let waiting = format!("{url}?timeout=30s");
    let task = tokio::spawn(async move { AsyncLink::connect(&waiting).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    task
}

/// The link `task` connects, within the test's patience.
async fn connected(task: Connecting, url: &str) -> AsyncLink {
    tokio::time::timeout(common::PATIENCE, task)
        .await
        .expect("connected in time")
        .expect("the connect task")
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

#[allow(dead_code)]
async fn every_future_is_send(
    mut link: AsyncLink,
    mut listener: AsyncListener,
    sub: AsyncSubscriber,
    mut event: AsyncEvent,
    client: ipcx::pattern::AsyncClient,
    mut server: ipcx::pattern::AsyncServer,
) {
    let (mut rx, mut tx) = AsyncLink::connect("unix:@x").await.unwrap().split();
    spawnable(&link.recv());
    spawnable(&link.send(b"x"));
    spawnable(&rx.recv());
    spawnable(&tx.send(b"x"));
    let mut buf = Vec::new();
    spawnable(&link.recv_into(&mut buf));
    spawnable(&link.recv_fds());
    spawnable(&link.send_fds(b"x", &[]));
    spawnable(&link.send_with_priority(b"x", 1));
    spawnable(&link.recv_with_priority());
    spawnable(&rx.recv_into(&mut buf));
    spawnable(&rx.recv_fds());
    spawnable(&tx.send_fds(b"x", &[]));
    spawnable(&tx.send_with_priority(b"x", 1));
    spawnable(&listener.accept());
    spawnable(&AsyncLink::connect("unix:@x"));
    spawnable(&AsyncSubscriber::open("shm:x"));
    spawnable(&AsyncEvent::open("x"));
    spawnable(&sub.recv());
    spawnable(&event.wait());
    spawnable(&client.call(b"x"));
    spawnable(&client.call_timeout(b"x", std::time::Duration::from_secs(1)));
    spawnable(&server.serve_typed(|n: u64| async move { Ok::<u64, String>(n) }));
    let typed = ipcx::pattern::AsyncTypedClient::<u64, u64>::connect("unix:@x");
    spawnable(&typed);
    let typed = typed.await.unwrap();
    spawnable(&typed.call(&1));
    spawnable(&typed.call_timeout(&1, std::time::Duration::from_secs(1)));
    spawnable(&ipcx::pattern::AsyncClient::connect("unix:@x"));
    spawnable(&listener.set_state("x"));
    spawnable(&client);
    spawnable(&server.serve(|b: Vec<u8>| async move { Ok(b) }));
    let (rx, tx) = AsyncLink::connect("unix:@x").await.unwrap().split();
    spawnable(&rx.into_stream());
    spawnable(&tx.into_sink::<Vec<u8>>());
    spawnable(&link);
    spawnable(&listener);
    spawnable(&sub);
    spawnable(&event);
}

#[allow(dead_code)]
fn the_kernel_objects_futures_are_send(
    efd: ipcx::tokio::AsyncEventFd,
    mut signals: ipcx::tokio::AsyncSignals,
) {
    spawnable(&efd.wait());
    spawnable(&efd.add(1));
    spawnable(&signals.recv());
    spawnable(&efd);
    spawnable(&signals);
}

#[test]
fn a_link_round_trips_under_tokio_spawn() {
    let _t = common::Test::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let url = format!("unix:@{}", common::abstract_name());
    rt.block_on(async move {
        let mut listener = AsyncListener::bind(&url).expect("bind");
        let client = tokio::spawn({
            let url = url.clone();
            async move {
                let mut link = AsyncLink::connect(&url).await.expect("connect");
                link.send(b"ping").await.expect("send");
                link.recv().await.expect("recv")
            }
        });
        let server = tokio::spawn(async move {
            let mut link = listener.accept().await.expect("accept");
            let msg = link.recv().await.expect("recv");
            link.send(&msg).await.expect("send");
        });
        server.await.expect("server task");
        assert_eq!(client.await.expect("client task"), b"ping");
    });
}

/// `AsyncLink` does what `Link` does: descriptors in both directions of a
/// call, `split`/`unsplit`, and `close` (the peer in another process then
/// sees `Closed`).
#[test]
fn async_links_pass_descriptors_and_close() {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    let t = common::Test::start();
    if t.child_role().is_some() {
        let mut link = common::connect(&common::param("URL"));
        let (mut rd, wr) = std::io::pipe().expect("pipe");
        link.send_fds(b"write here", &[wr.as_fd()])
            .expect("send_fds");
        drop(wr);
        let mut got = String::new();
        rd.read_to_string(&mut got)
            .expect("read what the parent wrote");
        assert_eq!(got, "ok");
        let end = link.recv_timeout(common::PATIENCE).expect_err("closed");
        assert!(end.is_closed(), "{end}");
        return;
    }
    let dir = t.scratch();
    let url = dir.url("unix", "a.sock");
    let mut listener = ipcx::Listener::bind(&url).expect("bind");
    let mut child = t.spawn("peer", |c| common::set_param(c, "URL", &url));
    let link = common::accept(&mut listener, &mut child);
    common::runtime().block_on(async move {
        let (rx, tx) = AsyncLink::from_link(link).expect("from_link").split();
        let mut link = AsyncLink::unsplit(rx, tx);
        let (msg, mut fds) = link.recv_fds().await.expect("recv_fds");
        assert_eq!(msg, b"write here");
        let mut file = std::fs::File::from(fds.pop().expect("one descriptor"));
        file.write_all(b"ok").expect("write through it");
        drop(file);
        link.close();
    });
    child.finish();
}

/// Accepts cut short again and again (each future dropped after 30 ms)
/// still get the peer another process connected.
#[test]
fn a_dropped_accept_loses_no_peer() {
    let t = common::Test::start();
    if t.child_role().is_some() {
        // Late, so that several accepts were dropped before.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let mut link = common::connect(&common::param("URL"));
        link.send(b"ping").expect("send");
        assert_eq!(link.recv().expect("reply"), b"pong");
        return;
    }
    let url = format!("shm:{}", common::abstract_name());
    common::runtime().block_on(async {
        let mut listener = AsyncListener::bind(&url).expect("bind");
        let child = t.spawn("peer", |c| common::set_param(c, "URL", &url));
        let started = std::time::Instant::now();
        let mut link = loop {
            assert!(started.elapsed() < common::PATIENCE, "no peer accepted");
            let short = std::time::Duration::from_millis(30);
            if let Ok(got) = tokio::time::timeout(short, listener.accept()).await {
                break got.expect("accept");
            }
        };
        assert_eq!(link.recv().await.expect("recv"), b"ping");
        link.send(b"pong").await.expect("send");
        child.finish();
    });
}

/// An async `shm:` accept awaits the doorbell its connector rings, on
/// tokio's reactor: no thread of the blocking pool waits, neither for a
/// first connector nor while the last peer's link is still here.
/// Connectors in other processes, one after the other. With
/// `?liveness=1h` the listener does not look unless rung.
#[test]
fn an_async_shm_accept_holds_no_thread_while_it_waits() {
    let t = common::Test::start();
    if t.child_role().is_some() {
        let mut link = common::connect(&common::param("URL"));
        link.send(b"ping").expect("send");
        assert_eq!(link.recv().expect("reply"), b"pong");
        return;
    }
    const NAME: &str = "ipcx-shm-acpt";
    let url = format!("shm:{}?liveness=1h", common::abstract_name());
    let short = std::time::Duration::from_millis(300);
    common::named_runtime(NAME).block_on(async {
        let mut listener = AsyncListener::bind(&url).expect("bind");
        let waited = tokio::time::timeout(short, listener.accept()).await;
        assert!(waited.is_err(), "no connector yet");
        for _ in 0..2 {
            let child = t.spawn("peer", |c| common::set_param(c, "URL", &url));
            let mut link = tokio::time::timeout(common::PATIENCE, listener.accept())
                .await
                .expect("accepted in time")
                .expect("accept");
            assert_eq!(link.recv().await.expect("recv"), b"ping");
            link.send(b"pong").await.expect("send");
            child.finish();
            // One peer at a time: this link still holds the endpoint.
            let waited = tokio::time::timeout(short, listener.accept()).await;
            assert!(waited.is_err(), "accepted beside a live link");
            drop(link);
        }
        // Idle pool threads live 10 s: one that ran would still be here.
        assert_eq!(common::threads_named(NAME), 0, "a blocking-pool thread ran");
    });
}

/// An async socket or `shm:` connect waits for its listener on the
/// reactor: while nobody listens (no socket file, an abstract name nobody
/// bound, a refused TCP port, no segment) it holds no blocking-pool
/// thread, and once a listener in another process binds, it connects and
/// talks.
#[test]
fn an_async_connect_waits_for_its_listener_without_a_thread() {
    let t = common::Test::start();
    if t.child_role().is_some() {
        let listener = ipcx::Listener::bind(&common::param("URL")).expect("bind");
        let mut link = listener.accept().expect("accept");
        assert_eq!(link.recv().expect("recv"), b"hi");
        link.send(b"back").expect("send");
        return;
    }
    const NAME: &str = "ipcx-sock-conn";
    let dir = t.scratch();
    let port = free_port();
    let urls = [
        dir.url("unix", "later.sock"),
        format!("unixseq:@{}", common::abstract_name()),
        format!("tcp://127.0.0.1:{port}"),
        format!("shm:{}", common::abstract_name()),
    ];
    let rt = common::named_runtime(NAME);
    for url in urls {
        rt.block_on(async {
            let connect = connect_waiting(&url).await;
            assert!(!connect.is_finished(), "{url}: connected to nobody");
            let child = t.spawn("listener", |c| common::set_param(c, "URL", &url));
            let mut link = connected(connect, &url).await;
            link.send(b"hi").await.expect("send");
            assert_eq!(link.recv().await.expect("recv"), b"back");
            child.finish();
        });
    }
    // Idle pool threads live 10 s: one that ran would still be here.
    assert_eq!(common::threads_named(NAME), 0, "a blocking-pool thread ran");
}

/// An async connect that cannot reach anybody fails as the blocking one
/// does: the same kind and text for a directory that does not exist, for
/// a file at the path that nothing can bind (at once), for a symlink, for
/// a TCP port nobody listens on with no time to wait, and for an `shm:`
/// segment that never appears.
#[test]
fn an_async_connect_fails_as_the_blocking_one() {
    let t = common::Test::start();
    let dir = t.scratch();
    let port = free_port();
    std::fs::write(dir.path("plain"), b"not a socket").expect("a plain file");
    std::os::unix::fs::symlink(dir.path("plain"), dir.path("link")).expect("a symlink");
    let urls = [
        format!("{}?timeout=100ms", dir.url("unix", "no/such/dir.sock")),
        dir.url("unix", "plain"),
        dir.url("unixseq", "link"),
        format!("tcp://127.0.0.1:{port}?timeout=0s"),
        format!("shm:{}?timeout=100ms", common::abstract_name()),
    ];
    let rt = common::runtime();
    for url in urls {
        let blocking = ipcx::Link::connect(&url).expect_err("nobody there");
        let awaited = rt
            .block_on(AsyncLink::connect(&url))
            .expect_err("nobody there");
        assert_eq!(awaited.kind(), blocking.kind(), "{url}");
        assert_eq!(awaited.to_string(), blocking.to_string(), "{url}");
        assert_eq!(
            awaited.os_error().map(ToString::to_string),
            blocking.os_error().map(ToString::to_string),
            "{url}"
        );
    }
}

/// A host name (not an IP address) is resolved off the runtime's threads
/// and every address it has is tried: `localhost` may give `::1` first,
/// where nobody listens. And `?timeout=0s` connects to a listener that is
/// there.
#[test]
fn an_async_connect_resolves_a_host_name() {
    let _t = common::Test::start();
    let rt = common::runtime();
    rt.block_on(async {
        let mut listener = AsyncListener::bind("tcp://127.0.0.1:0").expect("bind");
        let url = listener
            .endpoint()
            .to_string()
            .replace("127.0.0.1", "localhost");
        let (client, server) = tokio::join!(AsyncLink::connect(&url), listener.accept());
        let (mut client, mut server) = (client.expect("connect"), server.expect("accept"));
        client.send(b"by name").await.expect("send");
        assert_eq!(server.recv().await.expect("recv"), b"by name");
        // With no time to wait, a listener that is there is still reached
        // (as the blocking connect's last look reaches it).
        let at_once = format!("{}?timeout=0s", listener.endpoint());
        let (client, server) = tokio::join!(AsyncLink::connect(&at_once), listener.accept());
        let (mut client, mut server) = (client.expect("connect"), server.expect("accept"));
        client.send(b"at once").await.expect("send");
        assert_eq!(server.recv().await.expect("recv"), b"at once");
    });
}

/// The message of the lingering test: 1 MiB, more than loopback takes in
/// flight before the listener reads.
fn kept() -> Vec<u8> {
    (0..1u32 << 20).map(|i| (i % 251) as u8).collect()
}

/// An `AsyncLink` that sent and is dropped before its listener said hello
/// lingers for the hello on the reactor (no blocking-pool thread), so TCP
/// does not reset away what it sent: a listener in another process that
/// accepts half a second later still gets the message.
#[test]
fn a_dropped_async_link_lingers_for_the_hello_on_the_reactor() {
    let t = common::Test::start();
    if t.child_role().is_some() {
        let listener = ipcx::Listener::bind(&common::param("URL")).expect("bind");
        common::ready("bound");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut link = listener.accept().expect("accept");
        let got = link.recv().expect("what the dropped link sent");
        assert!(got == kept(), "{} bytes, not what was sent", got.len());
        return;
    }
    const NAME: &str = "ipcx-linger";
    let port = free_port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mut child = t.spawn("late listener", |c| common::set_param(c, "URL", &url));
    child.wait_ready();
    let rt = common::named_runtime(NAME);
    rt.block_on(async {
        let mut link = AsyncLink::connect(&url).await.expect("connect");
        link.send(&kept()).await.expect("send");
        drop(link);
        // The runtime turns (and the lingering task with it) until the
        // listener has read the message and left.
        let until = std::time::Instant::now() + common::PATIENCE;
        while child.exited().is_none() && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    child.finish();
    assert_eq!(common::threads_named(NAME), 0, "a blocking-pool thread ran");
}

/// An async `shm:` connect to an endpoint that has a peer (a blocking link
/// of this process) waits on a timer, with no blocking-pool thread, and
/// takes the endpoint once that peer leaves (the listener, in another
/// process, serves one at a time).
#[test]
fn an_async_shm_connect_waits_for_a_busy_endpoint_without_a_thread() {
    let t = common::Test::start();
    if t.child_role().is_some() {
        let listener = ipcx::Listener::bind(&common::param("URL")).expect("bind");
        common::ready("bound");
        for _ in 0..2 {
            let mut link = listener.accept().expect("accept");
            let msg = link.recv().expect("recv");
            link.send(&msg).expect("echo");
            let end = link.recv().expect_err("the peer leaves");
            assert!(end.is_closed(), "{end}");
        }
        return;
    }
    const NAME: &str = "ipcx-shm-busy";
    let url = format!("shm:{}", common::abstract_name());
    let mut child = t.spawn("listener", |c| common::set_param(c, "URL", &url));
    child.wait_ready();
    let mut first = common::connect(&url);
    first.send(b"one").expect("send");
    assert_eq!(first.recv().expect("echo"), b"one");
    let rt = common::named_runtime(NAME);
    rt.block_on(async {
        let second = connect_waiting(&url).await;
        assert!(!second.is_finished(), "connected beside a live peer");
        drop(first);
        let mut second = connected(second, &url).await;
        second.send(b"two").await.expect("send");
        assert_eq!(second.recv().await.expect("echo"), b"two");
    });
    child.finish();
    assert_eq!(common::threads_named(NAME), 0, "a blocking-pool thread ran");
}

/// An async event's open waits on a timer for an event that another
/// process makes later (no thread of the blocking pool), and opens it.
#[test]
fn an_async_event_open_waits_without_a_thread() {
    let t = common::Test::start();
    if t.child_role().is_some() {
        let name = common::param("NAME");
        std::thread::sleep(std::time::Duration::from_millis(300));
        let event = ipcx::sync::Event::create(&name, ipcx::sync::EventMode::Auto).expect("create");
        // The parent sets it once it has it open.
        assert!(
            event.wait_timeout(common::PATIENCE).expect("wait"),
            "never set"
        );
        return;
    }
    const NAME: &str = "ipcx-event-open";
    let name = common::abstract_name();
    let child = t.spawn("maker", |c| common::set_param(c, "NAME", &name));
    let rt = common::named_runtime(NAME);
    rt.block_on(async {
        let event = AsyncEvent::open(&format!("shm:{name}?timeout=30s"))
            .await
            .expect("open");
        event.get_ref().set();
    });
    child.finish();
    assert_eq!(common::threads_named(NAME), 0, "a blocking-pool thread ran");
}

/// Async opens that find nothing fail as the blocking ones do.
#[test]
fn async_opens_fail_as_the_blocking_ones() {
    let _t = common::Test::start();
    let rt = common::runtime();
    let channel = format!("shm:{}?timeout=100ms", common::abstract_name());
    let blocking = ipcx::shm::Subscriber::open(&channel).expect_err("no channel");
    let awaited = rt
        .block_on(AsyncSubscriber::open(&channel))
        .expect_err("no channel");
    assert_eq!(awaited.kind(), blocking.kind());
    assert_eq!(awaited.to_string(), blocking.to_string());
    let event = format!("shm:{}?timeout=100ms", common::abstract_name());
    let blocking = ipcx::sync::Event::open(&event).expect_err("no event");
    let awaited = rt.block_on(AsyncEvent::open(&event)).expect_err("no event");
    assert_eq!(awaited.kind(), blocking.kind());
    assert_eq!(awaited.to_string(), blocking.to_string());
}
