//! Sockets: Unix stream and seqpacket, TCP, descriptor passing, credentials.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
    sockopt,
};

use super::fd::{Interest, wait};

/// Most descriptors the kernel passes in one message (`SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// A Unix socket address: a path, or an abstract name (without the `@`).
#[derive(Debug, Clone, Copy)]
pub enum UnixAddr<'a> {
    /// A filesystem path.
    Path(&'a Path),
    /// An abstract name.
    Abstract(&'a str),
}

fn unix_addr(addr: UnixAddr<'_>) -> io::Result<SocketAddrUnix> {
    Ok(match addr {
        UnixAddr::Path(p) => SocketAddrUnix::new(p).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("socket path {} is longer than 107 bytes", p.display()),
            )
        })?,
        UnixAddr::Abstract(n) => SocketAddrUnix::new_abstract_name(n.as_bytes())?,
    })
}

fn socket_type(seqpacket: bool) -> SocketType {
    if seqpacket {
        SocketType::SEQPACKET
    } else {
        SocketType::STREAM
    }
}

const FLAGS: SocketFlags = SocketFlags::CLOEXEC.union(SocketFlags::NONBLOCK);

/// A non-blocking Unix socket bound to `addr` and listening.
/// See `socket(2)`, `bind(2)`, `listen(2)`.
pub fn unix_listen(addr: UnixAddr<'_>, seqpacket: bool) -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(AddressFamily::UNIX, socket_type(seqpacket), FLAGS, None)?;
    rustix::net::bind(&fd, &unix_addr(addr)?)?;
    rustix::net::listen(&fd, 1024)?;
    Ok(fd)
}

/// A non-blocking Unix socket connected to `addr`. Fails at once with
/// `ENOENT`/`ECONNREFUSED` when nobody listens or the listener's backlog is
/// full (so the caller retries). See `connect(2)`.
pub fn unix_connect(addr: UnixAddr<'_>, seqpacket: bool) -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(AddressFamily::UNIX, socket_type(seqpacket), FLAGS, None)?;
    match rustix::net::connect(&fd, &unix_addr(addr)?) {
        Ok(()) => Ok(fd),
        // A full backlog: nothing was started, the caller tries again.
        Err(rustix::io::Errno::AGAIN) => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "the listener's backlog is full",
        )),
        Err(e) => Err(e.into()),
    }
}

/// A non-blocking TCP socket bound to `addr` and listening, with
/// `SO_REUSEADDR`.
pub fn tcp_listen(addr: SocketAddr) -> io::Result<OwnedFd> {
    let fd = rustix::net::socket_with(family(&addr), SocketType::STREAM, FLAGS, None)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, 1024)?;
    Ok(fd)
}

