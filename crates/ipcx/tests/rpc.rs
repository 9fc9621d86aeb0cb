//! Request/reply (`ipcx::pattern::{Client, Server}`) between processes:
//! 10 000 concurrent calls from four client processes each get their own
//! answer; an error reply differs from a failed link; a handler that
//! panics answers with an error and the server goes on; a call to a
//! server that hangs times out and its late reply is dropped and counted;
//! a call to a server that dies fails at once.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::ErrorKind;
use ipcx::pattern::{Client, Server, TypedClient};

/// What the test servers answer: the request reversed, then its length.
fn answer_to(req: &[u8]) -> Vec<u8> {
    let mut a: Vec<u8> = req.iter().rev().copied().collect();
    a.extend_from_slice(&(req.len() as u32).to_le_bytes());
    a
}

/// In a child: one client shared by four threads, each making `CALLS`
/// calls with requests of its own, every answer checked.
fn four_callers() {
    let client = Arc::new(Client::connect(&param("URL")).expect("connect"));
    let me: u32 = param("ME").parse().expect("a number");
    let calls: u32 = param("CALLS").parse().expect("a number");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in 0..calls {
                    let req = format!("process {me} thread {t} call {i}").into_bytes();
                    let got = client.call(&req).expect("call");
                    assert_eq!(got, answer_to(&req), "the answer to {req:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a calling thread");
    }
    assert_eq!(client.unmatched(), 0);
}

/// 10 000 calls from four processes of four threads each, in flight
/// together, answered by a pool of handlers (out of order): each gets its
/// own answer.
#[test]
fn ten_thousand_calls_from_four_processes() {
    let t = Test::start();
    if t.child_role().is_some() {
        return four_callers();
    }
    let dir = t.scratch();
    let server = Arc::new(Server::bind(&dir.url("unix", "rpc.sock")).expect("bind"));
    let url = server.listener().endpoint().url().to_string();
    let s = server.clone();
    std::thread::spawn(move || s.serve_pool(4, |req| Ok(answer_to(req))));
    let children: Vec<_> = (0..4)
        .map(|me| {
            t.spawn("callers", |c| {
                set_param(
                    set_param(set_param(c, "URL", &url), "ME", &me.to_string()),
                    "CALLS",
                    "625",
                )
            })
        })
        .collect();
    for c in children {
        c.finish();
    }
    assert_eq!(server.served(), 10_000);
}

/// In a child: serves calls on `URL` with a handler that answers, fails,
/// panics or sleeps as the request says.
fn moody_server() {
    let server = Server::bind(&param("URL")).expect("bind");
    ready("bound");
    let _ = server.serve(|req| match req {
        b"fail" => Err("no such order".into()),
        b"panic" => panic!("the handler broke"),
        b"sleep" => {
            std::thread::sleep(Duration::from_millis(500));
            Ok(b"late".to_vec())
        }
        _ => Ok(answer_to(req)),
    });
}

/// An error the handler returns is `Remote` with its text; a panic is an
/// error reply too, and the server answers the next call; a call that
/// times out gives up its reply, which is dropped and counted when it
/// comes; a server that dies fails the call in flight at once.
#[test]
fn errors_panics_timeouts_and_a_dying_server() {
    let t = Test::start();
    if t.child_role().is_some() {
        return moody_server();
    }
    let dir = t.scratch();
    let url = dir.url("unix", "moody.sock");
    let mut child = t.spawn("server", |c| set_param(c, "URL", &url));
    assert_eq!(child.wait_ready(), "bound");
    let client = Client::connect(&url).expect("connect");
    assert_eq!(client.call(b"hello").expect("call"), answer_to(b"hello"));

    let err = client.call(b"fail").expect_err("an error reply");
    assert_eq!(
        *err.kind(),
        ErrorKind::Remote("no such order".into()),
        "{err}"
    );
    let err = client.call(b"panic").expect_err("a panic");
    assert!(
        matches!(err.kind(), ErrorKind::Remote(why) if why.contains("the handler broke")),
        "{err}"
    );
    assert_eq!(
        client.call(b"again").expect("after the panic"),
        answer_to(b"again")
    );

    let err = client
        .call_timeout(b"sleep", Duration::from_millis(100))
        .expect_err("a call that takes too long");
    assert_eq!(*err.kind(), ErrorKind::TimedOut, "{err}");
    // The next call waits behind the slow one; its late reply is dropped.
    assert_eq!(
        client.call(b"next").expect("the next call"),
        answer_to(b"next")
    );
    assert_eq!(client.unmatched(), 1, "the late reply was counted");

    // The server dies while a call waits for it: an error, not a hang.
    let caller = std::thread::spawn(move || client.call(b"sleep"));
    std::thread::sleep(Duration::from_millis(100));
    child.kill();
    let err = caller
        .join()
        .expect("the caller")
        .expect_err("a call to a dead server");
    assert_eq!(*err.kind(), ErrorKind::Closed, "{err}");
}

