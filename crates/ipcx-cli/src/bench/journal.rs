//! The journal against bare sequential `write()` of the same bytes to a
//! file, in the same run: each append (each `write`) timed, and records
//! per second. Durability `none` on both sides: the page cache.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use hdrhistogram::Histogram;
use ipcx::journal::JournalWriter;

use super::Budget;
use super::report::Cell;

/// A journal cell and a bare one per size (up to 1 MiB).
pub fn measure(sizes: &[usize], b: &Budget, dir: &Path) -> Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        // The records of one size, whole: at most 256 MiB on disk.
        let n = (b.bytes / size)
            .clamp(b.min_msgs, b.max_msgs)
            .min((256 << 20) / (size + 16));
        let payload = vec![7u8; size];
        // Segments big enough that a run rolls rarely.
        let url = format!(
            "journal:{}?size=64MiB",
            dir.join(format!("journal{i}")).display()
        );
        let mut w = JournalWriter::open(&url)?;
        let (hist, rate) = timed(n, || Ok(w.append(&payload).map(drop)?))?;
        cells.push(Cell::new(
            "journal",
            size,
            "ipcx",
            "block",
            &hist,
            Some(rate),
        ));
        drop(w);

        // The same bytes a record takes (16-byte head, payload padded to 8).
        let record = vec![7u8; 16 + size.div_ceil(8) * 8];
        let mut f = std::fs::File::create(dir.join(format!("raw{i}")))?;
        let (hist, rate) = timed(n, || Ok(f.write_all(&record)?))?;
        cells.push(Cell::new(
            "journal",
            size,
            "raw",
            "block",
            &hist,
            Some(rate),
        ));
    }
    Ok(cells)
}

/// Calls `op` `n` times, timing each call: the histogram of those times
/// (ns) and the calls per second over the whole run.
fn timed(n: usize, mut op: impl FnMut() -> Result<()>) -> Result<(Histogram<u64>, f64)> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        op()?;
        hist.record((t.elapsed().as_nanos() as u64).max(1))?;
    }
    Ok((hist, n as f64 / start.elapsed().as_secs_f64()))
}
