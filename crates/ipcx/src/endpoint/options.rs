//! Query options: one parser, one table of which option applies to which scheme.

mod query;
mod values;

use values::{parse_bool, parse_count, parse_count_or_zero};
pub use values::{parse_duration, parse_size};

use std::time::Duration;

use super::Scheme;
use crate::error::{Error, ErrorKind, Result};

/// How a blocked receive waits for data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitStrategy {
    /// Sleep in the kernel until data arrives: no CPU while idle.
    Block,
    /// Poll without sleeping: lowest latency, one core busy while waiting.
    Spin,
    /// Poll for up to `?spin=` (default 50µs), then block.
    Adaptive,
}

impl WaitStrategy {
    /// The name used in URLs and benchmark output.
    pub fn name(self) -> &'static str {
        match self {
            WaitStrategy::Block => "block",
            WaitStrategy::Spin => "spin",
            WaitStrategy::Adaptive => "adaptive",
        }
    }
}

/// How messages are laid out on a byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// ipcx frames: header, optional CRC, chunking, and a connect handshake.
    Framed,
    /// No header and no handshake: a message is whatever one read returns.
    Raw,
    /// No header and no handshake: a message is one line, without its `\n`.
    Lines,
}

/// Options of an endpoint, with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Largest message this side accepts (`max_msg`, default 16 MiB).
    pub max_msg: usize,
    /// Permission bits of created objects (`mode`, octal, default 0600).
    pub mode: u32,
    /// How long `connect` waits for the peer to appear (`timeout`, default 5s).
    pub timeout: Duration,
    /// How long a new connection may take to finish its handshake
    /// (`handshake_timeout`, default 5s).
    pub handshake_timeout: Duration,
    /// Wait strategy (`wait`, default block).
    pub wait: WaitStrategy,
    /// How long `adaptive` spins before it blocks (`spin`, default 50µs).
    pub spin: Duration,
    /// Read coalescing on pipes, FIFOs and Unix streams (`coalesce`,
    /// default 2µs, `0` off): after a blocking receive's read brought less than 512 bytes,
    /// the next read first waits this long, spinning, so that it takes
    /// in one call what a streaming writer sends meanwhile. A message
    /// that arrives within this time of such a read waits up to this much
    /// longer; at most 1ms.
    pub coalesce: Duration,
    /// Codec on byte streams (`codec`, default framed).
    pub codec: Codec,
    /// Append a CRC32C to every frame (`crc`, default false).
    pub crc: bool,
    /// TCP liveness interval; a silent host is detected within three
    /// (`heartbeat`, default off).
    pub heartbeat: Option<Duration>,
    /// Most connections a listener serves at once (`max_conns`, default 256).
    pub max_conns: usize,
    /// Most connections a listener holds while their hello is still due
    /// (`max_pending`, default 64); the oldest goes when a new one comes.
    pub max_pending: usize,
    /// Most file descriptors accepted with one message (`max_fds`, default 16).
    pub max_fds: usize,
    /// Keep the object after its creator exits (`persist`, default false).
    pub persist: bool,
    /// Open a reply FIFO too (`duplex`; default true for framed, false otherwise).
    pub duplex: bool,
    /// Data bytes of a created shared-memory segment (`size`, default 1 MiB).
    pub size: usize,
    /// Messages a publish/subscribe ring holds (`slots`, a power of two,
    /// default 256).
    pub slots: usize,
    /// What a full queue does (`overflow`, default block).
    pub overflow: Overflow,
    /// How often a shared-memory waiter on tokio (an async subscriber, an
    /// `shm:` link half, an async event) that is not rung looks again and
    /// checks that its peer still lives (`liveness`, default 20ms; 1ms to
    /// 1d).
    pub liveness: Duration,
    /// Most messages a created message queue holds (`max_msgs`; default:
    /// the system's, `/proc/sys/fs/mqueue/msg_default`).
    pub max_msgs: Option<usize>,
    /// Largest message of a created message queue (`msg_size`; default:
    /// the system's, `/proc/sys/fs/mqueue/msgsize_default`).
    pub msg_size: Option<usize>,
    /// Most bytes a journal keeps (`retain`): whole segments go, oldest
    /// first, when a new one starts. Default: all.
    pub retain: Option<usize>,
    /// How old a journal's segments may get (`retain_age`). Default: any.
    pub retain_age: Option<Duration>,
    /// What a journal's append makes durable (`durability`: `none`,
    /// `flush`, `sync`; default none).
    pub durability: crate::journal::Durability,
    /// The project number `ftok(3)` turns a `sysvmq:/path` into a key with
    /// (`proj`, 1-255, default 1).
    pub proj: u8,
    /// The type a plain `send` gives a System V message (`type`, > 0,
    /// default 1).
    pub msg_type: i64,
    /// Where a journal link starts reading (`from`: a sequence number).
    /// Default: the end, what is appended after the link opens.
    pub from: Option<u64>,
    /// Publish/subscribe on sockets: the publisher keeps the last this
    /// many messages of each topic; a subscriber asks for up to this many
    /// when it joins (`history`, default 0).
    pub history: usize,
    /// Whether the URL set `max_msg` (some mechanisms size memory by it,
    /// with a smaller default of their own).
    pub(crate) max_msg_given: bool,
}

