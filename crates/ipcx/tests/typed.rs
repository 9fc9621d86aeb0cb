//! Typed messages (`ipcx::pattern::{Sender, Receiver}`) between two
//! processes: serde types through `unix:`, `tcp:` and `shm:`; a schema
//! mismatch fails at connect on both sides, naming both; a message that
//! does not decode is a typed error and the link goes on.

mod common;

use common::{Test, param, ready, set_param};
use ipcx::pattern::{Message, Receiver, Sender};
use ipcx::{ErrorKind, Listener};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Order {
    id: u64,
    symbol: String,
    qty: i32,
    legs: Vec<(u8, f64)>,
    note: ipcx::pattern::Bytes,
}

impl Message for Order {
    const VERSION: u32 = 1;
}

/// The same name, a newer encoding.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct OrderV2 {
    id: u64,
}

impl Message for OrderV2 {
    const VERSION: u32 = 2;
    fn name() -> std::borrow::Cow<'static, str> {
        Order::name()
    }
}

fn order(id: u64) -> Order {
    Order {
        id,
        symbol: format!("SYM{}", id % 97),
        qty: (id as i32 % 1000) - 500,
        legs: (0..id % 5).map(|k| (k as u8, id as f64 / 3.0)).collect(),
        note: vec![id as u8; (id % 300) as usize].into(),
    }
}

const COUNT: u64 = 1000;

/// The URL to bind for `scheme`, in `dir` where it needs a path.
fn url_for(scheme: &str, dir: &common::Scratch) -> String {
    match scheme {
        "unix" => dir.url("unix", "t.sock"),
        "tcp" => "tcp://127.0.0.1:0".into(),
        "shm" => format!("shm:{}", common::abstract_name()),
        other => panic!("no URL for {other}"),
    }
}

/// 1 000 orders from a sender in another process arrive whole, in order.
fn orders_arrive(scheme: &str) {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut tx = Sender::<Order>::connect(&param("URL")).expect("connect");
        for id in 0..COUNT {
            tx.send(&order(id)).expect("send");
        }
        return;
    }
    let dir = t.scratch();
    let listener = Listener::bind(&url_for(scheme, &dir)).expect("bind");
    let bound = listener.endpoint().url().to_string();
    let child = t.spawn("sender", |c| set_param(c, "URL", &bound));
    let mut rx = Receiver::<Order>::accept(&listener).expect("accept");
    // Half into a value kept across receives (its Vecs reused).
    let mut kept = order(0);
    for id in 0..COUNT {
        if id % 2 == 0 {
            assert_eq!(rx.recv().expect("recv"), order(id));
        } else {
            rx.recv_into(&mut kept).expect("recv_into");
            assert_eq!(kept, order(id));
        }
    }
    child.finish();
}

#[test]
fn orders_arrive_on_unix() {
    orders_arrive("unix");
}

#[test]
fn orders_arrive_on_tcp() {
    orders_arrive("tcp");
}

#[test]
fn orders_arrive_on_shm() {
    orders_arrive("shm");
}

/// A sender of `Order` v2 and a receiver of `Order` v1: both fail at
/// connect, each error naming both schemas.
#[test]
fn a_schema_mismatch_fails_at_connect_naming_both() {
    let t = Test::start();
    if t.child_role().is_some() {
        let err = Sender::<OrderV2>::connect(&param("URL")).expect_err("another version");
        assert!(matches!(err.kind(), ErrorKind::Handshake(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("Order` v2") && text.contains("Order` v1"),
            "{text}"
        );
        ready("refused");
        return;
    }
    let dir = t.scratch();
    let listener = Listener::bind(&url_for("unix", &dir)).expect("bind");
    let bound = listener.endpoint().url().to_string();
    let mut child = t.spawn("sender", |c| set_param(c, "URL", &bound));
    let err = Receiver::<Order>::accept(&listener).expect_err("another version");
    assert!(matches!(err.kind(), ErrorKind::Handshake(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("this side receives `")
            && text.contains("Order` v1")
            && text.contains("the peer sends `")
            && text.contains("v2"),
        "{text}"
    );
    assert_eq!(child.wait_ready(), "refused");
    child.finish();
}

/// Bytes that are no `Order` (garbage, a truncated order, an order with
/// bytes left over) are `WrongType` each, and the orders after them
/// arrive.
#[test]
fn undecodable_messages_are_typed_errors_and_the_link_goes_on() {
    let t = Test::start();
    if t.child_role().is_some() {
        let tx = Sender::<Order>::connect(&param("URL")).expect("connect");
        let mut link = tx.into_link();
        // What a Sender<Order> puts on the link: postcard, nothing else.
        let good = postcard::to_allocvec(&order(5)).expect("encode");
        let mut longer = good.clone();
        longer.push(0);
        for bad in [&[0xff; 12][..], &good[..good.len() - 1], &longer[..]] {
            link.send(bad).expect("send a bad message");
            link.send(&good).expect("send a good one");
        }
        return;
    }
    let dir = t.scratch();
    let listener = Listener::bind(&url_for("unix", &dir)).expect("bind");
    let bound = listener.endpoint().url().to_string();
    let child = t.spawn("sender", |c| set_param(c, "URL", &bound));
    let mut rx = Receiver::<Order>::accept(&listener).expect("accept");
    for _ in 0..3 {
        let err = rx.recv().expect_err("a bad message");
        assert!(matches!(err.kind(), ErrorKind::WrongType(_)), "{err}");
        assert!(err.to_string().contains("Order` v1"), "{err}");
        assert_eq!(rx.recv().expect("the good one after it"), order(5));
    }
    child.finish();
}

/// A duplex typed link: a client sending `Order` and receiving `u64`
/// meets a server receiving `Order` and sending `u64`; a second client
/// built the wrong way round (sending `u64`) is refused at connect.
#[test]
fn typed_links_both_ways() {
    use ipcx::pattern::TypedLink;
    let t = Test::start();
    if t.child_role().is_some() {
        let url = param("URL");
        let mut c = TypedLink::<Order, u64>::connect(&url).expect("connect");
        for id in 0..100 {
            c.send(&order(id)).expect("send");
            assert_eq!(c.recv().expect("recv"), id * 2);
        }
        drop(c);
        let err = TypedLink::<u64, Order>::connect(&url).expect_err("the wrong way round");
        assert!(matches!(err.kind(), ErrorKind::Handshake(_)), "{err}");
        return;
    }
    let dir = t.scratch();
    let listener = Listener::bind(&url_for("unix", &dir)).expect("bind");
    let bound = listener.endpoint().url().to_string();
    let child = t.spawn("client", |c| set_param(c, "URL", &bound));
    let mut server = TypedLink::<u64, Order>::accept(&listener).expect("accept");
    for _ in 0..100 {
        let o = server.recv().expect("recv");
        server.send(&(o.id * 2)).expect("send");
    }
    let err = TypedLink::<u64, Order>::accept(&listener).expect_err("the wrong way round");
    assert!(
        err.to_string()
            .contains("the peer sends `u64` v0 and receives `"),
        "{err}"
    );
    child.finish();
}
