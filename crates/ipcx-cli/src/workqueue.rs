//! `ipcx push` and `ipcx pull`: work queues from the shell.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use ipcx::pattern::{Puller, Pusher};

use crate::Role;

#[derive(Args)]
pub struct PushArgs {
    /// Endpoint URL the pusher binds, e.g. unix:/tmp/jobs.sock (or, with
    /// --connect, where a puller that binds collects jobs)
    url: String,
    /// Jobs, one per argument; none: each line of stdin.
    messages: Vec<std::ffi::OsString>,
    /// Give up (exit 1) when the jobs are not all acknowledged in this
    /// time (default: wait for workers as long as it takes).
    #[arg(long, value_parser = crate::parse_duration)]
    timeout: Option<Duration>,
    /// Priority of these jobs: waiting jobs go out highest first.
    #[arg(long, default_value_t = 0)]
    priority: u32,
    /// Keep the jobs in this journal (journal:/dir): a push killed and run
    /// again with it hands out every job not acknowledged (binding only).
    #[arg(long)]
    journal: Option<String>,
    #[command(flatten)]
    role: Role,
}

#[derive(Args)]
pub struct PullArgs {
    /// Endpoint URL of the pusher (or, with --bind, where this puller
    /// collects jobs from the pushers that connect)
    url: String,
    /// Jobs taken at once, before acknowledging (from each pusher when
    /// binding)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    prefetch: u32,
    #[command(flatten)]
    take: crate::Take,
    #[command(flatten)]
    role: Role,
}

pub fn push(a: PushArgs) -> Result<ExitCode> {
    let pusher = if let Some(journal) = &a.journal {
        if !a.role.binds(true) {
            anyhow::bail!("--journal keeps a binding pusher's jobs; it does not go with --connect");
        }
        Pusher::bind_durable(&a.url, journal)?
    } else if a.role.binds(true) {
        Pusher::bind(&a.url)?
    } else {
        // To a puller that binds; connected again if it goes away.
        Pusher::connect(&a.url)?
    };
    if a.messages.is_empty() {
        for line in std::io::stdin().lock().split(b'\n') {
            pusher.push_with_priority(&line?, a.priority)?;
        }
    } else {
        for m in &a.messages {
            pusher.push_with_priority(
                std::os::unix::ffi::OsStrExt::as_bytes(m.as_os_str()),
                a.priority,
            )?;
        }
    }
    pusher.wait_acked(a.timeout.unwrap_or(Duration::MAX))?;
    Ok(ExitCode::SUCCESS)
}

pub fn pull(a: PullArgs) -> Result<ExitCode> {
    let mut ep = ipcx::Endpoint::parse(&a.url)?;
    if let Some(t) = a.take.timeout {
        ep = ep.with_options(|o| o.timeout = t)?;
    }
    let puller = std::cell::RefCell::new(if a.role.binds(false) {
        // Collects from the pushers that connect.
        Puller::bind(ep.url(), a.prefetch)?
    } else {
        Puller::connect_with_prefetch(ep.url(), a.prefetch)?
    });
    let mut out = std::io::stdout().lock();
    let next = |left: Option<Duration>| match left {
        Some(left) => puller.borrow_mut().recv_timeout(left),
        None => puller.borrow_mut().recv(),
    };
    a.take.run(next, |job| {
        out.write_all(&job.payload)?;
        out.write_all(b"\n")?;
        out.flush()?;
        // Acknowledged once printed: a pull killed before that leaves the
        // job to another worker.
        puller.borrow_mut().ack(job.id)?;
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
