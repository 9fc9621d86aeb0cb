//! The conformance suite: written once, run against every mechanism that
//! moves messages (`pipe:`, `fifo:`, `unix:` path and abstract, `unixseq:`,
//! `tcp:`, `shm:`, `mq:`, `sysvmq:`, `journal:`), each time between two
//! real processes, within what each mechanism's `Capabilities` declare.
//!
//! The side that serves or receives binds, the other connects: the echo
//! server is a child that binds, the receiver of a stream of messages is
//! the parent that binds. `pipe:` has no binding: the parent spawns the
//! child with `ipcx::spawn`, and the child takes `Link::from_inherited`.
//! Queues and journals have no peers and carry messages one way: there a
//! link joins two objects (`Link::unsplit` of the receiving half of one
//! and the sending half of the other), and the binding side makes both.

mod common;

use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use common::{ChildProcess, Scratch, Test, assert_same, param_opt, payload, set_param};
use ipcx::{Capabilities, ErrorKind, Link, Listener, Options, Scheme};

/// How the two processes of a test meet.
#[derive(Debug, Clone, Copy)]
enum Mechanism {
    Pipe,
    Fifo,
    UnixPath,
    UnixAbstract,
    UnixSeq,
    Tcp,
    Shm,
    Mq,
    SysvMq,
    Journal,
}

impl Mechanism {
    /// The URL to bind; `None` for `pipe:`, which `ipcx::spawn` sets up.
    fn bind_url(self, dir: &Scratch) -> Option<String> {
        Some(match self {
            Mechanism::Pipe => return None,
            Mechanism::Fifo => dir.url("fifo", "f"),
            Mechanism::UnixPath => dir.url("unix", "s.sock"),
            Mechanism::UnixAbstract => format!("unix:@{}", common::abstract_name()),
            Mechanism::UnixSeq => dir.url("unixseq", "q.sock"),
            // Port 0: the OS picks a free port; the child is told which.
            Mechanism::Tcp => "tcp://127.0.0.1:0".to_string(),
            Mechanism::Shm => format!("shm:{}", common::abstract_name()),
            Mechanism::Mq | Mechanism::SysvMq | Mechanism::Journal => return None,
        })
    }

    /// A queue or a journal: no peers, messages one way.
    fn one_way(self) -> bool {
        matches!(self, Mechanism::Mq | Mechanism::SysvMq | Mechanism::Journal)
    }

    /// For a mechanism with no peers (a queue, a journal): the object the
    /// parent receives from and the one the child receives from.
    fn pair_urls(self, dir: &Scratch) -> Option<[String; 2]> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let key = || 0x5300_0000 | (std::process::id() & 0xffff) << 8 | SEQ.fetch_add(1, Relaxed);
        match self {
            Mechanism::Mq => Some([0, 1].map(|_| format!("mq:/{}", common::abstract_name()))),
            Mechanism::SysvMq => Some([0, 1].map(|_| format!("sysvmq:{:#x}", key()))),
            Mechanism::Journal => {
                Some(["up", "down"].map(|side| format!("{}?from=0", dir.url("journal", side))))
            }
            _ => None,
        }
    }

    fn scheme(self) -> Scheme {
        match self {
            Mechanism::Pipe => Scheme::Pipe,
            Mechanism::Fifo => Scheme::Fifo,
            Mechanism::UnixPath | Mechanism::UnixAbstract => Scheme::Unix,
            Mechanism::UnixSeq => Scheme::UnixSeq,
            Mechanism::Tcp => Scheme::Tcp,
            Mechanism::Shm => Scheme::Shm,
            Mechanism::Mq => Scheme::Mq,
            Mechanism::SysvMq => Scheme::SysvMq,
            Mechanism::Journal => Scheme::Journal,
        }
    }
}

/// Messages of every interesting size: empty, one byte, 64 KiB (over a
/// seqpacket frame, under a stream chunk), and the largest the link allows
/// (chunked on every mechanism).
fn sizes(largest: usize) -> [usize; 4] {
    [0, 1, (64 << 10).min(largest), largest]
}

