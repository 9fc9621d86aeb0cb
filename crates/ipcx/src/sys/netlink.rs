//! Netlink sockets that listen to the kernel's multicast groups
//! (`netlink(7)`, `rtnetlink(7)`).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, RecvFlags, SocketFlags, SocketType};

/// Which kernel family to listen to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `NETLINK_ROUTE`: links, addresses, routes.
    Route,
    /// `NETLINK_KOBJECT_UEVENT`: device events.
    Uevent,
}

/// `RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV4_ROUTE`,
/// `RTMGRP_IPV6_IFADDR`, `RTMGRP_IPV6_ROUTE`.
pub const ROUTE_GROUPS: u32 = 0x1 | 0x10 | 0x40 | 0x100 | 0x400;
/// The kernel's own uevent group.
pub const UEVENT_GROUPS: u32 = 0x1;

/// A non-blocking, close-on-exec netlink socket of `family`, bound to
/// the multicast `groups`.
pub fn listen(family: Family, groups: u32) -> io::Result<OwnedFd> {
    let protocol = match family {
        Family::Route => None,
        Family::Uevent => Some(rustix::net::netlink::KOBJECT_UEVENT),
    };
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        protocol,
    )?;
    rustix::net::bind(&fd, &SocketAddrNetlink::new(0, groups))?;
    Ok(fd)
}

/// Receives one datagram into `buf` (`WouldBlock` when none is there);
/// `Err(InvalidData)` if it was longer than `buf`.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let (n, total) = rustix::net::recv(fd, buf, RecvFlags::TRUNC)?;
    if total > n {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a netlink datagram of {total} bytes, more than the {n} read"),
        ));
    }
    Ok(n)
}
