//! The shared-memory work queue between real processes: many producers,
//! many consumers, every message to exactly one consumer.

mod common;

use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::ErrorKind;
use ipcx::shm::Queue;

fn unique() -> String {
    format!("shm:{}", common::abstract_name())
}

const PER_PRODUCER: u64 = 10_000;
const STOP: u64 = u64::MAX;

/// Two producers and two consumers, each in its own process: the consumers
/// together get every message exactly once (count and sum of ids match).
#[test]
fn many_producers_many_consumers_each_message_once() {
    let t = Test::start();
    match t.child_role() {
        Some("producer") => {
            let q = Queue::open(&format!("{}?timeout=30s", param("URL"))).expect("open");
            let base: u64 = param("ID").parse().unwrap();
            for i in 0..PER_PRODUCER {
                q.push(&(base * 1_000_000 + i).to_le_bytes()).expect("push");
            }
            return;
        }
        Some(_) => {
            let q = Queue::open(&format!("{}?timeout=30s", param("URL"))).expect("open");
            let (mut count, mut sum) = (0u64, 0u64);
            loop {
                let id = u64::from_le_bytes(
                    q.pop_timeout(common::PATIENCE).expect("pop")[..8]
                        .try_into()
                        .unwrap(),
                );
                if id == STOP {
                    break;
                }
                count += 1;
                sum = sum.wrapping_add(id);
            }
            ready(&format!("{count} {sum}"));
            return;
        }
        None => {}
    }
    let url = unique();
    let q = Queue::create(&format!("{url}?slots=64&max_msg=8")).expect("create");
    let mut consumers: Vec<_> = (0..2)
        .map(|_| t.spawn("consumer", |c| set_param(c, "URL", &url)))
        .collect();
    let producers: Vec<_> = (1..=2u64)
        .map(|id| {
            t.spawn("producer", |c| {
                set_param(set_param(c, "URL", &url), "ID", &id.to_string())
            })
        })
        .collect();
    for p in producers {
        p.finish();
    }
    for _ in 0..2 {
        q.push(&STOP.to_le_bytes()).expect("push stop");
    }
    let (mut count, mut sum) = (0u64, 0u64);
    for c in &mut consumers {
        let said = c.wait_ready();
        let mut parts = said.split(' ').map(|x| x.parse::<u64>().unwrap());
        count += parts.next().unwrap();
        sum = sum.wrapping_add(parts.next().unwrap());
    }
    let want: u64 = (1..=2u64)
        .flat_map(|id| (0..PER_PRODUCER).map(move |i| id * 1_000_000 + i))
        .fold(0u64, u64::wrapping_add);
    assert_eq!(count, 2 * PER_PRODUCER, "every message arrived once");
    assert_eq!(sum, want, "and each exactly once");
    for c in consumers {
        c.finish();
    }
}

/// `fail` refuses a push to a full queue; a pop makes room; an oversized
/// message and `drop_oldest` are refused with errors that say why.
#[test]
fn limits_are_reported() {
    let _t = Test::start();
    let url = unique();
    let q = Queue::create(&format!("{url}?slots=2&max_msg=8&overflow=fail")).expect("create");
    q.push(b"one").expect("push");
    q.push(b"two").expect("push");
    assert_eq!(*q.push(b"three").unwrap_err().kind(), ErrorKind::Full);
    assert_eq!(q.pop_timeout(common::PATIENCE).expect("pop"), b"one");
    q.push(b"three").expect("room again");
    assert!(matches!(
        q.push(&[0; 9]).unwrap_err().kind(),
        ErrorKind::MessageTooLarge { .. }
    ));
    assert_eq!(q.pop_timeout(common::PATIENCE).expect("pop"), b"two");
    assert_eq!(q.pop_timeout(common::PATIENCE).expect("pop"), b"three");
    let err = q.pop_timeout(Duration::from_millis(10)).unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::TimedOut);
    let err = Queue::create(&format!("{}?overflow=drop_oldest", unique())).unwrap_err();
    assert!(err.to_string().contains("drop_oldest"), "{err}");
}