/// The largest message a link of `scheme` with default options allows.
fn largest_by_default(scheme: Scheme) -> usize {
    let limit = Options::default().max_msg;
    Capabilities::of(scheme)
        .max_msg
        .map_or(limit, |m| m.min(limit))
}

/// How many messages the ordering test sends.
const IN_ORDER: u64 = 100_000;

// ---------------------------------------------------------------------------
// Meeting: who binds, who connects

/// A link to a child, and what must stay alive with it.
struct Peer {
    child: ChildProcess,
    link: Link,
    _listeners: Vec<Listener>,
}

/// Makes both objects of a pair: a queue exists while its listener does;
/// a journal is made by its first link.
fn make_pair(urls: &[String; 2]) -> Vec<Listener> {
    urls.iter()
        .filter(|u| !u.starts_with("journal:"))
        .map(|u| Listener::bind(u).unwrap_or_else(|e| panic!("bind {u}: {e}")))
        .collect()
}

/// A duplex link over two one-way objects: receives from `rx`, sends
/// into `tx`.
fn join(rx: &str, tx: &str) -> Link {
    Link::unsplit(common::connect(rx).split().0, common::connect(tx).split().1)
}

/// The parent binds (it receives); the child connects in `role` with
/// [`child_connects`].
fn parent_binds(t: &Test, mech: Mechanism, dir: &Scratch, role: &str) -> Peer {
    parent_binds_with(t, mech, dir, role, |c| c)
}

/// [`parent_binds`], with `setup` applied to the child's command.
fn parent_binds_with(
    t: &Test,
    mech: Mechanism,
    dir: &Scratch,
    role: &str,
    setup: fn(&mut Command) -> &mut Command,
) -> Peer {
    if let Some(urls) = mech.pair_urls(dir) {
        let listeners = make_pair(&urls);
        let link = join(&urls[0], &urls[1]);
        let child = t.spawn(role, |c| {
            setup(set_param(set_param(c, "URL", &urls[0]), "URL2", &urls[1]))
        });
        return Peer {
            child,
            link,
            _listeners: listeners,
        };
    }
    let Some(url) = mech.bind_url(dir) else {
        let (child, link) = t.spawn_with_pipe(role, setup);
        return Peer {
            child,
            link,
            _listeners: Vec::new(),
        };
    };
    let mut listener = Listener::bind(&url).unwrap_or_else(|e| panic!("bind {url}: {e}"));
    // For tcp://127.0.0.1:0, the URL with the port the OS picked.
    let bound = listener.endpoint().url().to_string();
    let mut child = t.spawn(role, |c| setup(set_param(c, "URL", &bound)));
    let link = common::accept(&mut listener, &mut child);
    Peer {
        child,
        link,
        _listeners: vec![listener],
    }
}

/// In the child: connects to what the parent bound.
fn child_connects() -> Link {
    if let Some(rx) = param_opt("URL2") {
        return join(&rx, &param_opt("URL").expect("URL"));
    }
    match param_opt("URL") {
        // SAFETY: started by ipcx::spawn; nothing else took the pipe; the
        // child's one test thread is the only one using the environment.
        None => unsafe { Link::from_inherited() }.expect("Link::from_inherited"),
        Some(url) => common::connect(&url),
    }
}

/// The child binds (it serves) and reports the URL; the parent connects.
fn child_binds(t: &Test, mech: Mechanism, dir: &Scratch, role: &str) -> (ChildProcess, Link) {
    if let Some(urls) = mech.pair_urls(dir) {
        let mut child = t.spawn(role, |c| {
            set_param(set_param(c, "URL", &urls[0]), "URL2", &urls[1])
        });
        assert_eq!(child.wait_ready(), "made");
        return (child, join(&urls[0], &urls[1]));
    }
    let Some(url) = mech.bind_url(dir) else {
        return t.spawn_with_pipe(role, |c| c);
    };
    let mut child = t.spawn(role, |c| set_param(c, "URL", &url));
    let bound = child.wait_ready();
    (child, common::connect(&bound))
}

