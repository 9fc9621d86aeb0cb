//! The two sides of a benchmark connection, through ipcx or through the bare
//! OS mechanism (plain blocking read/write of fixed-size messages, no ipcx).

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use ipcx::shm::{Publisher, Segment, Subscriber};
use ipcx::{Link, Listener};
use rustix::net::{SocketAddrUnix, SocketFlags};

use super::raw::{RawPacket, RawShm, RawStream, seqpacket};

/// A mechanism the benchmark measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mech {
    Pipe,
    Fifo,
    Unix,
    Unixseq,
    Tcp,
    Shm,
    /// Zero-copy publish/subscribe, payload written and read whole.
    #[value(name = "shm-zc")]
    ShmZc,
    /// Zero-copy publish/subscribe, only the stamp written and read.
    #[value(name = "shm-zc-untouched")]
    ShmZcUntouched,
    /// POSIX message queues, one each way.
    Mq,
    /// System V message queues, one each way.
    Sysvmq,
    /// Journal appends against bare sequential `write()` of the same
    /// bytes (cells of their own, not links).
    Journal,
    /// A journal each way, each followed live by the other process: the
    /// writer-to-tailer latency (against the cache-line floor).
    #[value(name = "journal-tail")]
    JournalTail,
    /// Cross-process mutex and semaphore against the bare pthread and
    /// POSIX ones (cells of their own, not links).
    Sync,
    /// Typed messages (a `pattern::TypedLink` of `pattern::Bytes`, postcard)
    /// on unix:; its raw rows are the same bytes on an untyped unix: link.
    Typed,
    /// Request/reply calls (`pattern::Client` to a `Responder`) on unix:;
    /// its raw rows are bare ping-pong on a Unix socket.
    #[value(name = "rpc-unix")]
    RpcUnix,
    /// Request/reply calls on tcp:, against bare TCP ping-pong.
    #[value(name = "rpc-tcp")]
    RpcTcp,
    /// Publish/subscribe on unix: (a publisher each way, one subscriber
    /// each), against bare write() of one message per call on a Unix
    /// socket.
    #[value(name = "pubsub")]
    Pubsub,
}

impl Mech {
    pub const ALL: [Mech; 17] = [
        Mech::Pipe,
        Mech::Fifo,
        Mech::Unix,
        Mech::Unixseq,
        Mech::Tcp,
        Mech::Shm,
        Mech::Mq,
        Mech::Sysvmq,
        Mech::Journal,
        Mech::JournalTail,
        Mech::ShmZc,
        Mech::ShmZcUntouched,
        Mech::Sync,
        Mech::Typed,
        Mech::RpcUnix,
        Mech::RpcTcp,
        Mech::Pubsub,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mech::Pipe => "pipe",
            Mech::Fifo => "fifo",
            Mech::Unix => "unix",
            Mech::Unixseq => "unixseq",
            Mech::Tcp => "tcp",
            Mech::Shm => "shm",
            Mech::Mq => "mq",
            Mech::Sysvmq => "sysvmq",
            Mech::Journal => "journal",
            Mech::JournalTail => "journal-tail",
            Mech::ShmZc => "shm-zc",
            Mech::ShmZcUntouched => "shm-zc-untouched",
            Mech::Sync => "sync",
            Mech::Typed => "typed",
            Mech::RpcUnix => "rpc-unix",
            Mech::RpcTcp => "rpc-tcp",
            Mech::Pubsub => "pubsub",
        }
    }

    /// The ways a cell is measured, in the order they run: ipcx waiting
    /// as the raw baseline does, the raw baseline, then the other waits.
    /// Bare shared memory has no way to block, so its baseline spins.
    pub fn variants(self) -> &'static [(Impl, &'static str)] {
        match self {
            // Zero copy has no bare equivalent in the table; the floor and
            // memcpy rows of the same run are its yardsticks.
            Mech::ShmZc | Mech::ShmZcUntouched => &[(Impl::Ipcx, "spin"), (Impl::Ipcx, "adaptive")],
            Mech::Sync | Mech::Journal => &[],
            // No bare equivalent: the cache-line floor is the yardstick.
            Mech::JournalTail => &[(Impl::Ipcx, "spin"), (Impl::Ipcx, "block")],
            Mech::Shm => &[
                (Impl::Ipcx, "spin"),
                (Impl::Raw, "spin"),
                (Impl::Ipcx, "adaptive"),
                (Impl::Ipcx, "block"),
            ],
            _ => &[
                (Impl::Ipcx, "block"),
                (Impl::Raw, "block"),
                (Impl::Ipcx, "adaptive"),
            ],
        }
    }

    /// Whether (latency, throughput) messages are written and read whole.
    pub fn touches(self) -> (bool, bool) {
        match self {
            Mech::ShmZc => (true, true),
            Mech::ShmZcUntouched => (false, false),
            _ => (false, true),
        }
    }

    /// Largest message the raw mechanism carries in one piece.
    pub fn raw_limit(self) -> usize {
        match self {
            // One datagram must fit the socket send buffer (~208 KiB).
            Mech::Unixseq => 128 << 10,
            _ => self.limit(),
        }
    }

    /// Largest message the mechanism carries at all (queues: the system's
    /// limit, 8 KiB here).
    pub fn limit(self) -> usize {
        use ipcx::bench_support::queues;
        match self {
            Mech::Mq => queues::mq_max_message().unwrap_or(8192),
            Mech::Sysvmq => queues::sysv_max_message().unwrap_or(8192),
            _ => usize::MAX,
        }
    }
}

