//! The physical floor, measured in the same run as the shared-memory cells:
//! two processes bouncing one cache line, and memcpy bandwidth.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;
use ipcx::shm::Segment;

use super::Budget;
use super::report::Cell;

/// Tells the bouncing peer to stop.
const STOP: u64 = u64::MAX;

/// One-way latency of a cache line bounced between two processes: the
/// driver writes an odd value, the peer answers with the next even one,
/// both spinning. Nothing can cross between processes faster.
pub fn cache_line(b: &Budget, peer_cpu: Option<usize>) -> Result<Cell> {
    let url = format!("shm:ipcx-bench-floor-{}", std::process::id());
    let seg = Segment::create(&format!("{url}?size=4KiB"))?;
    // SAFETY: the segment is this benchmark's own; its first word is used
    // only as this atomic, here and in the peer.
    let line = unsafe { seg.atomic_u64(0)? };
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["bench-peer", "--floor", "--url", &url]);
    if let Some(c) = peer_cpu {
        cmd.args(["--cpu", &c.to_string()]);
    }
    let mut child = cmd.spawn().context("start the floor peer")?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let rounds = b.rounds * 10;
    let start = Instant::now();
    for i in 0..rounds as u64 {
        let t = Instant::now();
        line.store(2 * i + 1, Ordering::Release);
        let mut spins = 0u64;
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
            spins += 1;
            if spins.is_multiple_of(1 << 24) && child.try_wait()?.is_some() {
                bail!("the floor peer exited");
            }
        }
        if i >= 100 {
            hist.record((t.elapsed().as_nanos() as u64 / 2).max(1))?;
        }
        if start.elapsed() > b.time && hist.len() >= 1000 {
            break;
        }
    }
    line.store(STOP, Ordering::Release);
    child.wait()?;
    Ok(Cell::new("floor", 64, "raw", "spin", &hist, None))
}

/// The peer of [`cache_line`].
pub fn bounce(url: &str) -> Result<()> {
    let seg = Segment::open(&format!("{url}?timeout=10s"))?;
    // SAFETY: as in `cache_line`.
    let line = unsafe { seg.atomic_u64(0)? };
    loop {
        let v = line.load(Ordering::Acquire);
        if v == STOP {
            return Ok(());
        }
        if v % 2 == 1 {
            line.store(v + 1, Ordering::Release);
        }
        std::hint::spin_loop();
    }
}

/// Time per `memcpy` of `size` bytes between two buffers (cold enough to
/// be realistic: the budget's worth of bytes, at least 100 copies).
pub fn memcpy(size: usize, b: &Budget) -> Cell {
    let src = vec![1u8; size];
    let mut dst = vec![0u8; size];
    let copies = (b.bytes / size).clamp(100, 1_000_000);
    let t = Instant::now();
    for i in 0..copies {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst)[i % size] = 0;
    }
    let per_copy = t.elapsed().as_secs_f64() / copies as f64;
    Cell::timed("memcpy", size, "raw", "none", per_copy)
}
