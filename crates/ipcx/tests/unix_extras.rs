//! What Unix sockets and named objects add: the kernel's word on who the
//! peer is, descriptors passed between processes, the registry's view of
//! owners alive and dead, and symlinks that are never followed.

mod common;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::sync::Mutex;

use common::{ChildProcess, Test, param, set_param};
use ipcx::registry::{Entry, Registry};
use ipcx::{ErrorKind, Link, Listener};

/// Tests that leave an owner dead, and the one that cleans dead owners up,
/// run one at a time, so that `clean` never takes another test's evidence.
static DEAD_OWNERS: Mutex<()> = Mutex::new(());

fn dead_owner_lock() -> std::sync::MutexGuard<'static, ()> {
    DEAD_OWNERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Binds `url` in this process and spawns a child in `role` told the URL;
/// returns the listener, the child and the accepted link.
fn bind_and_spawn(t: &Test, url: &str, role: &str) -> (Listener, ChildProcess, Link) {
    let mut listener = Listener::bind(url).unwrap_or_else(|e| panic!("bind {url}: {e}"));
    let mut child = t.spawn(role, |c| set_param(c, "URL", url));
    let link = common::accept(&mut listener, &mut child);
    (listener, child, link)
}

// ---------------------------------------------------------------------------
// Peer credentials

fn peer_credentials(scheme: &str) {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = common::connect(&param("URL"));
        let creds = link
            .peer_credentials()
            .expect("peer_credentials in the child");
        assert_eq!(creds.pid, std::os::unix::process::parent_id());
        link.send(b"checked").expect("send");
        return;
    }
    let dir = t.scratch();
    let url = dir.url(scheme, "s.sock");
    let (_listener, child, mut link) = bind_and_spawn(&t, &url, "peer");
    let creds = link.peer_credentials().expect("peer_credentials");
    assert_eq!(creds.pid, child.id(), "the child's pid");
    assert_eq!(creds.uid, rustix::process::getuid().as_raw());
    assert_eq!(creds.gid, rustix::process::getgid().as_raw());
    assert_eq!(link.recv().expect("recv"), b"checked");
    child.finish();
}

#[test]
fn peer_credentials_unix() {
    peer_credentials("unix");
}

#[test]
fn peer_credentials_unixseq() {
    peer_credentials("unixseq");
}

#[test]
fn peer_credentials_elsewhere_is_unsupported() {
    let _t = Test::start();
    let listener = Listener::bind("tcp://127.0.0.1:0").expect("bind tcp");
    let url = listener.endpoint().url().to_string();
    let client = std::thread::spawn(move || common::connect(&url));
    let server = listener.accept().expect("accept");
    let client = client.join().expect("connect thread");
    for link in [&server, &client] {
        let err = link.peer_credentials().expect_err("credentials over tcp");
        assert!(matches!(err.kind(), ErrorKind::Unsupported(_)), "{err}");
    }
}

// ---------------------------------------------------------------------------
// Descriptor passing

/// The child opens files, unlinks them, and passes their descriptors in one
/// message: only the descriptors lead to the contents.
fn descriptors(scheme: &str) {
    let t = Test::start();
    if t.child_role().is_some() {
        let dir = std::path::PathBuf::from(param("DIR"));
        let mut files = Vec::new();
        for name in ["first", "second", "third"] {
            let path = dir.join(name);
            let mut f = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .expect("create a file");
            f.write_all(name.as_bytes()).expect("write the file");
            f.rewind().expect("rewind");
            std::fs::remove_file(&path).expect("unlink the file");
            files.push(f);
        }
        let mut link = common::connect(&param("URL"));
        let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
        link.send_fds(b"three files", &fds).expect("send_fds");
        drop(files);
        assert_eq!(link.recv().expect("recv"), b"read them");
        return;
    }
    let dir = t.scratch();
    let url = dir.url(scheme, "s.sock");
    let mut listener = Listener::bind(&url).unwrap_or_else(|e| panic!("bind {url}: {e}"));
    let mut child = t.spawn("sender", |c| {
        set_param(c, "URL", &url);
        set_param(c, "DIR", &dir.dir().display().to_string())
    });
    let mut link = common::accept(&mut listener, &mut child);
    let (msg, fds) = link.recv_fds().expect("recv_fds");
    assert_eq!(msg, b"three files");
    let contents: Vec<String> = fds
        .into_iter()
        .map(|fd| {
            let mut s = String::new();
            File::from(fd)
                .read_to_string(&mut s)
                .expect("read through the fd");
            s
        })
        .collect();
    assert_eq!(contents, ["first", "second", "third"]);
    link.send(b"read them").expect("send");
    child.finish();
}

