//! `ipcx journal`: read a journal from any sequence number, follow it,
//! and say what it holds. (`ipcx send journal:/dir` appends; `ipcx recv
//! journal:/dir` follows from the end.)

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, Subcommand};
use ipcx::journal::{self, JournalReader};

#[derive(Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    command: JournalCommand,
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Print records as `SEQ<TAB>PAYLOAD` lines, from --from (default: the oldest kept).
    Tail {
        /// The journal, journal:/dir.
        url: String,
        /// The first sequence number to print.
        #[arg(long)]
        from: Option<u64>,
        /// Keep following the writer instead of stopping at the end.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Say what the journal holds: segments, first and next sequence number, bytes.
    Stat {
        /// The journal, journal:/dir.
        url: String,
        /// As one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(a: JournalArgs) -> Result<ExitCode> {
    match a.command {
        JournalCommand::Tail { url, from, follow } => {
            let from = match from {
                Some(f) => f,
                None => journal::stat(&url)?.first_seq,
            };
            let mut r = JournalReader::open(&url, from)?;
            let mut out = std::io::stdout().lock();
            loop {
                let record = if follow {
                    Some(r.next()?)
                } else {
                    r.try_next()?
                };
                let Some((seq, payload)) = record else {
                    return Ok(ExitCode::SUCCESS);
                };
                out.write_all(format!("{seq}\t").as_bytes())?;
                out.write_all(&payload)?;
                out.write_all(b"\n")?;
                out.flush()?;
            }
        }
        JournalCommand::Stat { url, json } => {
            let s = journal::stat(&url)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "segments": s.segments,
                        "first_seq": s.first_seq,
                        "next_seq": s.next_seq,
                        "bytes": s.bytes,
                    })
                );
            } else {
                println!(
                    "{} segments, records {}..{} ({} kept), {} bytes",
                    s.segments,
                    s.first_seq,
                    s.next_seq,
                    s.next_seq - s.first_seq,
                    s.bytes
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `ipcx recv journal:/dir`: follows from the end, printing each new
/// record's payload as a line, up to `count`, within `timeout`.
pub fn follow(url: &str, count: Option<u64>, timeout: Option<Duration>) -> Result<ExitCode> {
    let next = journal::stat(url)?.next_seq;
    let mut r = JournalReader::open(url, next)?;
    eprintln!("ipcx: following {url} from {next}");
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    while count.is_none_or(|n| seen < n) {
        let (_, payload) = match deadline {
            None => r.next()?,
            Some(d) => match r.next_timeout(d.saturating_duration_since(Instant::now())) {
                Err(e) if *e.kind() == ipcx::ErrorKind::TimedOut => {
                    eprintln!("ipcx: timed out after {seen} records");
                    return Ok(ExitCode::FAILURE);
                }
                r => r?,
            },
        };
        out.write_all(&payload)?;
        out.write_all(b"\n")?;
        out.flush()?;
        seen += 1;
    }
    Ok(ExitCode::SUCCESS)
}