/// In the child: binds what the parent named, tells it the bound URL, and
/// accepts it (or, for a pair, makes both and joins them). The listeners
/// are returned so that they live as long as the link.
fn child_serves() -> (Link, Vec<Listener>) {
    let Some(url) = param_opt("URL") else {
        // SAFETY: as above.
        return (
            unsafe { Link::from_inherited() }.expect("Link::from_inherited"),
            Vec::new(),
        );
    };
    if let Some(rx) = param_opt("URL2") {
        let urls = [url, rx];
        let listeners = make_pair(&urls);
        let link = join(&urls[1], &urls[0]);
        common::ready("made");
        return (link, listeners);
    }
    let listener = Listener::bind(&url).unwrap_or_else(|e| panic!("bind {url}: {e}"));
    common::ready(listener.endpoint().url());
    let link = listener.accept().expect("accept the parent");
    (link, vec![listener])
}

/// What ends an echo where no peer can close the link (queues, journals).
const BYE: &[u8] = b"conformance: bye";

/// Sends back every message until the peer closes the link (or says
/// [`BYE`]).
fn echo(link: &mut Link) {
    loop {
        match link.recv() {
            Ok(m) if m == BYE => return,
            Ok(m) => link.send(&m).expect("echo a message back"),
            Err(e) if e.is_closed() => return,
            Err(e) => panic!("echo: recv: {e}"),
        }
    }
}

/// Sends `msg` and checks that the same bytes come back.
fn exchange(link: &mut Link, msg: &[u8]) {
    link.send(msg)
        .unwrap_or_else(|e| panic!("send {} bytes: {e}", msg.len()));
    let back = link
        .recv()
        .unwrap_or_else(|e| panic!("recv the echo of {} bytes: {e}", msg.len()));
    assert_same(&back, msg, "echoed message");
}

// ---------------------------------------------------------------------------
// The suite

/// Empty, small, medium and largest messages go there and back intact;
/// one byte over the peer's limit is refused, and the link stays usable.
fn round_trip(mech: Mechanism) {
    let t = Test::start();
    if t.child_role().is_some() {
        let (mut link, _listener) = child_serves();
        return echo(&mut link);
    }
    let dir = t.scratch();
    let (child, mut link) = child_binds(&t, mech, &dir, "echo");
    exchange(&mut link, b"");
    // The peer's hello has arrived by now: its limit is known.
    let peer_max = link.peer_max_msg().expect("the peer announced its limit");
    let largest = link
        .capabilities()
        .max_msg
        .map_or(peer_max, |m| peer_max.min(m as u64)) as usize;
    if !mech.one_way() {
        assert_eq!(largest, largest_by_default(mech.scheme()), "default limit");
    }
    for (seed, size) in sizes(largest).into_iter().enumerate() {
        exchange(&mut link, &payload(size, seed as u64));
    }
    let over = vec![7u8; largest + 1];
    let err = link
        .send(&over)
        .expect_err("a message over the peer's limit");
    assert!(
        matches!(err.kind(), ErrorKind::MessageTooLarge { len, max }
            if *len == largest as u64 + 1 && *max == peer_max),
        "{err}"
    );
    exchange(&mut link, b"still usable");
    if !link.capabilities().connection_oriented {
        link.send(BYE).expect("send bye");
    }
    drop(link);
    child.finish();
}

/// 100 000 messages arrive complete and in order, then the end.
fn in_order(mech: Mechanism) {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = child_connects();
        for seq in 0..IN_ORDER {
            link.send(&numbered(seq)).expect("send a numbered message");
        }
        return;
    }
    let dir = t.scratch();
    let mut peer = parent_binds(&t, mech, &dir, "sender");
    let mut buf = Vec::new();
    for seq in 0..IN_ORDER {
        peer.link
            .recv_into(&mut buf)
            .unwrap_or_else(|e| panic!("recv message {seq}: {e}"));
        if buf != numbered(seq) {
            let got = buf
                .get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()));
            panic!(
                "message {seq}: got sequence number {got:?} ({} bytes)",
                buf.len()
            );
        }
    }
    // Queues and journals have no end: the sender's exit is not seen.
    if peer.link.capabilities().connection_oriented {
        let end = peer.link.recv().expect_err("no message after the last");
        assert!(end.is_closed(), "after the last message: {end}");
    }
    peer.child.finish();
}

