//! Transports: one module per mechanism, all behind [`Link`] and [`Listener`].
//!
//! | scheme | module | boundaries | many peers | descriptors |
//! |---|---|---|---|---|
//! | `pipe:` | `pipe` | framed | no | no |
//! | `fifo:` | `fifo` | framed | no (one at a time) | no |
//! | `unix:` | `socket` | framed | yes | yes |
//! | `unixseq:` | `socket` | native | yes | yes |
//! | `tcp:` | `socket` | framed | yes | no |
//! | `shm:` | `crate::shm` | native | no (one at a time) | no |
//!
//! Code that needs a feature asks [`Capabilities`] rather than matching on
//! the scheme.

mod descriptor;
mod fifo;
mod half;
mod journal;
mod link;
mod listener;
pub(crate) mod mq;
mod outgoing;
mod pipe;
pub(crate) mod shm;
pub(crate) mod socket;
mod std_io;
mod stream;
mod stream_tx;

use std::io;
use std::time::{Duration, Instant};

pub use half::{RecvHalf, SendHalf};
pub use link::Link;
pub(crate) use link::Until;
pub use listener::Listener;
#[cfg(feature = "async")]
pub(crate) use listener::Polled;
pub use mq::{queue_state, sysv_queues};
pub use pipe::{spawn, spawn_endpoint};
pub use std_io::{Incoming, Messages};

use crate::endpoint::{Codec, Endpoint, Scheme};
use crate::error::{Error, ErrorKind, Result};

/// Largest frame payload on a seqpacket socket, where one frame is one
/// datagram and must fit the socket's send buffer (208 KiB by default).
pub(crate) const PACKET_FRAME_MAX: usize = 128 << 10;

/// What a mechanism can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Whether ipcx can open links on it yet.
    pub built: bool,
    /// Largest message the mechanism itself allows (`None`: only the
    /// link's `?max_msg=` limits it, since a larger message goes in several frames).
    pub max_msg: Option<usize>,
    /// The kernel keeps message boundaries (no framing needed for them).
    pub native_boundaries: bool,
    /// A peer connects, and its going away is seen as `Closed`.
    pub connection_oriented: bool,
    /// One listener serves many peers at once.
    pub multi_peer: bool,
    /// tokio can await the link ([`crate::tokio::AsyncLink`], feature
    /// `async`): through its descriptor, for `shm:` through a doorbell
    /// FIFO the peer rings, for `sysvmq:` and `journal:` through the
    /// eventfd a watcher thread raises.
    pub pollable: bool,
    /// Messages can carry file descriptors.
    pub fd_passing: bool,
    /// Reaches other hosts.
    pub network: bool,
}

impl Capabilities {
    /// The capabilities of `scheme`.
    pub fn of(scheme: Scheme) -> Capabilities {
        let base = Capabilities {
            built: true,
            max_msg: None,
            native_boundaries: false,
            connection_oriented: true,
            multi_peer: false,
            pollable: true,
            fd_passing: false,
            network: false,
        };
        match scheme {
            Scheme::Pipe | Scheme::Fifo => base,
            Scheme::Unix => Capabilities {
                multi_peer: true,
                fd_passing: true,
                ..base
            },
            Scheme::UnixSeq => Capabilities {
                multi_peer: true,
                fd_passing: true,
                native_boundaries: true,
                ..base
            },
            Scheme::Tcp => Capabilities {
                multi_peer: true,
                network: true,
                ..base
            },
            Scheme::Tls | Scheme::Nats => Capabilities {
                built: false,
                multi_peer: true,
                network: true,
                ..base
            },
            // One peer at a time, woken by futexes (doorbells on tokio).
            Scheme::Shm => Capabilities {
                native_boundaries: true,
                ..base
            },
            // A queue, not a connection; its descriptor is pollable.
            Scheme::Mq => Capabilities {
                native_boundaries: true,
                connection_oriented: false,
                ..base
            },
            // No descriptor: event loops and tokio wait on an eventfd a
            // watcher thread raises (AsFd on the link).
            Scheme::SysvMq | Scheme::Journal => Capabilities {
                native_boundaries: true,
                connection_oriented: false,
                ..base
            },
        }
    }
}

/// Who is on the other end of a Unix socket, as the kernel recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// Process id.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

pub(crate) fn not_built(ep: &Endpoint, op: &'static str) -> Error {
    Error::new(
        ErrorKind::Unsupported(format!(
            "the {}: mechanism is not built yet in this version of ipcx",
            ep.scheme()
        )),
        op,
    )
    .at(ep)
}

pub(crate) fn connect(ep: &Endpoint) -> Result<Link> {
    let o = ep.options();
    let deadline = crate::deadline::far_after(o.timeout);
    let mut link = match (ep.scheme(), ep.address()) {
        (Scheme::Unix | Scheme::UnixSeq | Scheme::Tcp, _) => socket::connect(ep, deadline)?,
        (Scheme::Fifo, _) => fifo::connect(ep, deadline)?,
        (Scheme::Mq | Scheme::SysvMq, _) => return mq::connect(ep, deadline),
        (Scheme::Journal, _) => return journal::connect(ep),
        (Scheme::Shm, _) => {
            let (rx, tx) = shm::connect(ep, deadline)?;
            return Ok(Link::from_shm(ep, rx, tx));
        }
        (Scheme::Pipe, _) => {
            // Descriptor numbers in a string cannot be checked for who owns
            // them: adopting them is `unsafe` (Link::from_inherited).
            return Err(Error::new(
                ErrorKind::Unsupported(
                    "pipe: joins a parent and the child it spawns: call ipcx::spawn in the parent \
                     and Link::from_inherited in the child (pipe:fd=R,W is what spawn passes \
                     it; it cannot be connected to)"
                        .into(),
                ),
                "connect",
            )
            .at(ep));
        }
        _ => return Err(not_built(ep, "connect")),
    };
    say_hello(&mut link, ep)?;
    // A FIFO's way back reads as end of stream until the binder opens it,
    // so a FIFO connect waits for the binder's hello. Sockets do not: the
    // listener answers when it accepts, and the peer's hello is checked by
    // the first receive (or `Link::wait_connected`), so a connect never
    // depends on the peer's next call (bind, connect, accept in one thread
    // works).
    if ep.scheme() == Scheme::Fifo && o.codec == Codec::Framed {
        link.finish_handshake(crate::deadline::far_after(o.handshake_timeout))?;
    }
    Ok(link)
}

