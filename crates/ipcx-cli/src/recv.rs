//! `ipcx recv`: bind an endpoint and print what arrives.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
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
    if a.url.starts_with("netlink:") {
        return netlink(a);
    }
    if a.url.starts_with("journal:") {
        return crate::journal::follow(&a.url, a.count, a.timeout);
    }
    let mut ep = Endpoint::parse(&a.url)?;
    if let Some(t) = a.timeout {
        // With --connect, the wait for the binding side counts too.
        ep = ep.with_options(|o| o.timeout = t)?;
    }
    let deadline = a.timeout.and_then(|t| Instant::now().checked_add(t));
    let want = a.count.unwrap_or(u64::MAX);
    if want == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    let binds = a.role.binds(true);
    let peers = Peers::new();
    if binds {
        peers.serve(Listener::bind_endpoint(&ep)?);
    } else {
        peers.add(Link::connect_endpoint(&ep)?);
    }
    let mut out = std::io::stdout().lock();
    let mut seq = 0u64;
    let timed_out = |seq: u64| {
        let t = a.timeout.unwrap_or_default();
        match a.count {
            Some(n) => anyhow::anyhow!("timed out after {seq} of {n} messages (--timeout {t:?})"),
            None => anyhow::anyhow!("timed out after {seq} messages (--timeout {t:?})"),
        }
    };
    loop {
        let event = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => peers.inbox().recv_timeout(left),
                _ => return Err(timed_out(seq)),
            },
            None => peers
                .inbox()
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        let event = match event {
            Ok(e) => e,
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(timed_out(seq)),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("every peer thread ended"),
        };
        match event {
            Event::Message(msg) => {
                print_message(&mut out, a.format, seq, &msg)?;
                seq += 1;
                if seq == want {
                    out.flush()?;
                    return Ok(ExitCode::SUCCESS);
                }
            }
            // A listener waits for the next peer; a connected link that
            // closes is the end of the stream, unless more were asked for.
            Event::Closed if binds => {}
            Event::Closed => match a.count {
                None => return Ok(ExitCode::SUCCESS),
                Some(n) => bail!("the peer closed after {seq} of {n} messages"),
            },
            // One bad peer is dropped and reported; the others are served.
            Event::Failed(who, e) if binds => eprintln!("ipcx: dropped {who}: {e}"),
            Event::Failed(_, e) => return Err(e.into()),
            Event::AcceptFailed(e) => return Err(anyhow::Error::new(e).context("accepting peers")),
        }
    }
}

/// Messages waiting for the printer at most; peers wait when it is full.
const INBOX: usize = 256;
/// How often blocked threads look whether the command is ending.
const LOOK: Duration = Duration::from_millis(100);

/// What the peer threads tell the printer.
enum Event {
    Message(Vec<u8>),
    /// The peer closed the link.
    Closed,
    /// The peer (named) broke the protocol or the link failed.
    Failed(String, ipcx::Error),
    AcceptFailed(ipcx::Error),
}

/// The threads that accept peers and receive from each, all at once. When
/// dropped, they are stopped and joined, so the listener and every link
/// are closed (and the endpoint removed) before the command returns.
struct Peers {
    /// The printer's end; `None` only while dropping.
    inbox: Option<Receiver<Event>>,
    events: SyncSender<Event>,
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    count: Arc<AtomicU64>,
}

impl Peers {
    fn new() -> Peers {
        let (events, inbox) = mpsc::sync_channel(INBOX);
        Peers {
            inbox: Some(inbox),
            events,
            stop: Arc::new(AtomicBool::new(false)),
            threads: Arc::new(Mutex::new(Vec::new())),
            count: Arc::new(AtomicU64::new(0)),
        }
    }

    fn inbox(&self) -> &Receiver<Event> {
        self.inbox.as_ref().expect("the inbox lives until drop")
    }

    fn handle(&self) -> Peers {
        Peers {
            inbox: None,
            events: self.events.clone(),
            stop: self.stop.clone(),
            threads: self.threads.clone(),
            count: self.count.clone(),
        }
    }

    fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let t = std::thread::spawn(f);
        if let Ok(mut threads) = self.threads.lock() {
            threads.push(t);
        }
    }

    /// Accepts peers on `listener` until stopped, each served by a thread.
    fn serve(&self, listener: Listener) {
        let peers = self.handle();
        self.spawn(move || {
            while !peers.stop.load(Ordering::Relaxed) {
                match listener.accept_timeout(LOOK) {
                    Ok(link) => peers.add(link),
                    Err(e) if *e.kind() == ErrorKind::TimedOut => {}
                    Err(e) => {
                        let _ = peers.events.send(Event::AcceptFailed(e));
                        return;
                    }
                }
            }
        });
    }

    /// Receives from `link` on a thread of its own until it ends.
    fn add(&self, mut link: Link) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let who = match link.peer_credentials() {
            Ok(c) => format!("peer {n} (pid {}, uid {})", c.pid, c.uid),
            Err(_) => format!("peer {n}"),
        };
        let (events, stop) = (self.events.clone(), self.stop.clone());
        self.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let event = match link.recv_timeout(LOOK) {
                    Ok(msg) => Event::Message(msg),
                    Err(e) if *e.kind() == ErrorKind::TimedOut => continue,
                    Err(e) if e.is_closed() => Event::Closed,
                    Err(e) => Event::Failed(who.clone(), e),
                };
                let last = !matches!(event, Event::Message(_));
                if events.send(event).is_err() || last {
                    return;
                }
            }
        });
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        // Handles (`inbox: None`) live in the threads, which end on their own.
        if self.inbox.take().is_none() {
            return;
        }
        // Stop, and fail every send a thread is blocked in: then join.
        self.stop.store(true, Ordering::Relaxed);
        loop {
            let next = self.threads.lock().ok().and_then(|mut t| t.pop());
            match next {
                Some(t) => {
                    let _ = t.join();
                }
                None => break,
            }
        }
    }
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
            let (key, value) = text_or_base64(msg);
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

/// A message for JSON output: `("text", its UTF-8)`, or `("base64", …)`
/// when it is not UTF-8.
pub(crate) fn text_or_base64(msg: &[u8]) -> (&'static str, serde_json::Value) {
    match std::str::from_utf8(msg) {
        Ok(text) => ("text", serde_json::Value::from(text)),
        Err(_) => ("base64", serde_json::Value::from(base64(msg))),
    }
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

/// `ipcx recv netlink:route` / `netlink:uevent`: one kernel event a line,
/// as `ip monitor` prints it, or as JSON.
fn netlink(a: RecvArgs) -> Result<ExitCode> {
    use ipcx::netlink::{Change, Watcher};
    if matches!(a.format, Format::Hex) {
        anyhow::bail!("netlink events print as text or json, not hex");
    }
    let mut watcher = Watcher::open(&a.url)?;
    eprintln!("ipcx: watching {}", a.url);
    let deadline = a.timeout.and_then(|t| Instant::now().checked_add(t));
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    while a.count.is_none_or(|n| seen < n) {
        let event = match deadline {
            None => watcher.next_change()?,
            Some(d) => {
                match watcher.next_change_timeout(d.saturating_duration_since(Instant::now())) {
                    Err(e) if *e.kind() == ipcx::ErrorKind::TimedOut => {
                        eprintln!("ipcx: timed out after {seen} events");
                        return Ok(ExitCode::FAILURE);
                    }
                    r => r?,
                }
            }
        };
        match a.format {
            Format::Json => {
                let v = match &event {
                    Change::Link {
                        index,
                        name,
                        up,
                        running,
                    } => serde_json::json!({
                        "event": "link", "index": index, "name": name, "up": up, "running": running,
                    }),
                    Change::LinkRemoved { index, name } => serde_json::json!({
                        "event": "link_removed", "index": index, "name": name,
                    }),
                    Change::Address {
                        added,
                        index,
                        address,
                        prefix,
                    } => serde_json::json!({
                        "event": if *added { "address_added" } else { "address_removed" },
                        "index": index, "address": address.to_string(), "prefix": prefix,
                    }),
                    Change::Route {
                        added,
                        destination,
                        prefix,
                        link,
                    } => serde_json::json!({
                        "event": if *added { "route_added" } else { "route_removed" },
                        "destination": destination.map(|d| d.to_string()), "prefix": prefix, "link": link,
                    }),
                    Change::Uevent {
                        action,
                        devpath,
                        fields,
                    } => serde_json::json!({
                        "event": "uevent", "action": action, "devpath": devpath,
                        "fields": fields.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    }),
                    other => serde_json::json!({ "event": other.to_string() }),
                };
                writeln!(out, "{v}")?;
            }
            _ => writeln!(out, "{event}")?,
        }
        out.flush()?;
        seen += 1;
    }
    Ok(ExitCode::SUCCESS)
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
