//! `mq:/name`: POSIX message queues between processes, with C-compatible
//! raw payloads (a Python program on the same queue), priorities, the
//! system's limits named in errors, and the registry's cleaning.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Test, param, set_param};
use ipcx::{ErrorKind, Link, Listener};

/// A Python program (ctypes, no modules beyond the standard library)
/// that opens `/NAME`, sends `SEND` with priority 3 if given, and prints
/// each message it can take (without waiting) as `priority:text`.
const PYTHON: &str = r#"
import ctypes, ctypes.util, os, sys
rt = ctypes.CDLL(ctypes.util.find_library("rt") or "libc.so.6", use_errno=True)
rt.mq_open.restype = ctypes.c_int
name, send = sys.argv[1].encode(), sys.argv[2].encode()
q = rt.mq_open(name, os.O_RDWR | os.O_NONBLOCK)
if q < 0:
    sys.exit("mq_open: errno %d" % ctypes.get_errno())
if send:
    if rt.mq_send(q, send, len(send), 3) != 0:
        sys.exit("mq_send: errno %d" % ctypes.get_errno())
else:
    buf, prio = ctypes.create_string_buffer(8192), ctypes.c_uint()
    while True:
        n = rt.mq_receive(q, buf, 8192, ctypes.byref(prio))
        if n < 0:
            break
        print("%d:%s" % (prio.value, buf.raw[:n].decode()))
"#;

fn python(name: &str, send: &str) -> String {
    common::stdout_of(Command::new("python3").args(["-c", PYTHON, &format!("/{name}"), send]))
}

fn gone(name: &str) -> bool {
    Link::connect(&format!("mq:{name}?timeout=0s"))
        .is_err_and(|e| matches!(e.kind(), ErrorKind::Io) || *e.kind() == ErrorKind::TimedOut)
}

/// A child sends with priorities into a queue the parent made: the
/// highest comes first, each with its priority. A Python program on the
/// same queue reads ipcx's raw payloads and writes its own, which ipcx
/// reads: nothing is added to a message.
#[test]
fn priorities_and_raw_payloads_between_processes_and_languages() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = Link::connect(&format!("{}?timeout=30s", param("URL"))).expect("connect");
        for (msg, priority) in [("low", 1), ("high", 9), ("mid", 5), ("plain", 0)] {
            link.send_with_priority(msg.as_bytes(), priority)
                .expect("send_with_priority");
        }
        return;
    }
    let name = common::abstract_name();
    let url = format!("mq:/{name}?max_msgs=8&msg_size=64");
    let listener = Listener::bind(&url).expect("bind");
    let mut link = listener.accept().expect("accept");
    t.spawn("sender", |c| set_param(c, "URL", &format!("mq:{name}")))
        .finish();
    let mut got = Vec::new();
    while let Some(msg) = link.try_recv().expect("try_recv") {
        got.push((String::from_utf8(msg).expect("utf-8"), link.last_priority()));
    }
    let want = [("high", 9), ("mid", 5), ("low", 1), ("plain", 0)];
    assert_eq!(got, want.map(|(m, p)| (m.to_string(), p)));

    link.send_with_priority(b"to python", 7).expect("send");
    assert_eq!(python(&name, ""), "7:to python\n");
    python(&name, "from python");
    let (msg, priority) = link.recv_with_priority().expect("recv");
    assert_eq!((msg.as_slice(), priority), (&b"from python"[..], 3));
}