/// Sends the connecting side's hello on a new link (framed codec only).
pub(crate) fn say_hello(link: &mut Link, ep: &Endpoint) -> Result<()> {
    let o = ep.options();
    if o.codec == Codec::Framed {
        link.begin_handshake(o.crc, o.max_msg)
            .map_err(|e| e.at(ep))?;
    }
    Ok(())
}

/// Retries `f` while the peer is not there yet (no such file, refused,
/// no reader), up to `deadline`.
pub(crate) fn retry_until<T>(
    ep: &Endpoint,
    deadline: Instant,
    mut f: impl FnMut() -> io::Result<T>,
) -> Result<T> {
    let mut retry = Retry::new(ep, deadline);
    loop {
        match f() {
            Ok(t) => return Ok(t),
            Err(e) => std::thread::sleep(retry.after(e)?),
        }
    }
}

/// What a connect does after a failed attempt, for a caller that waits
/// its own way ([`retry_until`] sleeps, tokio awaits a timer): pause and
/// try again while the peer is not there yet, up to the deadline.
pub(crate) struct Retry<'a> {
    ep: &'a Endpoint,
    deadline: Instant,
    backoff: crate::deadline::Backoff,
}

impl<'a> Retry<'a> {
    pub(crate) fn new(ep: &'a Endpoint, deadline: Instant) -> Retry<'a> {
        Retry {
            ep,
            deadline,
            backoff: crate::deadline::Backoff::new(Duration::from_millis(50)),
        }
    }

    /// The pause before the next attempt after `e`, or the error to give
    /// up with: `e` itself when it does not mean "nobody bound it yet",
    /// the wrong kind of object at the path (which nothing can bind: no
    /// wait), or the deadline passed.
    pub(crate) fn after(&mut self, e: io::Error) -> Result<Duration> {
        let ep = self.ep;
        if e.kind() == io::ErrorKind::TimedOut {
            // A TCP connect nobody answered (a SYN dropped on the way).
            let why = format!(
                "{e}: nothing answered within ?timeout= ({:?}); check that the host is up \
                 and reachable on that port, or raise ?timeout=",
                ep.options().timeout
            );
            return Err(Error::io("connect", io::Error::new(e.kind(), why)).at(ep));
        }
        if !peer_absent(&e) {
            return Err(Error::io("connect", e).at(ep));
        }
        if let Some(why) = wrong_object(ep) {
            return Err(Error::io("connect", io::Error::new(e.kind(), why)).at(ep));
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let why = io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "nobody bound it within {:?} ({}); start the receiving side first or raise ?timeout=",
                    ep.options().timeout,
                    missing_dir(ep).unwrap_or_else(|| e.to_string()),
                ),
            );
            return Err(Error::io("connect", why).at(ep));
        }
        Ok(self.backoff.next_pause().min(left))
    }
}

/// What sits at a path endpoint when it is not the object its scheme
/// needs (a regular file where a socket should be): no peer can ever bind
/// it, so waiting is pointless.
fn wrong_object(ep: &Endpoint) -> Option<String> {
    use rustix::fs::FileType;
    let want = match ep.scheme() {
        Scheme::Unix | Scheme::UnixSeq => FileType::Socket,
        Scheme::Fifo => FileType::Fifo,
        _ => return None,
    };
    let path = ep.path()?;
    match crate::sys::fs::object_type(path) {
        Ok(Some(t)) if t != want => Some(format!(
            "{} is a {}, not a {}: nothing can bind it; check the path",
            path.display(),
            file_type_name(t),
            file_type_name(want)
        )),
        _ => None,
    }
}

/// The directory of a path endpoint, when it does not exist.
pub(crate) fn missing_dir(ep: &Endpoint) -> Option<String> {
    let dir = ep.path()?.parent()?;
    let missing = !dir.as_os_str().is_empty() && !dir.is_dir();
    missing.then(|| format!("the directory {} does not exist", dir.display()))
}

/// An error making an object at a path endpoint (`bind`): a missing
/// directory is named, where the OS says only "no such file".
pub(crate) fn path_error(op: &'static str, ep: &Endpoint, e: io::Error) -> Error {
    let dir = ep.path().and_then(|p| p.parent());
    match (e.kind(), dir) {
        (io::ErrorKind::NotFound, Some(dir)) => {
            let why = missing_dir(ep).unwrap_or_else(|| {
                format!(
                    "{} does not take new files (a /proc or /sys directory?)",
                    dir.display()
                )
            });
            let e = io::Error::new(
                e.kind(),
                format!(
                    "cannot create it: {why}; pick a path in a directory that exists and is yours"
                ),
            );
            Error::io(op, e).at(ep)
        }
        _ => Error::io(op, e).at(ep),
    }
}

fn file_type_name(t: rustix::fs::FileType) -> &'static str {
    use rustix::fs::FileType;
    match t {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        _ => "file of unknown type",
    }
}

fn peer_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
    ) || e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error())
}
