//! `ipcx::Poller`: one thread waits on many sources at once, each driven
//! by another process: 200 links from four processes (some closing while
//! it waits), messages a stream read ahead, and every kind of source in
//! one poller (socket, `shm:`, POSIX and System V queues, journal,
//! signals, eventfd), with an `shm:` peer killed while it waits.

mod common;

use std::collections::HashMap;
use std::io::BufRead;
use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::{ErrorKind, Link, Listener, Poller, Source};

/// How long a test waits for what another process does before failing.
const PATIENCE: Duration = Duration::from_secs(30);

/// In a child: opens `COUNT` links to `URL`, sends its number on each,
/// closes every fifth at once, and waits on the others for "bye".
fn many_links() {
    let url = param("URL");
    let first: usize = param("FIRST").parse().expect("a number");
    let count: usize = param("COUNT").parse().expect("a number");
    let mut open = Vec::new();
    for n in first..first + count {
        let mut link = common::connect(&url);
        link.send(&n.to_le_bytes()).expect("send my number");
        if n % 5 == 0 {
            link.close();
        } else {
            open.push(link);
        }
    }
    for mut link in open {
        assert_eq!(link.recv().expect("recv bye"), b"bye");
    }
}

/// 200 links from four processes into one poller with their listener:
/// every link's message arrives, the 40 the peers close while the poller
/// waits are seen as `Closed` and removed, the 160 others answered.
#[test]
fn two_hundred_links_some_closing() {
    let t = Test::start();
    if t.child_role().is_some() {
        return many_links();
    }
    let dir = t.scratch();
    let listener = Listener::bind(&dir.url("unix", "many.sock")).expect("bind");
    let url = listener.endpoint().url().to_string();
    let mut poller = Poller::new().expect("a poller");
    let lkey = poller
        .add(Source::Listener(listener))
        .expect("add the listener");
    let children: Vec<_> = (0..4)
        .map(|i| {
            t.spawn("links", |c| {
                set_param(
                    set_param(set_param(c, "URL", &url), "FIRST", &(i * 50).to_string()),
                    "COUNT",
                    "50",
                )
            })
        })
        .collect();
    // Keys are reused once removed: the number of each link watched now,
    // and every number seen.
    let mut numbers: HashMap<usize, usize> = HashMap::new();
    let mut seen = Vec::new();
    let mut closed = 0;
    while seen.len() < 200 || closed < 40 {
        let keys = poller.wait(Some(PATIENCE)).expect("wait").to_vec();
        assert!(
            !keys.is_empty(),
            "nothing ready: {} numbers, {closed} closed",
            seen.len()
        );
        for key in keys {
            if key == lkey {
                let Some(Source::Listener(l)) = poller.get_mut(key) else {
                    panic!("the listener")
                };
                let link = l.accept().expect("accept");
                poller.add(Source::Link(link)).expect("add a link");
                continue;
            }
            let Some(Source::Link(link)) = poller.get_mut(key) else {
                panic!("a link")
            };
            match link.try_recv() {
                Ok(Some(m)) => {
                    let n = usize::from_le_bytes(m.try_into().expect("a number"));
                    assert!(numbers.insert(key, n).is_none(), "two numbers on one link");
                    seen.push(n);
                }
                Ok(None) => {}
                Err(e) if e.is_closed() => {
                    let n = numbers.remove(&key).expect("closed after its number");
                    assert_eq!(n % 5, 0, "link {n} was not closed by its peer");
                    poller.remove(key).expect("remove");
                    closed += 1;
                }
                Err(e) => panic!("try_recv: {e}"),
            }
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    assert_eq!(poller.len(), 1 + 160);
    for key in poller.keys().collect::<Vec<_>>() {
        if let Some(Source::Link(link)) = poller.get_mut(key) {
            link.send(b"bye").expect("send bye");
        }
    }
    for child in children {
        child.finish();
    }
}

/// In a child: sends three messages in one burst on `URL`, then waits
/// for "bye".
fn burst() {
    let mut link = common::connect(&param("URL"));
    for m in [&b"one"[..], b"two", b"three"] {
        link.send(m).expect("send");
    }
    assert_eq!(link.recv().expect("recv bye"), b"bye");
}

/// Messages a stream link read ahead are reported although its socket
/// has nothing more: taken one per wake-up, each wait reports the link
/// until the last is taken, then it is quiet.
#[test]
fn messages_read_ahead_stay_ready() {
    let t = Test::start();
    if t.child_role().is_some() {
        return burst();
    }
    let dir = t.scratch();
    let listener = Listener::bind(&dir.url("unix", "burst.sock")).expect("bind");
    let url = listener.endpoint().url().to_string();
    let child = t.spawn("burst", |c| set_param(c, "URL", &url));
    let link = listener.accept().expect("accept");
    // All three in this process's socket buffer before the first read.
    std::thread::sleep(Duration::from_millis(200));
    let mut poller: Poller<Link> = Poller::new().expect("a poller");
    let key = poller.add(link).expect("add");
    let mut got = Vec::new();
    while got.len() < 3 {
        let keys = poller.wait(Some(PATIENCE)).expect("wait");
        assert_eq!(keys, [key], "the link, with {} taken", got.len());
        if let Some(m) = poller
            .get_mut(key)
            .expect("the link")
            .try_recv()
            .expect("try_recv")
        {
            got.push(m);
        }
    }
    assert_eq!(got, [&b"one"[..], b"two", b"three"]);
    let quiet = poller.wait(Some(Duration::from_millis(200))).expect("wait");
    assert!(quiet.is_empty(), "ready with nothing to take: {quiet:?}");
    poller
        .get_mut(key)
        .expect("the link")
        .send(b"bye")
        .expect("send bye");
    child.finish();
}

/// In a child: acts on every source the parent watches, one at a time,
/// as the parent tells it on stdin.
fn every_kind() {
    let mut orders = std::io::stdin().lock().lines();
    let mut order = || orders.next().expect("an order").expect("read stdin");
    let mut shm = common::connect(&param("SHM"));
    let mut mq = common::connect(&param("MQ"));
    let mut sysv = common::connect(&param("SYSV"));
    let mut journal = common::connect(&param("JOURNAL"));
    ready("connected");
    loop {
        match order().as_str() {
            "shm" => shm.send(b"shm").expect("send shm"),
            "mq" => mq.send(b"mq").expect("send mq"),
            "sysv" => sysv.send(b"sysv").expect("send sysv"),
            "journal" => journal.send(b"journal").expect("append"),
            "signal" => ipcx::signal::queue(
                std::os::unix::process::parent_id(),
                param("SIGNAL").parse().expect("a signal"),
                7,
            )
            .expect("sigqueue"),
            "die" => std::process::abort(),
            other => panic!("order {other}"),
        }
    }
}

/// Every kind of source in one poller, each made ready by another
/// process in turn (an `shm:` link, a POSIX and a System V queue, a
/// journal, a signal), and an eventfd: each wait reports exactly the
/// source acted on. Then the `shm:` peer is killed: nothing rings, and
/// the poller still reports the link (its liveness look), whose receive
/// is `Closed`.
#[test]
fn every_kind_of_source_and_a_killed_shm_peer() {
    use std::io::Write;
    let t = Test::start();
    if t.child_role().is_some() {
        return every_kind();
    }
    let dir = t.scratch();
    let sig = ipcx::signal::number("SIGRTMIN+3").expect("a real-time signal");
    let key = 0x5400_0000 | (std::process::id() & 0xffff) << 8;
    let urls = [
        format!("shm:{}", common::abstract_name()),
        format!("mq:/{}", common::abstract_name()),
        format!("sysvmq:{key:#x}"),
        format!("{}?from=0", dir.url("journal", "j")),
    ];
    let shm = Listener::bind(&urls[0]).expect("bind shm");
    let mq = Listener::bind(&urls[1]).expect("bind mq");
    let sysv = Listener::bind(&urls[2]).expect("bind sysvmq");
    let journal = Link::connect(&urls[3]).expect("open the journal");
    let signals = ipcx::signal::Signals::new(&[sig]).expect("subscribe");
    let mut child = t.spawn("acts", |c| {
        c.stdin(std::process::Stdio::piped());
        let c = set_param(c, "SHM", &urls[0]);
        let c = set_param(c, "MQ", &urls[1]);
        let c = set_param(c, "SYSV", &urls[2]);
        let c = set_param(c, "JOURNAL", &urls[3]);
        set_param(c, "SIGNAL", &sig.to_string())
    });
    let mut orders = child.take_stdin().expect("the child's stdin");
    let shm_link = shm.accept().expect("accept shm");
    assert_eq!(child.wait_ready(), "connected");
    let mut poller = Poller::new().expect("a poller");
    let mut add = |s| poller.add(s).expect("add");
    let keys = [
        add(Source::Link(shm_link)),
        add(Source::Link(mq.accept().expect("accept mq"))),
        add(Source::Link(sysv.accept().expect("accept sysvmq"))),
        add(Source::Link(journal)),
        add(Source::Signals(signals)),
    ];
    let eventfd = ipcx::sync::EventFd::new(ipcx::sync::EventFdMode::Counter).expect("eventfd");
    let raise = ipcx::sync::EventFd::from_fd(
        std::os::fd::AsFd::as_fd(&eventfd)
            .try_clone_to_owned()
            .expect("dup"),
    )
    .expect("a second handle");
    let efd = poller
        .add(Source::EventFd(eventfd))
        .expect("add the eventfd");
    assert!(
        poller
            .wait(Some(Duration::from_millis(200)))
            .expect("wait")
            .is_empty(),
        "ready before anything happened"
    );
    for (order, key) in ["shm", "mq", "sysv", "journal", "signal"].iter().zip(keys) {
        writeln!(orders, "{order}").expect("write to the child");
        assert_eq!(
            poller.wait(Some(PATIENCE)).expect("wait"),
            [key],
            "after {order}"
        );
        match poller.get_mut(key).expect("the source") {
            Source::Link(l) => {
                assert_eq!(
                    l.try_recv().expect("try_recv").as_deref(),
                    Some(order.as_bytes())
                )
            }
            Source::Signals(s) => {
                let got = s.try_wait().expect("try_wait").expect("the signal");
                assert_eq!((got.signal, got.value), (sig, Some(7)));
            }
            other => panic!("{other:?}"),
        }
    }
    raise.add(1).expect("raise the eventfd");
    assert_eq!(poller.wait(Some(PATIENCE)).expect("wait"), [efd]);
    let Some(Source::EventFd(e)) = poller.get_mut(efd) else {
        panic!("the eventfd")
    };
    assert_eq!(e.try_wait().expect("try_wait"), Some(1));

    writeln!(orders, "die").expect("write to the child");
    assert_eq!(
        poller.wait(Some(PATIENCE)).expect("wait"),
        [keys[0]],
        "the killed peer"
    );
    let Some(Source::Link(l)) = poller.get_mut(keys[0]) else {
        panic!("the shm link")
    };
    let err = l.try_recv().expect_err("a killed peer");
    assert_eq!(*err.kind(), ErrorKind::Closed, "{err}");
    child.kill();
}

/// In a child: connects to `URL`, says "hi", waits for "bye", and
/// leaves 300 ms later.
fn says_hi() {
    let mut link = common::connect(&param("URL"));
    link.send(b"hi").expect("send");
    assert_eq!(link.recv().expect("recv bye"), b"bye");
    std::thread::sleep(Duration::from_millis(300));
}

/// An `shm:` listener in a poller: quiet until a peer in another process
/// connects (a ring of its doorbell with nobody connected is not enough),
/// then ready until accepted (an accept that may not wait takes the peer).
/// The next peer connects once the last one left, which rings nothing:
/// the poller's periodic look resets the endpoint.
#[test]
fn an_shm_listener_is_ready_once_a_peer_connected() {
    shm_listener_in::<Listener>(|l| l, |l| l);
}

/// The same in the default poller of every kind of source.
#[test]
fn an_shm_listener_as_a_source_is_ready_once_a_peer_connected() {
    shm_listener_in::<Source>(Source::Listener, |s| match s {
        Source::Listener(l) => l,
        _ => panic!("the listener"),
    });
}

fn shm_listener_in<S: ipcx::Pollable>(
    wrap: fn(Listener) -> S,
    unwrap: fn(&mut S) -> &mut Listener,
) {
    let t = Test::start();
    if t.child_role().is_some() {
        return says_hi();
    }
    let name = common::abstract_name();
    let url = format!("shm:{name}");
    let mut poller: Poller<S> = Poller::new().expect("a poller");
    let Ok(key) = poller.add(wrap(Listener::bind(&url).expect("bind"))) else {
        panic!("an shm: listener refused");
    };
    let short = Duration::from_millis(200);
    let mut children = Vec::new();
    for round in 0..2 {
        let quiet = poller.wait(Some(short)).expect("wait");
        assert!(quiet.is_empty(), "ready with no peer (round {round})");
        if round == 0 {
            // A stray ring (a connector that gave up, say).
            use std::io::Write;
            let bell = format!("/dev/shm/{name}.bell4");
            std::fs::OpenOptions::new()
                .write(true)
                .open(&bell)
                .and_then(|mut f| f.write_all(&[1]))
                .unwrap_or_else(|e| panic!("ring {bell}: {e}"));
        }
        let quiet = poller.wait(Some(short)).expect("wait");
        assert!(quiet.is_empty(), "ready on a ring, no peer (round {round})");
        // The last peer is still there (300 ms): it leaves while the
        // poller waits.
        children.push(t.spawn("hi", |c| set_param(c, "URL", &url)));
        assert_eq!(poller.wait(Some(PATIENCE)).expect("wait"), [key]);
        let again = poller.wait(Some(PATIENCE)).expect("wait");
        assert_eq!(again, [key], "until accepted");
        let listener = unwrap(poller.get_mut(key).expect("the listener"));
        let mut link = listener
            .accept_timeout(Duration::ZERO)
            .expect("accept at once");
        assert_eq!(link.recv_timeout(PATIENCE).expect("recv"), b"hi");
        link.send(b"bye").expect("send");
    }
    for child in children {
        child.finish();
    }
}

/// A FIFO listener cannot sit in a poller (its accept reads a hello
/// blocking): `Poller::add` gives it back, and the patterns that bind and
/// collect through a poller refuse `fifo:` before they make anything.
#[test]
fn a_fifo_listener_is_refused() {
    let t = Test::start();
    let dir = t.scratch();
    let url = dir.url("fifo", "f");
    let mut poller: Poller = Poller::new().expect("a poller");
    let refused = poller
        .add(Source::Listener(Listener::bind(&url).expect("bind")))
        .expect_err("a FIFO listener");
    assert!(
        matches!(refused.error.kind(), ErrorKind::Unsupported(why) if why.contains("no descriptor to wait on")),
        "{}",
        refused.error
    );
    drop(refused);
    let other = dir.url("fifo", "g");
    let bound = [
        ipcx::pattern::Subscriber::bind(&other, &[">"]).map(drop),
        ipcx::pattern::Puller::bind(&other, 1).map(drop),
    ];
    common::all_unsupported(bound, "a FIFO, whose peers");
    assert!(!dir.path("g").exists(), "a FIFO was made");
}
