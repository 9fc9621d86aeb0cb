//! Cross-process synchronization against the bare OS primitives, in the
//! same run: uncontended lock+unlock (also against `std::sync::Mutex`), a
//! lock contended by two processes, and semaphore ping-pong.

use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use hdrhistogram::Histogram;
use ipcx::bench_support::PosixSem;
use ipcx::bench_support::RawRobustMutex;
use ipcx::sync::{Mutex, Semaphore, SharedAtomicU64};

use super::Budget;
use super::report::Cell;

fn name(what: &str) -> String {
    format!("ipcx-bench-{what}-{}", std::process::id())
}

fn peer(role: &str, url: &str, peer_cpu: Option<usize>) -> Result<Child> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["bench-peer", "--sync", role, "--url", url]);
    if let Some(c) = peer_cpu {
        cmd.args(["--cpu", &c.to_string()]);
    }
    cmd.spawn().context("start the sync benchmark peer")
}

/// Every sync cell: each pair measured ipcx first, then bare, then again
/// in the other order, keeping each side's better figure.
pub fn measure(b: &Budget, peer_cpu: Option<usize>) -> Result<Vec<Cell>> {
    // Even a quick run takes 5 M lock+unlock pairs (about 50 ms): shorter
    // windows are at the mercy of this machine's wandering speed.
    let ops = (b.rounds * 500).max(5_000_000);
    let mut cells = Vec::new();
    let best = |a: Cell, b: Cell| if a.p50_ns <= b.p50_ns { a } else { b };
    // Three rounds, the three kinds taking turns, each kind's best kept:
    // this machine's speed wanders within a run.
    let (mut ipcx, mut raw, mut std) = (None::<Cell>, None::<Cell>, None::<Cell>);
    for _ in 0..3 {
        let keep = |slot: &mut Option<Cell>, c: Cell| {
            *slot = Some(match slot.take() {
                Some(old) => best(old, c),
                None => c,
            })
        };
        keep(&mut ipcx, uncontended_ipcx(ops)?);
        keep(&mut raw, uncontended_raw(ops)?);
        keep(&mut std, uncontended_std(ops));
    }
    cells.extend([ipcx, raw, std].into_iter().flatten());
    let hand = b.rounds * 50;
    cells.push(contended("ipcx", hand, peer_cpu)?);
    cells.push(contended("raw", hand, peer_cpu)?);
    // Every hand-over is a futex wake-up across CPUs, whose cost wanders:
    // each side twice, in both orders, the better kept.
    let (i1, r1) = (
        ping_pong("ipcx", b, peer_cpu)?,
        ping_pong("raw", b, peer_cpu)?,
    );
    let (r2, i2) = (
        ping_pong("raw", b, peer_cpu)?,
        ping_pong("ipcx", b, peer_cpu)?,
    );
    cells.extend([best(i1, i2), best(r1, r2)]);
    Ok(cells)
}

fn per_op(mech: &str, imp: &'static str, wait: &str, ops: usize, t: Instant) -> Cell {
    Cell::timed(mech, 8, imp, wait, t.elapsed().as_secs_f64() / ops as f64)
}

fn uncontended_ipcx(ops: usize) -> Result<Cell> {
    let m = Mutex::<u64>::create(&name("mutex"), 0)?;
    let t = Instant::now();
    lock_and_count(&m, ops);
    Ok(per_op("mutex", "ipcx", "uncontended", ops, t))
}

fn uncontended_raw(ops: usize) -> Result<Cell> {
    let m = RawRobustMutex::create(&format!("shm:{}", name("rawmutex")))?;
    let t = Instant::now();
    lock_and_count_raw(&m, ops);
    Ok(per_op("mutex", "raw", "uncontended", ops, t))
}

/// The critical section every mutex cell measures: lock, add one to the
/// guarded counter, unlock, `n` times.
fn lock_and_count(m: &Mutex<u64>, n: usize) {
    for _ in 0..n {
        if let Ok(mut g) = m.lock() {
            *g += 1;
        }
    }
}

/// [`lock_and_count`] on the bare pthread mutex.
fn lock_and_count_raw(m: &RawRobustMutex, n: usize) {
    let c = m.counter();
    for _ in 0..n {
        m.lock();
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        m.unlock();
    }
}

fn uncontended_std(ops: usize) -> Cell {
    let m = std::sync::Mutex::new(0u64);
    let t = Instant::now();
    for _ in 0..ops {
        *std::hint::black_box(&m)
            .lock()
            .unwrap_or_else(|e| e.into_inner()) += 1;
    }
    per_op("mutex", "std", "uncontended", ops, t)
}

/// Two processes each take the lock `ops` times (incrementing a counter
/// under it); time per acquisition.
fn contended(imp: &'static str, ops: usize, peer_cpu: Option<usize>) -> Result<Cell> {
    let base = name(&format!("contended-{imp}"));
    let url = format!("shm:{base}");
    let go = SharedAtomicU64::create(&format!("{base}-go"), 0)?;
    let run: Box<dyn Fn()> = if imp == "ipcx" {
        let m = Mutex::<u64>::create(&url, 0)?;
        Box::new(move || {
            lock_and_count(&m, ops);
        })
    } else {
        let m = RawRobustMutex::create(&url)?;
        Box::new(move || {
            lock_and_count_raw(&m, ops);
        })
    };
    let mut child = peer(&format!("contend-{imp}:{ops}"), &url, peer_cpu)?;
    // The peer says it is ready (1), we say go (2), it says done (3).
    while go.load(Ordering::Acquire) != 1 {
        if child.try_wait()?.is_some() {
            bail!("the contention peer exited early");
        }
        std::hint::spin_loop();
    }
    let t = Instant::now();
    go.store(2, Ordering::Release);
    run();
    while go.load(Ordering::Acquire) != 3 {
        if child.try_wait()?.is_some() {
            bail!("the contention peer exited early");
        }
        std::thread::yield_now();
    }
    let cell = per_op("mutex", imp, "2 processes", 2 * ops, t);
    child.wait()?;
    Ok(cell)
}