/// Through ipcx or bare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Impl {
    Ipcx,
    Raw,
}

/// What [`Conn::recv_seq`] read of a message.
pub struct Got {
    pub seq: u64,
    pub extra: u64,
    pub len: usize,
    /// Sum of one byte per cache line, when the message was touched.
    pub sum: u64,
}

/// One side of a connection that moves fixed-size messages.
pub trait Conn {
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;
    /// Receives one whole message of `size` bytes into `buf`.
    fn recv(&mut self, buf: &mut Vec<u8>, size: usize) -> io::Result<()>;

    /// Sends a `size`-byte message starting with `seq` and `extra`; with
    /// `fill`, every byte is written first.
    fn send_seq(
        &mut self,
        size: usize,
        seq: u64,
        extra: u64,
        fill: bool,
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        scratch.resize(size, 0);
        if fill {
            scratch.fill(seq as u8);
        }
        stamp(scratch, seq, extra);
        self.send(scratch)
    }

    /// Receives one message; with `touch`, reads one byte per cache line.
    fn recv_seq(&mut self, size: usize, touch: bool, buf: &mut Vec<u8>) -> io::Result<Got> {
        self.recv(buf, size)?;
        Ok(read(buf, touch))
    }
}

/// Writes the sequence number and extra word at the start of a message.
fn stamp(msg: &mut [u8], seq: u64, extra: u64) {
    msg[..8].copy_from_slice(&seq.to_le_bytes());
    msg[8..16].copy_from_slice(&extra.to_le_bytes());
}

/// Reads a message's stamp and, with `touch`, every cache line.
fn read(msg: &[u8], touch: bool) -> Got {
    let word = |i: usize| u64::from_le_bytes(msg[i..i + 8].try_into().expect("8 bytes"));
    Got {
        seq: word(0),
        extra: word(8),
        len: msg.len(),
        sum: if touch {
            msg.iter().step_by(64).map(|&b| u64::from(b)).sum()
        } else {
            0
        },
    }
}

impl Conn for Link {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        Link::send(self, msg).map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        self.recv_into(buf).map_err(io::Error::other)
    }
}

/// What the driver (parent) must tell the peer (child) to connect.
pub struct Setup {
    pub args: Vec<String>,
    pending: Pending,
}

enum Pending {
    Listener(Box<Listener>),
    Unix(UnixListener),
    Tcp(TcpListener),
    Packet(OwnedFd),
    Fifo(PathBuf, PathBuf),
    Shm(Segment),
    ZeroCopy(Box<Publisher>, String, String),
    PipeRaw,
    PipeIpcx(String),
    /// Two queues, driver to peer and back.
    QueuePair(Box<Listener>, Box<Listener>),
    /// The driver's journal (written) and the peer's (to follow, once the
    /// peer made it).
    Journals(Box<ipcx::journal::JournalWriter>, String),
    RawQueues(RawQueues),
    /// A listener whose link is made typed.
    Typed(Box<Listener>),
    /// A listener whose link the driver calls over.
    Rpc(Box<Listener>),
    /// The driver's publisher, and the URL of the peer's (to subscribe
    /// to once the peer made it).
    Pubsub(Box<ipcx::pattern::Publisher>, String),
}

