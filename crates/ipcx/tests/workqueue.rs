//! Work queues (`ipcx::pattern::{Pusher, Puller}`) between processes:
//! jobs are balanced across workers and each is acknowledged once; a job
//! whose worker is killed before it acknowledged goes to another worker,
//! exactly once, with its delivery count raised.

mod common;

use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::pattern::{Puller, Pusher};

const PATIENCE: Duration = Duration::from_secs(60);

/// Waits (at most `PATIENCE`) until `done` holds.
fn until(what: &str, done: impl Fn() -> bool) {
    let give_up = std::time::Instant::now() + PATIENCE;
    while !done() {
        assert!(
            std::time::Instant::now() < give_up,
            "still waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// In a child: a worker that acknowledges every job until the pusher
/// goes, then says which ids it did.
fn worker() {
    let mut w = Puller::connect(&param("URL")).expect("connect");
    ready("connected");
    let mut ids = Vec::new();
    loop {
        match w.recv() {
            Ok(job) => {
                assert_eq!(job.deliveries, 1);
                assert_eq!(job.payload, format!("job {}", job.id).into_bytes());
                w.ack(job.id).expect("ack");
                ids.push(job.id.to_string());
            }
            Err(e) if e.is_closed() => break,
            Err(e) => panic!("recv: {e}"),
        }
    }
    ready(&ids.join(","));
}

/// 300 jobs to three worker processes: every job is done once, and each
/// worker did some.
#[test]
fn jobs_are_balanced_and_each_acknowledged_once() {
    let t = Test::start();
    if t.child_role().is_some() {
        return worker();
    }
    let dir = t.scratch();
    let pusher = Pusher::bind(&dir.url("unix", "jobs.sock")).expect("bind");
    let mut workers: Vec<_> = (0..3)
        .map(|_| t.spawn("worker", |c| set_param(c, "URL", pusher.url())))
        .collect();
    for w in &mut workers {
        assert_eq!(w.wait_ready(), "connected");
    }
    until("three pullers", || pusher.stats().pullers == 3);
    for n in 0..300u64 {
        assert_eq!(pusher.push(format!("job {n}").as_bytes()).expect("push"), n);
    }
    pusher.wait_acked(PATIENCE).expect("every job acknowledged");
    let stats = pusher.stats();
    assert_eq!((stats.acked, stats.redelivered), (300, 0));
    drop(pusher);
    let mut all = Vec::new();
    for mut w in workers {
        let ids: Vec<u64> = w
            .wait_ready()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("an id"))
            .collect();
        assert!(!ids.is_empty(), "a worker was given nothing");
        all.extend(ids);
        w.finish();
    }
    all.sort_unstable();
    assert_eq!(all, (0..300).collect::<Vec<_>>());
}

/// In a child: takes one job, says which, and (as worker A) holds it
/// without acknowledging until killed, or (as worker B) acknowledges it
/// and says how many deliveries it had.
fn one_job() {
    let mut w = Puller::connect(&param("URL")).expect("connect");
    ready("connected");
    let job = w.recv_timeout(PATIENCE).expect("a job");
    if param("ACK") == "no" {
        ready(&format!("took {}", job.id));
        std::thread::sleep(PATIENCE);
        return;
    }
    w.ack(job.id).expect("ack");
    ready(&format!(
        "did {} {} {}",
        job.id,
        job.deliveries,
        String::from_utf8_lossy(&job.payload)
    ));
    // Nothing else comes: the job is not delivered twice.
    let again = w.recv_timeout(Duration::from_millis(500));
    assert!(again.is_err(), "a second job: {again:?}");
}

/// A worker killed holding a job: the job goes to the other worker,
/// once, with two deliveries counted.
#[test]
fn a_killed_workers_job_goes_to_another_once() {
    let t = Test::start();
    if t.child_role().is_some() {
        return one_job();
    }
    let dir = t.scratch();
    let pusher = Pusher::bind(&dir.url("unix", "redo.sock")).expect("bind");
    let mut a = t.spawn("holder", |c| {
        set_param(set_param(c, "URL", pusher.url()), "ACK", "no")
    });
    assert_eq!(a.wait_ready(), "connected");
    until("worker A", || pusher.stats().pullers == 1);
    let id = pusher.push(b"encode video 9").expect("push");
    assert_eq!(a.wait_ready(), format!("took {id}"));
    let mut b = t.spawn("doer", |c| {
        set_param(set_param(c, "URL", pusher.url()), "ACK", "yes")
    });
    assert_eq!(b.wait_ready(), "connected");
    until("worker B", || pusher.stats().pullers == 2);
    a.kill();
    assert_eq!(b.wait_ready(), format!("did {id} 2 encode video 9"));
    pusher.wait_acked(PATIENCE).expect("acknowledged");
    let stats = pusher.stats();
    assert_eq!((stats.acked, stats.redelivered, stats.pullers), (1, 1, 1));
    b.finish();
}

/// A job larger than the puller takes (its `?max_msg=`) is dropped and
/// counted; the puller stays and gets the next one.
#[test]
fn a_job_too_large_for_the_puller_is_refused_not_the_puller() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut w = Puller::connect(&format!("{}?max_msg=1KiB", param("URL"))).expect("connect");
        ready("connected");
        let job = w.recv_timeout(PATIENCE).expect("the small job");
        assert_eq!(job.payload, b"small");
        w.ack(job.id).expect("ack");
        ready("done");
        return;
    }
    let dir = t.scratch();
    let pusher = Pusher::bind(&dir.url("unix", "big.sock")).expect("bind");
    let mut child = t.spawn("worker", |c| set_param(c, "URL", pusher.url()));
    assert_eq!(child.wait_ready(), "connected");
    until("the puller", || pusher.stats().pullers == 1);
    pusher.push(&[0; 4096]).expect("push");
    pusher.push(b"small").expect("push");
    assert_eq!(child.wait_ready(), "done");
    pusher.wait_acked(PATIENCE).expect("acknowledged");
    // The puller was kept: it got the small job after the large one.
    let stats = pusher.stats();
    assert_eq!((stats.refused, stats.acked), (1, 1));
    child.finish();
}

