//! `pipe:`: anonymous pipes between a parent and the child it spawns.
//!
//! The parent makes two pipes, lets the child inherit one end of each, and
//! tells it which in the `IPCX_PIPE` environment variable
//! (`pipe:fd=R,W`); the child calls [`Link::from_inherited`].

use std::os::fd::AsRawFd;
use std::process::{Child, Command};

use super::Link;
use super::descriptor::Descriptor;
use crate::endpoint::{Address, Codec, Endpoint};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// The environment variable that hands the child its pipe ends.
pub const ENV: &str = "IPCX_PIPE";

/// Spawns `cmd` with a pipe link to it; the child gets its end with
/// [`Link::from_inherited`].
///
/// ```no_run
/// use std::process::Command;
/// # fn main() -> ipcx::Result<()> {
/// let (mut child, mut link) = ipcx::spawn(Command::new("my-worker"))?;
/// link.send(b"job 1")?;
/// let answer = link.recv()?;
/// child.wait().ok();
/// # Ok(()) }
/// ```
///
/// The command is taken by value: the descriptors it hands to the child
/// are closed in the parent once the child runs, so the same `Command`
/// must not start a second child.
pub fn spawn(cmd: Command) -> Result<(Child, Link)> {
    spawn_endpoint(&Endpoint::parse("pipe:")?, cmd)
}

/// [`spawn`] with options (`pipe:?max_msg=64MiB&crc=true`), which the child
/// inherits too.
pub fn spawn_endpoint(ep: &Endpoint, mut cmd: Command) -> Result<(Child, Link)> {
    let err = |e| Error::io("spawn", e).at(ep);
    let flags = rustix::pipe::PipeFlags::CLOEXEC;
    let (to_child_r, to_child_w) = rustix::pipe::pipe_with(flags).map_err(|e| err(e.into()))?;
    let (from_child_r, from_child_w) = rustix::pipe::pipe_with(flags).map_err(|e| err(e.into()))?;
    let (r, w) = (to_child_r.as_raw_fd(), from_child_w.as_raw_fd());
    sys::process::inherit_fds(&mut cmd, [r, w]);
    let query = ep
        .url()
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    cmd.env(ENV, format!("pipe:fd={r},{w}{query}"));
    let child = cmd.spawn().map_err(err)?;
    drop((to_child_r, from_child_w));
    let mut link = Link::new(
        ep,
        Some(Descriptor::pipe(from_child_r)),
        Descriptor::pipe(to_child_w),
    );
    // The child answers when it starts; its hello is checked on first recv.
    let o = ep.options();
    if o.codec == Codec::Framed {
        link.begin_handshake(o.crc, o.max_msg)?;
    }
    Ok((child, link))
}

/// # Safety
/// See [`Link::from_inherited`].
// The one unsafe entry of `transport`: descriptor numbers from the
// environment cannot be checked for ownership.
#[allow(unsafe_code)]
pub(crate) unsafe fn from_inherited() -> Result<Link> {
    let url =
        std::env::var(ENV).map_err(|_| Error::new(ErrorKind::NotInherited, "from_inherited"))?;
    // Read once: a grandchild inherits the variable but not the
    // descriptors (they are close-on-exec once adopted).
    // SAFETY: the caller's contract: no other thread uses the environment.
    unsafe { std::env::remove_var(ENV) };
    let ep = Endpoint::parse(&url)?;
    let Address::Pipe(Some((r, w))) = ep.address() else {
        return Err(Error::new(
            ErrorKind::InvalidEndpoint(format!("{ENV} is not pipe:fd=R,W")),
            "from_inherited",
        ));
    };
    let err = |e| Error::io("from_inherited", e).at(&ep);
    // SAFETY: the caller's contract: the descriptors are the ones `spawn`
    // handed to this process, owned by nothing else here.
    let [rd, wr] = unsafe { sys::process::adopt_inherited([*r, *w]) }.map_err(err)?;
    let mut link = Link::new(&ep, Some(Descriptor::pipe(rd)), Descriptor::pipe(wr));
    super::say_hello(&mut link, &ep)?;
    Ok(link)
}