/// One semaphore operation of a ping-pong side.
type Step = Box<dyn Fn() -> Result<()>>;

/// Semaphore ping-pong: we post `ping` and wait on `pong`, the peer the
/// other way round; one-way = round trip / 2.
fn ping_pong(imp: &'static str, b: &Budget, peer_cpu: Option<usize>) -> Result<Cell> {
    let base = name(&format!("sem-{imp}"));
    let (ping, pong) = (format!("{base}-ping"), format!("{base}-pong"));
    let (post, wait): (Step, Step) = if imp == "ipcx" {
        let p = Semaphore::create(&ping, 0)?;
        let q = Semaphore::create(&pong, 0)?;
        (
            Box::new(move || Ok(p.release()?)),
            Box::new(move || Ok(q.acquire()?)),
        )
    } else {
        let p = PosixSem::create(&ping, 0o600, 0)?;
        let q = PosixSem::create(&pong, 0o600, 0)?;
        (
            Box::new(move || Ok(p.post()?)),
            Box::new(move || Ok(q.wait(None).map(drop)?)),
        )
    };
    let _unlink = Unlink(if imp == "raw" {
        vec![ping, pong]
    } else {
        vec![]
    });
    let rounds = b.rounds.max(5_000);
    let mut child = peer(&format!("pong-{imp}:{}", rounds + 20), &base, peer_cpu)?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3)?;
    for i in 0..rounds + 20 {
        let t = Instant::now();
        post()?;
        wait()?;
        if i >= 20 {
            hist.record((t.elapsed().as_nanos() as u64 / 2).max(1))?;
        }
    }
    child.wait()?;
    Ok(Cell::new("semaphore", 0, imp, "ping-pong", &hist, None))
}

/// Removes POSIX semaphores the raw cell made (ipcx's own go with their
/// handles).
struct Unlink(Vec<String>);

impl Drop for Unlink {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = PosixSem::unlink(n);
        }
    }
}

/// The peer's side of a sync cell: `contend-IMPL:OPS` or `pong-IMPL:ROUNDS`.
pub fn peer_side(role: &str, url: &str) -> Result<()> {
    let (what, n) = role.split_once(':').context("role is WHAT:N")?;
    let n: usize = n.parse()?;
    let open = |u: &str| format!("{u}?timeout=10s");
    match what {
        "contend-ipcx" | "contend-raw" => {
            let go = SharedAtomicU64::open(&open(&format!("{url}-go")))?;
            let work: Box<dyn Fn()> = if what == "contend-ipcx" {
                let m = Mutex::<u64>::open(&open(url))?;
                Box::new(move || {
                    lock_and_count(&m, n);
                })
            } else {
                // SAFETY: the driver made this segment with
                // RawRobustMutex::create and waits for this peer to finish.
                let m = unsafe { RawRobustMutex::open(&open(url))? };
                Box::new(move || {
                    lock_and_count_raw(&m, n);
                })
            };
            go.store(1, Ordering::Release);
            while go.load(Ordering::Acquire) != 2 {
                std::hint::spin_loop();
            }
            work();
            go.store(3, Ordering::Release);
        }
        "pong-ipcx" => {
            let p = Semaphore::open(&open(&format!("shm:{url}-ping")))?;
            let q = Semaphore::open(&open(&format!("shm:{url}-pong")))?;
            for _ in 0..n {
                p.acquire()?;
                q.release()?;
            }
        }
        "pong-raw" => {
            let p = PosixSem::open(&format!("{url}-ping"))?;
            let q = PosixSem::open(&format!("{url}-pong"))?;
            for _ in 0..n {
                p.wait(None)?;
                q.post()?;
            }
        }
        other => bail!("unknown sync role {other}"),
    }
    Ok(())
}

/// ipcx against the bare primitive (and `std`), from the same run.
pub fn ratios(cells: &[Cell]) -> Option<Table> {
    // Timed cells carry their exact rate; ping-pong cells a p50.
    let ns = |m: &str, imp: &str, w: &str| {
        cells
            .iter()
            .find(|c| c.mechanism == m && c.imp == imp && c.wait == w)
            .and_then(|c| match (c.p99_ns, c.msgs_per_s) {
                (None, Some(rate)) => Some(1e9 / rate),
                _ => c.p50_ns.map(|n| n as f64),
            })
    };
    let rows = [
        (
            "mutex",
            "uncontended",
            "raw",
            "robust pshared pthread mutex",
        ),
        (
            "mutex",
            "uncontended",
            "std",
            "std::sync::Mutex (one process)",
        ),
        (
            "mutex",
            "2 processes",
            "raw",
            "robust pshared pthread mutex",
        ),
        ("semaphore", "ping-pong", "raw", "sem_post / sem_wait"),
    ];
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header([
        "sync",
        "how",
        "ipcx ns",
        "against",
        "its ns",
        "ipcx / it",
    ]);
    let mut any = false;
    for (m, w, other, what) in rows {
        if let (Some(a), Some(b)) = (ns(m, "ipcx", w), ns(m, other, w)) {
            any = true;
            t.add_row([
                m.to_string(),
                w.to_string(),
                format!("{a:.1}"),
                what.to_string(),
                format!("{b:.1}"),
                format!("{:.2}", a / b),
            ]);
        }
    }
    any.then_some(t)
}
