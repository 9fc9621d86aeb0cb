//! Benchmark results: the cells, the table, and the ratios to raw.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::conn::Impl;

/// One measured cell: a mechanism, a size, an implementation and a wait
/// strategy. Keys may be added later (pattern, subscribers, peer).
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub mechanism: String,
    pub size: usize,
    #[serde(rename = "impl")]
    pub imp: &'static str,
    pub wait: String,
    pub samples: u64,
    pub p50_ns: Option<u64>,
    pub p99_ns: Option<u64>,
    pub p999_ns: Option<u64>,
    pub max_ns: Option<u64>,
    pub msgs_per_s: Option<f64>,
    pub mb_per_s: Option<f64>,
}

pub fn impl_name(i: Impl) -> &'static str {
    match i {
        Impl::Ipcx => "ipcx",
        Impl::Raw => "raw",
    }
}

impl Cell {
    pub fn new(
        mech: &str,
        size: usize,
        imp: &'static str,
        wait: &str,
        h: &Histogram<u64>,
        msgs_per_s: Option<f64>,
    ) -> Cell {
        Cell {
            mechanism: mech.into(),
            size,
            imp,
            wait: wait.into(),
            samples: h.len(),
            p50_ns: Some(h.value_at_quantile(0.5)),
            p99_ns: Some(h.value_at_quantile(0.99)),
            p999_ns: Some(h.value_at_quantile(0.999)),
            max_ns: Some(h.max()),
            msgs_per_s,
            mb_per_s: msgs_per_s.map(|m| m * size as f64 / 1e6),
        }
    }

    /// A cell measured as time per operation (memcpy).
    pub fn timed(mech: &str, size: usize, imp: &'static str, wait: &str, secs_per_op: f64) -> Cell {
        let ns = (secs_per_op * 1e9).round() as u64;
        Cell {
            mechanism: mech.into(),
            size,
            imp,
            wait: wait.into(),
            samples: 1,
            p50_ns: Some(ns),
            p99_ns: None,
            p999_ns: None,
            max_ns: None,
            msgs_per_s: Some(1.0 / secs_per_op),
            mb_per_s: Some(size as f64 / secs_per_op / 1e6),
        }
    }

    pub fn not_applicable(mech: &str, size: usize, imp: &'static str, wait: &str) -> Cell {
        Cell {
            mechanism: mech.into(),
            size,
            imp,
            wait: wait.into(),
            samples: 0,
            p50_ns: None,
            p99_ns: None,
            p999_ns: None,
            max_ns: None,
            msgs_per_s: None,
            mb_per_s: None,
        }
    }
}

pub fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

fn us(ns: Option<u64>) -> String {
    ns.map_or("n/a".into(), |n| format!("{:.2}", n as f64 / 1e3))
}

fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or("n/a".into(), |x| format!("{x:.digits$}"))
}

pub fn table(cells: &[Cell]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header([
        "mechanism",
        "size",
        "impl",
        "wait",
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs",
        "msgs/s",
        "MB/s",
    ]);
    for c in cells {
        t.add_row([
            c.mechanism.clone(),
            size_name(c.size),
            c.imp.into(),
            c.wait.clone(),
            us(c.p50_ns),
            us(c.p99_ns),
            us(c.p999_ns),
            us(c.max_ns),
            num(c.msgs_per_s, 0),
            num(c.mb_per_s, 1),
        ]);
    }
    t
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// Per mechanism and size: ipcx against raw, from the same run; for
/// shared memory also against the cache-line floor.
pub fn ratios(cells: &[Cell]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header([
        "mechanism",
        "size",
        "p50 ipcx/raw: block",
        "adaptive",
        "spin",
        "throughput ipcx/raw: block",
        "spin",
        "p50 ipcx spin / floor",
    ]);
    let find = |m: &str, s: usize, imp: &str, w: &str| {
        cells
            .iter()
            .find(|c| c.mechanism == m && c.size == s && c.imp == imp && c.wait == w)
    };
    let floor = cells
        .iter()
        .find(|c| c.mechanism == "floor")
        .and_then(|c| c.p50_ns)
        .map(|n| n as f64);
    let p50 = |c: Option<&Cell>| c.and_then(|c| c.p50_ns).map(|n| n as f64);
    let thr = |c: Option<&Cell>| c.and_then(|c| c.msgs_per_s);
    for raw in cells.iter().filter(|c| {
        c.imp == "raw"
            && c.samples > 0
            && c.wait != "none"
            && !matches!(c.mechanism.as_str(), "floor" | "mutex" | "semaphore")
    }) {
        let (m, s) = (raw.mechanism.as_str(), raw.size);
        let ipcx = |w| find(m, s, "ipcx", w);
        t.add_row([
            m.to_string(),
            size_name(s),
            num(ratio(p50(ipcx("block")), p50(Some(raw))), 2),
            num(ratio(p50(ipcx("adaptive")), p50(Some(raw))), 2),
            num(ratio(p50(ipcx("spin")), p50(Some(raw))), 2),
            num(ratio(thr(ipcx("block")), thr(Some(raw))), 2),
            num(ratio(thr(ipcx("spin")), thr(Some(raw))), 2),
            num(ratio(p50(ipcx("spin")), floor), 2),
        ]);
    }
    t
}

/// Zero-copy cells against their yardsticks from the same run: the
/// cache-line floor, their own 64 B latency, and memcpy.
pub fn zero_copy(cells: &[Cell]) -> Option<Table> {
    let p50 = |m: &str, s: usize| {
        cells
            .iter()
            .find(|c| c.mechanism == m && c.size == s && c.wait == "spin")
            .and_then(|c| c.p50_ns)
            .map(|n| n as f64)
    };
    let floor = cells
        .iter()
        .find(|c| c.mechanism == "floor")
        .and_then(|c| c.p50_ns)
        .map(|n| n as f64);
    let memcpy = |s: usize| {
        cells
            .iter()
            .find(|c| c.mechanism == "memcpy" && c.size == s)
            .and_then(|c| c.p50_ns)
            .map(|n| n as f64)
    };
    let mut sizes: Vec<usize> = cells
        .iter()
        .filter(|c| c.mechanism.starts_with("shm-zc"))
        .map(|c| c.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let smallest = *sizes.first()?;
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header([
        "zero-copy, spin",
        "size",
        "p50 / floor",
        "untouched p50 / own smallest",
        "touched p50 / two memcpy",
    ]);
    for s in sizes {
        t.add_row([
            "shm-zc".to_string(),
            size_name(s),
            num(ratio(p50("shm-zc", s), floor), 2),
            num(
                ratio(
                    p50("shm-zc-untouched", s),
                    p50("shm-zc-untouched", smallest),
                ),
                2,
            ),
            num(ratio(p50("shm-zc", s), memcpy(s).map(|m| 2.0 * m)), 2),
        ]);
    }
    Some(t)
}
