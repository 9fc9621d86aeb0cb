//! `ipcx serve` and `ipcx call`: request/reply from the shell.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use ipcx::pattern::{Client, Server};
use ipcx::{Endpoint, Link, Listener};

use crate::Role;

#[derive(Args)]
pub struct ServeArgs {
    /// Endpoint URL, e.g. unix:/tmp/calc.sock
    url: String,
    /// Answer each call with its own bytes.
    #[arg(long, required = true)]
    echo: bool,
    /// Run the handler on a pool of this many threads (default: on each
    /// connection's own thread).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    role: Role,
}

#[derive(Args)]
pub struct CallArgs {
    /// Endpoint URL of the server.
    url: String,
    /// The request (default: all of stdin).
    message: Option<std::ffi::OsString>,
    /// How long to wait for the server to appear, then for the reply.
    #[arg(long, value_parser = crate::parse_duration, default_value = "5s")]
    timeout: Duration,
    #[command(flatten)]
    role: Role,
}

fn echo(req: &[u8]) -> ipcx::pattern::Reply {
    Ok(req.to_vec())
}

pub fn serve(a: ServeArgs) -> Result<ExitCode> {
    if !a.echo {
        bail!("only --echo servers are built: ipcx serve URL --echo");
    }
    if a.role.binds(true) {
        let server = Server::bind(&a.url)?;
        match a.threads {
            Some(n) => server.serve_pool(n, echo)?,
            None => server.serve(echo)?,
        }
    } else {
        // A client that binds: serve the one that is there.
        ipcx::pattern::serve_link(Link::connect(&a.url)?, echo)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn call(a: CallArgs) -> Result<ExitCode> {
    let request = match &a.message {
        Some(m) => std::os::unix::ffi::OsStrExt::as_bytes(m.as_os_str()).to_vec(),
        None => {
            let mut all = Vec::new();
            std::io::stdin().lock().read_to_end(&mut all)?;
            all
        }
    };
    let ep = Endpoint::parse(&a.url)?.with_options(|o| o.timeout = a.timeout)?;
    let link = if a.role.binds(false) {
        Listener::bind_endpoint(&ep)?
            .accept_timeout(a.timeout)
            .context("waiting for a server to connect")?
    } else {
        Link::connect_endpoint(&ep)?
    };
    let client = Client::from_link(link)?;
    let reply = client.call_timeout(&request, a.timeout)?;
    let mut out = std::io::stdout().lock();
    out.write_all(&reply)?;
    if reply.last() != Some(&b'\n') {
        out.write_all(b"\n")?;
    }
    Ok(ExitCode::SUCCESS)
}