/// Creates the endpoint before the child starts.
pub fn prepare(
    mech: Mech,
    imp: Impl,
    wait: &str,
    size: usize,
    dir: &Path,
    n: usize,
) -> Result<Setup> {
    let base = dir.join(format!("{}{n}", mech.name()));
    let url_of = |scheme: &str| format!("{scheme}:{}?wait={wait}", base.display());
    let listen = |url: String| -> Result<Setup> {
        let l = Listener::bind(&url)?;
        Ok(Setup {
            args: vec!["--url".into(), l.endpoint().url().to_string()],
            pending: Pending::Listener(Box::new(l)),
        })
    };
    match (mech, imp) {
        (Mech::Sync | Mech::Journal, _) => {
            bail!("sync and journal cells are measured on their own, not over links")
        }
        (Mech::Pipe, Impl::Ipcx) => Ok(Setup {
            args: vec![],
            pending: Pending::PipeIpcx(format!("pipe:?wait={wait}")),
        }),
        (Mech::Pipe, Impl::Raw) => Ok(Setup {
            args: vec![],
            pending: Pending::PipeRaw,
        }),
        (Mech::Fifo, Impl::Ipcx) => listen(url_of("fifo")),
        (Mech::Unix, Impl::Ipcx) => listen(url_of("unix")),
        // The typed link's baseline: the same bytes, untyped.
        (Mech::Typed, Impl::Raw) => listen(url_of("unix")),
        (Mech::RpcUnix | Mech::RpcTcp, Impl::Ipcx) => {
            let url = match mech {
                Mech::RpcUnix => url_of("unix"),
                _ => format!("tcp://127.0.0.1:0?wait={wait}"),
            };
            let l = Listener::bind(&url)?;
            Ok(Setup {
                args: vec!["--url".into(), l.endpoint().url().to_string()],
                pending: Pending::Rpc(Box::new(l)),
            })
        }
        (Mech::RpcUnix, Impl::Raw) => prepare(Mech::Unix, Impl::Raw, wait, size, dir, n),
        (Mech::Pubsub, Impl::Raw) => prepare(Mech::Unix, Impl::Raw, wait, size, dir, n),
        (Mech::Pubsub, Impl::Ipcx) => {
            let (down, up) = (url_of("unix"), format!("{}-up?wait={wait}", base.display()));
            let down = down.replace("?wait", "-down?wait");
            let publisher = ipcx::pattern::Publisher::bind(&down)?;
            Ok(Setup {
                args: vec!["--url".into(), down, "--url2".into(), format!("unix:{up}")],
                pending: Pending::Pubsub(Box::new(publisher), format!("unix:{up}")),
            })
        }
        (Mech::RpcTcp, Impl::Raw) => prepare(Mech::Tcp, Impl::Raw, wait, size, dir, n),
        (Mech::Typed, Impl::Ipcx) => {
            let l = Listener::bind(&url_of("unix"))?;
            Ok(Setup {
                args: vec!["--url".into(), l.endpoint().url().to_string()],
                pending: Pending::Typed(Box::new(l)),
            })
        }
        (Mech::Unixseq, Impl::Ipcx) => listen(url_of("unixseq")),
        (Mech::Tcp, Impl::Ipcx) => listen(format!("tcp://127.0.0.1:0?wait={wait}")),
        (Mech::Mq | Mech::Sysvmq, Impl::Ipcx) => {
            let (down, up) = queue_urls(mech, n);
            let q = |url: &str| -> Result<Box<Listener>> {
                let query = match mech {
                    Mech::Mq => format!("?msg_size={size}&wait={wait}"),
                    _ => format!("?wait={wait}"),
                };
                Ok(Box::new(Listener::bind(&format!("{url}{query}"))?))
            };
            let (d, u) = (q(&down)?, q(&up)?);
            Ok(Setup {
                args: vec!["--url".into(), down, "--url2".into(), up],
                pending: Pending::QueuePair(d, u),
            })
        }
        (Mech::JournalTail, _) => {
            let url =
                |side: &str| format!("journal:{}-{side}?size=64MiB&wait={wait}", base.display());
            let (down, up) = (url("down"), url("up"));
            let w = ipcx::journal::JournalWriter::open(&down)?;
            Ok(Setup {
                args: vec!["--url".into(), down, "--url2".into(), up.clone()],
                pending: Pending::Journals(Box::new(w), up),
            })
        }
        (Mech::Mq | Mech::Sysvmq, Impl::Raw) => {
            let (down, up) = queue_urls(mech, n);
            let raw = RawQueues::create(mech, &down, &up, size)?;
            Ok(Setup {
                args: vec!["--url".into(), down, "--url2".into(), up],
                pending: Pending::RawQueues(raw),
            })
        }
        // 4 MiB rings: a 1 MiB message is one record.
        (Mech::Shm, Impl::Ipcx) => listen(format!(
            "shm:ipcx-bench-{}-{n}?size=4MiB&wait={wait}",
            std::process::id()
        )),
        (Mech::ShmZc | Mech::ShmZcUntouched, _) => {
            let url = format!("shm:ipcx-bench-{}-{n}", std::process::id());
            let ping =
                Publisher::create(&format!("{url}-ping?slots=64&max_msg={size}&wait={wait}"))?;
            Ok(Setup {
                args: vec!["--url".into(), format!("{url}?wait={wait}")],
                pending: Pending::ZeroCopy(Box::new(ping), url, wait.to_string()),
            })
        }
        (Mech::Shm, Impl::Raw) => {
            let url = format!("shm:ipcx-bench-{}-{n}", std::process::id());
            let seg = Segment::create(&format!("{url}?size={}", RawShm::segment_size(size)))?;
            Ok(Setup {
                args: vec!["--url".into(), url],
                pending: Pending::Shm(seg),
            })
        }
        (Mech::Fifo, Impl::Raw) => {
            let (down, up) = (base.with_extension("down"), base.with_extension("up"));
            for p in [&down, &up] {
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    p,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    0,
                )?;
            }
            let args = vec![
                "--url".into(),
                down.display().to_string(),
                "--url2".into(),
                up.display().to_string(),
            ];
            Ok(Setup {
                args,
                pending: Pending::Fifo(down, up),
            })
        }
        (Mech::Unix, Impl::Raw) => {
            let l = UnixListener::bind(&base)?;
            Ok(Setup {
                args: vec!["--url".into(), base.display().to_string()],
                pending: Pending::Unix(l),
            })
        }
        (Mech::Unixseq, Impl::Raw) => {
            let fd = seqpacket()?;
            rustix::net::bind(&fd, &SocketAddrUnix::new(&base)?)?;
            rustix::net::listen(&fd, 8)?;
            Ok(Setup {
                args: vec!["--url".into(), base.display().to_string()],
                pending: Pending::Packet(fd),
            })
        }
        (Mech::Tcp, Impl::Raw) => {
            let l = TcpListener::bind("127.0.0.1:0")?;
            let url = l.local_addr()?.to_string();
            Ok(Setup {
                args: vec!["--url".into(), url],
                pending: Pending::Tcp(l),
            })
        }
    }
}