/// A puller that takes many jobs and then stops reading fills its socket;
/// the pusher passes it over instead of waiting on it: pushes return, and
/// another puller gets and acknowledges the rest.
#[test]
fn a_puller_that_stops_reading_does_not_hold_the_queue() {
    let t = Test::start();
    if t.child_role() == Some("stalled") {
        let _w = Puller::connect_with_prefetch(&param("URL"), 1000).expect("connect");
        ready("connected");
        std::thread::sleep(PATIENCE);
        return;
    }
    if t.child_role().is_some() {
        let mut w = Puller::connect(&param("URL")).expect("connect");
        ready("connected");
        while let Ok(job) = w.recv() {
            w.ack(job.id).expect("ack");
        }
        return;
    }
    let dir = t.scratch();
    let pusher = Pusher::bind(&dir.url("unix", "stall.sock")).expect("bind");
    let mut stalled = t.spawn("stalled", |c| set_param(c, "URL", pusher.url()));
    assert_eq!(stalled.wait_ready(), "connected");
    until("the stalled puller", || pusher.stats().pullers == 1);
    let job = vec![7u8; 64 << 10];
    for _ in 0..200 {
        pusher.push(&job).expect("a push never waits on a puller");
    }
    let mut worker = t.spawn("worker", |c| set_param(c, "URL", pusher.url()));
    assert_eq!(worker.wait_ready(), "connected");
    until("the worker to do most", || pusher.stats().acked >= 150);
    drop(pusher);
    stalled.kill();
    worker.finish();
}

/// In a child: a pusher that connects to a puller that binds, pushes
/// `JOBS` jobs named after its `NAME`, and exits once each is
/// acknowledged.
fn connecting_pusher() {
    let pusher = Pusher::connect(&param("URL")).expect("connect");
    let name = param("NAME");
    let jobs: u64 = param("JOBS").parse().expect("JOBS");
    for n in 0..jobs {
        pusher.push(format!("{name} {n}").as_bytes()).expect("push");
    }
    pusher.wait_acked(PATIENCE).expect("every job acknowledged");
    let stats = pusher.stats();
    assert_eq!((stats.acked, stats.redelivered), (jobs, 0));
    ready("all acknowledged");
}

