//! `ipcx recv`: bind an endpoint and print what arrives.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use ipcx::{Endpoint, ErrorKind, Link, Listener};

use crate::Role;

#[derive(Args)]
pub struct RecvArgs {
    /// Endpoint URL, e.g. unix:/tmp/app.sock
    url: String,
    /// Exit 0 after this many messages.
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Give up (exit 1) when the messages have not all arrived in this time.
    #[arg(long, value_parser = crate::parse_duration)]
    timeout: Option<Duration>,
    /// How to print each message.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    role: Role,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// The bytes as they are, then a newline.
    Text,
    /// Lowercase hex, then a newline.
    Hex,
    /// One JSON object per line: seq, len, and text (UTF-8) or base64.
    Json,
}

pub fn run(a: RecvArgs) -> Result<ExitCode> {
    let mut ep = Endpoint::parse(&a.url)?;
    if let Some(t) = a.timeout {
        // With --connect, the wait for the binding side counts too.
        ep.options_mut().timeout = t;
    }
    let deadline = a.timeout.and_then(|t| Instant::now().checked_add(t));
    let mut out = std::io::stdout().lock();
    let mut seq = 0u64;
    let want = a.count.unwrap_or(u64::MAX);
    if want == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let mut listener = if a.role.binds(true) {
        Some(Listener::bind_endpoint(&ep)?)
    } else {
        None
    };
    // Serve one peer after another until enough messages arrived.
    loop {
        let mut link = match &mut listener {
            Some(l) => match deadline {
                Some(d) => l.accept_timeout(left(d)?),
                None => l.accept(),
            }
            .context("waiting for a peer")?,
            None => Link::connect_endpoint(&ep)?,
        };
        loop {
            let msg = match deadline {
                Some(d) => link.recv_timeout(left(d)?),
                None => link.recv(),
            };
            let msg = match msg {
                Ok(m) => m,
                // A listener waits for the next peer; a connected link that
                // closes is the end of the stream, unless more were asked for.
                Err(e) if e.is_closed() && (listener.is_some() || a.count.is_none()) => break,
                Err(e) if *e.kind() == ErrorKind::TimedOut => match a.count {
                    Some(n) => bail!("timed out after {seq} of {n} messages"),
                    None => bail!("timed out after {seq} messages"),
                },
                Err(e) => return Err(e.into()),
            };
            print_message(&mut out, a.format, seq, &msg)?;
            seq += 1;
            if seq == want {
                out.flush()?;
                return Ok(ExitCode::SUCCESS);
            }
        }
        if listener.is_none() {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn left(deadline: Instant) -> Result<Duration> {
    let now = Instant::now();
    if now >= deadline {
        bail!("timed out");
    }
    Ok(deadline - now)
}

fn print_message(out: &mut impl Write, format: Format, seq: u64, msg: &[u8]) -> Result<()> {
    match format {
        Format::Text => {
            out.write_all(msg)?;
            out.write_all(b"\n")?;
        }
        Format::Hex => {
            for b in msg {
                write!(out, "{b:02x}")?;
            }
            out.write_all(b"\n")?;
        }
        Format::Json => {
            // Keys in the documented order: seq, len, then text or base64.
            let (key, value) = match std::str::from_utf8(msg) {
                Ok(text) => ("text", serde_json::Value::from(text)),
                Err(_) => ("base64", serde_json::Value::from(base64(msg))),
            };
            writeln!(
                out,
                "{{\"seq\":{seq},\"len\":{},\"{key}\":{value}}}",
                msg.len()
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// Standard base64 with padding (RFC 4648).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(input.as_bytes()), want);
        }
    }
}
