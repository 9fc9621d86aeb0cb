//! The values an option takes: flags, counts, sizes (`64KiB`) and
//! durations (`500ms`).

use std::time::Duration;

pub(super) fn parse_bool(v: &str) -> std::result::Result<bool, String> {
    match v {
        "" | "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("`{v}` is not true or false")),
    }
}

pub(super) fn parse_count(v: &str) -> std::result::Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{v}` is not a positive whole number"))
}

pub(super) fn parse_count_or_zero(v: &str) -> std::result::Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|n| *n <= 1 << 20)
        .ok_or_else(|| format!("`{v}` is not a whole number up to 1048576"))
}

/// Parses `4096`, `64KiB`, `1MiB`, `2GiB`, `10kB`, `1MB`.
pub fn parse_size(v: &str) -> std::result::Result<usize, String> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{v}` is not a size like 4096, 64KiB or 1MiB"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "`{v}` has unknown unit `{unit}` (use B, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("`{v}` is too large"))
}

/// Parses `250us`, `500ms`, `5s`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(v: &str) -> std::result::Result<Duration, String> {
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{v}` is not a duration like 500ms or 5s"))?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "`{v}` has unknown unit `{unit}` (use us, ms, s, m, h)"
            ));
        }
    };
    // Beyond what a Duration holds is "forever" (every deadline made from
    // it is no deadline); negative and NaN cannot be written here.
    match Duration::try_from_secs_f64(secs) {
        Ok(d) => Ok(d),
        Err(_) if secs.is_finite() && secs > 0.0 => Ok(Duration::MAX),
        Err(_) => Err(format!("`{v}` is out of range")),
    }
}