/// A producer killed between claiming a cell and publishing it, and a
/// consumer killed holding a claimed message: the survivors' waits release
/// those cells (no half-written message is ever delivered) and the queue
/// goes on.
#[test]
fn cells_claimed_by_killed_processes_are_released() {
    let t = Test::start();
    match t.child_role() {
        Some("producer") => {
            let q = Queue::open(&format!("{}?timeout=30s", param("URL"))).expect("open");
            q.push(b"first").expect("push");
            assert!(ipcx::bench_support::abandon_push(&q), "claimed a cell");
            q.push(b"third").expect("push");
            ready("stuck");
            std::thread::sleep(Duration::from_secs(600));
            return;
        }
        Some(_) => {
            let q = Queue::open(&format!("{}?timeout=30s", param("URL"))).expect("open");
            assert!(ipcx::bench_support::abandon_pop(&q), "claimed a message");
            ready("stuck");
            std::thread::sleep(Duration::from_secs(600));
            return;
        }
        None => {}
    }
    let url = unique();
    let q = Queue::create(&format!("{url}?slots=4&max_msg=16")).expect("create");
    let mut producer = t.spawn("producer", |c| set_param(c, "URL", &url));
    producer.wait_ready();
    assert_eq!(q.pop_timeout(common::PATIENCE).expect("pop"), b"first");
    assert!(
        q.pop_timeout(Duration::from_millis(50)).is_err(),
        "stuck behind the claim"
    );
    producer.kill();
    assert_eq!(
        q.pop_timeout(Duration::from_secs(30))
            .expect("pop after recovery"),
        b"third",
        "the dead producer's cell is stepped over"
    );

    let url = unique();
    let q = Queue::create(&format!("{url}?slots=2&max_msg=16")).expect("create");
    q.push(b"x").expect("push");
    q.push(b"y").expect("push");
    let mut consumer = t.spawn("consumer", |c| set_param(c, "URL", &url));
    consumer.wait_ready();
    assert_eq!(q.pop_timeout(common::PATIENCE).expect("pop"), b"y");
    consumer.kill();
    // The next push needs the cell the dead consumer held: the wait frees it.
    q.push(b"z").expect("push after recovery");
    q.push(b"w").expect("push");
    assert_eq!(q.pop_timeout(common::PATIENCE).expect("pop"), b"z");
    assert_eq!(q.pop_timeout(common::PATIENCE).expect("pop"), b"w");
}

/// Another process scribbles over the queue's cells: pops and pushes with
/// time limits still return, a message or a typed error, with no panic and
/// no hang (the watchdog would fail a hang).
#[test]
fn scribbled_cells_never_panic_or_hang() {
    let t = Test::start();
    if t.child_role() == Some(common::SCRIBBLER) {
        return common::scribbler();
    }
    for seed in 1..=8u64 {
        let url = unique();
        let q = Queue::create(&format!("{url}?slots=8&max_msg=32&overflow=fail")).expect("create");
        q.push(b"before").expect("push");
        let len = ipcx::shm::Segment::open(&url)
            .expect("open the segment")
            .len();
        let header = std::mem::size_of::<ipcx::shm::QueueHeader>();
        common::scribble(&t, &url, &[(header, len - header)], seed);
        for _ in 0..4 {
            common::typed("pop_timeout", q.pop_timeout(Duration::from_millis(5)));
            common::typed("push", q.push(b"after"));
        }
        let _recovered: bool = q.recover();
    }
}

/// One handle shared by threads (`Queue: Sync`): two threads push through
/// `&Queue` while two pop, and every message arrives once.
#[test]
fn threads_share_one_handle() {
    fn sync<T: Sync>(_: &T) {}
    let _t = Test::start();
    let url = unique();
    let q = Queue::create(&format!("{url}?slots=16&max_msg=16")).expect("create");
    sync(&q);
    let got = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for p in 0u64..2 {
            let q = &q;
            s.spawn(move || {
                for i in 0..1000u64 {
                    q.push(&(p * 1000 + i).to_le_bytes()).expect("push");
                }
            });
        }
        for _ in 0..2 {
            let (q, got) = (&q, &got);
            s.spawn(move || {
                for _ in 0..1000 {
                    let m = q.pop_timeout(common::PATIENCE).expect("pop");
                    let n = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
                    got.lock().expect("lock").push(n);
                }
            });
        }
    });
    let mut got = got.into_inner().expect("lock");
    got.sort_unstable();
    assert_eq!(got, (0..2000).collect::<Vec<_>>());
}
