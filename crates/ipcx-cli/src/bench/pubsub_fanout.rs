//! Publish/subscribe fan-out over `unix:`: one publisher, 1, 4 and 16
//! subscriber processes. Each subscriber measures for itself the one-way
//! latency of paced messages (each carries the monotonic clock of its
//! publish, which all processes share) and its throughput in a burst;
//! the cell shows the median subscriber's latency, the worst
//! subscriber's tail, and the mean throughput per subscriber. Recorded,
//! not held to a target: with two cores and up to 17 processes the
//! scheduler decides much of it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use ipcx::pattern::{Publisher, Subscriber};

use super::Budget;
use super::report::Cell;

/// The subscriber counts measured.
pub const FAN: [usize; 3] = [1, 4, 16];
const SIZE: usize = 64;
const STOP: u64 = u64::MAX;
/// Between two latency messages: they measure the path, not a queue.
const PACE: Duration = Duration::from_micros(200);

/// The monotonic clock every process on the machine shares, in ns.
fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn message(seq: u64, extra: u64) -> [u8; SIZE] {
    let mut m = [0u8; SIZE];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m[8..16].copy_from_slice(&extra.to_le_bytes());
    m
}

fn words(m: &[u8]) -> Result<(u64, u64)> {
    if m.len() < 16 {
        bail!("a fan-out message of {} bytes", m.len());
    }
    let w = |i: usize| u64::from_le_bytes(m[i..i + 8].try_into().expect("8 bytes"));
    Ok((w(0), w(8)))
}

/// One cell per subscriber count.
pub fn measure(b: &Budget, dir: &std::path::Path) -> Result<Vec<Cell>> {
    FAN.iter().map(|&k| fan_out(k, b, dir)).collect()
}

fn fan_out(k: usize, b: &Budget, dir: &std::path::Path) -> Result<Cell> {
    let url = format!("unix:{}/pubsub-fan{k}.sock", dir.display());
    let publisher = Publisher::bind(&url)?;
    let mut children = Vec::new();
    for _ in 0..k {
        let child = Command::new(std::env::current_exe()?)
            .args(["bench-peer", "--pubsub-fanout", "--url", &url])
            .stdout(Stdio::piped())
            .spawn()
            .context("start a fan-out subscriber")?;
        children.push(super::KillOnDrop(child));
    }
    publisher.wait_for_subscribers(k, Duration::from_secs(30))?;
    let rounds = (b.rounds as u64).min(2_000);
    let start = Instant::now();
    let mut sent = 0;
    while sent < rounds && (start.elapsed() < b.time || sent < 50) {
        publisher.publish("bench.fan", &message(sent, now_ns()))?;
        std::thread::sleep(PACE);
        sent += 1;
    }
    let count = (b.bytes / SIZE).clamp(b.min_msgs, b.max_msgs) as u64;
    publisher.publish("bench.fan", &message(STOP, count))?;
    for i in 0..count {
        publisher.publish("bench.fan", &message(i, 0))?;
    }
    publisher.flush(Duration::from_secs(60))?;
    // Each subscriber: "p50 p99 p999 max msgs_per_s".
    let mut p50s = Vec::new();
    let (mut p99, mut p999, mut max, mut rate) = (0u64, 0u64, 0u64, 0f64);
    for c in &mut children {
        let out = c.0.stdout.take().context("a subscriber's stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line)?;
        let f: Vec<f64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .with_context(|| format!("a fan-out subscriber said {line:?}"))?;
        let [a, b9, c9, m, r] = f[..] else {
            bail!("a fan-out subscriber said {line:?}");
        };
        p50s.push(a as u64);
        p99 = p99.max(b9 as u64);
        p999 = p999.max(c9 as u64);
        max = max.max(m as u64);
        rate += r / k as f64;
        c.0.wait()?;
    }
    p50s.sort_unstable();
    Ok(Cell {
        mechanism: format!("pubsub-fanout{k}"),
        size: SIZE,
        imp: "ipcx",
        wait: "block".into(),
        samples: sent * k as u64,
        p50_ns: p50s.get(p50s.len() / 2).copied(),
        p99_ns: Some(p99),
        p999_ns: Some(p999),
        max_ns: Some(max),
        msgs_per_s: Some(rate),
        mb_per_s: Some(rate * SIZE as f64 / 1e6),
    })
}

/// One fan-out subscriber: records the latency of each paced message,
/// then times the burst, and prints what it measured.
pub fn subscriber(url: &str) -> Result<()> {
    let mut sub = Subscriber::connect(&format!("{url}?timeout=30s"), &["bench.>"])?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
    let count = loop {
        let d = sub.recv()?;
        let arrived = now_ns();
        let (seq, extra) = words(&d.payload)?;
        if seq == STOP {
            break extra;
        }
        hist.record(arrived.saturating_sub(extra).max(1))?;
    };
    let t = Instant::now();
    for i in 0..count {
        let (seq, _) = words(&sub.recv()?.payload)?;
        if seq != i {
            bail!("fan-out message {seq}, expected {i}");
        }
    }
    let rate = count as f64 / t.elapsed().as_secs_f64();
    println!(
        "{} {} {} {} {rate}",
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.value_at_quantile(0.999),
        hist.max()
    );
    Ok(())
}
