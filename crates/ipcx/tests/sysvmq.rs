//! `sysvmq:KEY`: System V message queues between processes: message
//! types and `msgrcv`'s selectors, raw payloads a Python program shares,
//! `ftok` keys, readiness for event loops through a watcher, the
//! registry's cleaning, and what is refused.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Test, param, set_param};
use ipcx::{ErrorKind, Link, Listener};

/// A key of this test process's own.
fn key() -> i32 {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    (0x5100_0000 | (std::process::id() & 0xffff) << 8 | SEQ.fetch_add(1, Ordering::Relaxed)) as i32
}

/// A Python program (ctypes): `send KEY TYPE TEXT` or `recv KEY TYPE`
/// (prints `type:text`), or `make KEY` (creates the queue, no ipcx).
const PYTHON: &str = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
op, key = sys.argv[1], int(sys.argv[2], 0)
if op == "make":
    sys.exit(0 if libc.msgget(key, 0o1600) >= 0 else 1)
q = libc.msgget(key, 0)
if q < 0:
    sys.exit("msgget: errno %d" % ctypes.get_errno())
class Msg(ctypes.Structure):
    _fields_ = [("mtype", ctypes.c_long), ("text", ctypes.c_char * 8192)]
m = Msg()
if op == "send":
    m.mtype, text = int(sys.argv[3]), sys.argv[4].encode()
    m.text = text
    sys.exit(0 if libc.msgsnd(q, ctypes.byref(m), len(text), 0) == 0 else 1)
n = libc.msgrcv(q, ctypes.byref(m), 8192, int(sys.argv[3]), 0o4000)
if n < 0:
    sys.exit("msgrcv: errno %d" % ctypes.get_errno())
print("%d:%s" % (m.mtype, m.text[:n].decode()))
"#;

fn python(args: &[&str]) -> String {
    common::stdout_of(Command::new("python3").arg("-c").arg(PYTHON).args(args))
}

fn exists(key: i32) -> bool {
    std::fs::read_to_string("/proc/sysvipc/msg")
        .expect("/proc/sysvipc/msg")
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().next() == Some(&key.to_string()))
}

/// A child sends typed messages (a plain send takes `?type=`); the parent
/// selects them by type as `msgrcv` does: one type, the lowest up to N,
/// or the first. The link's descriptor (a watcher's eventfd) is readable
/// while messages wait.
#[test]
fn types_and_selectors_between_processes() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link =
            Link::connect(&format!("{}?type=5&timeout=30s", param("URL"))).expect("connect");
        for (msg, mtype) in [("t3", 3), ("t1", 1), ("t2", 2)] {
            link.send_typed(msg.as_bytes(), mtype).expect("send_typed");
        }
        link.send(b"plain").expect("send");
        return;
    }
    let key = key();
    let url = format!("sysvmq:{key:#x}");
    let listener = Listener::bind(&url).expect("bind");
    let mut link = listener.accept().expect("accept");
    let readable = |link: &Link, wait: Duration| common::readable(link, wait);
    assert!(
        !readable(&link, Duration::from_millis(100)),
        "readable while empty"
    );
    t.spawn("sender", |c| set_param(c, "URL", &url)).finish();
    assert!(
        readable(&link, Duration::from_secs(30)),
        "readable once messages wait"
    );

    let text = |(m, t): (Vec<u8>, i64)| (String::from_utf8(m).expect("utf-8"), t);
    assert_eq!(text(link.recv_typed(2).expect("type 2")), ("t2".into(), 2));
    assert_eq!(
        text(link.recv_typed(-2).expect("lowest up to 2")),
        ("t1".into(), 1)
    );
    let err = link.try_recv_typed(-2).expect_err("no type up to 2 left");
    assert_eq!(*err.kind(), ErrorKind::WouldBlock, "{err}");
    assert_eq!(link.recv().expect("the first"), b"t3");
    assert_eq!(link.last_type(), 3);
    assert_eq!(link.recv().expect("the next"), b"plain");
    assert_eq!(link.last_type(), 5, "a plain send takes ?type=");
    assert_eq!(link.try_recv().expect("try_recv"), None);
    assert!(
        !readable(&link, Duration::from_millis(200)),
        "readable once empty"
    );
}

/// A Python program on the same queue: ipcx reads its raw payload and
/// type, and it reads ipcx's. A path and `?proj=` make the key `ftok`
/// makes.
#[test]
fn raw_payloads_shared_with_python_by_ftok_key() {
    let t = Test::start();
    let dir = t.scratch();
    let path = dir.path("queue-key");
    std::fs::write(&path, b"").expect("a file for ftok");
    let listener = Listener::bind(&format!("sysvmq:{}?proj=7", path.display())).expect("bind");
    let mut link = listener.accept().expect("accept");
    let ftok: i32 = Command::new("python3")
        .args([
            "-c",
            "import ctypes, sys\nprint(ctypes.CDLL(None).ftok(sys.argv[1].encode(), 7))",
            &path.display().to_string(),
        ])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse()
                .expect("a key")
        })
        .expect("python3");
    let key = ftok.to_string();
    python(&["send", &key, "7", "from python"]);
    let (msg, mtype) = link.recv_typed(7).expect("recv_typed");
    assert_eq!((msg.as_slice(), mtype), (&b"from python"[..], 7));
    link.send_typed(b"to python", 9).expect("send_typed");
    assert_eq!(python(&["recv", &key, "9"]), "9:to python\n");
}