/// A non-blocking TCP socket connected to `addr`, waiting until `deadline`.
pub fn tcp_connect(addr: SocketAddr, deadline: Option<Instant>) -> io::Result<OwnedFd> {
    let (fd, started) = tcp_connect_start(addr)?;
    if started {
        if !wait(fd.as_fd(), Interest::Write, deadline)? {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        connect_result(fd.as_fd())?;
    }
    Ok(fd)
}

/// A non-blocking TCP socket connecting to `addr`: `true` when the connect
/// is under way (`EINPROGRESS`; the socket becomes writable once it ends,
/// and [`connect_result`] says how), `false` when it is done.
pub fn tcp_connect_start(addr: SocketAddr) -> io::Result<(OwnedFd, bool)> {
    let fd = rustix::net::socket_with(family(&addr), SocketType::STREAM, FLAGS, None)?;
    match rustix::net::connect(&fd, &addr) {
        Ok(()) => Ok((fd, false)),
        Err(rustix::io::Errno::INPROGRESS) => Ok((fd, true)),
        Err(e) => Err(e.into()),
    }
}

/// How a connect that was under way ended (`SO_ERROR`).
pub fn connect_result(fd: BorrowedFd<'_>) -> io::Result<()> {
    match sockopt::socket_error(fd)? {
        Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn family(addr: &SocketAddr) -> AddressFamily {
    match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    }
}

/// Sets `TCP_NODELAY`, and with `heartbeat` keepalive probes so that a host
/// that vanished is detected within three intervals: first probe after one
/// silent interval, two more one interval apart, and `TCP_USER_TIMEOUT` for
/// data left unacknowledged. See `tcp(7)`.
pub fn tcp_tune(fd: BorrowedFd<'_>, heartbeat: Option<Duration>) -> io::Result<()> {
    sockopt::set_tcp_nodelay(fd, true)?;
    if let Some(iv) = heartbeat {
        let iv = Duration::from_secs(iv.as_secs().max(1));
        sockopt::set_socket_keepalive(fd, true)?;
        sockopt::set_tcp_keepidle(fd, iv)?;
        sockopt::set_tcp_keepintvl(fd, iv)?;
        sockopt::set_tcp_keepcnt(fd, 2)?;
        sockopt::set_tcp_user_timeout(fd, (iv.as_millis() * 3) as u32)?;
    }
    Ok(())
}

/// Accepts one pending connection, non-blocking and close-on-exec;
/// `None` when none is waiting. See `accept4(2)`.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    loop {
        return match rustix::net::accept_with(listener, FLAGS) {
            Ok(fd) => Ok(Some(fd)),
            Err(rustix::io::Errno::AGAIN) => Ok(None),
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::CONNABORTED) => continue,
            Err(e) => Err(e.into()),
        };
    }
}

/// The local port of a bound TCP socket.
pub fn local_port(fd: BorrowedFd<'_>) -> io::Result<u16> {
    let addr = rustix::net::getsockname(fd)?;
    let addr = SocketAddr::try_from(addr)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))?;
    Ok(addr.port())
}

/// Sends `bufs` (and, with the first byte, `fds`) without raising `SIGPIPE`;
/// blocks only if the descriptor is in blocking mode. See `sendmsg(2)`,
/// `unix(7)` `SCM_RIGHTS`.
pub fn send(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    dont_wait: bool,
) -> io::Result<usize> {
    let mut flags = SendFlags::NOSIGNAL;
    flags.set(SendFlags::DONTWAIT, dont_wait);
    if let ([one], []) = (bufs, fds) {
        // `send(2)` of one slice costs less than `sendmsg(2)`.
        return Ok(rustix::net::send(fd, one, flags)?);
    }
    if fds.is_empty() {
        let mut none = SendAncillaryBuffer::default();
        return Ok(rustix::net::sendmsg(fd, bufs, &mut none, flags)?);
    }
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors",
        ));
    }
    Ok(rustix::net::sendmsg(fd, bufs, &mut control, flags)?)
}

/// What [`recv`] received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Bytes received.
    pub bytes: usize,
    /// The datagram was longer than the buffer; the rest is lost.
    pub truncated: bool,
    /// More descriptors came than the control buffer holds; the kernel
    /// closed the rest.
    pub fds_truncated: bool,
}

/// Receives into `buf` (with `dont_wait`, never sleeping), queueing any
/// descriptors that came with the bytes (close-on-exec) onto `fds`.
/// See `recvmsg(2)`.
pub fn recv(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
    dont_wait: bool,
) -> io::Result<Received> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if dont_wait {
        flags |= RecvFlags::DONTWAIT;
    }
    let r = rustix::net::recvmsg(fd, &mut iov, &mut control, flags)?;
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = msg {
            fds.extend(received);
        }
    }
    Ok(Received {
        bytes: r.bytes,
        truncated: r.flags.contains(ReturnFlags::TRUNC),
        fds_truncated: r.flags.contains(ReturnFlags::CTRUNC),
    })
}

/// Most datagrams [`recv_batch`] takes in one call.
pub const BATCH: usize = 8;

/// Control bytes for [`MAX_FDS`] descriptors, in 8-byte words (so that
/// the buffer is aligned for `cmsghdr`).
const CONTROL_WORDS: usize = rustix::cmsg_space!(ScmRights(MAX_FDS)).div_ceil(8);

