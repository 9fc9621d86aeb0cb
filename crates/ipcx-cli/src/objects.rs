//! `ipcx ls` and `ipcx clean`: the registry of named objects.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use ipcx::registry::{Entry, Registry};

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
            })
        })
        .collect()
}

fn table(entries: &[Entry]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_header(["url", "kind", "path", "owner_pid", "alive"]);
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
            if e.alive { "yes" } else { "no (stale)" }.to_string(),
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

pub fn ls(a: LsArgs) -> Result<ExitCode> {
    let entries = Registry::open()?.list()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&entries))?);
    } else if entries.is_empty() {
        println!("no objects");
    } else {
        println!("{}", table(&entries));
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