/// What a publisher does when the slowest subscriber has not caught up.
/// The same names wherever ipcx queues (`?overflow=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Wait for the slowest live subscriber (a dead one is retired).
    Block,
    /// Overwrite the oldest message; a subscriber that missed some is told
    /// how many.
    DropOldest,
    /// Refuse the message: `send` returns [`crate::ErrorKind::Full`].
    Fail,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_msg: 16 << 20,
            mode: 0o600,
            timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            wait: WaitStrategy::Block,
            spin: Duration::from_micros(50),
            coalesce: Duration::from_micros(2),
            codec: Codec::Framed,
            crc: false,
            heartbeat: None,
            max_conns: 256,
            max_pending: 64,
            max_fds: 16,
            persist: false,
            duplex: true,
            size: 1 << 20,
            slots: 256,
            overflow: Overflow::Block,
            liveness: Duration::from_millis(20),
            max_msgs: None,
            msg_size: None,
            durability: crate::journal::Durability::None,
            retain: None,
            retain_age: None,
            proj: 1,
            msg_type: 1,
            from: None,
            history: 0,
            max_msg_given: false,
        }
    }
}

use Scheme::*;

/// The kernel's largest `TCP_KEEPIDLE`, in seconds.
const MAX_KEEPIDLE: u64 = 32767;

const LINKS: &[Scheme] = &[
    Pipe, Fifo, Unix, UnixSeq, Tcp, Tls, Shm, Mq, SysvMq, Journal, Nats,
];
const STREAMS: &[Scheme] = &[Pipe, Fifo, Unix, UnixSeq, Tcp, Tls];
const FRAMED: &[Scheme] = &[Pipe, Fifo, Unix, UnixSeq, Tcp, Tls];
const LISTENERS: &[Scheme] = &[Unix, UnixSeq, Tcp, Tls];
const NAMED: &[Scheme] = &[Fifo, Unix, UnixSeq, Shm, Mq, SysvMq, Journal];
const DURABLE: &[Scheme] = &[Fifo, Shm, Mq, SysvMq, Journal];

/// Which schemes each option applies to.
const TABLE: &[(&str, &[Scheme])] = &[
    ("max_msg", LINKS),
    ("mode", NAMED),
    ("timeout", LINKS),
    ("handshake_timeout", FRAMED),
    ("wait", LINKS),
    ("spin", LINKS),
    ("coalesce", &[Pipe, Fifo, Unix]),
    ("codec", STREAMS),
    ("crc", FRAMED),
    ("heartbeat", &[Tcp, Tls]),
    ("max_conns", LISTENERS),
    ("max_pending", LISTENERS),
    ("max_fds", &[Unix, UnixSeq]),
    ("persist", DURABLE),
    ("duplex", &[Fifo]),
    ("size", &[Shm, Journal]),
    ("slots", &[Shm, Unix, UnixSeq, Tcp]),
    ("overflow", &[Shm, Mq, SysvMq, Unix, UnixSeq, Tcp]),
    ("history", &[Unix, UnixSeq, Tcp]),
    ("liveness", &[Shm]),
    ("max_msgs", &[Mq]),
    ("msg_size", &[Mq]),
    ("proj", &[SysvMq]),
    ("durability", &[Journal]),
    ("retain", &[Journal]),
    ("retain_age", &[Journal]),
    ("from", &[Journal]),
    ("type", &[SysvMq]),
];

