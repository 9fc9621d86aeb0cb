//! Connecting on tokio's reactor and timer: no thread waits for a socket
//! listener or an `shm:` endpoint to appear (or come free), or for a TCP
//! connect to finish.

use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use crate::endpoint::{Address, Endpoint, Scheme};
use crate::error::Result;
use crate::sys;
use crate::transport::{Link, Retry, say_hello};
use crate::transport::{mq, socket};

/// Connects a `unix:`, `unixseq:` or `tcp:` link as [`Link::connect`]
/// does (the same retries while nobody listens, the same errors), awaiting
/// instead of sleeping and polling.
pub(super) async fn socket_link(ep: &Endpoint) -> Result<Link> {
    let deadline = crate::deadline::far_after(ep.options().timeout);
    let retry = Retry::new(ep, deadline);
    let tcp = ep.scheme() == Scheme::Tcp;
    let addrs = if tcp {
        resolve(ep).await?
    } else {
        socket::refuse_symlink(ep)?;
        Vec::new()
    };
    let seqpacket = ep.scheme() == Scheme::UnixSeq;
    let fd = if tcp {
        retry_on_timer(retry, || tcp_connect_any(&addrs, deadline)).await?
    } else {
        retry_on_timer(retry, || {
            std::future::ready(sys::socket::unix_connect(socket::unix_addr(ep), seqpacket))
        })
        .await?
    };
    let mut link = socket::connected(ep, fd)?;
    say_hello(&mut link, ep)?;
    Ok(link)
}

/// Connects an `mq:` or `sysvmq:` link as [`Link::connect`] does (the
/// same looks for the queue and errors), awaiting a timer between looks.
pub(super) async fn queue_link(ep: &Endpoint) -> Result<Link> {
    let deadline = crate::deadline::far_after(ep.options().timeout);
    let mut open = mq::opener(ep)?;
    let opened = retry_on_timer(Retry::new(ep, deadline), || std::future::ready(open())).await?;
    mq::link(ep, opened)
}

/// Tries `attempt` until it succeeds, awaiting `retry`'s pauses while the
/// peer is not there yet; `retry`'s error once it gives up.
async fn retry_on_timer<T, F: Future<Output = std::io::Result<T>>>(
    mut retry: Retry<'_>,
    mut attempt: impl FnMut() -> F,
) -> Result<T> {
    loop {
        match attempt().await {
            Ok(t) => return Ok(t),
            Err(e) => tokio::time::sleep(retry.after(e)?).await,
        }
    }
}

/// Connects an `shm:` link as [`Link::connect`] does (the same looks and
/// errors), awaiting a timer between looks instead of sleeping.
pub(super) async fn shm_link(ep: &Endpoint) -> Result<Link> {
    let deadline = crate::deadline::far_after(ep.options().timeout);
    let mut connecting = crate::transport::shm::Connecting::new(ep);
    loop {
        let not_yet = match connecting.step()? {
            Ok((rx, tx)) => return Ok(Link::from_shm(ep, rx, tx)),
            Err(not_yet) => not_yet,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(not_yet.gave_up(ep));
        }
        tokio::time::sleep(connecting.pause(&not_yet).min(left)).await;
    }
}

/// A TCP endpoint's addresses: an IP address as it is, a host name
/// through the resolver on tokio's blocking pool (a DNS query may take
/// seconds, which no runtime thread may spend).
async fn resolve(ep: &Endpoint) -> Result<Vec<SocketAddr>> {
    let literal = matches!(ep.address(), Address::HostPort { host, .. }
        if host.parse::<std::net::IpAddr>().is_ok());
    if literal {
        return socket::resolve(ep, "connect");
    }
    let ep = ep.clone();
    super::on_blocking_pool("connect", move || socket::resolve(&ep, "connect")).await
}

/// The first address of `addrs` that takes a connection, each connect
/// awaited on the reactor until `deadline`; the last error when none does.
async fn tcp_connect_any(addrs: &[SocketAddr], deadline: Instant) -> std::io::Result<OwnedFd> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        match tcp_connect(*addr, deadline).await {
            Ok(fd) => return Ok(fd),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn tcp_connect(addr: SocketAddr, deadline: Instant) -> std::io::Result<OwnedFd> {
    let (fd, started) = sys::socket::tcp_connect_start(addr)?;
    if !started {
        return Ok(fd);
    }
    let fd = super::register(fd)?;
    if let Ok(ready) = tokio::time::timeout_at(deadline.into(), fd.writable()).await {
        drop(ready?);
    } else {
        // The reactor reports no readiness before its first turn: at the
        // deadline, look once, as the blocking connect's last `poll` does
        // (a loopback connect, or its refusal, is there at once).
        let now = Some(Instant::now());
        if !sys::fd::wait(fd.get_ref().as_fd(), sys::fd::Interest::Write, now)? {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ));
        }
    }
    let fd = fd.into_inner();
    sys::socket::connect_result(fd.as_fd())?;
    Ok(fd)
}