#[test]
fn descriptors_unix() {
    descriptors("unix");
}

#[test]
fn descriptors_unixseq() {
    descriptors("unixseq");
}

/// The descriptor limits (`?max_fds=2`): a message with more descriptors
/// than the limit is refused by the receiver (whatever the sender's own
/// limit), and so is a peer that sends descriptors ahead of the messages
/// that announce them (here on frames that announce none): more than two
/// messages' worth are a flood, not buffered.
#[test]
fn descriptor_limits_are_enforced() {
    let t = Test::start();
    match t.child_role() {
        Some("three") => {
            let mut link = common::connect(&param("URL"));
            let files: Vec<File> = (0..3).map(|_| File::open("/dev/null").unwrap()).collect();
            let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
            // More than one `sendmsg` carries is refused before anything goes.
            let err = link
                .send_fds(b"too many", &[fds[0]; 254])
                .expect_err("254 descriptors with one message");
            assert!(
                matches!(err.kind(), ErrorKind::InvalidArgument(why) if why.contains("at most 253")),
                "{err}"
            );
            link.send_fds(b"three", &fds).expect("send_fds");
            let _ = link.recv();
            return;
        }
        Some(_) => return flood_descriptors(&param("PATH")),
        None => {}
    }
    let dir = t.scratch();
    let path = dir.path("s.sock");
    let url = format!("unix:{}?max_fds=2", path.display());
    let (mut listener, child, mut link) = bind_and_spawn(&t, &url, "three");
    let err = link
        .recv_fds()
        .expect_err("three descriptors over a limit of two");
    assert!(
        matches!(err.kind(), ErrorKind::Frame(ipcx::FrameError::Fds(why)) if why.contains("limit is 2")),
        "{err}"
    );
    drop(link);
    child.finish();

    let mut flooder = t.spawn("flood", |c| {
        set_param(c, "PATH", &path.display().to_string())
    });
    let mut link = common::accept(&mut listener, &mut flooder);
    let err = (0..3)
        .find_map(|_| link.recv_fds().err())
        .expect("a flood of descriptors is refused");
    assert!(
        matches!(err.kind(), ErrorKind::Frame(ipcx::FrameError::Fds(why)) if why.contains("ahead of their messages")),
        "{err}"
    );
    drop(link);
    flooder.finish();
}

/// A raw peer: says hello, then sends three one-byte messages whose frames
/// announce no descriptor, each carrying two.
fn flood_descriptors(path: &str) {
    use ipcx::wire::{Hello, KIND_DATA, KIND_HELLO};
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let frame = common::raw_frame;
    let mut raw = std::os::unix::net::UnixStream::connect(path).expect("connect");
    raw.write_all(&frame(KIND_HELLO, &Hello::new(false, 1 << 20).encode()))
        .expect("hello");
    let files: Vec<File> = (0..2).map(|_| File::open("/dev/null").unwrap()).collect();
    let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
    for _ in 0..3 {
        let bytes = frame(KIND_DATA, b"x");
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        assert!(cmsg.push(SendAncillaryMessage::ScmRights(&fds)));
        rustix::net::sendmsg(
            &raw,
            &[std::io::IoSlice::new(&bytes)],
            &mut cmsg,
            SendFlags::empty(),
        )
        .expect("sendmsg with descriptors");
    }
    // Until the server closes the link (its hello comes first).
    let mut buf = [0u8; 64];
    while matches!(raw.read(&mut buf), Ok(n) if n > 0) {}
}

// ---------------------------------------------------------------------------
// Registry: live and dead owners

