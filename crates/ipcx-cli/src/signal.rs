//! `ipcx signal`: send signals (with an integer, by `sigqueue`) and wait
//! for them, printing who sent each.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use ipcx::signal::{self, Received, Signals};

#[derive(Args)]
pub struct SignalArgs {
    #[command(subcommand)]
    command: SignalCommand,
}

#[derive(Subcommand)]
enum SignalCommand {
    /// Send a signal to a process: `kill`, or with --value `sigqueue` and an integer.
    Send {
        /// The process id.
        pid: u32,
        /// The signal: SIGUSR1, USR1, SIGRTMIN+2, or a number.
        signal: String,
        /// An integer to send with it (sigqueue): the receiver sees it.
        #[arg(long, allow_negative_numbers = true)]
        value: Option<i32>,
    },
    /// Wait for signals and print one line per signal: `SIGNAL VALUE SENDER_PID` (`-` where there is none).
    Wait {
        /// The signals to wait for.
        #[arg(required = true)]
        signals: Vec<String>,
        /// Stop after this many.
        #[arg(short = 'n', long)]
        count: Option<u64>,
        /// Give up after this long with nothing (exit 1).
        #[arg(long, value_parser = crate::parse_duration)]
        timeout: Option<Duration>,
        /// How to print each signal.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// `SIGUSR1 42 1234`
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether this command waits for signals itself (then the CLI leaves
/// `SIGINT` and `SIGTERM` to it).
pub fn takes_signals(a: &SignalArgs) -> bool {
    matches!(a.command, SignalCommand::Wait { .. })
}

pub fn run(a: SignalArgs) -> Result<ExitCode> {
    match a.command {
        SignalCommand::Send { pid, signal, value } => {
            let n = signal::number(&signal)?;
            match value {
                Some(v) => signal::queue(pid, n, v),
                None => signal::send(pid, n),
            }
            .with_context(|| format!("sending {} to {pid}", signal::name(n)))?;
            Ok(ExitCode::SUCCESS)
        }
        SignalCommand::Wait {
            signals,
            count,
            timeout,
            format,
        } => {
            let numbers = signals
                .iter()
                .map(|s| signal::number(s))
                .collect::<ipcx::Result<Vec<_>>>()?;
            let mut subscription = Signals::new(&numbers)?;
            let names: Vec<_> = numbers.iter().map(|&n| signal::name(n)).collect();
            eprintln!(
                "ipcx: waiting for {} in process {}",
                names.join(", "),
                std::process::id()
            );
            let mut out = std::io::stdout().lock();
            let mut seen = 0u64;
            while count.is_none_or(|c| seen < c) {
                let got = match timeout {
                    None => subscription.wait()?,
                    Some(t) => match subscription.wait_timeout(t) {
                        Err(e) if *e.kind() == ipcx::ErrorKind::TimedOut => {
                            eprintln!("ipcx: no signal within {t:?}");
                            return Ok(ExitCode::FAILURE);
                        }
                        r => r?,
                    },
                };
                print(&mut out, format, &got)?;
                seen += 1;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print(out: &mut impl Write, format: Format, r: &Received) -> Result<()> {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    match format {
        Format::Text => writeln!(
            out,
            "{} {} {}",
            signal::name(r.signal),
            or_dash(r.value.map(|v| v.to_string())),
            or_dash(r.sender.map(|p| p.to_string())),
        )?,
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::json!({
                "signal": signal::name(r.signal),
                "number": r.signal,
                "value": r.value,
                "sender": r.sender,
                "uid": r.uid,
            })
        )?,
    }
    out.flush()?;
    Ok(())
}
