//! `unixseq:` reads every datagram already queued in one call once a read
//! brought little (`recvmmsg`): a burst must come out as it went in, each
//! message whole and in order with its own descriptors, and a bad datagram
//! inside a batch is reported after the good ones before it.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;

use common::{Test, param, set_param};
use ipcx::{ErrorKind, FrameError, Listener};

const MESSAGES: u32 = 3000;

/// Message `i`: its number, then a length that varies from a few bytes to
/// two frames of a datagram socket (150 KiB every 500th, split at 128 KiB).
fn message(i: u32) -> Vec<u8> {
    let len = if i % 500 == 499 {
        150 << 10
    } else {
        4 + (i as usize * 37) % 300
    };
    let mut m = common::payload(len, u64::from(i));
    m[..4].copy_from_slice(&i.to_le_bytes());
    m
}

/// Every 100th message carries a descriptor of a file holding its number.
fn carries_fd(i: u32) -> bool {
    i % 100 == 7
}

#[test]
fn a_burst_of_datagrams_comes_whole_in_order_with_its_descriptors() {
    let t = Test::start();
    if t.child_role().is_some() {
        let dir = std::path::PathBuf::from(param("DIR"));
        let mut link = common::connect(&param("URL"));
        for i in 0..MESSAGES {
            if carries_fd(i) {
                let path = dir.join(format!("fd-{i}"));
                File::create(&path)
                    .and_then(|mut f| f.write_all(i.to_string().as_bytes()))
                    .expect("write the file");
                let f = File::open(&path).expect("open the file");
                link.send_fds(&message(i), &[f.as_fd()]).expect("send_fds");
            } else {
                link.send(&message(i)).expect("send");
            }
        }
        assert_eq!(link.recv().expect("recv"), b"all here");
        return;
    }
    let dir = t.scratch();
    let url = dir.url("unixseq", "s.sock");
    let mut listener = Listener::bind(&url).unwrap_or_else(|e| panic!("bind {url}: {e}"));
    let mut child = t.spawn("sender", |c| {
        set_param(c, "URL", &url);
        set_param(c, "DIR", &dir.dir().display().to_string())
    });
    let mut link = common::accept(&mut listener, &mut child);
    // Let a burst queue up, so that reads take many datagrams at once.
    std::thread::sleep(std::time::Duration::from_millis(50));
    for i in 0..MESSAGES {
        let (msg, fds) = link.recv_fds().expect("recv_fds");
        common::assert_same(&msg, &message(i), &format!("message {i}"));
        if carries_fd(i) {
            assert_eq!(fds.len(), 1, "message {i} came without its descriptor");
            let mut s = String::new();
            File::from(fds.into_iter().next().unwrap())
                .read_to_string(&mut s)
                .expect("read through the descriptor");
            assert_eq!(
                s,
                i.to_string(),
                "message {i} came with another's descriptor"
            );
        } else {
            assert!(
                fds.is_empty(),
                "message {i} came with {} descriptors",
                fds.len()
            );
        }
    }
    link.send(b"all here").expect("send");
    child.finish();
}

/// A raw peer: hello, five small frames back to back, then `then` (raw
/// datagrams, sent as they are); says so, and stays until the server
/// closes the link.
fn five_then(path: &str, then: &[Vec<u8>]) {
    use ipcx::wire::{Hello, KIND_DATA, KIND_HELLO};
    use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketType, sockopt};
    let frame = common::raw_frame;
    let s = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).expect("socket");
    // Room for a datagram longer than any read takes whole.
    sockopt::set_socket_send_buffer_size(&s, 4 << 20).expect("SO_SNDBUF");
    rustix::net::connect(&s, &SocketAddrUnix::new(path).expect("address")).expect("connect");
    let send = |bytes: &[u8]| {
        rustix::net::send(&s, bytes, SendFlags::NOSIGNAL).expect("send");
    };
    send(&frame(KIND_HELLO, &Hello::new(false, 16 << 20).encode()));
    for i in 0..5u8 {
        send(&frame(KIND_DATA, &[i; 10]));
    }
    for d in then {
        send(d);
    }
    common::ready("sent");
    until_closed(&s);
}

/// Reads (the server's hello, anything else) until the server closes the
/// link.
fn until_closed(s: &impl AsFd) {
    let mut buf = [0u8; 64];
    while matches!(rustix::net::recv(s, &mut buf, rustix::net::RecvFlags::empty()), Ok((n, _)) if n > 0)
    {
    }
}

/// Binds `unixseq:` with the raw peer `role` sending to it; returns the
/// accepted link once everything is queued, so that the second read
/// takes the rest in one call.
fn queued_from(t: &Test, role: &str) -> (ipcx::Link, common::ChildProcess) {
    let dir = t.scratch();
    let path = dir.path("s.sock");
    let url = format!("unixseq:{}", path.display());
    let mut listener = Listener::bind(&url).unwrap_or_else(|e| panic!("bind {url}: {e}"));
    let mut child = t.spawn(role, |c| {
        set_param(
            set_param(c, "PATH", &path.display().to_string()),
            "ROLE",
            role,
        )
    });
    let link = common::accept(&mut listener, &mut child);
    assert_eq!(child.wait_ready(), "sent");
    (link, child)
}

