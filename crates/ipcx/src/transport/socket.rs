//! `unix:`, `unixseq:` and `tcp:`: binding, connecting, and the socket file.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use rustix::fs::FileType;

use super::descriptor::{Descriptor, FdKind};
use super::{Link, retry_until};
use crate::endpoint::{Address, Endpoint, Scheme};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::{ObjectKind, Registration, Registry};
use crate::sys;
use crate::sys::socket::UnixAddr;

pub(crate) fn fd_kind(scheme: Scheme) -> FdKind {
    match scheme {
        Scheme::UnixSeq => FdKind::UnixSeq,
        Scheme::Tcp => FdKind::Tcp,
        _ => FdKind::UnixStream,
    }
}

pub(crate) fn unix_addr(ep: &Endpoint) -> UnixAddr<'_> {
    match ep.address() {
        Address::Abstract(name) => UnixAddr::Abstract(name),
        Address::Path(p) => UnixAddr::Path(p),
        _ => unreachable!("unix endpoints hold a path or an abstract name"),
    }
}

/// Every address of a `tcp://host:port` endpoint, in the resolver's order.
pub(crate) fn resolve(ep: &Endpoint, op: &'static str) -> Result<Vec<SocketAddr>> {
    let Address::HostPort { host, port } = ep.address() else {
        return Err(Error::new(
            ErrorKind::InvalidEndpoint("expected tcp://host:port".into()),
            op,
        )
        .at(ep));
    };
    let addrs: Vec<SocketAddr> = (host.as_str(), *port)
        .to_socket_addrs()
        .map_err(|e| Error::io(op, e).at(ep))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidEndpoint(format!("host `{host}` has no address")),
            op,
        )
        .at(ep));
    }
    Ok(addrs)
}

