//! Work queues on a POSIX message queue (`Pusher::bind("mq:/name")`)
//! between processes: jobs go out highest priority first; a job whose
//! puller was killed after reporting it is handed out again; a job taken
//! out of the queue by a process that never reported it is found missing
//! and handed out again; each once more delivery counted.

mod common;

use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::Link;
use ipcx::pattern::{Puller, Pusher};

const PATIENCE: Duration = Duration::from_secs(60);

fn queue_url() -> String {
    format!("mq:/{}?max_msgs=8&msg_size=128", common::abstract_name())
}

/// In a child: takes `N` jobs, acknowledging each, and says them (payload,
/// priority, deliveries) in the order they came.
fn taker() {
    let mut w = Puller::connect(&param("URL")).expect("connect");
    ready("connected");
    let n: usize = param("N").parse().expect("N");
    let mut got = Vec::new();
    for _ in 0..n {
        let job = w.recv_timeout(PATIENCE).expect("a job");
        got.push(format!(
            "{}:{}:{}",
            String::from_utf8_lossy(&job.payload),
            job.priority,
            job.deliveries
        ));
        w.ack(job.id).expect("ack");
    }
    ready(&got.join(" "));
}

/// In a child: takes one job, says so, and is killed before acknowledging.
fn holder() {
    let mut w = Puller::connect(&param("URL")).expect("connect");
    let job = w.recv_timeout(PATIENCE).expect("a job");
    ready(&format!("took {}", String::from_utf8_lossy(&job.payload)));
    std::thread::sleep(PATIENCE);
}

/// In a child: takes one message straight out of the queue (as a puller
/// killed before it could report would) and exits.
fn thief() {
    let mut raw = Link::connect(&param("URL")).expect("connect");
    let msg = raw.recv_timeout(PATIENCE).expect("a message");
    ready(&format!("took {} bytes", msg.len()));
}

fn role() -> Option<()> {
    match param("ROLE").as_str() {
        "taker" => taker(),
        "holder" => holder(),
        "thief" => thief(),
        _ => return None,
    }
    Some(())
}

/// 24 jobs of three priorities, pushed before any puller, through a
/// queue of 8: they come out highest priority first, in push order
/// within one.
#[test]
fn jobs_go_out_highest_priority_first() {
    let t = Test::start();
    if t.child_role().is_some() {
        return role().expect("a role");
    }
    let url = queue_url();
    let pusher = Pusher::bind(&url).expect("bind");
    let mut want: Vec<(u32, usize)> = Vec::new();
    for n in 0..24 {
        let p = [1, 5, 3][n % 3];
        pusher
            .push_with_priority(format!("j{n}").as_bytes(), p)
            .expect("push");
        want.push((p, n));
    }
    want.sort_by_key(|(p, n)| (std::cmp::Reverse(*p), *n));
    let want: Vec<String> = want.iter().map(|(p, n)| format!("j{n}:{p}:1")).collect();
    let mut w = t.spawn("taker", |c| {
        set_param(
            set_param(set_param(c, "ROLE", "taker"), "URL", &url),
            "N",
            "24",
        )
    });
    assert_eq!(w.wait_ready(), "connected");
    assert_eq!(w.wait_ready(), want.join(" "));
    w.finish();
    pusher.wait_acked(PATIENCE).expect("acknowledged");
    assert_eq!(pusher.stats().acked, 24);
}

/// A puller killed holding a reported job: the job is handed out again
/// to the next puller, two deliveries counted.
#[test]
fn a_killed_pullers_job_goes_to_the_next() {
    let t = Test::start();
    if t.child_role().is_some() {
        return role().expect("a role");
    }
    let url = queue_url();
    let pusher = Pusher::bind(&url).expect("bind");
    pusher.push(b"render").expect("push");
    let mut a = t.spawn("holder", |c| {
        set_param(set_param(c, "ROLE", "holder"), "URL", &url)
    });
    assert_eq!(a.wait_ready(), "took render");
    a.kill();
    let mut b = t.spawn("taker", |c| {
        set_param(
            set_param(set_param(c, "ROLE", "taker"), "URL", &url),
            "N",
            "1",
        )
    });
    assert_eq!(b.wait_ready(), "connected");
    assert_eq!(b.wait_ready(), "render:0:2");
    b.finish();
    pusher.wait_acked(PATIENCE).expect("acknowledged");
    let s = pusher.stats();
    assert_eq!((s.acked, s.redelivered), (1, 1));
}

/// A job taken out of the queue and never reported (its taker died at
/// once): the pusher finds it missing and hands it out again.
#[test]
fn a_job_taken_and_never_reported_is_found_missing() {
    let t = Test::start();
    if t.child_role().is_some() {
        return role().expect("a role");
    }
    let url = queue_url();
    let pusher = Pusher::bind(&url).expect("bind");
    pusher.push(b"lost one").expect("push");
    let mut thief = t.spawn("thief", |c| {
        set_param(set_param(c, "ROLE", "thief"), "URL", &url)
    });
    assert!(thief.wait_ready().starts_with("took"));
    thief.finish();
    pusher.push(b"next one").expect("push");
    let mut w = t.spawn("taker", |c| {
        set_param(
            set_param(set_param(c, "ROLE", "taker"), "URL", &url),
            "N",
            "2",
        )
    });
    assert_eq!(w.wait_ready(), "connected");
    assert_eq!(w.wait_ready(), "next one:0:1 lost one:0:2");
    w.finish();
    pusher.wait_acked(PATIENCE).expect("acknowledged");
}