/// A puller that binds collects from three pusher processes that
/// connect: every job once, each pusher's in order, each acknowledged
/// (the pushers exit only then).
#[test]
fn a_puller_that_binds_collects_from_pushers_that_connect() {
    let t = Test::start();
    if t.child_role().is_some() {
        return connecting_pusher();
    }
    let dir = t.scratch();
    let url = dir.url("unix", "collect.sock");
    let mut puller = Puller::bind(&url, 4).expect("bind");
    let pushers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            t.spawn("pusher", |c| {
                set_param(
                    set_param(set_param(c, "URL", &url), "NAME", name),
                    "JOBS",
                    "200",
                )
            })
        })
        .collect();
    let mut next = std::collections::HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for _ in 0..600 {
        let job = puller.recv_timeout(PATIENCE).expect("a job");
        assert_eq!(job.deliveries, 1);
        assert!(ids.insert(job.id), "job id {} given twice", job.id);
        let text = String::from_utf8(job.payload).expect("utf-8");
        let (name, n) = text.split_once(' ').expect("name and number");
        let want = next.entry(name.to_string()).or_insert(0u64);
        assert_eq!(n.parse::<u64>().expect("number"), *want, "{name}'s order");
        *want += 1;
        puller.ack(job.id).expect("ack");
    }
    assert_eq!(next.values().copied().collect::<Vec<_>>(), [200, 200, 200]);
    for mut p in pushers {
        assert_eq!(p.wait_ready(), "all acknowledged");
        p.finish();
    }
    // An id acknowledged already is named as such.
    let again = puller.ack(0).expect_err("acknowledged twice");
    assert!(
        matches!(again.kind(), ipcx::ErrorKind::InvalidArgument(m) if m.contains("job 0 is not held")),
        "{again}"
    );
    // Nothing else comes.
    let none = puller
        .recv_timeout(Duration::from_millis(200))
        .expect_err("no job");
    assert_eq!(*none.kind(), ipcx::ErrorKind::TimedOut);
}

/// In a child: a puller that binds, takes one job, says which, and holds
/// it unacknowledged until killed (`ACK=no`), or acknowledges it and says
/// how many deliveries it had.
fn binding_puller() {
    let mut w = Puller::bind(&param("URL"), 1).expect("bind");
    ready("bound");
    let job = w.recv_timeout(PATIENCE).expect("a job");
    if param("ACK") == "no" {
        ready(&format!("took {}", String::from_utf8_lossy(&job.payload)));
        std::thread::sleep(PATIENCE);
        return;
    }
    w.ack(job.id).expect("ack");
    ready(&format!(
        "did {} {}",
        job.deliveries,
        String::from_utf8_lossy(&job.payload)
    ));
}

/// A pusher that connected keeps a job its puller was killed holding,
/// connects again when a puller binds the URL anew, and hands the job
/// out again: once, two deliveries counted.
#[test]
fn a_connected_pusher_hands_a_job_again_to_the_next_puller() {
    let t = Test::start();
    if t.child_role().is_some() {
        return binding_puller();
    }
    let dir = t.scratch();
    let url = dir.url("unix", "again.sock");
    let mut a = t.spawn("holder", |c| {
        set_param(set_param(c, "URL", &url), "ACK", "no")
    });
    assert_eq!(a.wait_ready(), "bound");
    let pusher = Pusher::connect(&url).expect("connect");
    pusher.push(b"transcode 4").expect("push");
    assert_eq!(a.wait_ready(), "took transcode 4");
    a.kill();
    until("the puller gone", || pusher.stats().pullers == 0);
    assert_eq!(pusher.stats().waiting, 1);
    let mut b = t.spawn("doer", |c| {
        set_param(set_param(c, "URL", &url), "ACK", "yes")
    });
    assert_eq!(b.wait_ready(), "bound");
    assert_eq!(b.wait_ready(), "did 2 transcode 4");
    pusher.wait_acked(PATIENCE).expect("acknowledged");
    let stats = pusher.stats();
    assert_eq!((stats.acked, stats.redelivered), (1, 1));
    b.finish();
}

