//! Removing what aborted test runs left behind: scratch directories in
//! `$TMPDIR` and segments, doorbells and named semaphores in `/dev/shm`, named
//! `<prefix><pid>-...` after the test process that made them. Shared by
//! the library's and the CLI's tests (`#[path]`).

use std::path::{Path, PathBuf};

/// Removes every `$TMPDIR/<prefix><pid>-*` and `/dev/shm/<prefix><pid>-*`
/// whose process is gone (aborted by a watchdog, killed by the user).
pub fn sweep_dead_runs(prefix: &str) {
    for dir in [std::env::temp_dir(), PathBuf::from("/dev/shm")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            // A POSIX named semaphore's file is `sem.NAME`.
            let name = name.to_str().map(|n| n.strip_prefix("sem.").unwrap_or(n));
            let Some(rest) = name.and_then(|n| n.strip_prefix(prefix)) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let path = entry.path();
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
    }
}
