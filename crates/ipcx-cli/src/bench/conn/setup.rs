//! The driver's side of a cell: the endpoint made before the peer starts,
//! and the arguments that tell the peer how to connect.

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};
use ipcx::Listener;
use ipcx::shm::{Publisher, Segment, Subscriber};
use rustix::net::{SocketAddrUnix, SocketFlags};

use super::patterns::{Calls, Journals, PubSub, Typed, ZeroCopy, follow};
use super::queues::{QueuePair, RawQueues, queue_urls};
use super::{Conn, Impl, ListenerLink, Mech};
use crate::bench::raw::{RawPacket, RawShm, RawStream, seqpacket};

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