impl Setup {
    /// Starts the child and returns the driver's side of the connection.
    pub fn start(self, mut cmd: Command) -> Result<(Child, Box<dyn Conn>)> {
        cmd.args(&self.args);
        Ok(match self.pending {
            Pending::PipeIpcx(url) => {
                let (child, link) = ipcx::spawn_endpoint(&url.parse()?, cmd)?;
                (child, Box::new(link))
            }
            Pending::PipeRaw => {
                let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
                let w: ChildStdin = child.stdin.take().context("stdin")?;
                let r: ChildStdout = child.stdout.take().context("stdout")?;
                (child, Box::new(RawStream { r, w }))
            }
            Pending::QueuePair(d, u) => {
                let child = cmd.spawn()?;
                let timeout = std::time::Duration::from_secs(30);
                let (tx, rx) = (d.accept_timeout(timeout)?, u.accept_timeout(timeout)?);
                (
                    child,
                    Box::new(QueuePair {
                        tx,
                        rx,
                        _listeners: Some((d, u)),
                    }),
                )
            }
            Pending::RawQueues(raw) => (cmd.spawn()?, Box::new(raw)),
            Pending::Journals(w, up) => {
                let child = cmd.spawn()?;
                let r = follow(&up)?;
                (child, Box::new(Journals { w, r }))
            }
            Pending::Listener(l) => {
                let child = cmd.spawn()?;
                let link = l.accept_timeout(std::time::Duration::from_secs(30))?;
                (
                    child,
                    Box::new(ListenerLink {
                        _listener: *l,
                        link,
                    }),
                )
            }
            Pending::Pubsub(publisher, up) => {
                let child = cmd.spawn()?;
                let subscriber =
                    ipcx::pattern::Subscriber::connect(&format!("{up}&timeout=30s"), &[">"])?;
                publisher.wait_for_subscribers(1, std::time::Duration::from_secs(30))?;
                (
                    child,
                    Box::new(PubSub {
                        publisher: *publisher,
                        subscriber,
                    }),
                )
            }
            Pending::Rpc(l) => {
                let child = cmd.spawn()?;
                let link = l.accept_timeout(std::time::Duration::from_secs(30))?;
                (
                    child,
                    Box::new(Calls {
                        client: ipcx::pattern::Client::from_link(link)?,
                        reply: None,
                        _listener: *l,
                    }),
                )
            }
            Pending::Typed(l) => {
                let child = cmd.spawn()?;
                let link = l.accept_timeout(std::time::Duration::from_secs(30))?;
                (child, Box::new(Typed::new(link)?))
            }
            Pending::Unix(l) => {
                let child = cmd.spawn()?;
                let (s, _) = l.accept()?;
                let path = l.local_addr()?.as_pathname().map(Path::to_path_buf);
                if let Some(p) = path {
                    let _ = std::fs::remove_file(p);
                }
                (
                    child,
                    Box::new(RawStream {
                        r: s.try_clone()?,
                        w: s,
                    }),
                )
            }
            Pending::Tcp(l) => {
                let child = cmd.spawn()?;
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                (
                    child,
                    Box::new(RawStream {
                        r: s.try_clone()?,
                        w: s,
                    }),
                )
            }
            Pending::Packet(fd) => {
                let child = cmd.spawn()?;
                let s = rustix::net::accept_with(&fd, SocketFlags::CLOEXEC)?;
                (child, Box::new(RawPacket(s)))
            }
            Pending::ZeroCopy(ping, url, wait) => {
                let child = cmd.spawn()?;
                let pong = Subscriber::open(&format!("{url}-pong?timeout=30s&wait={wait}"))?;
                ping.wait_for_subscribers(1, std::time::Duration::from_secs(30))?;
                (
                    child,
                    Box::new(ZeroCopy {
                        publisher: *ping,
                        subscriber: pong,
                    }),
                )
            }
            Pending::Shm(seg) => {
                let child = cmd.spawn()?;
                (child, Box::new(RawShm::new(seg, true)))
            }
            Pending::Fifo(down, up) => {
                let child = cmd.spawn()?;
                // Same order on both sides: down first, then up.
                let w = std::fs::OpenOptions::new().write(true).open(&down)?;
                let r = std::fs::File::open(&up)?;
                let _ = std::fs::remove_file(&down);
                let _ = std::fs::remove_file(&up);
                (child, Box::new(RawStream { r, w }))
            }
        })
    }
}