/// Message `seq`: its number, then `seq % 29` bytes, so sizes vary.
fn numbered(seq: u64) -> Vec<u8> {
    let mut m = seq.to_le_bytes().to_vec();
    m.resize(8 + (seq % 29) as usize, seq as u8);
    m
}

/// A peer that exits while this side waits in `recv`: the wait ends with
/// `Closed`, and so does every later `recv`.
fn peer_exit(mech: Mechanism) {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = child_connects();
        link.send(b"ready").expect("send ready");
        let order = link.recv().expect("recv the order to exit");
        assert_eq!(order, b"exit");
        // Exit with the link open: the OS closes it, as when a process dies.
        std::process::exit(0);
    }
    let dir = t.scratch();
    let mut peer = parent_binds(&t, mech, &dir, "exits");
    assert_eq!(peer.link.recv().expect("recv ready"), b"ready");
    peer.link.send(b"exit").expect("send the order to exit");
    let err = peer.link.recv().expect_err("recv after the peer exited");
    assert!(err.is_closed(), "recv after the peer exited: {err}");
    assert_eq!(*err.kind(), ErrorKind::Closed);
    let again = peer.link.recv().expect_err("a second recv");
    assert!(again.is_closed(), "a second recv: {again}");
    peer.child.finish();
}

/// A peer that stops reading. A message larger than what the link
/// buffers is taken in part by `try_send` (`Ok`: the rest waits its
/// turn); the next `try_send` is `WouldBlock` and `send_timeout` is
/// `TimedOut` after its time, both sending nothing. Filling the link with
/// small messages ends in `WouldBlock`. Once the peer reads again, it
/// gets every message `Ok` was said for, whole and in order, and nothing
/// else; a receive on the link finishes what a send left partly sent.
/// On a queue (which takes a message whole or not at all) only the small
/// messages: `try_send` fills it, then `send_timeout` is `TimedOut`.
fn stalled_peer(mech: Mechanism) {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = child_connects();
        link.send(b"ready").expect("send ready");
        let mut orders = std::io::stdin().lock().lines();
        let mut order = || orders.next().expect("an order").expect("read stdin");
        if param_opt("URL2").is_none() {
            assert_eq!(order(), "read");
            let big = link.recv().expect("recv the large message");
            assert_same(&big, &payload(big.len(), 1), "the large message");
            link.send(b"got it").expect("send got it");
        }
        let count: u64 = order().parse().expect("a count");
        for seq in 0..count {
            assert_eq!(link.recv().expect("recv a small message"), numbered(seq));
        }
        assert_eq!(link.recv().expect("recv end"), b"end");
        link.send(b"done").expect("send done");
        return;
    }
    let dir = t.scratch();
    let mut peer = parent_binds_with(&t, mech, &dir, "stalls", |c| c.stdin(Stdio::piped()));
    let mut orders = peer.child.take_stdin().expect("the child's stdin");
    let mut tell = |order: &str| writeln!(orders, "{order}").expect("write to the child");
    assert_eq!(peer.link.recv().expect("recv ready"), b"ready");
    let link = &mut peer.link;

    // A queue takes a message whole or not at all: no large message
    // left in part there.
    if !mech.one_way() {
        let big = payload(largest_by_default(mech.scheme()), 1);
        link.try_send(&big)
            .expect("try_send a message larger than the link buffers");
        let err = link
            .try_send(b"small")
            .expect_err("try_send behind an unfinished message");
        assert_eq!(*err.kind(), ErrorKind::WouldBlock, "{err}");
        let wait = Duration::from_millis(200);
        let start = Instant::now();
        let err = link
            .send_timeout(b"small", wait)
            .expect_err("send_timeout to a stalled peer");
        assert_eq!(*err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(
            start.elapsed() >= wait,
            "send_timeout gave up early: {:?}",
            start.elapsed()
        );
        tell("read");
        // The receive finishes the large message first: the reply needs it.
        assert_eq!(link.recv().expect("recv got it"), b"got it");
    }
    let mut count = 0;
    loop {
        match link.try_send(&numbered(count)) {
            Ok(()) => count += 1,
            Err(e) if *e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("try_send message {count}: {e}"),
        }
        assert!(count < 50_000_000, "try_send never found the link full");
    }
    assert!(count > 0, "the link took no small message");
    if mech.one_way() {
        // The message that did not fit (a System V queue is bounded in
        // bytes): still not, after a wait.
        let err = link
            .send_timeout(&numbered(count), Duration::from_millis(200))
            .expect_err("send_timeout into a full queue");
        assert_eq!(*err.kind(), ErrorKind::TimedOut, "{err}");
    }
    tell(&count.to_string());
    link.send(b"end").expect("send end");
    assert_eq!(link.recv().expect("recv done"), b"done");
    peer.child.finish();
}

