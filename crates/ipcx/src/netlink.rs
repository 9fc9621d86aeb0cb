//! The kernel's own notifications, as typed [`Change`]s: links going up or
//! down, addresses and routes changing (`netlink:route`), and device
//! uevents (`netlink:uevent`).
//!
//! Receive-only: a [`Watcher`] is a netlink socket bound to the kernel's
//! multicast groups. Route messages are decoded with the
//! `netlink-packet-route` crate; a uevent is NUL-separated `KEY=VALUE`
//! text, read as such. Each change prints as one line, as `ip monitor`
//! does. Changes are those of the network namespace the watcher was
//! opened in.
//!
//! ```no_run
//! # fn main() -> ipcx::Result<()> {
//! let mut links = ipcx::netlink::Watcher::open("netlink:route")?;
//! loop {
//!     println!("{}", links.next_change()?);
//! }
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};

use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::sys::netlink::Family;

/// One notification from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// A link appeared or changed (`RTM_NEWLINK`).
    Link {
        /// Its index.
        index: u32,
        /// Its name.
        name: String,
        /// Administratively up (`IFF_UP`).
        up: bool,
        /// Up with carrier (`IFF_RUNNING`).
        running: bool,
    },
    /// A link went away (`RTM_DELLINK`).
    LinkRemoved {
        /// Its index.
        index: u32,
        /// Its name.
        name: String,
    },
    /// An address was added or removed.
    Address {
        /// Added (`RTM_NEWADDR`) or removed (`RTM_DELADDR`).
        added: bool,
        /// The link's index.
        index: u32,
        /// The address.
        address: IpAddr,
        /// Its prefix length.
        prefix: u8,
    },
    /// A route was added or removed.
    Route {
        /// Added (`RTM_NEWROUTE`) or removed (`RTM_DELROUTE`).
        added: bool,
        /// Its destination; `None` for the default route.
        destination: Option<IpAddr>,
        /// The destination's prefix length.
        prefix: u8,
        /// The output link's index, if it has one.
        link: Option<u32>,
    },
    /// A device event.
    Uevent {
        /// `add`, `remove`, `change`, `move`, `online`, ...
        action: String,
        /// The device's path under `/sys`.
        devpath: String,
        /// The other `KEY=VALUE` fields, in the kernel's order.
        fields: Vec<(String, String)>,
    },
}

impl fmt::Display for Change {
    /// One line, as `ip monitor` prints it (uevents as `udevadm monitor
    /// --kernel`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Link {
                index,
                name,
                up,
                running,
            } => {
                let state = match (up, running) {
                    (true, true) => "UP,LOWER_UP",
                    (true, false) => "UP",
                    (false, _) => "DOWN",
                };
                write!(f, "{index}: {name}: <{state}>")
            }
            Change::LinkRemoved { index, name } => write!(f, "Deleted {index}: {name}"),
            Change::Address {
                added,
                index,
                address,
                prefix,
            } => {
                let deleted = if *added { "" } else { "Deleted " };
                let family = if address.is_ipv4() { "inet" } else { "inet6" };
                write!(f, "{deleted}{index}: {family} {address}/{prefix}")
            }
            Change::Route {
                added,
                destination,
                prefix,
                link,
            } => {
                let deleted = if *added { "" } else { "Deleted " };
                match destination {
                    Some(d) => write!(f, "{deleted}{d}/{prefix}")?,
                    None => write!(f, "{deleted}default")?,
                }
                if let Some(l) = link {
                    write!(f, " dev {l}")?;
                }
                Ok(())
            }
            Change::Uevent {
                action,
                devpath,
                fields,
            } => {
                write!(f, "{action} {devpath}")?;
                for (k, v) in fields {
                    write!(f, " {k}={v}")?;
                }
                Ok(())
            }
        }
    }
}

/// A receive-only netlink endpoint: `netlink:route` or `netlink:uevent`.
#[derive(Debug)]
pub struct Watcher {
    fd: OwnedFd,
    family: Family,
    buf: Vec<u8>,
    /// Changes decoded from a datagram and not handed out yet.
    ready: VecDeque<Change>,
}

