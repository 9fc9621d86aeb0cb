//! Plain-data messages on `shm:` (`ipcx::pattern::{PlainSender,
//! PlainReceiver}`) between processes: values written in place arrive
//! in order, read in place; a receiver or sender of another type is
//! refused when it opens the channel, the error naming both.

mod common;

use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::ErrorKind;
use ipcx::pattern::{PlainReceiver, PlainSender};

const PATIENCE: Duration = Duration::from_secs(60);
const COUNT: u64 = 100_000;

type Quote = [u64; 4];

/// In a child: receives `COUNT` quotes, each `[n, 2n, 3n, !n]`.
fn quote_receiver() {
    let url = format!("{}?timeout=60s", param("URL"));
    let quotes = PlainReceiver::<Quote>::open(&url).expect("open");
    ready("attached");
    for n in 0..COUNT {
        let q = quotes.recv_timeout(PATIENCE).expect("recv");
        assert_eq!(*q, [n, 2 * n, 3 * n, !n], "quote {n}");
    }
    assert_eq!(quotes.lost(), 0);
    ready("all in order");
}

#[test]
fn values_written_in_place_arrive_in_order() {
    let t = Test::start();
    if t.child_role().is_some() {
        return quote_receiver();
    }
    let url = format!("shm:{}", common::abstract_name());
    let mut quotes = PlainSender::<Quote>::create(&format!("{url}?slots=256")).expect("create");
    let mut child = t.spawn("receiver", |c| set_param(c, "URL", &url));
    assert_eq!(child.wait_ready(), "attached");
    quotes.wait_for_receivers(1, PATIENCE).expect("a receiver");
    for n in 0..COUNT {
        if n % 2 == 0 {
            let mut q = quotes.loan().expect("loan");
            *q = [n, 2 * n, 3 * n, !n];
            q.send().expect("send");
        } else {
            quotes.send(&[n, 2 * n, 3 * n, !n]).expect("send");
        }
    }
    assert_eq!(child.wait_ready(), "all in order");
    child.finish();
}

/// In a child: opens the channel as a receiver of `[u32; 8]` (the same
/// size, another type) and says what opening gave.
fn wrong_receiver() {
    let url = format!("{}?timeout=60s", param("URL"));
    match PlainReceiver::<[u32; 8]>::open(&url) {
        Ok(_) => ready("opened"),
        Err(e) => ready(&format!("{e}")),
    }
}

#[test]
fn another_type_is_refused_naming_both() {
    let t = Test::start();
    if t.child_role().is_some() {
        return wrong_receiver();
    }
    let url = format!("shm:{}", common::abstract_name());
    let _quotes = PlainSender::<Quote>::create(&url).expect("create");
    let mut child = t.spawn("receiver", |c| set_param(c, "URL", &url));
    let said = child.wait_ready();
    assert!(
        said.contains("schema mismatch")
            && said.contains("`[u32; 8]` v1 (32 bytes, aligned to 4)")
            && said.contains("`[u64; 4]` v1 (32 bytes, aligned to 8)"),
        "{said}"
    );
    child.finish();
    // A second sender of another type, likewise.
    let other = PlainSender::<[u8; 32]>::open(&url).expect_err("another type");
    assert!(matches!(other.kind(), ErrorKind::Handshake(_)), "{other}");
    // A typed end on an untyped channel is refused too.
    let raw_url = format!("shm:{}", common::abstract_name());
    let _raw = ipcx::shm::Publisher::create(&raw_url).expect("create");
    let typed = PlainReceiver::<Quote>::open(&raw_url).expect_err("untyped");
    assert!(
        typed.to_string().contains("the channel untyped bytes"),
        "{typed}"
    );
    // An untyped subscriber may read a typed channel's bytes.
    assert!(ipcx::shm::Subscriber::open(&url).is_ok());
}
