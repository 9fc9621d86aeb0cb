//! One publisher, four subscribers: the fan-out the shared-memory issue
//! asks to record. With two cores and five processes the scheduler decides
//! much of the result, so it is recorded, not held to a target.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use ipcx::shm::{Publisher, Subscriber};

use super::Budget;
use super::conn::write_message;
use super::report::Cell;

/// Subscribers of the fan-out cell.
pub const SUBSCRIBERS: usize = 4;
const SIZE: usize = 64;
const STOP: u64 = u64::MAX;

fn words(buf: &[u8]) -> (u64, u64) {
    let w = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
    (w(0), w(8))
}

/// Kills the subscribers if the measurement fails midway.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Latency: the publisher sends, every subscriber answers on its own
/// channel; one-way = (time until the last answer) / 2. Throughput:
/// messages delivered to every subscriber per second. Everyone sleeps on
/// futexes (`?wait=block`): five spinning processes on two cores would
/// measure the scheduler instead.
pub fn measure(b: &Budget) -> Result<Cell> {
    let url = format!("shm:ipcx-bench-{}-fan", std::process::id());
    let opts = "wait=block";
    let mut publisher = Publisher::create(&format!("{url}?slots=1024&max_msg={SIZE}&{opts}"))?;
    let mut children = Children(Vec::new());
    for k in 0..SUBSCRIBERS {
        let child = Command::new(std::env::current_exe()?)
            .args(["bench-peer", "--fanout", &k.to_string(), "--url", &url])
            .spawn()
            .context("start a fan-out subscriber")?;
        children.0.push(child);
    }
    let answers: Vec<Subscriber> = (0..SUBSCRIBERS)
        .map(|k| Subscriber::open(&format!("{url}-{k}?timeout=30s&{opts}")))
        .collect::<ipcx::Result<_>>()?;
    publisher.wait_for_subscribers(SUBSCRIBERS, Duration::from_secs(30))?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
    let start = Instant::now();
    for i in 0..(20 + b.rounds) as u64 {
        let t = Instant::now();
        let mut loan = publisher.loan(SIZE)?;
        write_message(&mut loan, i, 0, false);
        loan.send()?;
        for a in &answers {
            let (seq, _) = words(&a.recv()?);
            if seq != i {
                bail!("fan-out answer {seq}, expected {i}");
            }
        }
        if i >= 20 {
            hist.record((t.elapsed().as_nanos() as u64 / 2).max(1))?;
            if start.elapsed() > b.time && hist.len() >= 50 {
                break;
            }
        }
    }
    let count = (b.bytes / SIZE).clamp(b.min_msgs, b.max_msgs) as u64;
    let t = Instant::now();
    let mut loan = publisher.loan(SIZE)?;
    write_message(&mut loan, STOP, count, false);
    loan.send()?;
    for i in 0..count {
        let mut loan = publisher.loan(SIZE)?;
        write_message(&mut loan, i, 0, false);
        loan.send()?;
    }
    for a in &answers {
        let (seq, _) = words(&a.recv()?);
        if seq != count {
            bail!("a fan-out subscriber saw {seq} of {count} messages");
        }
    }
    let per_s = count as f64 / t.elapsed().as_secs_f64();
    for c in &mut children.0 {
        c.wait()?;
    }
    children.0.clear();
    Ok(Cell::new(
        &format!("shm-zc-fanout{SUBSCRIBERS}"),
        SIZE,
        "ipcx",
        "block",
        &hist,
        Some(per_s),
    ))
}

/// One fan-out subscriber: answers each latency message on its own
/// channel, then counts the throughput run and reports how many arrived.
pub fn subscriber(url: &str, k: usize) -> Result<()> {
    let opts = "wait=block";
    let mut answer = Publisher::create(&format!("{url}-{k}?slots=1024&max_msg={SIZE}&{opts}"))?;
    let sub = Subscriber::open(&format!("{url}?timeout=30s&{opts}"))?;
    answer.wait_for_subscribers(1, Duration::from_secs(30))?;
    let count = loop {
        let (seq, extra) = words(&sub.recv()?);
        if seq == STOP {
            break extra;
        }
        let mut loan = answer.loan(SIZE)?;
        write_message(&mut loan, seq, 0, false);
        loan.send()?;
    };
    let mut got = 0;
    while got < count {
        let sample = sub.recv()?;
        std::hint::black_box(
            sample
                .iter()
                .step_by(64)
                .map(|&b| u64::from(b))
                .sum::<u64>(),
        );
        got += 1;
    }
    let mut loan = answer.loan(SIZE)?;
    write_message(&mut loan, got, 0, false);
    loan.send()?;
    // Stay until the driver has read the answer.
    let _ = sub.recv_timeout(Duration::from_secs(5));
    Ok(())
}
