//! Signals taken as values: another process sends them (`kill`,
//! `sigqueue` with an integer) and the subscriber gets each with its
//! sender; real-time signals queue; two subscriptions each get every one;
//! tokio awaits them; and what is refused.
//!
//! The tests of this file run as threads of one process, which signals
//! reach as a whole: each uses signals of its own.

mod common;

use std::time::Duration;

use common::{Test, param, set_param};
use ipcx::ErrorKind;
use ipcx::signal::{self, Received, Signals};

const PATIENCE: Duration = Duration::from_secs(30);

/// In a child: sends the parent (`PARENT`) what `ORDERS` lists, one
/// `NAME` (kill) or `NAME=VALUE` (sigqueue) per comma.
fn sender() {
    let parent: u32 = param("PARENT").parse().expect("a pid");
    for order in param("ORDERS").split(',') {
        match order.split_once('=') {
            Some((name, value)) => signal::queue(
                parent,
                signal::number(name).expect("a signal"),
                value.parse().expect("a value"),
            )
            .expect("sigqueue"),
            None => signal::send(parent, signal::number(order).expect("a signal")).expect("kill"),
        }
    }
}

/// Starts a child that sends this process `orders`.
fn send_from_child(t: &Test, orders: &str) -> common::ChildProcess {
    let me = std::process::id().to_string();
    t.spawn("sender", |c| {
        set_param(set_param(c, "PARENT", &me), "ORDERS", orders)
    })
}

fn rt(offset: i32) -> i32 {
    signal::number(&format!("SIGRTMIN+{offset}")).expect("a real-time signal")
}

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// `sigqueue` from another process: each signal arrives with its integer,
/// the sender's pid and uid; three of one real-time signal queue, each
/// with its own integer (none lost; the kernel hands them to whichever
/// threads are free, so their order is not kept).
#[test]
fn queued_signals_carry_a_value_and_their_sender() {
    let t = Test::start();
    if t.child_role().is_some() {
        return sender();
    }
    let usr1 = signal::number("SIGUSR1").expect("SIGUSR1");
    let mut signals = Signals::new(&[usr1, rt(1)]).expect("subscribe");
    let child = send_from_child(&t, "SIGUSR1=42,SIGRTMIN+1=7,SIGRTMIN+1=8,SIGRTMIN+1=-9");
    let pid = child.id();
    let mut got: Vec<Received> = (0..4)
        .map(|_| signals.wait_timeout(PATIENCE).expect("a signal"))
        .collect();
    child.finish();
    got.sort_by_key(|r| (r.signal, r.value));
    let from = |signal, value| Received {
        signal,
        value: Some(value),
        sender: Some(pid),
        uid: Some(uid()),
    };
    assert_eq!(
        got,
        vec![
            from(usr1, 42),
            from(rt(1), -9),
            from(rt(1), 7),
            from(rt(1), 8)
        ]
    );
    assert_eq!(signals.try_wait().expect("try_wait"), None);
    assert_eq!(signals.lost(), 0);
}

/// `kill` carries no integer; two subscriptions to one signal both get it.
#[test]
fn kill_has_no_value_and_every_subscription_gets_it() {
    let t = Test::start();
    if t.child_role().is_some() {
        return sender();
    }
    let mut first = Signals::new(&[rt(2)]).expect("subscribe");
    let mut second = Signals::new(&[rt(2)]).expect("subscribe again");
    let child = send_from_child(&t, "SIGRTMIN+2");
    let pid = child.id();
    for signals in [&mut first, &mut second] {
        let got = signals.wait_timeout(PATIENCE).expect("the signal");
        assert_eq!(
            got,
            Received {
                signal: rt(2),
                value: None,
                sender: Some(pid),
                uid: Some(uid()),
            }
        );
    }
    child.finish();
}

/// Signals that cannot be taken as values, and names that are not signals,
/// are refused with `InvalidArgument`; names read both ways.
#[test]
fn what_is_refused_and_how_names_read() {
    let _t = Test::start();
    for bad in ["SIGKILL", "SIGSTOP", "SIGSEGV", "SIGBUS"] {
        let n = signal::number(bad).expect("a signal");
        let err = Signals::new(&[n]).expect_err(bad);
        assert!(
            matches!(err.kind(), ErrorKind::InvalidArgument(_)),
            "{bad}: {err}"
        );
    }
    for bad in [0, -1, 200, 32] {
        let err = Signals::new(&[bad]).expect_err("not a signal");
        assert!(
            matches!(err.kind(), ErrorKind::InvalidArgument(_)),
            "{bad}: {err}"
        );
    }
    for bad in [
        "SIGFOO",
        "",
        "RTMIN+999",
        "SIGRTMAX+1",
        "0",
        "SIGRTMIN+2147483647",
    ] {
        let err = signal::number(bad).expect_err(bad);
        assert!(
            matches!(err.kind(), ErrorKind::InvalidArgument(_)),
            "{bad:?}: {err}"
        );
    }
    assert_eq!(signal::number("usr1").expect("usr1"), 10);
    assert_eq!(signal::number("SIGTERM").expect("SIGTERM"), 15);
    assert_eq!(signal::number("15").expect("15"), 15);
    let rtmin = signal::number("SIGRTMIN").expect("SIGRTMIN");
    assert_eq!(signal::number("RTMIN+3").expect("RTMIN+3"), rtmin + 3);
    assert_eq!(signal::name(rtmin + 3), "SIGRTMIN+3");
    assert_eq!(signal::name(10), "SIGUSR1");
    let err = signal::send(0, 10).expect_err("pid 0 is not a process");
    assert!(matches!(err.kind(), ErrorKind::InvalidArgument(_)), "{err}");
}

/// On tokio: `AsyncSignals` as a stream, and `termination()` resolving on
/// a `SIGTERM` another process sends.
#[cfg(feature = "async")]
#[test]
fn tokio_awaits_signals_and_termination() {
    use futures_core::Stream;
    use std::pin::Pin;

    let t = Test::start();
    if t.child_role().is_some() {
        return sender();
    }
    let rt3 = rt(3);
    let runtime = common::runtime();
    runtime.block_on(async {
        let mut signals = ipcx::tokio::AsyncSignals::new(&[rt3]).expect("subscribe");
        let stop = ipcx::tokio::termination().expect("termination");
        let child = send_from_child(&t, "SIGRTMIN+3=5,SIGTERM");
        let next = std::future::poll_fn(|cx| Pin::new(&mut signals).poll_next(cx));
        let got = tokio::time::timeout(PATIENCE, next)
            .await
            .expect("a signal in time")
            .expect("the stream goes on");
        assert_eq!((got.signal, got.value), (rt3, Some(5)));
        let why = tokio::time::timeout(PATIENCE, stop)
            .await
            .expect("SIGTERM in time")
            .expect("termination");
        assert_eq!(why, ipcx::signal::Termination::Terminate);
        child.finish();
    });
}
