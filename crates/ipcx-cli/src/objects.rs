//! `ipcx ls` and `ipcx clean`: the registry of named objects.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use ipcx::registry::{Entry, ObjectKind, Registry};

#[derive(Args)]
pub struct LsArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct CleanArgs {
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

/// What the object is doing now: a primitive's holder, value or
/// generation, read from the object itself; empty when there is nothing
/// to say (or it cannot be opened).
fn state(e: &Entry) -> String {
    let Some(name) = e
        .record
        .paths
        .first()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
    else {
        return String::new();
    };
    match e.record.kind {
        ObjectKind::Shm => ipcx::shm::Segment::open(&format!("shm:{name}?timeout=0s"))
            .ok()
            .and_then(|seg| ipcx::shm::describe(&seg).or_else(|| ipcx::sync::describe(seg)))
            .unwrap_or_default(),
        ObjectKind::Sem => name
            .strip_prefix("sem.")
            .and_then(|n| ipcx::sync::NamedSemaphore::open(n).ok())
            .and_then(|s| s.value().ok())
            .map(|v| format!("posix semaphore value {v}"))
            .unwrap_or_default(),
        ObjectKind::Mq => ipcx::transport::queue_state(&name).unwrap_or_default(),
        ObjectKind::Socket => e.state().unwrap_or_default(),
        ObjectKind::SysvMq => ipcx::transport::sysv_queues()
            .into_iter()
            .find(|(url, _)| url.strip_prefix("sysvmq:") == Some(name.as_str()))
            .map(|(_, state)| state)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn to_json(entries: &[Entry]) -> serde_json::Value {
    entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "url": e.record.url,
                "kind": e.record.kind.name(),
                "path": e.record.paths.first(),
                "paths": e.record.paths,
                "owner_pid": e.record.owner_pid,
                "alive": e.alive,
                "persist": e.record.persist,
                "state": state(e),
            })
        })
        .collect()
}

fn table(entries: &[Entry]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header([
        "url",
        "kind",
        "path",
        "owner_pid",
        "alive",
        "state",
    ]);
    for e in entries {
        t.add_row([
            e.record.url.clone(),
            e.record.kind.name().to_string(),
            e.record
                .paths
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            e.record.owner_pid.to_string(),
            match (e.alive, e.record.persist) {
                (true, _) => "yes",
                (false, true) => "no (persists)",
                (false, false) => "no (stale)",
            }
            .to_string(),
            state(e),
        ]);
    }
    t
}

#[derive(Args)]
pub struct RmArgs {
    /// The endpoint URL, as `ipcx ls` shows it.
    url: String,
}

pub fn rm(a: RmArgs) -> Result<ExitCode> {
    let removed = Registry::open()?.remove(&a.url)?;
    if removed.is_empty() {
        anyhow::bail!("no object recorded for {} (see `ipcx ls`)", a.url);
    }
    for e in &removed {
        println!("removed {} ({})", e.record.url, e.record.kind.name());
    }
    Ok(ExitCode::SUCCESS)
}

/// The user's System V semaphore sets (not in the registry, which records
/// objects by path): `sysvsem:0xKEY` and their values.
fn sysv_sets() -> Vec<(String, String)> {
    ipcx::sync::SysVSemaphoreSet::list()
        .unwrap_or_default()
        .into_iter()
        .map(|set| {
            let last: Vec<String> = set
                .last_pids
                .iter()
                .zip(&set.last_alive)
                .map(|(&pid, &alive)| match pid {
                    0 => "-".to_string(),
                    p if alive => p.to_string(),
                    p => format!("{p} (dead)"),
                })
                .collect();
            (
                format!("sysvsem:{:#x}", set.key),
                format!(
                    "values {:?}, last changed by pid [{}]",
                    set.values,
                    last.join(", ")
                ),
            )
        })
        .collect()
}

/// What `ipcx ls` lists beside the registry: the user's System V
/// semaphore sets and message queues (any program's; those ipcx made
/// show in their registry rows), as (url, kind, state).
fn sysv_objects(entries: &[Entry]) -> Vec<(String, &'static str, String)> {
    // A recorded queue's path ends in its key (`/proc/sysvipc/msg/0xKEY`).
    let recorded: Vec<String> = entries
        .iter()
        .filter(|e| e.record.kind == ObjectKind::SysvMq)
        .filter_map(|e| e.record.paths.first()?.file_name())
        .map(|key| format!("sysvmq:{}", key.to_string_lossy()))
        .collect();
    let queues = ipcx::transport::sysv_queues()
        .into_iter()
        .filter(|(url, _)| !recorded.contains(url))
        .map(|(url, state)| (url, "sysvmq", state));
    sysv_sets()
        .into_iter()
        .map(|(url, state)| (url, "sysvsem", state))
        .chain(queues)
        .collect()
}

pub fn ls(a: LsArgs) -> Result<ExitCode> {
    let entries = Registry::open()?.list()?;
    let sets = sysv_objects(&entries);
    if a.json {
        let mut all = to_json(&entries);
        if let serde_json::Value::Array(list) = &mut all {
            list.extend(sets.iter().map(
                |(url, kind, state)| serde_json::json!({"url": url, "kind": kind, "state": state}),
            ));
        }
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else if entries.is_empty() && sets.is_empty() {
        println!("no objects");
    } else {
        let mut t = table(&entries);
        for (url, kind, state) in sets {
            t.add_row([url, kind.into(), "-".into(), "-".into(), "-".into(), state]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

pub fn clean(a: CleanArgs) -> Result<ExitCode> {
    let removed = Registry::open()?.clean(a.dry_run)?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for e in &removed {
        println!(
            "{verb} {} ({} of dead pid {})",
            e.record.url,
            e.record.kind.name(),
            e.record.owner_pid
        );
    }
    if removed.is_empty() {
        println!("nothing stale");
    }
    Ok(ExitCode::SUCCESS)
}