/// Limits: a queue larger than the system allows is refused naming the
/// file under /proc/sys/fs/mqueue and its value; a message over the
/// queue's size is refused with both sizes, never cut; a full queue and
/// an empty one answer the non-blocking and timed forms.
#[test]
fn limits_say_what_they_are() {
    let _t = Test::start();
    let name = common::abstract_name();
    let limit = |file: &str| {
        std::fs::read_to_string(format!("/proc/sys/fs/mqueue/{file}"))
            .expect("mqueue limits")
            .trim()
            .to_string()
    };
    let too_many = format!("mq:/{name}?max_msgs=100000");
    let err = Listener::bind(&too_many).expect_err("over msg_max");
    let text = err.to_string();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidOption { .. }),
        "{err}"
    );
    assert!(
        text.contains(&format!(
            "/proc/sys/fs/mqueue/msg_max is {}",
            limit("msg_max")
        )),
        "{text}"
    );
    let too_big = format!("mq:/{name}?msg_size=64MiB");
    let err = Listener::bind(&too_big).expect_err("over msgsize_max");
    assert!(
        err.to_string().contains(&format!(
            "/proc/sys/fs/mqueue/msgsize_max is {}",
            limit("msgsize_max")
        )),
        "{err}"
    );

    let listener = Listener::bind(&format!("mq:/{name}?max_msgs=2&msg_size=16")).expect("bind");
    let mut link = listener.accept().expect("accept");
    let err = link
        .send(&[7; 17])
        .expect_err("over the queue's message size");
    assert_eq!(
        *err.kind(),
        ErrorKind::MessageTooLarge { len: 17, max: 16 },
        "{err}"
    );
    assert_eq!(
        link.try_recv().expect("try_recv"),
        None,
        "nothing was cut and sent"
    );
    link.try_send(b"one").expect("room for one");
    link.try_send(b"two").expect("room for two");
    let err = link.try_send(b"three").expect_err("full");
    assert_eq!(*err.kind(), ErrorKind::WouldBlock, "{err}");
    let err = link
        .send_timeout(b"three", Duration::from_millis(50))
        .expect_err("full");
    assert_eq!(*err.kind(), ErrorKind::TimedOut, "{err}");
    assert_eq!(link.recv().expect("recv"), b"one");
    assert_eq!(link.recv().expect("recv"), b"two");
    let err = link
        .recv_timeout(Duration::from_millis(50))
        .expect_err("empty");
    assert_eq!(*err.kind(), ErrorKind::TimedOut, "{err}");
    let err = link
        .send_fds(b"x", &[std::os::fd::AsFd::as_fd(&std::io::stdin())])
        .expect_err("no descriptors on a queue");
    assert!(matches!(err.kind(), ErrorKind::Unsupported(_)), "{err}");
}

/// `mq:/name` and `mq:name` are one queue; the queue goes when its
/// creator's listener drops.
#[test]
fn a_name_with_or_without_its_slash() {
    let _t = Test::start();
    let name = common::abstract_name();
    let listener = Listener::bind(&format!("mq:/{name}")).expect("bind");
    let mut sender = Link::connect(&format!("mq:{name}")).expect("connect without the slash");
    sender.send(b"same queue").expect("send");
    let mut receiver = listener.accept().expect("accept");
    assert_eq!(receiver.recv().expect("recv"), b"same queue");
    drop((listener, receiver, sender));
    assert!(gone(&name), "removed with its creator");
}

/// `clean` unlinks the queue of a creator that was killed, and not a
/// queue ipcx did not make.
#[test]
fn clean_removes_queues_of_dead_creators_only() {
    let t = Test::start();
    if t.child_role().is_some() {
        return common::bind_and_hold();
    }
    let dead = common::abstract_name();
    let foreign = common::abstract_name();
    let mut child = t.spawn("creator", |c| set_param(c, "URL", &format!("mq:/{dead}")));
    child.wait_ready();
    child.kill();
    // A queue another program made (no record): Python creates it.
    let made = Command::new("python3")
        .args([
            "-c",
            "import ctypes, ctypes.util, os, sys\n\
             rt = ctypes.CDLL(ctypes.util.find_library('rt') or 'libc.so.6')\n\
             sys.exit(0 if rt.mq_open(sys.argv[1].encode(), os.O_RDWR | os.O_CREAT, 0o600, None) >= 0 else 1)",
            &format!("/{foreign}"),
        ])
        .status()
        .expect("python3");
    assert!(made.success(), "python made the foreign queue");

    assert!(!gone(&dead), "SIGKILL leaves the queue behind");
    common::clean_reports(&format!("mq:/{dead}"));
    assert!(gone(&dead), "clean unlinked it");
    assert!(!gone(&foreign), "a queue ipcx did not make stays");
    python_unlink(&foreign);
}

fn python_unlink(name: &str) {
    let _ = Command::new("python3")
        .args([
            "-c",
            "import ctypes, ctypes.util, sys\n\
             rt = ctypes.CDLL(ctypes.util.find_library('rt') or 'libc.so.6')\n\
             rt.mq_unlink(sys.argv[1].encode())",
            &format!("/{name}"),
        ])
        .status();
}

/// On tokio: a task awaits a message another process sends later (the
/// queue's descriptor on the reactor), with its priority, and sends one
/// with a priority that a Python program reads.
#[cfg(feature = "async")]
#[test]
fn tokio_awaits_a_queue() {
    let t = Test::start();
    if t.child_role().is_some() {
        std::thread::sleep(Duration::from_millis(100));
        let mut link = Link::connect(&format!("{}?timeout=30s", param("URL"))).expect("connect");
        link.send_with_priority(b"late", 4).expect("send");
        return;
    }
    let name = common::abstract_name();
    let listener = Listener::bind(&format!("mq:/{name}")).expect("bind");
    let link = listener.accept().expect("accept");
    let child = t.spawn("sender", |c| set_param(c, "URL", &format!("mq:{name}")));
    common::runtime().block_on(async {
        let mut link = ipcx::tokio::AsyncLink::from_link(link).expect("AsyncLink::from_link");
        let (msg, priority) =
            tokio::time::timeout(Duration::from_secs(30), link.recv_with_priority())
                .await
                .expect("woken before the timeout")
                .expect("recv");
        assert_eq!((msg.as_slice(), priority), (&b"late"[..], 4));
        link.send_with_priority(b"back", 2).await.expect("send");
    });
    child.finish();
    assert_eq!(python(&name, ""), "2:back\n");
}