/// Receives up to [`BATCH`] datagrams in one call, one into each of
/// `slots`, queueing their descriptors (close-on-exec, at most `max_fds`
/// with each: the kernel closes the rest and marks it `fds_truncated`) in
/// order onto `fds`, and records what each brought in `got`; returns how
/// many came.
/// Sleeps (unless `dont_wait`) until the first comes, and takes only those
/// already queued behind it. A datagram longer than its slot is cut
/// (`truncated`). End of stream is one datagram of 0 bytes. See
/// `recvmmsg(2)` (`MSG_WAITFORONE`).
pub fn recv_batch(
    fd: BorrowedFd<'_>,
    slots: &mut [&mut [u8]],
    fds: &mut VecDeque<OwnedFd>,
    dont_wait: bool,
    got: &mut [Received; BATCH],
    max_fds: usize,
) -> io::Result<usize> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let n = slots.len().min(BATCH);
    let control_len = if max_fds == 0 {
        0
    } else {
        let bytes = (max_fds.min(MAX_FDS) * std::mem::size_of::<libc::c_int>()) as libc::c_uint;
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        unsafe { libc::CMSG_SPACE(bytes) as usize }
    };
    let mut control = [[MaybeUninit::<u64>::uninit(); CONTROL_WORDS]; BATCH];
    // SAFETY: iovec and mmsghdr are plain C structs; all zeroes is a valid
    // (empty) value of each.
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for i in 0..n {
        iov[i] = libc::iovec {
            iov_base: slots[i].as_mut_ptr().cast(),
            iov_len: slots[i].len(),
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
        if control_len > 0 {
            h.msg_control = control[i].as_mut_ptr().cast();
            h.msg_controllen = control_len.min(std::mem::size_of_val(&control[i]));
        }
    }
    let mut flags = libc::MSG_WAITFORONE | libc::MSG_CMSG_CLOEXEC;
    if dont_wait {
        flags |= libc::MSG_DONTWAIT;
    }
    // SAFETY: every header points at its own iovec (one slice of `slots`,
    // borrowed mutably for the call) and its own control buffer, each with
    // its true length; `n` headers are initialised; no timeout.
    let r = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            n as libc::c_uint,
            flags,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let received = r as usize;
    for (h, g) in hdrs.iter().zip(got.iter_mut()).take(received) {
        let m = &h.msg_hdr;
        // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed
        // control messages into this header's buffer; CMSG_FIRSTHDR and
        // CMSG_NXTHDR stay within it. Each SCM_RIGHTS payload holds
        // descriptors the kernel just installed in this process, owned by
        // nobody else, read unaligned as the macros promise no alignment.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(m);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let len = ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                    let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                    for k in 0..len / std::mem::size_of::<libc::c_int>() {
                        fds.push_back(OwnedFd::from_raw_fd(data.add(k).read_unaligned()));
                    }
                }
                c = libc::CMSG_NXTHDR(m, c);
            }
        }
        *g = Received {
            bytes: h.msg_len as usize,
            truncated: m.msg_flags & libc::MSG_TRUNC != 0,
            fds_truncated: m.msg_flags & libc::MSG_CTRUNC != 0,
        };
    }
    Ok(received)
}

/// Process id, user id and group id of the peer, as the kernel recorded
/// them at connect time. See `unix(7)` `SO_PEERCRED`.
pub fn peer_credentials(fd: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    let c = sockopt::socket_peercred(fd)?;
    Ok((
        c.pid.as_raw_nonzero().get() as u32,
        c.uid.as_raw(),
        c.gid.as_raw(),
    ))
}

/// Shuts down one or both directions. See `shutdown(2)`.
pub fn shutdown(fd: BorrowedFd<'_>, write_only: bool) {
    let how = if write_only {
        rustix::net::Shutdown::Write
    } else {
        rustix::net::Shutdown::Both
    };
    // Shutting down a socket whose peer is gone fails harmlessly.
    let _ = rustix::net::shutdown(fd, how);
}
