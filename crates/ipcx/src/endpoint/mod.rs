//! Endpoints named by URL: `unix:/run/app.sock`, `tcp://host:port`, ...
//!
//! One parser for every scheme in the design's table. Schemes whose mechanism
//! is not built yet parse, and [`crate::Link::connect`] on them returns
//! [`crate::ErrorKind::Unsupported`] saying so.

mod options;

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

pub use options::{Codec, Options, Overflow, WaitStrategy, parse_duration, parse_size};

use crate::error::{Error, ErrorKind, Result};

/// The mechanism an endpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Anonymous pipe between a parent and a child it spawned.
    Pipe,
    /// Named pipe.
    Fifo,
    /// Unix domain stream socket (path or abstract name).
    Unix,
    /// Unix domain seqpacket socket.
    UnixSeq,
    /// TCP.
    Tcp,
    /// TCP with TLS.
    Tls,
    /// Shared-memory ring.
    Shm,
    /// POSIX message queue.
    Mq,
    /// SysV message queue.
    SysvMq,
    /// Persistent memory-mapped queue.
    Journal,
    /// NATS subject.
    Nats,
}

impl Scheme {
    /// Every scheme, in the order of the design's table.
    pub const ALL: [Scheme; 11] = [
        Scheme::Pipe,
        Scheme::Fifo,
        Scheme::Unix,
        Scheme::UnixSeq,
        Scheme::Tcp,
        Scheme::Tls,
        Scheme::Shm,
        Scheme::Mq,
        Scheme::SysvMq,
        Scheme::Journal,
        Scheme::Nats,
    ];

    /// The scheme as written in a URL, without the colon.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Pipe => "pipe",
            Scheme::Fifo => "fifo",
            Scheme::Unix => "unix",
            Scheme::UnixSeq => "unixseq",
            Scheme::Tcp => "tcp",
            Scheme::Tls => "tls",
            Scheme::Shm => "shm",
            Scheme::Mq => "mq",
            Scheme::SysvMq => "sysvmq",
            Scheme::Journal => "journal",
            Scheme::Nats => "nats",
        }
    }

    /// Whether a link over this scheme is a byte stream that ipcx frames.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Scheme::Pipe | Scheme::Fifo | Scheme::Unix | Scheme::Tcp | Scheme::Tls
        )
    }

    fn from_name(s: &str) -> Option<Scheme> {
        Scheme::ALL.into_iter().find(|sc| sc.name() == s)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an endpoint points, in the form its scheme uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `pipe:` (spawn a child) or `pipe:fd=R,W` (inherited descriptors).
    Pipe(Option<(i32, i32)>),
    /// A filesystem path (`fifo:`, `unix:`, `unixseq:`, `journal:`).
    Path(PathBuf),
    /// A Linux abstract socket name (`unix:@name`), without the `@`.
    Abstract(String),
    /// A host and port (`tcp:`, `tls:`).
    HostPort {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port; 0 lets the OS pick one on bind.
        port: u16,
    },
    /// An object name (`shm:`, `mq:`).
    Name(String),
    /// A SysV IPC key.
    Key(i32),
    /// A NATS server and subject.
    Subject {
        /// Server host.
        host: String,
        /// Server port.
        port: u16,
        /// The subject.
        subject: String,
    },
}

/// A parsed endpoint: scheme, address and options.
///
/// ```
/// use ipcx::{Endpoint, Scheme};
/// use std::time::Duration;
///
/// let ep: Endpoint = "tcp://127.0.0.1:7000?max_msg=1MiB&timeout=500ms".parse()?;
/// assert_eq!(ep.scheme(), Scheme::Tcp);
/// assert_eq!(ep.options().max_msg, 1 << 20);
/// assert_eq!(ep.options().timeout, Duration::from_millis(500));
/// # Ok::<(), ipcx::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    scheme: Scheme,
    address: Address,
    options: Options,
    url: String,
}