/// `AsFd` on a link is what an event loop waits on: not readable while
/// nothing came, readable once a message did, and not readable again once
/// `try_recv` found nothing. As with ZeroMQ's `ZMQ_FD` and mio, a wake-up
/// is answered by receiving until `try_recv` finds nothing (messages read
/// ahead into the link's buffer do not make the descriptor readable; a
/// wake-up may also find nothing).
fn descriptor_readiness(mech: Mechanism) {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = child_connects();
        let mut orders = std::io::stdin().lock().lines();
        for count in [1u64, 3] {
            let order = orders.next().expect("an order").expect("read stdin");
            assert_eq!(order, count.to_string());
            for seq in 0..count {
                link.send(&numbered(seq)).expect("send");
            }
        }
        assert_eq!(link.recv().expect("recv bye"), b"bye");
        return;
    }
    let dir = t.scratch();
    let mut peer = parent_binds_with(&t, mech, &dir, "sender", |c| c.stdin(Stdio::piped()));
    let mut orders = peer.child.take_stdin().expect("the child's stdin");
    let readable = |link: &Link, wait: Duration| common::readable(link, wait);
    // The peer's hello (streams) is the first thing to read: taken here.
    peer.link
        .wait_connected(Duration::from_secs(30))
        .expect("the peer's hello");
    let quiet = Duration::from_millis(200);
    assert!(
        !readable(&peer.link, quiet),
        "readable before anything was sent"
    );
    for count in [1u64, 3] {
        writeln!(orders, "{count}").expect("write to the child");
        let mut got = Vec::new();
        let mut wakeups = 0;
        while (got.len() as u64) < count {
            let came = got.len();
            assert!(
                readable(&peer.link, Duration::from_secs(30)),
                "{came} of {count} came"
            );
            wakeups += 1;
            assert!(
                wakeups < 100,
                "readable again and again with nothing to take"
            );
            while let Some(msg) = peer.link.try_recv().expect("try_recv") {
                got.push(msg);
            }
        }
        let want: Vec<_> = (0..count).map(numbered).collect();
        assert_eq!(got, want);
        assert!(
            !readable(&peer.link, quiet),
            "readable after try_recv found nothing"
        );
    }
    peer.link.send(b"bye").expect("send bye");
    peer.child.finish();
}

/// Both sides leave a message larger than the link buffers partly sent
/// (`try_send`) and then receive: each gets the other's whole message,
/// because a receive writes the rest as room comes and reads meanwhile.
fn both_sides_busy(mech: Mechanism) {
    let t = Test::start();
    let big = |seed| payload(largest_by_default(mech.scheme()), seed);
    if t.child_role().is_some() {
        let mut link = child_connects();
        link.try_send(&big(2)).expect("child try_send");
        let got = link.recv().expect("child recv");
        assert_same(&got, &big(1), "the parent's message");
        link.send(b"done").expect("send done");
        return;
    }
    let dir = t.scratch();
    let mut peer = parent_binds(&t, mech, &dir, "busy");
    peer.link.try_send(&big(1)).expect("parent try_send");
    let got = peer.link.recv().expect("parent recv");
    assert_same(&got, &big(2), "the child's message");
    assert_eq!(peer.link.recv().expect("recv done"), b"done");
    peer.child.finish();
}