/// Keeps the listener (and its socket file) alive as long as the link.
struct ListenerLink {
    _listener: Listener,
    link: Link,
}

impl Conn for ListenerLink {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        Conn::send(&mut self.link, msg)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, size: usize) -> io::Result<()> {
        Conn::recv(&mut self.link, buf, size)
    }
}

/// The child's side: connects as `prepare` told it.
pub fn connect(mech: Mech, imp: Impl, url: &str, url2: &str, size: usize) -> Result<Box<dyn Conn>> {
    Ok(match (mech, imp) {
        (Mech::Sync | Mech::Journal, _) => {
            bail!("sync and journal cells are measured on their own, not over links")
        }
        (Mech::Typed, Impl::Ipcx) => Box::new(Typed::new(Link::connect(url)?)?),
        // The driver calls; the peer answers.
        (Mech::RpcUnix | Mech::RpcTcp, Impl::Ipcx) => Box::new(Answers {
            responder: ipcx::pattern::Responder::from_link(Link::connect(url)?)?,
            pending: None,
        }),
        (Mech::RpcUnix, Impl::Raw) => connect(Mech::Unix, Impl::Raw, url, url2, size)?,
        (Mech::Pubsub, Impl::Raw) => connect(Mech::Unix, Impl::Raw, url, url2, size)?,
        // The peer publishes on `url2`, and subscribes to the driver's.
        (Mech::Pubsub, Impl::Ipcx) => {
            let publisher = ipcx::pattern::Publisher::bind(url2)?;
            let subscriber =
                ipcx::pattern::Subscriber::connect(&format!("{url}&timeout=30s"), &[">"])?;
            publisher.wait_for_subscribers(1, std::time::Duration::from_secs(30))?;
            Box::new(PubSub {
                publisher,
                subscriber,
            })
        }
        (Mech::RpcTcp, Impl::Raw) => connect(Mech::Tcp, Impl::Raw, url, url2, size)?,
        (Mech::Typed, Impl::Raw) => Box::new(Link::connect(url)?),
        (Mech::ShmZc | Mech::ShmZcUntouched, _) => {
            // The driver publishes on `-ping`; the peer answers on `-pong`.
            let (base, query) = url.split_once('?').unwrap_or((url, ""));
            let pong = Publisher::create(&format!("{base}-pong?slots=64&max_msg={size}&{query}"))?;
            let ping = Subscriber::open(&format!("{base}-ping?timeout=30s&{query}"))?;
            pong.wait_for_subscribers(1, std::time::Duration::from_secs(30))?;
            Box::new(ZeroCopy {
                publisher: pong,
                subscriber: ping,
            })
        }
        // SAFETY: the bench peer is started by ipcx::spawn, adopts the pipe
        // first thing, and runs no other thread yet.
        (Mech::Pipe, Impl::Ipcx) => Box::new(unsafe { Link::from_inherited() }?),
        // The peer takes from the driver's queue and answers on the other.
        (Mech::Mq | Mech::Sysvmq, Impl::Ipcx) => Box::new(QueuePair {
            tx: Link::connect(&format!("{url2}?timeout=30s"))?,
            rx: Link::connect(&format!("{url}?timeout=30s"))?,
            _listeners: None,
        }),
        (Mech::Mq | Mech::Sysvmq, Impl::Raw) => Box::new(RawQueues::open(mech, url2, url)?),
        // The peer writes the journal the driver follows, and follows the
        // driver's.
        (Mech::JournalTail, _) => Box::new(Journals {
            w: Box::new(ipcx::journal::JournalWriter::open(url2)?),
            r: follow(url)?,
        }),
        (_, Impl::Ipcx) => Box::new(Link::connect(url)?),
        (Mech::Pipe, Impl::Raw) => {
            // Duplicates of fds 0 and 1, unbuffered: std's stdin and stdout buffer.
            use std::os::fd::AsFd;
            let r = std::fs::File::from(io::stdin().as_fd().try_clone_to_owned()?);
            let w = std::fs::File::from(io::stdout().as_fd().try_clone_to_owned()?);
            Box::new(RawStream { r, w })
        }
        (Mech::Fifo, Impl::Raw) => {
            let r = std::fs::File::open(url)?;
            let w = std::fs::OpenOptions::new().write(true).open(url2)?;
            Box::new(RawStream { r, w })
        }
        (Mech::Unix, Impl::Raw) => {
            let s = UnixStream::connect(url)?;
            Box::new(RawStream {
                r: s.try_clone()?,
                w: s,
            })
        }
        (Mech::Tcp, Impl::Raw) => {
            let s = TcpStream::connect(url)?;
            s.set_nodelay(true)?;
            Box::new(RawStream {
                r: s.try_clone()?,
                w: s,
            })
        }
        (Mech::Unixseq, Impl::Raw) => {
            let fd = seqpacket()?;
            rustix::net::connect(&fd, &SocketAddrUnix::new(url)?)?;
            Box::new(RawPacket(fd))
        }
        (Mech::Shm, Impl::Raw) => Box::new(RawShm::new(
            Segment::open(&format!("{url}?timeout=10s"))?,
            false,
        )),
    })
}