/// Connects to the first of `addrs` that answers, as `TcpStream::connect`
/// does (`localhost` may be `::1` first while the server listens on
/// 127.0.0.1); the last error when none does.
fn tcp_connect_any(addrs: &[SocketAddr], deadline: Instant) -> std::io::Result<OwnedFd> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        match sys::socket::tcp_connect(*addr, Some(deadline)) {
            Ok(fd) => return Ok(fd),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connects a socket, waiting for a listener up to `deadline`.
pub(crate) fn connect(ep: &Endpoint, deadline: Instant) -> Result<Link> {
    let fd = match fd_kind(ep.scheme()) {
        FdKind::Tcp => {
            let addrs = resolve(ep, "connect")?;
            retry_until(ep, deadline, || tcp_connect_any(&addrs, deadline))?
        }
        kind => {
            refuse_symlink(ep)?;
            retry_until(ep, deadline, || {
                sys::socket::unix_connect(unix_addr(ep), kind.is_packet())
            })?
        }
    };
    connected(ep, fd)
}

/// The link over a socket connected to `ep` (TCP tuned as its options say).
pub(crate) fn connected(ep: &Endpoint, fd: OwnedFd) -> Result<Link> {
    let kind = fd_kind(ep.scheme());
    if kind == FdKind::Tcp {
        sys::socket::tcp_tune(fd.as_fd(), ep.options().heartbeat)
            .map_err(|e| Error::io("connect", e).at(ep))?;
    }
    let ch = Arc::new(Descriptor::new(fd, kind));
    Ok(Link::new(ep, Some(ch.clone()), ch))
}

/// A socket path that is a symlink is refused: ipcx never follows one.
pub(crate) fn refuse_symlink(ep: &Endpoint) -> Result<()> {
    let Address::Path(p) = ep.address() else {
        return Ok(());
    };
    if let Ok(Some(FileType::Symlink)) = sys::fs::object_type(p) {
        return Err(Error::new(
            ErrorKind::occupied(format!(
                "{} is a symlink; ipcx never follows one to a socket",
                p.display()
            )),
            "connect",
        )
        .at(ep));
    }
    Ok(())
}

/// A bound, listening socket and, for a socket file, its registration.
pub(crate) struct Bound {
    pub(crate) fd: OwnedFd,
    pub(crate) kind: FdKind,
    pub(crate) endpoint: Endpoint,
    pub(crate) registration: Option<Registration>,
}

pub(crate) fn bind(ep: &Endpoint) -> Result<Bound> {
    let kind = fd_kind(ep.scheme());
    let err = |e| Error::io("bind", e).at(ep);
    match ep.address() {
        Address::HostPort { host, .. } => {
            // A listener binds the first address (one socket, one port).
            let addr = resolve(ep, "bind")?[0];
            let fd = sys::socket::tcp_listen(addr).map_err(err)?;
            let port = sys::socket::local_port(fd.as_fd()).map_err(err)?;
            let endpoint = ep.with_address(Address::HostPort {
                host: host.clone(),
                port,
            });
            Ok(Bound {
                fd,
                kind,
                endpoint,
                registration: None,
            })
        }
        Address::Abstract(name) => {
            let fd = sys::socket::unix_listen(UnixAddr::Abstract(name), kind.is_packet()).map_err(
                |e| {
                    if e.kind() == std::io::ErrorKind::AddrInUse {
                        Error::new(
                            ErrorKind::occupied(format!(
                                "abstract name @{name} is in use by a live process"
                            )),
                            "bind",
                        )
                        .at(ep)
                    } else {
                        err(e)
                    }
                },
            )?;
            Ok(Bound {
                fd,
                kind,
                endpoint: ep.clone(),
                registration: None,
            })
        }
        Address::Path(path) => {
            let mut reg =
                Registry::open()?.claim(ObjectKind::Socket, ep.url(), vec![path.clone()], false)?;
            clear_stale_socket(ep, path, kind)?;
            let fd = bind_path_with_mode(path, kind, ep.options().mode)
                .map_err(|e| super::path_error("bind", ep, e))?;
            reg.created(path);
            Ok(Bound {
                fd,
                kind,
                endpoint: ep.clone(),
                registration: Some(reg),
            })
        }
        _ => unreachable!("sockets hold a path, an abstract name or host:port"),
    }
}

/// Something already at the path that the registry does not know: a socket
/// nobody listens on is stale and removed; anything else is left alone.
fn clear_stale_socket(ep: &Endpoint, path: &Path, kind: FdKind) -> Result<()> {
    match sys::fs::object_type(path).map_err(|e| Error::io("bind", e).at(ep))? {
        None => Ok(()),
        Some(FileType::Socket) => match sys::socket::unix_connect(UnixAddr::Path(path), kind.is_packet()) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                tracing::info!(path = %path.display(), "removing stale socket nobody listens on");
                sys::fs::remove(path).map_err(|e| Error::io("bind", e).at(ep))
            }
            _ => Err(Error::new(
                ErrorKind::occupied(format!(
                    "a live socket not made by ipcx listens at {}; stop its owner or pick another path",
                    path.display()
                )),
                "bind",
            )
            .at(ep)),
        },
        Some(t) => Err(Error::new(
            ErrorKind::occupied(format!(
                "{} exists and is a {t:?}, not a socket; remove it or pick another path",
                path.display()
            )),
            "bind",
        )
        .at(ep)),
    }
}

/// Binds in a private directory beside `path`, sets the mode, then renames
/// into place: the socket is never reachable with wider permissions than
/// `mode` (bind itself would create it as 0777 minus the umask). The bind
/// goes through `/proc/self/fd/N/s`, N the directory's descriptor, so the
/// detour never makes the address longer than the 107 bytes a socket
/// address holds.
fn bind_path_with_mode(path: &Path, kind: FdKind, mode: u32) -> std::io::Result<OwnedFd> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let dir = parent.join(format!(
        ".ipcx-{}-{}",
        sys::process::pid(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    sys::fs::private_dir(&dir)?;
    let dirfd = sys::fs::open_dir(&dir);
    let result = dirfd.as_ref().map_err(clone_err).and_then(|dirfd| {
        let short = PathBuf::from(format!("/proc/self/fd/{}/s", dirfd.as_raw_fd()));
        let fd = sys::socket::unix_listen(UnixAddr::Path(&short), kind.is_packet())?;
        sys::fs::chmod_in(dirfd.as_fd(), "s", mode)?;
        sys::fs::rename_from_noreplace(dirfd.as_fd(), "s", path)?;
        Ok(fd)
    });
    if let Ok(dirfd) = &dirfd {
        let _ = sys::fs::remove_in(dirfd.as_fd(), "s");
    }
    let _ = std::fs::remove_dir(&dir);
    result
}

fn clone_err(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_tries_every_address() {
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap();
        drop(closed);
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let addrs = [closed_addr, open.local_addr().unwrap()];
        tcp_connect_any(&addrs, deadline).expect("the second address answers");
        let err = tcp_connect_any(&addrs[..1], deadline).expect_err("nobody there");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
