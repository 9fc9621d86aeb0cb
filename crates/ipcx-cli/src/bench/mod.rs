//! `ipcx bench`: ping-pong latency and one-way throughput between two
//! processes, for every mechanism, through ipcx and through the bare OS
//! mechanism in the same run.
//!
//! Each cell is a fresh child process (`ipcx bench-peer`). The driver pins
//! itself and the child to two different CPUs (or one, with `--pin same`),
//! then:
//! 1. latency: sends a message, the child echoes it, repeated; one-way
//!    latency is half the round trip;
//! 2. throughput: the child sends N messages back to back, each filled by it,
//!    and the driver receives each whole and reads every cache line of it;
//!    the figure is messages received per second.
//!
//! ipcx cells and raw cells alternate, so drift on a shared machine touches
//! both alike.

mod conn;
mod fanout;
mod floor;
mod journal;
mod pubsub_fanout;
mod raw;
mod report;
mod sync;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use conn::{Conn, Impl, Mech};
pub use report::Cell;

#[derive(Args)]
pub struct BenchArgs {
    /// A short run (about 40 s here): fewer round trips and bytes per cell.
    #[arg(long)]
    quick: bool,
    /// Mechanisms to measure (default: all built).
    #[arg(long, value_enum, value_delimiter = ',')]
    mech: Option<Vec<Mech>>,
    /// Message sizes (default: 64,4KiB,64KiB,1MiB); at least 16 bytes.
    #[arg(long, value_delimiter = ',', value_parser = crate::parse_size)]
    sizes: Option<Vec<usize>>,
    /// Also write every cell as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// CPU placement of the two processes.
    #[arg(long, value_enum, default_value_t = Pin::Cross)]
    pin: Pin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Pin {
    /// Two different cores.
    Cross,
    /// The same core.
    Same,
    /// Let the scheduler decide.
    None,
}

/// Arguments of the child side of a cell.
#[derive(Args)]
pub struct PeerArgs {
    /// Bounce the cache line of the floor measurement instead.
    #[arg(long)]
    floor: bool,
    /// Be fan-out subscriber number N instead.
    #[arg(long)]
    fanout: Option<usize>,
    /// Be a subscriber of the publish/subscribe fan-out instead.
    #[arg(long)]
    pubsub_fanout: bool,
    /// Be the peer of a synchronization cell instead (ROLE:N).
    #[arg(long)]
    sync: Option<String>,
    #[arg(long, value_enum, default_value = "shm")]
    mech: Mech,
    #[arg(long = "impl", value_enum, default_value = "raw")]
    imp: Impl,
    #[arg(long, default_value = "")]
    url: String,
    #[arg(long, default_value = "")]
    url2: String,
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[arg(long)]
    cpu: Option<usize>,
}

/// Marks the end of the latency phase; bytes 8..16 then hold the number of
/// messages for the throughput phase.
const STOP: u64 = u64::MAX;

pub(crate) struct Budget {
    pub(crate) rounds: usize,
    pub(crate) time: Duration,
    pub(crate) bytes: usize,
    min_msgs: usize,
    max_msgs: usize,
}

pub fn run(a: BenchArgs) -> Result<ExitCode> {
    let mechs = a.mech.clone().unwrap_or_else(|| Mech::ALL.to_vec());
    let sizes = a
        .sizes
        .clone()
        .unwrap_or_else(|| vec![64, 4 << 10, 64 << 10, 1 << 20]);
    if let Some(s) = sizes.iter().find(|s| **s < 16) {
        bail!("size {s} is too small: the benchmark needs 16 bytes for its sequence numbers");
    }
    // Checked before anything is made: a size the machine cannot hold would
    // abort on allocation, leaving the scratch directory and objects behind.
    let most = largest_size();
    if let Some(s) = sizes.iter().find(|s| **s > most) {
        bail!(
            "size {s} is more than a benchmark can use here: at most {most} bytes \
             (an eighth of this machine's memory, up to 1 GiB; each cell holds several copies)"
        );
    }
    let budget = if a.quick {
        Budget {
            rounds: 2_000,
            time: Duration::from_millis(120),
            bytes: 24 << 20,
            min_msgs: 100,
            max_msgs: 60_000,
        }
    } else {
        Budget {
            rounds: 20_000,
            time: Duration::from_millis(1500),
            bytes: 256 << 20,
            min_msgs: 1_000,
            max_msgs: 1_000_000,
        }
    };
    let cpus = ipcx::bench_support::cpus_allowed();
    let (mine, theirs) = match (a.pin, cpus.as_slice()) {
        (Pin::None, _) => (None, None),
        (Pin::Cross, [x, y, ..]) => (Some(*x), Some(*y)),
        (_, [x, ..]) => (Some(*x), Some(*x)),
        (_, []) => (None, None),
    };
    if let Some(c) = mine {
        ipcx::bench_support::pin_to_cpu(c).context("pinning the driver")?;
    }
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir)?;
    let _cleanup = RemoveDir(dir.clone());

