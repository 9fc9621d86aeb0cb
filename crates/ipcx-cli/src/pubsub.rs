//! `ipcx pub` and `ipcx sub`: publish/subscribe from the shell.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};
use ipcx::pattern::{Publisher, Subscriber};

use crate::Role;

#[derive(Args)]
pub struct PubArgs {
    /// Endpoint URL the publisher binds, e.g. unix:/tmp/prices.sock, or the
    /// shared-memory channel it creates, e.g. shm:prices?max_msg=4KiB
    url: String,
    /// The topic, e.g. sensors.lidar.front
    topic: String,
    /// Messages, one per argument; none: each line of stdin.
    messages: Vec<std::ffi::OsString>,
    /// Publish only once this many subscribers joined.
    #[arg(long, default_value_t = 1)]
    wait_subs: usize,
    /// How long to wait for them (and for the messages to go out).
    #[arg(long, value_parser = crate::parse_duration, default_value = "5s")]
    timeout: Duration,
    /// After publishing, stay this long (for subscribers that join late
    /// and ask for ?history=).
    #[arg(long, value_parser = crate::parse_duration)]
    linger: Option<Duration>,
    #[command(flatten)]
    role: Role,
}

#[derive(Args)]
pub struct SubArgs {
    /// Endpoint URL of the publisher (or its shm: channel).
    url: String,
    /// Patterns: levels split by `.`, `*` one level, a last `>` the rest.
    #[arg(required = true)]
    patterns: Vec<String>,
    #[command(flatten)]
    take: crate::Take,
    /// How to print each message.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    role: Role,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// `topic<TAB>message`, one per line.
    Text,
    /// One JSON object per line: topic, len, and text (UTF-8) or base64.
    Json,
}

pub fn publish(a: PubArgs) -> Result<ExitCode> {
    ipcx::pattern::check_topic(&a.topic)?;
    let publisher = if a.role.binds(true) {
        let publisher = Publisher::bind(&a.url)?;
        if a.wait_subs > 0 {
            publisher.wait_for_subscribers(a.wait_subs, a.timeout)?;
        }
        publisher
    } else {
        // To a subscriber that binds: it is the one subscriber.
        let ep = ipcx::Endpoint::parse(&a.url)?.with_options(|o| o.timeout = a.timeout)?;
        Publisher::connect(ep.url())?
    };
    if a.messages.is_empty() {
        for line in std::io::stdin().lock().split(b'\n') {
            publisher.publish(&a.topic, &line?)?;
        }
    } else {
        for m in &a.messages {
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(m.as_os_str());
            publisher.publish(&a.topic, bytes)?;
        }
    }
    publisher.flush(a.timeout)?;
    if let Some(d) = a.linger {
        std::thread::sleep(d);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn subscribe(a: SubArgs) -> Result<ExitCode> {
    let patterns: Vec<&str> = a.patterns.iter().map(String::as_str).collect();
    let mut url = ipcx::Endpoint::parse(&a.url)?;
    if let Some(t) = a.take.timeout {
        url = url.with_options(|o| o.timeout = t)?;
    }
    let mut sub = if a.role.binds(false) {
        // Collects from the publishers that connect.
        Subscriber::bind(url.url(), &patterns)?
    } else {
        Subscriber::connect(url.url(), &patterns)?
    };
    let mut out = std::io::stdout().lock();
    let next = |left: Option<Duration>| match left {
        Some(left) => sub.recv_timeout(left),
        None => sub.recv(),
    };
    a.take.run(next, |d| {
        match a.format {
            Format::Text => {
                out.write_all(d.topic.as_bytes())?;
                out.write_all(b"\t")?;
                out.write_all(&d.payload)?;
                out.write_all(b"\n")?;
            }
            Format::Json => {
                let (key, value) = crate::recv::text_or_base64(&d.payload);
                writeln!(
                    out,
                    "{{\"topic\":{},\"len\":{},\"{key}\":{value}}}",
                    serde_json::Value::from(d.topic.as_str()),
                    d.payload.len()
                )?;
            }
        }
        out.flush()?;
        Ok(())
    })?;
    if sub.lost() > 0 {
        eprintln!(
            "ipcx: the publisher dropped {} messages for this subscriber",
            sub.lost()
        );
    }
    Ok(ExitCode::SUCCESS)
}
