//! `EventFd`: created in one process, passed over `unix:` to another,
//! raised there and taken here, in both modes; awaited on tokio; and
//! what it refuses.

mod common;

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use common::{Test, set_param};
use ipcx::sync::{EventFd, EventFdMode};
use ipcx::{ErrorKind, Link, Listener};

/// A parent's side of a test: its eventfd, and the child it handed it to.
struct Handed {
    efd: EventFd,
    link: Link,
    child: common::ChildProcess,
    _listener: Listener,
    _t: Test,
}

/// Starts a test. In the child, runs [`raiser`] and gives `None`; in the
/// parent, makes an eventfd in `mode`, binds an abstract socket, starts
/// the child and sends it the eventfd with `order` (`MODE N,M,...`).
fn hand_over(mode: EventFdMode, order: &str) -> Option<Handed> {
    let t = Test::start();
    if t.child_role().is_some() {
        raiser();
        return None;
    }
    let efd = EventFd::new(mode).expect("eventfd");
    let url = format!("unix:@{}", common::abstract_name());
    let mut listener = Listener::bind(&url).expect("bind");
    let mut child = t.spawn("raiser", |c| set_param(c, "URL", &url));
    let mut link = common::accept(&mut listener, &mut child);
    link.send_fds(order.as_bytes(), &[efd.as_fd()])
        .expect("send_fds");
    Some(Handed {
        efd,
        link,
        child,
        _listener: listener,
        _t: t,
    })
}

/// In the child: takes the eventfd the parent sent and does what the
/// message says: `add N,M,...` (each a separate add), then says `done`.
fn raiser() {
    let mut link = common::connect(&common::param("URL"));
    let (order, fds) = link.recv_fds().expect("recv_fds");
    let [fd]: [OwnedFd; 1] = fds.try_into().expect("one descriptor");
    let efd = EventFd::from_fd(fd).expect("EventFd::from_fd");
    let order = String::from_utf8(order).expect("utf-8");
    let (mode, adds) = order.split_once(' ').expect("mode and adds");
    let want = if mode == "semaphore" {
        EventFdMode::Semaphore
    } else {
        EventFdMode::Counter
    };
    assert_eq!(efd.mode(), want, "the mode the kernel reports");
    for n in adds.split(',') {
        std::thread::sleep(Duration::from_millis(20));
        efd.add(n.parse().expect("a number")).expect("add");
    }
    link.send(b"done").expect("send done");
    let _ = link.recv();
}

/// Semaphore mode: three adds of 1 in another process are three waits of
/// 1 here, and then nothing.
#[test]
fn semaphore_permits_cross_processes() {
    let Some(Handed {
        efd,
        mut link,
        child,
        ..
    }) = hand_over(EventFdMode::Semaphore, "semaphore 1,1,1")
    else {
        return;
    };
    for _ in 0..3 {
        assert_eq!(efd.wait_timeout(Duration::from_secs(30)).expect("wait"), 1);
    }
    assert_eq!(link.recv().expect("recv done"), b"done");
    assert_eq!(efd.try_wait().expect("try_wait"), None);
    drop(link);
    child.finish();
}

/// Counter mode: adds of 5 and 7 in another process add up; a wait takes
/// the whole count.
#[test]
fn counter_adds_up_across_processes() {
    let Some(Handed {
        efd,
        mut link,
        child,
        ..
    }) = hand_over(EventFdMode::Counter, "counter 5,7")
    else {
        return;
    };
    assert_eq!(link.recv().expect("recv done"), b"done");
    assert_eq!(efd.count().expect("count"), 12);
    assert_eq!(efd.wait().expect("wait"), 12);
    assert_eq!(efd.try_wait().expect("try_wait"), None);
    drop(link);
    child.finish();
}

/// A task awaits the eventfd while another process raises it: woken by
/// the reactor, not by a thread.
#[cfg(feature = "async")]
#[test]
fn async_wait_is_woken_by_another_process() {
    let Some(Handed {
        efd,
        mut link,
        child,
        ..
    }) = hand_over(EventFdMode::Counter, "counter 3")
    else {
        return;
    };
    let rt = common::runtime();
    rt.block_on(async {
        let efd = ipcx::tokio::AsyncEventFd::new(efd).expect("AsyncEventFd");
        let got = tokio::time::timeout(Duration::from_secs(30), efd.wait())
            .await
            .expect("woken before the timeout")
            .expect("wait");
        assert_eq!(got, 3);
    });
    assert_eq!(link.recv().expect("recv done"), b"done");
    drop(link);
    child.finish();
}

/// A descriptor that is not an eventfd is refused, as are a mode the
/// kernel contradicts and an add past the largest count; a wait on
/// nothing times out; a full counter makes `try_add` say `WouldBlock`.
#[test]
fn what_an_eventfd_refuses() {
    let _t = Test::start();
    let (rd, _wr) = rustix::pipe::pipe().expect("a pipe");
    let err = EventFd::from_fd(rd).expect_err("a pipe is not an eventfd");
    assert!(matches!(err.kind(), ErrorKind::Foreign(_)), "{err}");

    let sem = EventFd::new(EventFdMode::Semaphore).expect("eventfd");
    let fd = OwnedFd::from(sem);
    let err = EventFd::from_fd_with_mode(fd, EventFdMode::Counter).expect_err("wrong mode");
    assert!(matches!(err.kind(), ErrorKind::Foreign(_)), "{err}");

    let efd = EventFd::new(EventFdMode::Counter).expect("eventfd");
    let err = efd.add(u64::MAX).expect_err("past the largest count");
    assert!(matches!(err.kind(), ErrorKind::InvalidArgument(_)), "{err}");
    let start = Instant::now();
    let err = efd
        .wait_timeout(Duration::from_millis(50))
        .expect_err("nothing to take");
    assert_eq!(*err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(start.elapsed() >= Duration::from_millis(50));

    efd.add(u64::MAX - 1).expect("fill to the largest count");
    let err = efd.try_add(1).expect_err("one more does not fit");
    assert_eq!(*err.kind(), ErrorKind::WouldBlock, "{err}");
    assert_eq!(efd.wait().expect("wait"), u64::MAX - 1);
}
