//! `ipcx send`: connect and send messages.

use std::io::{BufRead, Read};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use ipcx::{Endpoint, Link, Listener};

use crate::Role;

#[derive(Args)]
pub struct SendArgs {
    /// Endpoint URL, e.g. unix:/tmp/app.sock
    url: String,
    /// Messages to send, one per argument; none: read stdin.
    messages: Vec<std::ffi::OsString>,
    /// With stdin: send each line as one message (without its newline).
    #[arg(long)]
    lines: bool,
    /// How long to wait for the receiving side to appear (default: the
    /// URL's ?timeout=, else 5s).
    #[arg(long, value_parser = crate::parse_duration)]
    timeout: Option<Duration>,
    #[command(flatten)]
    role: Role,
}

pub fn run(a: SendArgs) -> Result<ExitCode> {
    if a.url.starts_with("journal:") {
        // A journal has no receiver to wait for: each message is appended.
        let mut w = ipcx::journal::JournalWriter::open(&a.url)?;
        each_message(&a, &mut |m| w.append(m).map(drop))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut ep = Endpoint::parse(&a.url)?;
    if let Some(t) = a.timeout {
        ep = ep.with_options(|o| o.timeout = t)?;
    }
    let mut link = if a.role.binds(false) {
        let l = Listener::bind_endpoint(&ep)?;
        l.accept_timeout(ep.options().timeout)
            .context("waiting for a peer to connect")?
    } else {
        let mut link = Link::connect_endpoint(&ep)?;
        // Know that the receiver took us before sending: a listener at its
        // ?max_conns= limit closes the connection unanswered.
        link.wait_connected(ep.options().handshake_timeout)?;
        link
    };
    each_message(&a, &mut |m| link.send(m))?;
    link.close();
    Ok(ExitCode::SUCCESS)
}

/// Hands `send` each message: the arguments, else stdin's lines with
/// `--lines`, else all of stdin as one.
fn each_message(a: &SendArgs, send: &mut dyn FnMut(&[u8]) -> ipcx::Result<()>) -> Result<()> {
    if !a.messages.is_empty() {
        for m in &a.messages {
            send(std::os::unix::ffi::OsStrExt::as_bytes(m.as_os_str()))?;
        }
    } else if a.lines {
        // Lines are bytes, like arguments: a non-UTF-8 line is sent as is.
        for line in std::io::stdin().lock().split(b'\n') {
            let mut line = line?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            send(&line)?;
        }
    } else {
        let mut all = Vec::new();
        std::io::stdin().lock().read_to_end(&mut all)?;
        send(&all)?;
    }
    Ok(())
}