/// Descriptors travel with a message where the mechanism passes them (the
/// child writes through a pipe end it received); elsewhere `send_fds` is
/// refused with `Unsupported`, and the link stays usable.
fn descriptors(mech: Mechanism) {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = child_connects();
        let (msg, fds) = link.recv_fds().expect("recv_fds");
        if msg == b"no descriptors" {
            assert!(fds.is_empty());
        } else {
            assert_eq!(msg, b"write here");
            let [fd]: [OwnedFd; 1] = fds.try_into().expect("one descriptor");
            File::from(fd)
                .write_all(b"written by the child")
                .expect("write through the received descriptor");
        }
        link.send(b"done").expect("send done");
        return;
    }
    let dir = t.scratch();
    let mut peer = parent_binds(&t, mech, &dir, "receiver");
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("a pipe");
    if peer.link.capabilities().fd_passing {
        peer.link
            .send_fds(b"write here", &[wr.as_fd()])
            .expect("send_fds");
        drop(wr);
        assert_eq!(peer.link.recv().expect("recv done"), b"done");
        let mut got = String::new();
        File::from(rd)
            .read_to_string(&mut got)
            .expect("read what the child wrote");
        assert_eq!(got, "written by the child");
    } else {
        let err = peer
            .link
            .send_fds(b"write here", &[wr.as_fd()])
            .expect_err("send_fds where the mechanism passes no descriptors");
        assert!(matches!(err.kind(), ErrorKind::Unsupported(_)), "{err}");
        peer.link
            .send(b"no descriptors")
            .expect("send after the refusal");
        assert_eq!(peer.link.recv().expect("recv done"), b"done");
    }
    peer.child.finish();
}

/// The round trip with the parent on tokio: it connects with `AsyncLink`
/// to a child that echoes.
#[cfg(feature = "async")]
fn async_round_trip(mech: Mechanism) {
    use ipcx::tokio::AsyncLink;

    let t = Test::start();
    if t.child_role().is_some() {
        let (mut link, _listener) = child_serves();
        return echo(&mut link);
    }
    let dir = t.scratch();
    let (child, link) = child_binds(&t, mech, &dir, "echo");
    let largest = link
        .peer_max_msg()
        .map_or(largest_by_default(mech.scheme()), |m| m as usize);
    let one_way = !link.capabilities().connection_oriented;
    common::runtime().block_on(async move {
        let mut link = AsyncLink::from_link(link).expect("AsyncLink::from_link");
        for (seed, size) in sizes(largest).into_iter().enumerate() {
            let msg = payload(size, seed as u64);
            link.send(&msg).await.expect("async send");
            let back = link.recv().await.expect("async recv");
            assert_same(&back, &msg, "echoed message");
        }
        if one_way {
            link.send(BYE).await.expect("send bye");
        }
    });
    child.finish();
}

/// The parent serves on tokio: `AsyncListener` accepts a child that sends
/// every size and checks the echoes.
#[cfg(feature = "async")]
fn async_serve(mech: Mechanism) {
    use ipcx::tokio::{AsyncLink, AsyncListener};

    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = child_connects();
        for (seed, size) in sizes(largest_by_default(mech.scheme()))
            .into_iter()
            .enumerate()
        {
            exchange(&mut link, &payload(size, seed as u64));
        }
        return;
    }
    let dir = t.scratch();
    let rt = common::runtime();
    let (child, mut link) = match mech.bind_url(&dir) {
        None => {
            let (child, link) = t.spawn_with_pipe("client", |c| c);
            let _entered = rt.enter();
            (
                child,
                AsyncLink::from_link(link).expect("AsyncLink::from_link"),
            )
        }
        Some(url) => {
            let mut listener = AsyncListener::bind(&url).expect("AsyncListener::bind");
            let bound = listener.endpoint().url().to_string();
            let child = t.spawn("client", |c| set_param(c, "URL", &bound));
            let link = rt.block_on(listener.accept()).expect("async accept");
            (child, link)
        }
    };
    rt.block_on(async {
        loop {
            match link.recv().await {
                Ok(m) => link.send(&m).await.expect("async echo"),
                Err(e) if e.is_closed() => break,
                Err(e) => panic!("async recv: {e}"),
            }
        }
    });
    child.finish();
}