/// Zero-copy publish/subscribe, one channel each way: a message is written
/// where it will be read (a loan) and read where it was written (a sample).
pub struct ZeroCopy {
    publisher: Publisher,
    subscriber: Subscriber,
}

impl Conn for ZeroCopy {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.publisher.send(msg).map_err(io::Error::other)
    }

    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        let sample = self.subscriber.recv().map_err(io::Error::other)?;
        buf.clear();
        buf.extend_from_slice(&sample);
        Ok(())
    }

    fn send_seq(
        &mut self,
        size: usize,
        seq: u64,
        extra: u64,
        fill: bool,
        _: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut loan = self.publisher.loan(size).map_err(io::Error::other)?;
        if fill {
            loan.fill(seq as u8);
        }
        stamp(&mut loan, seq, extra);
        loan.send().map_err(io::Error::other)
    }

    fn recv_seq(&mut self, _size: usize, touch: bool, _: &mut Vec<u8>) -> io::Result<Got> {
        let sample = self.subscriber.recv().map_err(io::Error::other)?;
        Ok(read(&sample, touch))
    }
}

/// The two queue endpoints of cell `n`: driver to peer, and back.
fn queue_urls(mech: Mech, n: usize) -> (String, String) {
    let pid = std::process::id();
    match mech {
        Mech::Mq => (
            format!("mq:/ipcx-bench-{pid}-{n}-down"),
            format!("mq:/ipcx-bench-{pid}-{n}-up"),
        ),
        _ => {
            let key = 0x6900_0000u32 | (pid & 0xfff) << 12 | (n as u32 & 0x7ff) << 1;
            (format!("sysvmq:{key:#x}"), format!("sysvmq:{:#x}", key | 1))
        }
    }
}