/// A typed service: `(u64, u64) -> u64` across processes; a client of
/// another request type is refused at connect, naming both.
#[test]
fn a_typed_service() {
    let t = Test::start();
    if t.child_role().is_some() {
        let server = Server::bind(&param("URL")).expect("bind");
        ready("bound");
        let _ = server.serve_typed(|(a, b): (u64, u64)| {
            a.checked_add(b).ok_or_else(|| "overflow".to_string())
        });
        return;
    }
    let dir = t.scratch();
    let url = dir.url("unix", "sum.sock");
    let mut child = t.spawn("server", |c| set_param(c, "URL", &url));
    assert_eq!(child.wait_ready(), "bound");
    let sum = TypedClient::<(u64, u64), u64>::connect(&url).expect("connect");
    assert_eq!(sum.call(&(2, 40)).expect("call"), 42);
    let err = sum.call(&(u64::MAX, 1)).expect_err("an overflow");
    assert_eq!(*err.kind(), ErrorKind::Remote("overflow".into()));
    let err = TypedClient::<u32, u64>::connect(&url).expect_err("another request type");
    assert!(
        matches!(err.kind(), ErrorKind::Handshake(why) if why.contains("`rpc u32` v0") && why.contains("`rpc (u64, u64)` v0")),
        "{err}"
    );
    child.kill();
}

/// How long the hostile client's thread holds its link.
const PATIENCE_HOSTILE: Duration = Duration::from_secs(60);

/// A client that sends calls and never reads the replies cannot tie up a
/// pooled server: its replies wait for its own writer (which shuts it
/// once one waits too long), never a pool thread, so another client's
/// call is answered without waiting on the hostile one. The bound is not
/// a speed claim: a pool thread held by the stuck reply took the 5 s a
/// reply may wait, and 4 s tells the two apart with room to spare.
#[test]
fn a_client_that_never_reads_cannot_hold_the_pool() {
    let t = Test::start();
    if t.child_role().is_some() {
        let server = Server::bind(&param("URL")).expect("bind");
        ready("bound");
        let _ = server.serve_pool(2, |req| Ok(req.to_vec()));
        return;
    }
    let dir = t.scratch();
    let url = dir.url("unix", "pool.sock");
    let mut child = t.spawn("server", |c| set_param(c, "URL", &url));
    assert_eq!(child.wait_ready(), "bound");
    // The hostile client: the server's schema mirrored back, then calls
    // (kind 1, id, body) until its socket is full; it reads nothing.
    let mut hostile = ipcx::Link::connect(&url).expect("connect");
    let mut schema = hostile
        .recv_timeout(Duration::from_secs(30))
        .expect("the server's schema");
    let mut at = 8;
    while at < schema.len() {
        schema[at] ^= 1;
        let len = u16::from_le_bytes([schema[at + 5], schema[at + 6]]) as usize;
        at += 7 + len;
    }
    hostile.send(&schema).expect("send a schema");
    // More calls than the replies' socket buffers and the pool's queue
    // hold: the sender ends up blocked too, on a thread of its own.
    std::thread::spawn(move || {
        let mut call = vec![1u8; 9 + (64 << 10)];
        for id in 0..400u64 {
            call[1..9].copy_from_slice(&id.to_le_bytes());
            if hostile.send(&call).is_err() {
                return;
            }
        }
        std::thread::sleep(PATIENCE_HOSTILE);
    });
    std::thread::sleep(Duration::from_millis(500));
    let client = Client::connect(&url).expect("connect");
    let got = client
        .call_timeout(b"still served", Duration::from_secs(4))
        .expect("a call while the hostile client holds its replies");
    assert_eq!(got, b"still served");
    child.kill();
}