/// On tokio, the next accept waits until the link handed out before is
/// dropped, woken by it: no thread of the blocking pool waits.
/// Each link gets what a child process sent.
#[cfg(feature = "async")]
#[test]
fn an_async_accept_waits_for_the_last_link_without_a_thread() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = Link::connect(&format!("{}?timeout=30s", param("URL"))).expect("connect");
        link.send(b"one").expect("send");
        link.send(b"two").expect("send");
        return;
    }
    const NAME: &str = "ipcx-mq-acpt";
    let name = common::abstract_name();
    let child = t.spawn("sender", |c| set_param(c, "URL", &format!("mq:{name}")));
    common::named_runtime(NAME).block_on(async {
        let mut listener = ipcx::tokio::AsyncListener::bind(&format!("mq:/{name}")).expect("bind");
        let mut first = listener.accept().await.expect("accept");
        assert_eq!(first.recv().await.expect("recv"), b"one");
        let short = Duration::from_millis(300);
        // The same accept throughout, awaiting the drop.
        let mut accepting = std::pin::pin!(listener.accept());
        let waited = tokio::time::timeout(short, &mut accepting).await;
        assert!(waited.is_err(), "a second link beside the first");
        drop(first);
        let mut next = tokio::time::timeout(Duration::from_secs(30), accepting)
            .await
            .expect("woken by the drop")
            .expect("accept the next");
        assert_eq!(next.recv().await.expect("recv"), b"two");
        // Idle pool threads live 10 s: one that ran would still be here.
        assert_eq!(common::threads_named(NAME), 0, "a blocking-pool thread ran");
    });
    child.finish();
}

/// On tokio, a connect to a queue that another process makes later waits
/// on a timer (no thread of the blocking pool) and then sends into it.
#[cfg(feature = "async")]
#[test]
fn an_async_connect_waits_for_its_queue_without_a_thread() {
    let t = Test::start();
    if t.child_role().is_some() {
        std::thread::sleep(Duration::from_millis(300));
        let listener = Listener::bind(&param("URL")).expect("bind");
        let mut link = listener.accept().expect("accept");
        assert_eq!(link.recv().expect("recv"), b"hi");
        return;
    }
    const NAME: &str = "ipcx-mq-conn";
    let url = format!("mq:/{}", common::abstract_name());
    let child = t.spawn("binder", |c| set_param(c, "URL", &url));
    let rt = common::named_runtime(NAME);
    rt.block_on(async {
        let mut link = ipcx::tokio::AsyncLink::connect(&format!("{url}?timeout=30s"))
            .await
            .expect("connect");
        link.send(b"hi").await.expect("send");
    });
    child.finish();
    assert_eq!(common::threads_named(NAME), 0, "a blocking-pool thread ran");
}

/// A queue listener in a poller is ready while no link it handed out
/// lives: at once, then quiet while the link (which a child process
/// sends into) is up, and ready again once it is dropped.
#[test]
fn a_queue_listener_in_a_poller_is_ready_while_no_link_is_out() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = Link::connect(&format!("{}?timeout=30s", param("URL"))).expect("connect");
        link.send(b"one").expect("send");
        return;
    }
    let name = common::abstract_name();
    let patience = Duration::from_secs(30);
    let mut poller: ipcx::Poller = ipcx::Poller::new().expect("a poller");
    let listener = Listener::bind(&format!("mq:/{name}")).expect("bind");
    let Ok(key) = poller.add(ipcx::Source::Listener(listener)) else {
        panic!("a queue listener refused");
    };
    assert_eq!(
        poller.wait(Some(patience)).expect("wait"),
        [key],
        "free at once"
    );
    let Some(ipcx::Source::Listener(listener)) = poller.get_mut(key) else {
        panic!("the listener");
    };
    let mut link = listener
        .accept_timeout(Duration::ZERO)
        .expect("accept at once");
    let child = t.spawn("sender", |c| set_param(c, "URL", &format!("mq:{name}")));
    assert_eq!(link.recv_timeout(patience).expect("recv"), b"one");
    child.finish();
    let quiet = poller.wait(Some(Duration::from_millis(200))).expect("wait");
    assert!(quiet.is_empty(), "ready with a link out");
    drop(link);
    let again = poller.wait(Some(patience)).expect("wait");
    assert_eq!(again, [key], "ready once the link is dropped");
}