/// A queue each way, through ipcx.
struct QueuePair {
    tx: Link,
    rx: Link,
    _listeners: Option<(Box<Listener>, Box<Listener>)>,
}

impl Conn for QueuePair {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.tx.send(msg).map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        self.rx.recv_into(buf).map_err(io::Error::other)
    }
}

/// A queue each way, bare: blocking `mq_send`/`mq_receive` or
/// `msgsnd`/`msgrcv`, nothing else. The driver made them and removes them.
pub struct RawQueues {
    kind: RawKind,
    scratch: Vec<u8>,
    /// The queues to remove when done (the driver's side).
    owned: Vec<String>,
}

enum RawKind {
    Posix {
        tx: OwnedFd,
        rx: OwnedFd,
        cap: usize,
    },
    SysV {
        tx: ipcx::bench_support::queues::QueueId,
        rx: ipcx::bench_support::queues::QueueId,
    },
}

/// The SysV key of a `sysvmq:0xKEY` URL, or the name of an `mq:/name` one.
fn queue_name(url: &str) -> &str {
    url.trim_start_matches("mq:/").trim_start_matches("sysvmq:")
}

fn sysv_key(url: &str) -> Result<i32> {
    let hex = queue_name(url).trim_start_matches("0x");
    Ok(u32::from_str_radix(hex, 16)? as i32)
}

impl RawQueues {
    fn create(mech: Mech, down: &str, up: &str, size: usize) -> Result<RawQueues> {
        use ipcx::bench_support::queues as q;
        let kind = match mech {
            Mech::Mq => {
                let make = |url| q::mq_open(queue_name(url), Some((0o600, 10, size)));
                RawKind::Posix {
                    tx: make(down)?,
                    rx: make(up)?,
                    cap: size,
                }
            }
            _ => RawKind::SysV {
                tx: q::sysv_get(sysv_key(down)?, Some(0o600))?,
                rx: q::sysv_get(sysv_key(up)?, Some(0o600))?,
            },
        };
        Ok(RawQueues {
            kind,
            scratch: Vec::new(),
            owned: vec![down.to_string(), up.to_string()],
        })
    }

    fn open(mech: Mech, tx: &str, rx: &str) -> Result<RawQueues> {
        use ipcx::bench_support::queues as q;
        let kind = match mech {
            Mech::Mq => RawKind::Posix {
                tx: q::mq_open(queue_name(tx), None)?,
                rx: q::mq_open(queue_name(rx), None)?,
                cap: q::mq_max_message()?,
            },
            _ => RawKind::SysV {
                tx: q::sysv_get(sysv_key(tx)?, None)?,
                rx: q::sysv_get(sysv_key(rx)?, None)?,
            },
        };
        Ok(RawQueues {
            kind,
            scratch: Vec::new(),
            owned: Vec::new(),
        })
    }
}

impl Conn for RawQueues {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        use ipcx::bench_support::queues as q;
        match &self.kind {
            RawKind::Posix { tx, .. } => q::mq_send(tx.as_fd(), msg, 0),
            RawKind::SysV { tx, .. } => q::sysv_send(*tx, 1, msg, false, &mut self.scratch),
        }
    }
    fn recv(&mut self, buf: &mut Vec<u8>, size: usize) -> io::Result<()> {
        use ipcx::bench_support::queues as q;
        match &self.kind {
            RawKind::Posix { rx, cap, .. } => {
                buf.resize((*cap).max(size), 0);
                let (n, _) = q::mq_receive(rx.as_fd(), buf)?;
                buf.truncate(n);
            }
            RawKind::SysV { rx, .. } => {
                let (n, _) = q::sysv_receive(*rx, 0, size.max(1), false, buf)?;
                q::sysv_text(buf, n);
            }
        }
        Ok(())
    }
}