/// In a child: a durable pusher on `URL` with its journal at `JOURNAL`;
/// pushes `PUSH` jobs, says how many wait, then waits until each is
/// acknowledged.
fn durable_pusher() {
    let pusher = Pusher::bind_durable(&param("URL"), &param("JOURNAL")).expect("bind");
    let push: u64 = param("PUSH").parse().expect("PUSH");
    for n in 0..push {
        pusher.push(format!("job {n}").as_bytes()).expect("push");
    }
    let s = pusher.stats();
    ready(&format!(
        "waiting {} redelivered {}",
        s.waiting, s.redelivered
    ));
    pusher.wait_acked(PATIENCE).expect("every job acknowledged");
    ready("all acknowledged");
}

/// A durable pusher killed with 60 of its 100 jobs unfinished (one of
/// them taken by a worker): bound again on the same journal, it hands
/// out those 60, in order, the taken one with two deliveries counted.
#[test]
fn a_durable_pushers_jobs_outlive_it() {
    let t = Test::start();
    if t.child_role().is_some() {
        return durable_pusher();
    }
    let dir = t.scratch();
    let url = dir.url("unix", "durable.sock");
    let journal = format!("journal:{}", dir.path("jobs").display());
    let spawn = |push: &str| {
        t.spawn("pusher", |c| {
            set_param(
                set_param(set_param(c, "URL", &url), "JOURNAL", &journal),
                "PUSH",
                push,
            )
        })
    };
    let mut first = spawn("100");
    assert_eq!(first.wait_ready(), "waiting 100 redelivered 0");
    let mut worker = Puller::connect(&url).expect("connect");
    for n in 0..40 {
        let job = worker.recv_timeout(PATIENCE).expect("a job");
        assert_eq!((job.id, job.deliveries), (n, 1));
        worker.ack(job.id).expect("ack");
    }
    let taken = worker.recv_timeout(PATIENCE).expect("job 40");
    assert_eq!(taken.id, 40);
    first.kill();
    drop(worker);

    let mut second = spawn("0");
    assert_eq!(second.wait_ready(), "waiting 60 redelivered 1");
    let mut worker = Puller::connect(&url).expect("connect");
    for n in 40..100 {
        let job = worker.recv_timeout(PATIENCE).expect("a job");
        assert_eq!(job.id, n);
        assert_eq!(job.payload, format!("job {n}").into_bytes());
        assert_eq!(job.deliveries, if n == 40 { 2 } else { 1 }, "job {n}");
        worker.ack(job.id).expect("ack");
    }
    assert_eq!(second.wait_ready(), "all acknowledged");
    second.finish();
    // Nothing is left to hand out: a third pusher on the journal has none.
    let third = Pusher::bind_durable(&dir.url("unix", "third.sock"), &journal).expect("bind");
    assert_eq!(third.stats().waiting, 0);
    // New ids go on from the old ones.
    assert_eq!(third.push(b"next").expect("push"), 100);
}

/// A durable pusher's journal keeps only segments that hold unfinished
/// jobs: 2 000 jobs through 4 KiB segments, all done, leave few.
#[test]
fn a_durable_pushers_journal_is_compacted() {
    let t = Test::start();
    if t.child_role().is_some() {
        return worker();
    }
    let dir = t.scratch();
    let journal = format!("journal:{}?size=4KiB", dir.path("jobs").display());
    let pusher = Pusher::bind_durable(&dir.url("unix", "compact.sock"), &journal).expect("bind");
    let mut w = t.spawn("worker", |c| set_param(c, "URL", pusher.url()));
    assert_eq!(w.wait_ready(), "connected");
    for n in 0..2000u64 {
        pusher.push(format!("job {n}").as_bytes()).expect("push");
    }
    pusher.wait_acked(PATIENCE).expect("acknowledged");
    let segments = || {
        std::fs::read_dir(dir.path("jobs"))
            .expect("the journal")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
            })
            .count()
    };
    // Compaction runs on the pusher's ~100 ms pass.
    until("the finished segments removed", || segments() <= 2);
    drop(pusher);
    w.wait_ready();
    w.finish();
}