impl Endpoint {
    /// Parses a URL.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let bad = |why: String| Error::new(ErrorKind::InvalidEndpoint(why), "parse").at(url);
        let (scheme_str, rest) = url
            .split_once(':')
            .ok_or_else(|| bad("missing scheme (write e.g. `unix:/run/app.sock`)".into()))?;
        let scheme = Scheme::from_name(scheme_str).ok_or_else(|| {
            let known: Vec<_> = Scheme::ALL.iter().map(|s| s.name()).collect();
            bad(format!(
                "unknown scheme `{scheme_str}:`; known schemes: {}",
                known.join(", ")
            ))
        })?;
        let (addr_str, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let address = parse_address(scheme, addr_str).map_err(bad)?;
        let options = Options::parse(scheme, query).map_err(|e| e.at(url))?;
        let gives_mode =
            query.is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some("mode")));
        if matches!(address, Address::Abstract(_)) && gives_mode {
            return Err(Error::new(
                ErrorKind::InvalidOption {
                    scheme: scheme.name(),
                    option: "mode".into(),
                    reason: "does not apply to an abstract socket (unix:@name): it has no file, \
                             so no permissions, and any process in the network namespace can \
                             connect; use a path (unix:/run/app.sock?mode=0600) to restrict who may"
                        .into(),
                },
                "parse",
            )
            .at(url));
        }
        Ok(Endpoint {
            scheme,
            address,
            options,
            url: url.to_string(),
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The options, with defaults filled in.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The options, changed in place by the library (sizes it derives);
    /// callers use [`Endpoint::with_options`], which keeps the URL in step
    /// and validates.
    pub(crate) fn options_mut(&mut self) -> &mut Options {
        &mut self.options
    }

    /// This endpoint with options changed in code: `f` edits them, and the
    /// result is checked by the same parser as a URL and becomes the URL's
    /// query, so [`Endpoint::url`], `Display` and a child started by
    /// [`crate::spawn_endpoint`] all see what was set.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ep = ipcx::Endpoint::parse("unix:/tmp/app.sock")?
    ///     .with_options(|o| o.timeout = Duration::from_millis(500))?;
    /// assert_eq!(ep.url(), "unix:/tmp/app.sock?timeout=500ms");
    /// let bad = ipcx::Endpoint::parse("shm:prices")?.with_options(|o| o.slots = 0);
    /// assert!(matches!(bad.unwrap_err().kind(), ipcx::ErrorKind::InvalidOption { .. }));
    /// # Ok::<(), ipcx::Error>(())
    /// ```
    pub fn with_options(&self, f: impl FnOnce(&mut Options)) -> Result<Endpoint> {
        let mut o = self.options.clone();
        f(&mut o);
        let base = self
            .url
            .split_once('?')
            .map_or(self.url.as_str(), |(b, _)| b);
        let query = o.to_query();
        if query.is_empty() {
            Endpoint::parse(base)
        } else {
            Endpoint::parse(&format!("{base}?{query}"))
        }
    }

    /// The object name of an `shm:NAME` endpoint; any other is refused as
    /// not what `what` needs (one check for segments, channels, queues
    /// and primitives).
    pub(crate) fn shm_name(&self, what: &str, op: &'static str) -> Result<&str> {
        match (self.scheme, &self.address) {
            (Scheme::Shm, Address::Name(n)) => Ok(n),
            _ => Err(Error::new(
                ErrorKind::InvalidEndpoint(format!("{what} needs an shm:NAME endpoint")),
                op,
            )
            .at(self)),
        }
    }

    /// The filesystem path, for schemes that have one.
    pub fn path(&self) -> Option<&Path> {
        match &self.address {
            Address::Path(p) => Some(p),
            _ => None,
        }
    }

    /// The URL as it was given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same endpoint with another address (e.g. the port a bind picked).
    pub(crate) fn with_address(&self, address: Address) -> Endpoint {
        let mut ep = self.clone();
        if let Address::HostPort { host, port } = &address {
            let query = self.url.split_once('?').map(|(_, q)| q);
            let h = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            ep.url = format!("{}://{h}:{port}", self.scheme);
            if let Some(q) = query {
                ep.url = format!("{}?{q}", ep.url);
            }
        }
        ep.address = address;
        ep
    }
}

impl FromStr for Endpoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Endpoint> {
        Endpoint::parse(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

fn parse_address(scheme: Scheme, s: &str) -> std::result::Result<Address, String> {
    match scheme {
        Scheme::Pipe => parse_pipe(s),
        Scheme::Fifo | Scheme::Journal => checked_path(s).map(Address::Path),
        Scheme::UnixSeq => socket_path(s),
        Scheme::Unix => {
            let s = s.strip_prefix("//").unwrap_or(s);
            match s.strip_prefix('@') {
                Some("") => Err("empty abstract socket name".into()),
                Some(name) if name.len() > 107 => {
                    Err("abstract socket name longer than 107 bytes".into())
                }
                Some(name) => Ok(Address::Abstract(name.to_string())),
                None => socket_path(s),
            }
        }
        Scheme::Tcp | Scheme::Tls => {
            let s = s
                .strip_prefix("//")
                .ok_or("expected `//host:port` after the scheme")?;
            let (host, port) = parse_host_port(s)?;
            Ok(Address::HostPort { host, port })
        }
        Scheme::Shm | Scheme::Mq => {
            let name = s.strip_prefix('/').unwrap_or(s);
            if name.is_empty() || name.len() > 200 {
                return Err("object name must be 1 to 200 bytes".into());
            }
            if name.contains('/') || name.contains('\0') || name == "." || name == ".." {
                return Err(format!(
                    "object name `{name}` may not hold `/`, NUL, or be `.`/`..`"
                ));
            }
            Ok(Address::Name(name.to_string()))
        }
        // A path is turned into a key by ftok(3) (with `?proj=`) when the
        // queue is opened.
        Scheme::SysvMq if s.starts_with('/') => Ok(Address::Path(PathBuf::from(s))),
        Scheme::SysvMq => {
            let key = match s.strip_prefix("0x") {
                Some(hex) => i64::from_str_radix(hex, 16),
                None => s.parse::<i64>(),
            }
            .map_err(|_| format!("SysV key `{s}` is not a number (decimal or 0x hex)"))?;
            if key == 0 {
                return Err(
                    "SysV key 0 is IPC_PRIVATE (a new queue on every open): give a key".into(),
                );
            }
            i32::try_from(key)
                .or_else(|_| u32::try_from(key).map(|k| k as i32))
                .map(Address::Key)
                .map_err(|_| format!("SysV key `{s}` does not fit in 32 bits"))
        }
        Scheme::Nats => {
            let s = s
                .strip_prefix("//")
                .ok_or("expected `//host:port/subject` after the scheme")?;
            let (hp, subject) = s
                .split_once('/')
                .ok_or("missing `/subject` after host:port")?;
            if subject.is_empty() || subject.contains(' ') {
                return Err(format!("invalid NATS subject `{subject}`"));
            }
            let (host, port) = parse_host_port(hp)?;
            Ok(Address::Subject {
                host,
                port,
                subject: subject.to_string(),
            })
        }
    }
}

fn parse_pipe(s: &str) -> std::result::Result<Address, String> {
    if s.is_empty() {
        return Ok(Address::Pipe(None));
    }
    let fds = s
        .strip_prefix("fd=")
        .ok_or("expected `pipe:` or `pipe:fd=R,W`")?;
    let (r, w) = fds.split_once(',').ok_or("expected `pipe:fd=R,W`")?;
    let r: i32 = r.parse().map_err(|_| format!("bad read fd `{r}`"))?;
    let w: i32 = w.parse().map_err(|_| format!("bad write fd `{w}`"))?;
    if r < 0 || w < 0 {
        return Err("file descriptors must be non-negative".into());
    }
    Ok(Address::Pipe(Some((r, w))))
}

fn parse_host_port(s: &str) -> std::result::Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest.split_once(']').ok_or("unclosed `[` in IPv6 address")?;
        (h, p.strip_prefix(':').ok_or("missing `:port`")?)
    } else {
        s.rsplit_once(':').ok_or("missing `:port`")?
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("port `{port}` is not a number from 0 to 65535"))?;
    Ok((host.to_string(), port))
}

/// Checks a filesystem path: non-empty, no NUL, no `..` component, and short
/// enough for a socket address when used as one.
/// A socket's path: checked, and short enough for `sun_path` (108 bytes
/// with its NUL), which a bind through a longer name would not catch: the
/// socket would be bound, and no client could ever connect.
fn socket_path(s: &str) -> std::result::Result<Address, String> {
    let path = checked_path(s)?;
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "socket path of {len} bytes; the kernel takes at most {MAX_SOCKET_PATH} (sun_path): \
             use a shorter path, or an abstract name (unix:@name)"
        ));
    }
    Ok(Address::Path(path))
}

/// Bytes of a socket path a client can connect to (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

fn checked_path(s: &str) -> std::result::Result<PathBuf, String> {
    if s.is_empty() {
        return Err("missing path".into());
    }
    if s.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    let path = PathBuf::from(s);
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "path `{s}` contains `..`; give the path without it"
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests;