/// The halves as `futures` traits: a `Sink` sends every size and a last
/// word, a `Stream` yields the echoes in order and ends (`None`) when the
/// peer leaves; closing the sink is clean.
#[cfg(feature = "async")]
fn async_stream_sink(mech: Mechanism) {
    use futures_core::Stream;
    use futures_sink::Sink;
    use ipcx::tokio::AsyncLink;
    use std::future::poll_fn;
    use std::pin::Pin;

    let t = Test::start();
    if t.child_role().is_some() {
        let (mut link, _listener) = child_serves();
        loop {
            let msg = link.recv().expect("recv");
            link.send(&msg).expect("echo");
            if msg == b"bye" {
                return;
            }
        }
    }
    let dir = t.scratch();
    let (child, link) = child_binds(&t, mech, &dir, "echo");
    common::runtime().block_on(async move {
        let (rx, tx) = AsyncLink::from_link(link)
            .expect("AsyncLink::from_link")
            .split();
        let mut stream = rx.into_stream();
        let mut sink = tx.into_sink::<Vec<u8>>();
        let mut sent = Vec::new();
        for (seed, size) in sizes(largest_by_default(mech.scheme()))
            .into_iter()
            .enumerate()
        {
            sent.push(payload(size, seed as u64));
        }
        sent.push(b"bye".to_vec());
        for msg in &sent {
            poll_fn(|cx| Pin::new(&mut sink).poll_ready(cx))
                .await
                .expect("poll_ready");
            Pin::new(&mut sink)
                .start_send(msg.clone())
                .expect("start_send");
            poll_fn(|cx| Pin::new(&mut sink).poll_flush(cx))
                .await
                .expect("poll_flush");
            let back = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx))
                .await
                .expect("an echo")
                .expect("recv");
            assert_same(&back, msg, "echo through the stream");
        }
        let end = poll_fn(|cx| Pin::new(&mut stream).poll_next(cx)).await;
        assert!(end.is_none(), "the stream ends when the peer leaves");
        poll_fn(|cx| Pin::new(&mut sink).poll_close(cx))
            .await
            .expect("poll_close");
    });
    child.finish();
}

/// Runs the suite against each mechanism, one module per mechanism, each
/// with the tests its capabilities allow: no peer to exit or end a
/// stream on a queue or journal, no message taken in part (a queue takes
/// one whole or not at all), no bound on a journal.
macro_rules! conformance {
    ($($module:ident => $mech:expr, [$($test:ident),*], async [$($async_test:ident),*];)*) => {$(
        mod $module {
            use super::*;
            $(
                #[test]
                fn $test() {
                    super::$test($mech);
                }
            )*
            $(
                #[cfg(feature = "async")]
                #[test]
                fn $async_test() {
                    super::$async_test($mech);
                }
            )*
        }
    )*};
}

/// Every test, for mechanisms with peers and descriptors.
macro_rules! streams {
    ($($module:ident => $mech:expr),* $(,)?) => {
        conformance! {$(
            $module => $mech,
                [round_trip, in_order, peer_exit, descriptors, stalled_peer,
                 descriptor_readiness, both_sides_busy],
                async [async_round_trip, async_serve, async_stream_sink];
        )*}
    };
}

streams! {
    pipe => Mechanism::Pipe,
    fifo => Mechanism::Fifo,
    unix => Mechanism::UnixPath,
    unix_abstract => Mechanism::UnixAbstract,
    unixseq => Mechanism::UnixSeq,
    tcp => Mechanism::Tcp,
    shm => Mechanism::Shm,
}

conformance! {
    mq => Mechanism::Mq,
        [round_trip, in_order, descriptors, stalled_peer, descriptor_readiness],
        async [async_round_trip];
    sysvmq => Mechanism::SysvMq,
        [round_trip, in_order, descriptors, stalled_peer, descriptor_readiness],
        async [async_round_trip];
    journal => Mechanism::Journal,
        [round_trip, in_order, descriptors, descriptor_readiness],
        async [async_round_trip];
}