/// Bytes of a netlink datagram the kernel sends at most here (a page
/// of messages, or one uevent with its environment).
const DATAGRAM: usize = 64 << 10;

impl Watcher {
    /// Starts listening: `netlink:route` (links, IPv4 and IPv6
    /// addresses and routes) or `netlink:uevent` (the kernel's device
    /// events).
    pub fn open(url: &str) -> Result<Watcher> {
        let (family, groups) = match url {
            "netlink:route" => (Family::Route, sys::netlink::ROUTE_GROUPS),
            "netlink:uevent" => (Family::Uevent, sys::netlink::UEVENT_GROUPS),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidEndpoint(format!(
                        "{url:?}: netlink endpoints are netlink:route and netlink:uevent"
                    )),
                    "open",
                ));
            }
        };
        let fd = sys::netlink::listen(family, groups).map_err(|e| Error::io("open", e).at(url))?;
        Ok(Watcher {
            fd,
            family,
            buf: vec![0; DATAGRAM],
            ready: VecDeque::new(),
        })
    }

    /// Waits for the next change. Messages of kinds it does not describe
    /// (neighbours, rules, ...) are skipped.
    pub fn next_change(&mut self) -> Result<Change> {
        self.next_until(None)
    }

    /// [`Watcher::next_change`], at most `timeout` ([`ErrorKind::TimedOut`]).
    pub fn next_change_timeout(&mut self, timeout: Duration) -> Result<Change> {
        self.next_until(crate::deadline::after(timeout))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Result<Change> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(e);
            }
            match sys::netlink::recv(self.fd.as_fd(), &mut self.buf) {
                Ok(n) => self.decode(n)?,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let ready = sys::fd::wait(self.fd.as_fd(), sys::fd::Interest::Read, deadline)
                        .map_err(|e| Error::io("recv", e))?;
                    if !ready {
                        return Err(Error::new(ErrorKind::TimedOut, "recv"));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("recv", e)),
            }
        }
    }

    /// Decodes the datagram of `n` bytes in the buffer into changes.
    fn decode(&mut self, n: usize) -> Result<()> {
        let data = &self.buf[..n];
        match self.family {
            Family::Uevent => self.ready.extend(uevent(data)),
            Family::Route => {
                let mut rest = data;
                while !rest.is_empty() {
                    let len = message_len(rest)?;
                    // A message the crate cannot decode (or panics on: it
                    // has known panics on some kernel data) is skipped; the
                    // rest of the datagram is still read.
                    let one = &rest[..len];
                    match std::panic::catch_unwind(|| {
                        NetlinkMessage::<RouteNetlinkMessage>::deserialize(one)
                    }) {
                        Ok(Ok(msg)) => {
                            if let NetlinkPayload::InnerMessage(m) = msg.payload {
                                self.ready.extend(route_event(m));
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "netlink: a route message skipped")
                        }
                        Err(_) => tracing::warn!(
                            "netlink: a route message the decoder failed on, skipped"
                        ),
                    }
                    // Messages start 4-byte aligned; what is left after the
                    // last is padding.
                    rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
                    if rest.len() < 16 {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

impl AsFd for Watcher {
    /// Readable while changes wait.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl std::os::fd::AsRawFd for Watcher {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.as_fd().as_raw_fd()
    }
}

fn corrupt(why: String) -> Error {
    Error::new(ErrorKind::Corrupt(why), "recv")
}

/// The length of the netlink message at the start of `data`, checked to
/// hold its own header and to fit.
fn message_len(data: &[u8]) -> Result<usize> {
    let Some(head) = data.get(..4) else {
        return Err(corrupt(format!(
            "{} bytes, less than a netlink header",
            data.len()
        )));
    };
    let len = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len < 16 || len > data.len() {
        return Err(corrupt(format!(
            "a netlink message of {len} bytes in {} received",
            data.len()
        )));
    }
    Ok(len)
}

fn route_event(m: RouteNetlinkMessage) -> Option<Change> {
    match m {
        RouteNetlinkMessage::NewLink(l) => Some(link_event(&l, true)),
        RouteNetlinkMessage::DelLink(l) => Some(link_event(&l, false)),
        RouteNetlinkMessage::NewAddress(a) => address_event(&a, true),
        RouteNetlinkMessage::DelAddress(a) => address_event(&a, false),
        RouteNetlinkMessage::NewRoute(r) => Some(route_change(&r, true)),
        RouteNetlinkMessage::DelRoute(r) => Some(route_change(&r, false)),
        _ => None,
    }
}

fn link_event(l: &LinkMessage, present: bool) -> Change {
    let name = l
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let index = l.header.index;
    if !present {
        return Change::LinkRemoved { index, name };
    }
    Change::Link {
        index,
        name,
        up: l.header.flags.contains(LinkFlags::Up),
        running: l.header.flags.contains(LinkFlags::Running),
    }
}

fn address_event(a: &AddressMessage, added: bool) -> Option<Change> {
    // IFA_LOCAL is the interface's own address on point-to-point links;
    // IFA_ADDRESS otherwise.
    let address = a.attributes.iter().find_map(|x| match x {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    let address = address.or_else(|| {
        a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })?;
    Some(Change::Address {
        added,
        index: a.header.index,
        address,
        prefix: a.header.prefix_len,
    })
}

fn route_change(r: &RouteMessage, added: bool) -> Change {
    let mut destination = None;
    let mut link = None;
    for a in &r.attributes {
        match a {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                destination = Some(IpAddr::V4(*ip))
            }
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                destination = Some(IpAddr::V6(*ip))
            }
            RouteAttribute::Oif(i) => link = Some(*i),
            _ => {}
        }
    }
    Change::Route {
        added,
        destination,
        prefix: r.header.destination_prefix_length,
        link,
    }
}

/// A kernel uevent: `ACTION@DEVPATH` then NUL-separated `KEY=VALUE`
/// fields (the kernel's own format; `ACTION` and `DEVPATH` come again as
/// fields and are not repeated). Anything else (a udev daemon's
/// messages, which start with `libudev`) is no event.
fn uevent(data: &[u8]) -> Option<Change> {
    let mut parts = data.split(|b| *b == 0).filter(|p| !p.is_empty());
    let head = String::from_utf8_lossy(parts.next()?).into_owned();
    let (action, devpath) = head.split_once('@')?;
    let fields = parts
        .filter_map(|p| {
            let text = String::from_utf8_lossy(p);
            let (k, v) = text.split_once('=')?;
            (k != "ACTION" && k != "DEVPATH").then(|| (k.to_string(), v.to_string()))
        })
        .collect();
    Some(Change::Uevent {
        action: action.to_string(),
        devpath: devpath.to_string(),
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uevent_reads_as_its_fields() {
        let raw = b"add@/devices/virtual/net/v0\0ACTION=add\0DEVPATH=/devices/virtual/net/v0\0SUBSYSTEM=net\0INTERFACE=v0\0IFINDEX=7\0SEQNUM=1\0";
        let e = uevent(raw).expect("an event");
        assert_eq!(
            e.to_string(),
            "add /devices/virtual/net/v0 SUBSYSTEM=net INTERFACE=v0 IFINDEX=7 SEQNUM=1"
        );
        assert_eq!(uevent(b"libudev\0\xfe\xed"), None);
    }

    #[test]
    fn a_short_or_overlong_message_is_corrupt() {
        assert!(matches!(
            message_len(&[1, 0]).unwrap_err().kind(),
            ErrorKind::Corrupt(_)
        ));
        let mut m = vec![0u8; 20];
        m[..4].copy_from_slice(&100u32.to_ne_bytes());
        assert!(matches!(
            message_len(&m).unwrap_err().kind(),
            ErrorKind::Corrupt(_)
        ));
    }
}