/// The registry entry of `url`.
fn entry(url: &str) -> Option<Entry> {
    Registry::open()
        .expect("open the registry")
        .list()
        .expect("list the registry")
        .into_iter()
        .find(|e| e.record.url == url)
}

/// In the child: binds `URL`, says so, and waits to be killed.
fn bind_and_wait() {
    let url = param("URL");
    let _listener = Listener::bind(&url).unwrap_or_else(|e| panic!("bind {url}: {e}"));
    common::ready("bound");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// A child that owns `url`, alive, then SIGKILLed.
fn owner(t: &Test, url: &str) -> ChildProcess {
    let mut child = t.spawn("owner", |c| set_param(c, "URL", url));
    child.wait_ready();
    child
}

/// A live owner's address is refused with its pid; once the owner is
/// SIGKILLed, binding reclaims the address and it works.
fn reclaim(scheme: &str, name: &str) {
    let t = Test::start();
    if t.child_role().is_some() {
        return bind_and_wait();
    }
    let _serial = dead_owner_lock();
    let dir = t.scratch();
    let url = dir.url(scheme, name);
    let mut child = owner(&t, &url);

    let err = Listener::bind(&url).expect_err("bind over a live owner");
    assert!(
        matches!(err.kind(), ErrorKind::InUse { pid: Some(p), .. } if *p == child.id()),
        "{err}"
    );
    let live = entry(&url).expect("the registry lists the live owner");
    assert!(live.alive);
    assert_eq!(live.record.owner_pid, child.id());

    child.kill();
    let dead = entry(&url).expect("the registry still lists the dead owner");
    assert!(!dead.alive);

    let mut listener = Listener::bind(&url).expect("bind over a dead owner reclaims");
    let mine = entry(&url).expect("the registry lists the new owner");
    assert!(mine.alive);
    assert_eq!(mine.record.owner_pid, std::process::id());
    round_trip_in_process(&mut listener, &url);
}

/// Proves a listener works: a client thread of this process, one message.
fn round_trip_in_process(listener: &mut Listener, url: &str) {
    let url = url.to_string();
    let client = std::thread::spawn(move || {
        let mut link = common::connect(&url);
        link.send(b"after reclaim").expect("send");
    });
    let mut link = listener.accept().expect("accept");
    assert_eq!(link.recv().expect("recv"), b"after reclaim");
    client.join().expect("client thread");
}

#[test]
fn reclaim_socket_of_killed_owner() {
    reclaim("unix", "s.sock");
}

#[test]
fn reclaim_fifo_of_killed_owner() {
    reclaim("fifo", "f");
}

/// `clean` lists a dead owner's objects on a dry run, then removes them
/// and their record; live owners are left alone.
#[test]
fn clean_removes_what_dead_owners_left() {
    let t = Test::start();
    if t.child_role().is_some() {
        return bind_and_wait();
    }
    let _serial = dead_owner_lock();
    let dir = t.scratch();
    let dead_url = dir.url("unix", "dead.sock");
    let live_url = dir.url("fifo", "live");
    let _live = Listener::bind(&live_url).expect("bind a live object");
    let mut child = owner(&t, &dead_url);
    child.kill();

    let registry = Registry::open().expect("open the registry");
    let is_dead_one = |e: &Entry| e.record.url == dead_url;
    let dry = registry.clean(true).expect("clean --dry-run");
    assert!(dry.iter().any(is_dead_one), "dry run lists the dead owner");
    assert!(!dry.iter().any(|e| e.record.url == live_url));
    assert!(dir.path("dead.sock").exists(), "a dry run removes nothing");

    let removed = registry.clean(false).expect("clean");
    assert!(
        removed.iter().any(is_dead_one),
        "clean reports the dead owner"
    );
    assert!(!dir.path("dead.sock").exists(), "the socket file is gone");
    assert!(entry(&dead_url).is_none(), "the record is gone");
    let live = entry(&live_url).expect("the live owner stays");
    assert!(live.alive);
    assert!(dir.path("live").exists(), "the live FIFO stays");
}

// ---------------------------------------------------------------------------
// Symlinks

/// A symlink where a socket or FIFO should be is never followed: connect
/// and bind refuse it, and leave it and its target alone.
#[test]
fn symlinks_are_never_followed() {
    let t = Test::start();
    let dir = t.scratch();
    for (scheme, target) in [("unix", "real.sock"), ("fifo", "real")] {
        let real_url = dir.url(scheme, target);
        let mut real = Listener::bind(&real_url).expect("bind the real object");
        let link_name = format!("{target}.link");
        // A FIFO endpoint is two FIFOs: link both.
        for suffix in ["", ".reply"] {
            let to = dir.path(&format!("{target}{suffix}"));
            if to.exists() {
                let from = dir.path(&format!("{link_name}{suffix}"));
                std::os::unix::fs::symlink(to, from).expect("make a symlink");
            }
        }
        let link_url = dir.url(scheme, &link_name);

        let url = common::with_option(&link_url, "timeout=1s&handshake_timeout=1s");
        let err = Link::connect(&url).expect_err("connect through a symlink");
        let refused = match err.kind() {
            ErrorKind::InUse {
                pid: None,
                reason: why,
            } => why.contains("symlink"),
            // open(2) with O_NOFOLLOW.
            ErrorKind::Io => os_error(&err) == Some(rustix::io::Errno::LOOP.raw_os_error()),
            _ => false,
        };
        assert!(refused, "{scheme}: connect through a symlink: {err}");
        let err = Listener::bind(&link_url).expect_err("bind over a symlink");
        assert!(
            matches!(err.kind(), ErrorKind::InUse { .. }),
            "{scheme}: bind over a symlink: {err}"
        );
        let link_path = dir.path(&link_name);
        assert!(link_path.symlink_metadata().is_ok(), "the symlink stays");
        round_trip_in_process(&mut real, &real_url);
    }
}

/// The errno under an error, if it came from the OS.
fn os_error(err: &ipcx::Error) -> Option<i32> {
    err.os_error()?.raw_os_error()
}

/// A line with a newline inside cannot go on a `?codec=lines` link: the
/// send is refused as an argument error, and the link goes on (the lines
/// before and after arrive).
#[test]
fn a_newline_inside_a_line_is_refused() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = common::connect(&param("URL"));
        link.send(b"first").expect("send");
        let err = link.send(b"two\nlines").expect_err("a newline inside");
        assert!(
            matches!(err.kind(), ErrorKind::InvalidArgument(why) if why.contains("newline")),
            "{err}"
        );
        link.send(b"last").expect("send");
        return;
    }
    let dir = t.scratch();
    let url = format!("{}?codec=lines", dir.url("unix", "lines.sock"));
    let (_listener, child, mut link) = bind_and_spawn(&t, &url, "lines");
    assert_eq!(link.recv().expect("first"), b"first");
    assert_eq!(link.recv().expect("last"), b"last");
    child.finish();
}

