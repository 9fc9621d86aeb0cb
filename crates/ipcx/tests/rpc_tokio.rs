//! Request/reply on tokio (`ipcx::pattern::{AsyncServer, AsyncClient}`)
//! between processes: the handlers of one connection run at once (one
//! waits for a later call to release it); 1000 calls from tasks each get
//! their own answer; a panic and an error are error replies; a timed-out
//! or cancelled call's late reply is dropped and counted; a dying server
//! fails the calls waiting on it; the blocking and tokio ends call each
//! other; typed services on tokio.
#![cfg(feature = "async")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Test, param, ready, runtime};
use ipcx::ErrorKind;
use ipcx::pattern::{AsyncClient, AsyncServer, AsyncTypedClient, Client, TypedClient};

const PATIENCE: Duration = Duration::from_secs(60);

/// What the test server answers to other requests: the request reversed.
fn reversed(req: &[u8]) -> Vec<u8> {
    req.iter().rev().copied().collect()
}

/// In a child: an async server whose `wait` calls wait until a `release`
/// call comes (on any connection), whose `boom` panics (`sync-boom`
/// before its future is made), `err` fails, `hang` never answers, and
/// anything else is answered reversed.
fn waiting_server() {
    runtime().block_on(async {
        let mut server = AsyncServer::bind(&param("URL")).expect("bind");
        let release = Arc::new(tokio::sync::Notify::new());
        let waiting = Arc::new(AtomicUsize::new(0));
        ready("bound");
        server
            .serve(move |req: Vec<u8>| {
                if req == b"sync-boom" {
                    panic!("sync boom");
                }
                let (release, waiting) = (release.clone(), waiting.clone());
                async move {
                    match &req[..] {
                        b"wait" => {
                            let released = release.notified();
                            waiting.fetch_add(1, Ordering::SeqCst);
                            released.await;
                            Ok(b"released".to_vec())
                        }
                        b"release" => match waiting.swap(0, Ordering::SeqCst) {
                            0 => Err("nobody waits".into()),
                            n => {
                                release.notify_waiters();
                                Ok(format!("released {n}").into_bytes())
                            }
                        },
                        b"boom" => panic!("boom"),
                        b"err" => Err("no such thing".into()),
                        b"hang" => std::future::pending().await,
                        _ => Ok(reversed(&req)),
                    }
                }
            })
            .await
            .expect("serve");
    });
}