/// The raw peers of the tests below, by `ROLE`.
fn raw_peer() {
    use ipcx::wire::KIND_DATA;
    let path = param("PATH");
    match param("ROLE").as_str() {
        "oversized" => five_then(
            &path,
            &[common::raw_frame(KIND_DATA, &vec![9u8; 300 << 10])],
        ),
        "empty" => five_then(
            &path,
            &[
                Vec::new(),
                common::raw_frame(KIND_DATA, b"after the end"),
                common::raw_frame(KIND_DATA, b"and more"),
            ],
        ),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_datagram_too_long_in_a_batch_is_reported_after_those_before_it() {
    let t = Test::start();
    if t.child_role().is_some() {
        return raw_peer();
    }
    let (mut link, child) = queued_from(&t, "oversized");
    for i in 0..5u8 {
        assert_eq!(link.recv().expect("a small frame"), [i; 10]);
    }
    let err = link.recv().expect_err("a datagram of 300 KiB");
    assert!(
        matches!(err.kind(), ErrorKind::Frame(FrameError::PacketTruncated(n)) if *n == 256 << 10),
        "{err}"
    );
    drop(link);
    child.finish();
}

/// An empty datagram in a batch is the end of the stream, as it is read
/// alone: the frames before it come, and none after it.
#[test]
fn an_empty_datagram_in_a_batch_ends_the_stream_there() {
    let t = Test::start();
    if t.child_role().is_some() {
        return raw_peer();
    }
    let (mut link, child) = queued_from(&t, "empty");
    for i in 0..5u8 {
        assert_eq!(link.recv().expect("a small frame"), [i; 10]);
    }
    let err = link
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect_err("the end of the stream");
    assert_eq!(*err.kind(), ErrorKind::Closed, "{err}");
    drop(link);
    child.finish();
}

/// A raw peer: hello, one small frame, then three frames that each
/// announce and carry five descriptors, back to back.
fn five_descriptors_each(path: &str) {
    use ipcx::wire::{Header, Hello, KIND_DATA, KIND_HELLO};
    use rustix::net::{
        AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
        SocketType,
    };
    let s = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None).expect("socket");
    rustix::net::connect(&s, &SocketAddrUnix::new(path).expect("address")).expect("connect");
    let hello = common::raw_frame(KIND_HELLO, &Hello::new(false, 1 << 20).encode());
    rustix::net::send(&s, &hello, SendFlags::NOSIGNAL).expect("hello");
    rustix::net::send(
        &s,
        &common::raw_frame(KIND_DATA, b"first"),
        SendFlags::NOSIGNAL,
    )
    .expect("first");
    let files: Vec<File> = (0..5).map(|_| File::open("/dev/null").unwrap()).collect();
    let fds: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
    let mut frame = Header {
        kind: KIND_DATA,
        flags: 0,
        nfds: 5,
        len: 1,
        crc: 0,
    }
    .encode()
    .to_vec();
    frame.push(b'x');
    for _ in 0..3 {
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(5))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        assert!(cmsg.push(SendAncillaryMessage::ScmRights(&fds)));
        rustix::net::sendmsg(
            &s,
            &[std::io::IoSlice::new(&frame)],
            &mut cmsg,
            SendFlags::NOSIGNAL,
        )
        .expect("sendmsg with descriptors");
    }
    common::ready("sent");
    until_closed(&s);
}

/// A batch takes at most `?max_fds=` descriptors with each datagram (a
/// hostile burst would otherwise install 8 × 253 at once): more is refused
/// naming the limit.
#[test]
fn a_batch_takes_at_most_max_fds_per_datagram() {
    let t = Test::start();
    if t.child_role().is_some() {
        return five_descriptors_each(&param("PATH"));
    }
    let dir = t.scratch();
    let path = dir.path("s.sock");
    let url = format!("unixseq:{}?max_fds=2", path.display());
    let mut listener = Listener::bind(&url).unwrap_or_else(|e| panic!("bind {url}: {e}"));
    let mut child = t.spawn("raw", |c| set_param(c, "PATH", &path.display().to_string()));
    let mut link = common::accept(&mut listener, &mut child);
    assert_eq!(child.wait_ready(), "sent");
    assert_eq!(link.recv().expect("the first frame"), b"first");
    let err = link
        .recv()
        .expect_err("five descriptors over a limit of two");
    assert!(
        matches!(err.kind(), ErrorKind::Frame(FrameError::Fds(why)) if why.contains("more than 2")),
        "{err}"
    );
    drop(link);
    child.finish();
}