impl Drop for RawQueues {
    fn drop(&mut self) {
        use ipcx::bench_support::queues as q;
        for url in &self.owned {
            match &self.kind {
                RawKind::Posix { .. } => {
                    let _ = q::mq_unlink(queue_name(url));
                }
                RawKind::SysV { .. } => {
                    if let Ok(id) = sysv_key(url).and_then(|k| Ok(q::sysv_get(k, None)?)) {
                        let _ = q::sysv_remove(id);
                    }
                }
            }
        }
    }
}

/// A journal each way: appends go into one, messages come from following
/// the other.
struct Journals {
    w: Box<ipcx::journal::JournalWriter>,
    r: ipcx::journal::JournalReader,
}

/// A reader of the journal at `url` from its start, once its writer made
/// it (up to 30 s).
fn follow(url: &str) -> Result<ipcx::journal::JournalReader> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match ipcx::journal::JournalReader::open(url, 0) {
            Ok(r) => return Ok(r),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
}

impl Conn for Journals {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.w.append(msg).map(drop).map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        let (_, payload) = self.r.next().map_err(io::Error::other)?;
        *buf = payload;
        Ok(())
    }
}

/// A typed link of blobs: the message a typed application would send (a
/// value it fills, then sends) and receive (decoded into a value it
/// keeps, `recv_into`).
struct Typed {
    link: ipcx::pattern::TypedLink<Bytes, Bytes>,
    out: Bytes,
    /// Received into, reusing its allocation (`recv_into`), then swapped
    /// with the caller's buffer.
    inn: Bytes,
}

use ipcx::pattern::Bytes;

impl Typed {
    fn new(link: Link) -> Result<Typed> {
        Ok(Typed {
            link: ipcx::pattern::TypedLink::from_link(link)?,
            out: Bytes::default(),
            inn: Bytes::default(),
        })
    }
}

impl Conn for Typed {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.out.clear();
        self.out.extend_from_slice(msg);
        self.link.send(&self.out).map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        self.link
            .recv_into(&mut self.inn)
            .map_err(io::Error::other)?;
        std::mem::swap(buf, &mut self.inn.0);
        Ok(())
    }
    /// The value is filled in place and sent, as an application would.
    fn send_seq(
        &mut self,
        size: usize,
        seq: u64,
        extra: u64,
        fill: bool,
        _scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        self.out.resize(size, 0);
        if fill {
            self.out.fill(seq as u8);
        }
        stamp(&mut self.out, seq, extra);
        self.link.send(&self.out).map_err(io::Error::other)
    }
}

/// The calling side of the rpc cells: a message sent is a call, and its
/// reply the next message received; a receive with no reply waiting makes
/// an empty call (the throughput run: one call per message).
struct Calls {
    client: ipcx::pattern::Client,
    reply: Option<Vec<u8>>,
    _listener: Listener,
}

impl Conn for Calls {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.reply = Some(self.client.call(msg).map_err(io::Error::other)?);
        Ok(())
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        *buf = match self.reply.take() {
            Some(r) => r,
            None => self.client.call(&[]).map_err(io::Error::other)?,
        };
        Ok(())
    }
}

/// The answering side: a message received is a call (its id kept), and a
/// message sent answers it; a send with no call waiting takes the next.
struct Answers {
    responder: ipcx::pattern::Responder,
    pending: Option<u64>,
}

impl Conn for Answers {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let id = match self.pending.take() {
            Some(id) => id,
            None => self.responder.recv().map_err(io::Error::other)?.0,
        };
        self.responder.reply(id, msg).map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        let (id, body) = self.responder.recv().map_err(io::Error::other)?;
        buf.clear();
        buf.extend_from_slice(body);
        self.pending = Some(id);
        Ok(())
    }
}

/// A publisher each way: a message sent is published (topic `bench.m`),
/// one received is the next delivery of the other side's publisher.
struct PubSub {
    publisher: ipcx::pattern::Publisher,
    subscriber: ipcx::pattern::Subscriber,
}

impl Conn for PubSub {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.publisher
            .publish("bench.m", msg)
            .map(drop)
            .map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        *buf = self.subscriber.recv().map_err(io::Error::other)?.payload;
        Ok(())
    }
}