/// Calls `release` until a waiting call was released.
async fn release(client: &AsyncClient) {
    let give_up = std::time::Instant::now() + PATIENCE;
    loop {
        match client.call(b"release").await {
            Ok(r) => return assert_eq!(r, b"released 1"),
            Err(e) if matches!(e.kind(), ErrorKind::Remote(w) if w == "nobody waits") => {}
            Err(e) => panic!("release: {e}"),
        }
        assert!(std::time::Instant::now() < give_up, "nobody waited");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn remote(e: &ipcx::Error) -> &str {
    match e.kind() {
        ErrorKind::Remote(why) => why,
        _ => panic!("not an error reply: {e}"),
    }
}

#[test]
fn async_handlers_run_at_once_and_failures_are_replies() {
    let t = Test::start();
    if t.child_role().is_some() {
        return waiting_server();
    }
    let dir = t.scratch();
    let url = dir.url("unix", "arpc.sock");
    let mut server = t.spawn("server", |c| common::set_param(c, "URL", &url));
    assert_eq!(server.wait_ready(), "bound");
    runtime().block_on(async {
        let client = Arc::new(AsyncClient::connect(&url).await.expect("connect"));
        // A call whose handler waits for a later call on the same link:
        // with one handler at a time, the release is never read.
        let c = client.clone();
        let waiter = tokio::spawn(async move { c.call(b"wait").await });
        release(&client).await;
        assert_eq!(waiter.await.expect("task").expect("wait"), b"released");

        // 1000 calls in flight from tasks, each its own answer.
        let calls: Vec<_> = (0..1000)
            .map(|i| {
                let c = client.clone();
                tokio::spawn(async move {
                    let req = format!("call number {i}").into_bytes();
                    assert_eq!(c.call(&req).await.expect("call"), reversed(&req));
                })
            })
            .collect();
        for c in calls {
            c.await.expect("a calling task");
        }

        // Failures of a handler are error replies; the server goes on.
        let boom = client.call(b"boom").await.expect_err("a panic");
        assert!(
            remote(&boom).contains("the handler panicked: boom"),
            "{boom}"
        );
        let boom = client.call(b"sync-boom").await.expect_err("a panic");
        assert!(
            remote(&boom).contains("the handler panicked: sync boom"),
            "{boom}"
        );
        let err = client.call(b"err").await.expect_err("an error");
        assert_eq!(remote(&err), "no such thing");
        assert_eq!(client.call(b"abc").await.expect("after"), b"cba");

        // A call that times out stops waiting.
        let hang = client
            .call_timeout(b"hang", Duration::from_millis(100))
            .await
            .expect_err("no answer");
        assert_eq!(*hang.kind(), ErrorKind::TimedOut);
        assert_eq!(client.in_flight(), 0);
        // A call that gave up: its reply comes later and is dropped, counted.
        let late = client
            .call_timeout(b"wait", Duration::from_millis(100))
            .await
            .expect_err("gave up");
        assert_eq!(*late.kind(), ErrorKind::TimedOut);
        release(&client).await;
        let give_up = std::time::Instant::now() + PATIENCE;
        while client.unmatched() != 1 {
            assert!(
                std::time::Instant::now() < give_up,
                "the late reply never came"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // A blocking client calls the async server.
        let u = url.clone();
        let blocking = tokio::task::spawn_blocking(move || {
            Client::connect(&u)
                .expect("connect")
                .call(b"xyz")
                .expect("call")
        });
        assert_eq!(blocking.await.expect("task"), b"zyx");

        // The server dies: a call waiting on it fails at once, not at its
        // timeout.
        let c = client.clone();
        let pending = tokio::spawn(async move { c.call_timeout(b"hang", PATIENCE).await });
        while client.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.kill();
        let died = pending.await.expect("task").expect_err("the server died");
        assert!(died.is_closed(), "{died}");
        let after = client.call(b"abc").await.expect_err("the link is gone");
        assert!(after.is_closed(), "{after}");
    });
}

/// In a child: a typed service on tokio, `(a, b)` → `a + b`.
fn adding_server() {
    runtime().block_on(async {
        let mut server = AsyncServer::bind(&param("URL")).expect("bind");
        ready("bound");
        server
            .serve_typed(|(a, b): (u64, u64)| async move {
                tokio::task::yield_now().await;
                a.checked_add(b).ok_or_else(|| "overflow".to_string())
            })
            .await
            .expect("serve");
    });
}

#[test]
fn typed_services_on_tokio() {
    let t = Test::start();
    if t.child_role().is_some() {
        return adding_server();
    }
    let dir = t.scratch();
    let url = dir.url("unix", "add.sock");
    let mut server = t.spawn("server", |c| common::set_param(c, "URL", &url));
    assert_eq!(server.wait_ready(), "bound");
    runtime().block_on(async {
        let add = AsyncTypedClient::<(u64, u64), u64>::connect(&url)
            .await
            .expect("connect");
        assert_eq!(add.call(&(2, 3)).await.expect("call"), 5);
        let over = add.call(&(u64::MAX, 1)).await.expect_err("overflow");
        assert_eq!(remote(&over), "overflow");
        // Other types are refused at connect, naming both.
        let wrong = AsyncTypedClient::<(u32, u32), u64>::connect(&url)
            .await
            .expect_err("a mismatch");
        match wrong.kind() {
            ErrorKind::Handshake(why) => assert!(
                why.contains("(u32, u32)") && why.contains("(u64, u64)"),
                "{why}"
            ),
            _ => panic!("not a handshake error: {wrong}"),
        }
        // The blocking typed client calls it too.
        let u = url.clone();
        let sum = tokio::task::spawn_blocking(move || {
            let add = TypedClient::<(u64, u64), u64>::connect(&u).expect("connect");
            add.call(&(40, 2)).expect("call")
        });
        assert_eq!(sum.await.expect("task"), 42);
    });
    server.kill();
}