    let total: usize = mechs.iter().map(|m| m.variants().len() * sizes.len()).sum();
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("valid template"),
    );
    let mut cells = Vec::new();
    let mut n = 0;
    for &mech in &mechs {
        for (si, &size) in sizes.iter().enumerate() {
            // Alternate the order so neither side always runs first.
            let mut order = mech.variants().to_vec();
            if si % 2 == 1 {
                order.reverse();
            }
            for (imp, wait) in order {
                bar.set_message(format!(
                    "{} {} {:?} {wait}",
                    mech.name(),
                    report::size_name(size),
                    imp
                ));
                n += 1;
                let too_big = size > mech.limit() || (imp == Impl::Raw && size > mech.raw_limit());
                let cell = if too_big {
                    Cell::not_applicable(mech.name(), size, report::impl_name(imp), wait)
                } else {
                    measure_cell(mech, imp, wait, size, &budget, &dir, n, theirs)
                        .with_context(|| format!("{} {size} B {imp:?} {wait}", mech.name()))?
                };
                cells.push(cell);
                bar.inc(1);
            }
        }
    }
    if mechs.iter().any(|m| {
        matches!(
            m,
            Mech::Shm | Mech::ShmZc | Mech::ShmZcUntouched | Mech::JournalTail
        )
    }) {
        bar.set_message("physical floor: cache line, memcpy");
        cells.push(floor::cache_line(&budget, theirs).context("cache-line floor")?);
        cells.extend(sizes.iter().map(|&s| floor::memcpy(s, &budget)));
        if mechs.contains(&Mech::ShmZc) {
            bar.set_message("fan-out: one publisher, four subscribers");
            cells.push(fanout::measure(&budget).context("fan-out")?);
        }
    }
    if mechs.contains(&Mech::Pubsub) {
        bar.set_message("publish/subscribe fan-out: 1, 4, 16 subscribers");
        cells.extend(pubsub_fanout::measure(&budget, &dir).context("pub/sub fan-out")?);
    }
    if mechs.contains(&Mech::Journal) {
        bar.set_message("journal: appends against write()");
        cells.extend(journal::measure(&sizes, &budget, &dir).context("journal")?);
    }
    if mechs.contains(&Mech::Sync) {
        bar.set_message("sync: mutex, semaphore");
        cells.extend(sync::measure(&budget, theirs).context("sync")?);
    }
    bar.finish_and_clear();
    println!("{}", report::table(&cells));
    let ratios = report::ratios(&cells);
    if ratios.row_iter().next().is_some() {
        println!("{ratios}");
    }
    if let Some(t) = sync::ratios(&cells) {
        println!("{t}");
    }
    if let Some(t) = report::zero_copy(&cells) {
        println!("{t}");
    }
    println!(
        "one-way latency = round trip / 2; throughput = messages received per second, each read whole;\n\
         driver pinned to CPU {mine:?}, peer to CPU {theirs:?}"
    );
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&cells)?)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The largest message size a cell may use: an eighth of the machine's
/// memory (a cell holds the message several times over: both sides'
/// buffers, the kernel's or the ring's copy), and no more than 1 GiB.
fn largest_size() -> usize {
    // `MemTotal:  24568748 kB` in /proc/meminfo; unknown: 1 GiB.
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(u64::MAX, |kib| kib.saturating_mul(1024));
    usize::try_from(total / 8)
        .unwrap_or(usize::MAX)
        .min(1 << 30)
}

/// Where this process's benchmark keeps its sockets and FIFOs.
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("ipcx-bench-{}", std::process::id()))
}