/// What std users expect: `Read`/`Write` on a `?codec=raw` link (a tool's
/// byte stream), `Listener::incoming`, and `Link::iter` ending at the
/// peer's close.
#[test]
fn read_write_and_iterators() {
    let t = Test::start();
    if t.child_role() == Some("raw") {
        let mut link = common::connect(&param("URL"));
        link.write_all(b"hello world").expect("write");
        return;
    }
    if t.child_role().is_some() {
        let mut link = common::connect(&param("URL"));
        for m in [&b"one"[..], b"two"] {
            link.send(m).expect("send");
        }
        return;
    }
    let dir = t.scratch();
    let url = format!("{}?codec=raw", dir.url("unix", "raw.sock"));
    let (_listener, child, mut link) = bind_and_spawn(&t, &url, "raw");
    let mut got = Vec::new();
    let mut buf = [0u8; 4];
    loop {
        let n = link.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"hello world");
    child.finish();

    let url = dir.url("unix", "framed.sock");
    let listener = Listener::bind(&url).expect("bind");
    let child = t.spawn("framed", |c| set_param(c, "URL", &url));
    let mut link = listener
        .incoming()
        .next()
        .expect("an accepted link")
        .expect("accept");
    let msgs: Vec<Vec<u8>> = link.iter().collect::<ipcx::Result<_>>().expect("messages");
    assert_eq!(msgs, [b"one".to_vec(), b"two".to_vec()]);
    child.finish();
}