/// In a child: takes `N` jobs one at a time, acknowledging each, and
/// says their payloads and priorities in the order they came.
fn ordered_worker() {
    let mut w = Puller::connect(&param("URL")).expect("connect");
    let n: usize = param("N").parse().expect("N");
    let mut got = Vec::new();
    for _ in 0..n {
        let job = w.recv_timeout(PATIENCE).expect("a job");
        got.push(format!(
            "{}:{}",
            String::from_utf8_lossy(&job.payload),
            job.priority
        ));
        w.ack(job.id).expect("ack");
    }
    ready(&got.join(" "));
}

/// Jobs waiting go out highest priority first, in push order within a
/// priority; a durable pusher's journal keeps the priorities.
#[test]
fn higher_priorities_go_first_and_are_kept_in_the_journal() {
    let t = Test::start();
    if t.child_role().is_some() {
        return ordered_worker();
    }
    let dir = t.scratch();
    let journal = format!("journal:{}", dir.path("prio").display());
    let url = dir.url("unix", "prio.sock");
    {
        let pusher = Pusher::bind_durable(&url, &journal).expect("bind");
        for (n, p) in [0, 2, 1, 2, 0, 1].into_iter().enumerate() {
            pusher
                .push_with_priority(format!("j{n}").as_bytes(), p)
                .expect("push");
        }
    }
    // Bound again: the six wait, in their priorities.
    let pusher = Pusher::bind_durable(&url, &journal).expect("bind again");
    pusher.push(b"j6").expect("push");
    let mut w = t.spawn("worker", |c| {
        set_param(set_param(c, "URL", pusher.url()), "N", "7")
    });
    assert_eq!(w.wait_ready(), "j1:2 j3:2 j2:1 j5:1 j0:0 j4:0 j6:0");
    w.finish();
    pusher.wait_acked(PATIENCE).expect("acknowledged");
}

/// A peer that connects to a binding puller and stays silent (no schema)
/// holds nobody up: a pusher that connects after it is served at once.
#[test]
fn a_silent_peer_does_not_hold_a_binding_puller() {
    let t = Test::start();
    if t.child_role() == Some("pusher") {
        return connecting_pusher();
    }
    if t.child_role().is_some() {
        let _silent = ipcx::Link::connect(&param("URL")).expect("connect");
        ready("connected");
        std::thread::sleep(PATIENCE);
        return;
    }
    let dir = t.scratch();
    let url = dir.url("unix", "silent.sock");
    let mut puller = Puller::bind(&url, 1).expect("bind");
    let mut silent = t.spawn("silent", |c| set_param(c, "URL", &url));
    assert_eq!(silent.wait_ready(), "connected");
    let none = puller
        .recv_timeout(Duration::from_millis(200))
        .expect_err("nothing yet");
    assert_eq!(*none.kind(), ipcx::ErrorKind::TimedOut);
    let mut pusher = t.spawn("pusher", |c| {
        set_param(
            set_param(set_param(c, "URL", &url), "NAME", "p"),
            "JOBS",
            "3",
        )
    });
    for n in 0..3 {
        // Not a speed claim: the blocking join stalled for the silent
        // peer's 10 s schema wait; 8 s tells the two apart.
        let job = puller
            .recv_timeout(Duration::from_secs(8))
            .expect("the pusher, at once");
        assert_eq!(job.payload, format!("p {n}").into_bytes());
        puller.ack(job.id).expect("ack");
    }
    assert_eq!(pusher.wait_ready(), "all acknowledged");
    pusher.finish();
    silent.kill();
}