impl Options {
    /// Parses a query string (`a=1&b=2`) for `scheme`.
    pub fn parse(scheme: Scheme, query: Option<&str>) -> Result<Options> {
        let mut o = Options::default();
        let mut duplex = None;
        let mut seen: Vec<&str> = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let err = |reason: String| {
                Error::new(
                    ErrorKind::InvalidOption {
                        scheme: scheme.name(),
                        option: key.to_string(),
                        reason,
                    },
                    "parse",
                )
            };
            let Some((_, schemes)) = TABLE.iter().find(|(name, _)| *name == key) else {
                let known: Vec<_> = TABLE
                    .iter()
                    .filter(|(_, s)| s.contains(&scheme))
                    .map(|(n, _)| *n)
                    .collect();
                return Err(err(format!(
                    "is unknown; options of this scheme: {}",
                    known.join(", ")
                )));
            };
            if !schemes.contains(&scheme) {
                let names: Vec<_> = schemes.iter().map(|s| s.name()).collect();
                return Err(err(format!(
                    "does not apply (it applies to {})",
                    names.join(", ")
                )));
            }
            if seen.contains(&key) {
                return Err(err("is given twice; give it once".into()));
            }
            seen.push(key);
            match key {
                "max_msg" => {
                    o.max_msg = parse_size(value).map_err(err)?;
                    o.max_msg_given = true;
                    if o.max_msg == 0 {
                        return Err(err(
                            "must be at least 1 byte (0 would refuse every message)".into(),
                        ));
                    }
                }
                "slots" => {
                    o.slots = parse_count(value).map_err(err)?;
                    if !o.slots.is_power_of_two() || o.slots > 1 << 20 {
                        return Err(err("must be a power of two up to 1048576".into()));
                    }
                }
                "overflow" => {
                    o.overflow = match value {
                        "block" => Overflow::Block,
                        "drop_oldest" => Overflow::DropOldest,
                        "fail" => Overflow::Fail,
                        _ => {
                            return Err(err(format!(
                                "`{value}` is not block, drop_oldest or fail"
                            )));
                        }
                    }
                }
                "size" => {
                    o.size = parse_size(value).map_err(err)?;
                    if o.size == 0 || o.size > 1 << 40 {
                        return Err(err("must be between 1 byte and 1 TiB".into()));
                    }
                }
                "mode" => {
                    o.mode = u32::from_str_radix(value, 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| err(format!("`{value}` is not an octal mode like 0600")))?
                }
                "timeout" => o.timeout = parse_duration(value).map_err(err)?,
                "handshake_timeout" => o.handshake_timeout = parse_duration(value).map_err(err)?,
                "spin" => o.spin = parse_duration(value).map_err(err)?,
                "coalesce" => {
                    o.coalesce = parse_duration(value).map_err(err)?;
                    if o.coalesce > Duration::from_millis(1) {
                        return Err(err(
                            "at most 1ms: the wait spins (use `0` to read at once)".into()
                        ));
                    }
                }
                "liveness" => {
                    let d = parse_duration(value).map_err(err)?;
                    if d < Duration::from_millis(1) || d > Duration::from_secs(24 * 3600) {
                        return Err(err(
                            "must be 1ms to 1d (how often a waiter looks without being rung; \
                             shorter would spin)"
                                .into(),
                        ));
                    }
                    o.liveness = d;
                }
                "heartbeat" => {
                    let d = parse_duration(value).map_err(err)?;
                    if d < Duration::from_secs(1) || d > Duration::from_secs(MAX_KEEPIDLE) {
                        return Err(err(format!(
                            "must be 1s to {MAX_KEEPIDLE}s (TCP keepalive counts in whole seconds, up to the kernel's TCP_KEEPIDLE limit)"
                        )));
                    }
                    o.heartbeat = Some(d);
                }
                "wait" => {
                    o.wait = match value {
                        "block" => WaitStrategy::Block,
                        "spin" => WaitStrategy::Spin,
                        "adaptive" => WaitStrategy::Adaptive,
                        _ => return Err(err(format!("`{value}` is not block, spin or adaptive"))),
                    }
                }
                "codec" => {
                    o.codec = match value {
                        "framed" => Codec::Framed,
                        "raw" => Codec::Raw,
                        "lines" if scheme != UnixSeq => Codec::Lines,
                        _ => return Err(err(format!("`{value}` is not framed, raw or lines"))),
                    }
                }
                "crc" => o.crc = parse_bool(value).map_err(err)?,
                "persist" => o.persist = parse_bool(value).map_err(err)?,
                "duplex" => duplex = Some(parse_bool(value).map_err(err)?),
                "max_conns" => o.max_conns = parse_count(value).map_err(err)?,
                "max_pending" => o.max_pending = parse_count(value).map_err(err)?,
                "max_msgs" => o.max_msgs = Some(parse_count(value).map_err(err)?),
                "retain" => o.retain = Some(parse_size(value).map_err(err)?),
                "retain_age" => o.retain_age = Some(parse_duration(value).map_err(err)?),
                "durability" => {
                    o.durability = match value {
                        "none" => crate::journal::Durability::None,
                        "flush" => crate::journal::Durability::Flush,
                        "sync" => crate::journal::Durability::Sync,
                        _ => return Err(err(format!("`{value}` is not none, flush or sync"))),
                    }
                }
                "proj" => {
                    o.proj =
                        value.parse::<u8>().ok().filter(|p| *p > 0).ok_or_else(|| {
                            err(format!("`{value}` is not a project number 1-255"))
                        })?
                }
                "history" => o.history = parse_count_or_zero(value).map_err(err)?,
                "from" => {
                    o.from = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| err(format!("`{value}` is not a sequence number")))?,
                    )
                }
                "type" => {
                    o.msg_type = value
                        .parse::<i64>()
                        .ok()
                        .filter(|t| *t > 0)
                        .ok_or_else(|| err(format!("`{value}` is not a message type above 0")))?
                }
                "msg_size" => {
                    let n = parse_size(value).map_err(err)?;
                    if n == 0 {
                        return Err(err("must be at least 1 byte".into()));
                    }
                    o.msg_size = Some(n);
                }
                "max_fds" => {
                    o.max_fds = parse_count(value).map_err(err)?;
                    if o.max_fds > 253 {
                        return Err(err("at most 253 (the kernel's SCM_MAX_FD)".into()));
                    }
                }
                _ => unreachable!("every option in TABLE is handled"),
            }
        }
        o.duplex = duplex.unwrap_or(o.codec == Codec::Framed);
        if o.codec != Codec::Framed && o.crc {
            return Err(Error::new(
                ErrorKind::InvalidOption {
                    scheme: scheme.name(),
                    option: "crc".into(),
                    reason: "needs codec=framed (raw and lines carry no header)".into(),
                },
                "parse",
            ));
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn inapplicable_option_names_option_and_scheme() {
        let e = Options::parse(Scheme::Unix, Some("heartbeat=1s")).unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("heartbeat") && s.contains("unix:") && s.contains("tcp"),
            "{s}"
        );
        let e = Options::parse(Scheme::Tcp, Some("colour=red")).unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
    }

    /// Read coalescing: on byte streams only, bounded, `0` turns it off,
    /// and a value set in code comes back in the URL.
    #[test]
    fn liveness_is_bounded() {
        for bad in ["0", "500us", "25h"] {
            let e = Options::parse(Scheme::Shm, Some(&format!("liveness={bad}"))).unwrap_err();
            assert!(e.to_string().contains("must be 1ms to 1d"), "{bad}: {e}");
        }
        for (good, d) in [("1ms", 1), ("1h", 3_600_000), ("24h", 86_400_000)] {
            let o = Options::parse(Scheme::Shm, Some(&format!("liveness={good}"))).unwrap();
            assert_eq!(o.liveness, Duration::from_millis(d), "{good}");
        }
    }

    #[test]
    fn coalesce_is_a_bounded_stream_option() {
        assert_eq!(
            Options::parse(Scheme::Pipe, None).unwrap().coalesce,
            Duration::from_micros(2)
        );
        let off = Options::parse(Scheme::Fifo, Some("coalesce=0")).unwrap();
        assert_eq!(off.coalesce, Duration::ZERO);
        assert_eq!(off.to_query(), "coalesce=0s");
        let e = Options::parse(Scheme::Unix, Some("coalesce=2s")).unwrap_err();
        assert!(e.to_string().contains("at most 1ms"), "{e}");
        // Datagrams come in batches anyway; TCP segments too slowly.
        for scheme in [Scheme::UnixSeq, Scheme::Tcp, Scheme::Shm] {
            let e = Options::parse(scheme, Some("coalesce=1us")).unwrap_err();
            assert!(e.to_string().contains("coalesce"), "{e}");
        }
    }

    #[test]
    fn duplex_defaults_follow_codec() {
        assert!(Options::parse(Scheme::Fifo, None).unwrap().duplex);
        assert!(
            !Options::parse(Scheme::Fifo, Some("codec=lines"))
                .unwrap()
                .duplex
        );
        assert!(
            Options::parse(Scheme::Fifo, Some("codec=raw&duplex=true"))
                .unwrap()
                .duplex
        );
    }
}