/// A child process killed (and reaped) if a measurement fails midway.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[allow(clippy::too_many_arguments)]
fn measure_cell(
    mech: Mech,
    imp: Impl,
    wait: &str,
    size: usize,
    budget: &Budget,
    dir: &std::path::Path,
    n: usize,
    peer_cpu: Option<usize>,
) -> Result<Cell> {
    let setup = conn::prepare(mech, imp, wait, size, dir, n)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        "bench-peer",
        "--mech",
        mech.name(),
        "--impl",
        if imp == Impl::Raw { "raw" } else { "ipcx" },
    ]);
    cmd.args(["--size", &size.to_string()]);
    if let Some(c) = peer_cpu {
        cmd.args(["--cpu", &c.to_string()]);
    }
    let (mut child, mut conn) = setup.start(cmd)?;
    let result = drive(&mut *conn, mech, size, budget);
    drop(conn);
    let status = child.wait()?;
    let (hist, msgs_per_s) = result?;
    if !status.success() {
        bail!("benchmark peer failed: {status}");
    }
    Ok(Cell::new(
        mech.name(),
        size,
        report::impl_name(imp),
        wait,
        &hist,
        Some(msgs_per_s),
    ))
}

/// The driver's side: latency, then throughput. Throughput messages are
/// written whole by the sender and read whole by the receiver; latency
/// messages too in the zero-copy cells, and nothing but the stamp in the
/// untouched ones (see [`Mech::touches`]).
fn drive(
    conn: &mut dyn Conn,
    mech: Mech,
    size: usize,
    b: &Budget,
) -> Result<(Histogram<u64>, f64)> {
    let (lat_touch, thr_touch) = mech.touches();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
    let mut scratch = Vec::with_capacity(size);
    let mut back = Vec::with_capacity(size);
    let warmup = 20u64;
    let start = Instant::now();
    for i in 0..warmup + b.rounds as u64 {
        let t = Instant::now();
        conn.send_seq(size, i, 0, lat_touch, &mut scratch)?;
        let got = conn.recv_seq(size, lat_touch, &mut back)?;
        let rt = t.elapsed().as_nanos() as u64;
        if got.len != size || got.seq != i {
            bail!("echo came back wrong ({} bytes, seq {})", got.len, got.seq);
        }
        if i >= warmup {
            hist.record((rt / 2).max(1))?;
            if start.elapsed() > b.time && hist.len() >= 50 {
                break;
            }
        }
    }
    let count = (b.bytes / size).clamp(b.min_msgs, b.max_msgs);
    conn.send_seq(size, STOP, count as u64, false, &mut scratch)?;
    let t = Instant::now();
    let mut sum = 0u64;
    for _ in 0..count {
        let got = conn.recv_seq(size, thr_touch, &mut back)?;
        if got.len != size {
            bail!("throughput message of {} bytes, expected {size}", got.len);
        }
        sum = sum.wrapping_add(got.sum);
    }
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box(sum);
    Ok((hist, count as f64 / secs))
}

/// The child's side: echo until told to stop, then send the throughput run.
pub fn peer(a: PeerArgs) -> Result<ExitCode> {
    if let Some(c) = a.cpu {
        ipcx::bench_support::pin_to_cpu(c)?;
    }
    if a.floor {
        return floor::bounce(&a.url).map(|()| ExitCode::SUCCESS);
    }
    if let Some(role) = &a.sync {
        return sync::peer_side(role, &a.url).map(|()| ExitCode::SUCCESS);
    }
    if a.pubsub_fanout {
        return pubsub_fanout::subscriber(&a.url).map(|()| ExitCode::SUCCESS);
    }
    if let Some(k) = a.fanout {
        return fanout::subscriber(&a.url, k).map(|()| ExitCode::SUCCESS);
    }
    let mut conn = conn::connect(a.mech, a.imp, &a.url, &a.url2, a.size)?;
    let (lat_touch, thr_touch) = a.mech.touches();
    let mut buf = Vec::with_capacity(a.size);
    let mut scratch = Vec::with_capacity(a.size);
    let count = loop {
        let got = conn.recv_seq(a.size, lat_touch, &mut buf)?;
        if got.seq == STOP {
            break got.extra;
        }
        conn.send_seq(a.size, got.seq, 0, lat_touch, &mut scratch)?;
    };
    for i in 0..count {
        conn.send_seq(a.size, i, 0, thr_touch, &mut scratch)?;
    }
    // Wait for the driver to hang up, so nothing is cut off in flight. A
    // queue has no hang-up (and keeps what is in flight): nothing to wait
    // for.
    if !matches!(
        a.mech,
        conn::Mech::Mq | conn::Mech::Sysvmq | conn::Mech::JournalTail
    ) {
        let _ = conn.recv_seq(a.size, false, &mut buf);
    }
    Ok(ExitCode::SUCCESS)
}