/// A pusher that hands a binding puller more jobs than its credit is let
/// go (the puller would hold them without end); a good pusher is served.
#[test]
fn a_pusher_over_its_credit_is_let_go() {
    let t = Test::start();
    if t.child_role() == Some("pusher") {
        return connecting_pusher();
    }
    if t.child_role().is_some() {
        let mut raw = ipcx::Link::connect(&param("URL")).expect("connect");
        // The puller's schema, its directions turned round, sent back.
        let mut schema = raw.recv_timeout(PATIENCE).expect("the puller's schema");
        let mut at = 8;
        while at < schema.len() {
            schema[at] ^= 1;
            let len = u16::from_le_bytes([schema[at + 5], schema[at + 6]]) as usize;
            at += 7 + len;
        }
        raw.send(&schema).expect("send a schema");
        assert_eq!(
            raw.recv_timeout(PATIENCE).expect("credit"),
            [b'C', 1, 0, 0, 0]
        );
        for id in 0..3u64 {
            let mut job = vec![b'J'];
            job.extend_from_slice(&id.to_le_bytes());
            job.extend_from_slice(&1u32.to_le_bytes());
            job.extend_from_slice(&0u32.to_le_bytes());
            job.extend_from_slice(b"greedy");
            raw.send(&job).expect("a job");
        }
        ready("flooded");
        std::thread::sleep(PATIENCE);
        return;
    }
    let dir = t.scratch();
    let url = dir.url("unix", "greedy.sock");
    let mut puller = Puller::bind(&url, 1).expect("bind");
    let mut greedy = t.spawn("greedy", |c| set_param(c, "URL", &url));
    let first = puller.recv_timeout(PATIENCE).expect("the first job");
    assert_eq!(first.payload, b"greedy");
    assert_eq!(greedy.wait_ready(), "flooded");
    // The second is over the credit: the pusher is let go, nothing more
    // of it comes.
    let none = puller
        .recv_timeout(Duration::from_millis(300))
        .expect_err("no more");
    assert_eq!(*none.kind(), ipcx::ErrorKind::TimedOut);
    let mut good = t.spawn("pusher", |c| {
        set_param(
            set_param(set_param(c, "URL", &url), "NAME", "g"),
            "JOBS",
            "1",
        )
    });
    let job = puller
        .recv_timeout(PATIENCE)
        .expect("the good pusher's job");
    assert_eq!(job.payload, b"g 0");
    puller.ack(job.id).expect("ack");
    assert_eq!(good.wait_ready(), "all acknowledged");
    good.finish();
    greedy.kill();
}

/// A journal whose record names a job id no pusher could have given
/// (`u64::MAX`: the next id would overflow) is refused as foreign.
#[test]
fn a_journal_with_an_id_out_of_range_is_refused() {
    let t = Test::start();
    let dir = t.scratch();
    let journal = format!("journal:{}", dir.path("jobs").display());
    {
        let mut w = ipcx::journal::JournalWriter::open(&journal).expect("journal");
        let mut rec = vec![b'A'];
        rec.extend_from_slice(&u64::MAX.to_le_bytes());
        w.append(&rec).expect("append");
    }
    let err = Pusher::bind_durable(&dir.url("unix", "range.sock"), &journal)
        .expect_err("an id out of range");
    assert!(
        matches!(err.kind(), ipcx::ErrorKind::Foreign(why) if why.contains("a job id out of range")),
        "{err}"
    );
}

/// A puller that binds `shm:` (one peer at a time) collects from two
/// pusher processes in turn: its poller sees each connect on the
/// listener's doorbell, and resets the endpoint once the first left.
#[test]
fn a_puller_on_shm_collects_from_pushers_in_turn() {
    let t = Test::start();
    if t.child_role().is_some() {
        return connecting_pusher();
    }
    let url = format!("shm:{}", common::abstract_name());
    let mut puller = Puller::bind(&url, 4).expect("bind");
    for name in ["a", "b"] {
        let mut pusher = t.spawn("pusher", |c| {
            set_param(
                set_param(set_param(c, "URL", &url), "NAME", name),
                "JOBS",
                "50",
            )
        });
        for n in 0..50 {
            let job = puller.recv_timeout(PATIENCE).expect("a job");
            assert_eq!(job.payload, format!("{name} {n}").as_bytes());
            puller.ack(job.id).expect("ack");
        }
        assert_eq!(pusher.wait_ready(), "all acknowledged");
        pusher.finish();
    }
}