/// What a System V queue refuses, and how waits end.
#[test]
fn what_is_refused() {
    let _t = Test::start();
    let listener = Listener::bind(&format!("sysvmq:{:#x}", key())).expect("bind");
    let mut link = listener.accept().expect("accept");
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/msgmax")
        .expect("msgmax")
        .trim()
        .parse()
        .expect("a number");
    let err = link
        .send(&vec![1; max as usize + 1])
        .expect_err("over msgmax");
    assert_eq!(
        *err.kind(),
        ErrorKind::MessageTooLarge { len: max + 1, max },
        "{err}"
    );
    let err = link.send_typed(b"x", 0).expect_err("type 0");
    assert!(matches!(err.kind(), ErrorKind::InvalidArgument(_)), "{err}");
    let err = link
        .send_with_priority(b"x", 3)
        .expect_err("no priorities here");
    assert!(matches!(err.kind(), ErrorKind::Unsupported(_)), "{err}");
    let err = link
        .recv_timeout(Duration::from_millis(50))
        .expect_err("empty");
    assert_eq!(*err.kind(), ErrorKind::TimedOut, "{err}");
    let err = link
        .send_fds(b"x", &[std::os::fd::AsFd::as_fd(&std::io::stdin())])
        .expect_err("no descriptors on a queue");
    assert!(
        matches!(err.kind(), ErrorKind::Unsupported(why) if why.starts_with("sysvmq: links do not pass descriptors")),
        "{err}"
    );
    let posix = Listener::bind(&format!("mq:/{}", common::abstract_name())).expect("bind mq");
    let err = posix
        .accept()
        .expect("accept")
        .send_typed(b"x", 1)
        .expect_err("POSIX queues have priorities, not types");
    assert!(matches!(err.kind(), ErrorKind::Unsupported(_)), "{err}");
    // An end that binds collects from peers that connect: a queue has
    // none (a puller on mq: is refused earlier: the pusher makes it).
    let sysv = format!("sysvmq:{:#x}", key());
    let posix = format!("mq:/{}", common::abstract_name());
    let refused = [
        ipcx::pattern::Subscriber::bind(&sysv, &[">"]).map(drop),
        ipcx::pattern::Subscriber::bind(&posix, &[">"]).map(drop),
        ipcx::pattern::Puller::bind(&sysv, 1).map(drop),
    ];
    common::all_unsupported(refused, "a message queue, which has none");
}

/// On tokio, a send into a full queue waits until another process makes
/// room (no descriptor says so: it tries again after pauses), and a
/// receive awaits the watcher's eventfd.
#[cfg(feature = "async")]
#[test]
fn tokio_awaits_room_and_messages() {
    use std::io::{BufRead, Write};
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = Link::connect(&param("URL")).expect("connect");
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .expect("read stdin");
        let count: u64 = line.trim().parse().expect("a count");
        for i in 0..=count {
            assert_eq!(link.recv().expect("recv"), i.to_le_bytes());
        }
        common::ready("drained");
        std::thread::sleep(Duration::from_millis(100));
        link.send(b"back").expect("send back");
        return;
    }
    let url = format!("sysvmq:{:#x}", key());
    let listener = Listener::bind(&url).expect("bind");
    let mut link = listener.accept().expect("accept");
    let mut count = 0u64;
    while link.try_send(&count.to_le_bytes()).is_ok() {
        count += 1;
    }
    let mut child = t.spawn("drains", |c| {
        set_param(c, "URL", &url).stdin(std::process::Stdio::piped())
    });
    let mut stdin = child.take_stdin().expect("the child's stdin");
    let go = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        writeln!(stdin, "{count}").expect("write to the child");
    });
    let rt = common::runtime();
    let (mut rx, mut tx) = {
        let _entered = rt.enter();
        ipcx::tokio::AsyncLink::from_link(link)
            .expect("AsyncLink::from_link")
            .split()
    };
    rt.block_on(tx.send(&count.to_le_bytes()))
        .expect("a send that waits for room");
    go.join().expect("the writer thread");
    // The queue is the child's until it took everything (one queue both
    // ways); then this side awaits its answer.
    assert_eq!(child.wait_ready(), "drained");
    assert_eq!(rt.block_on(rx.recv()).expect("async recv"), b"back");
    child.finish();
}

/// `clean` removes the queue of a creator that was killed, and not one
/// another program made.
#[test]
fn clean_removes_queues_of_dead_creators_only() {
    let t = Test::start();
    if t.child_role().is_some() {
        return common::bind_and_hold();
    }
    let (dead, foreign) = (key(), key());
    let mut child = t.spawn("creator", |c| {
        set_param(c, "URL", &format!("sysvmq:{dead:#x}"))
    });
    child.wait_ready();
    child.kill();
    python(&["make", &foreign.to_string()]);
    assert!(exists(dead), "SIGKILL leaves the queue behind");
    common::clean_reports(&format!("sysvmq:{dead:#x}"));
    assert!(!exists(dead), "clean removed it");
    assert!(exists(foreign), "a queue ipcx did not make stays");
    let id = std::fs::read_to_string("/proc/sysvipc/msg")
        .expect("list")
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&foreign.to_string().as_str())).then(|| f[1].to_string())
        })
        .expect("its id");
    let _ = Command::new("ipcrm").args(["-q", &id]).status();
}
