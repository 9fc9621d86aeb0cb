//! `fifo:/path`: named pipes.
//!
//! The binding side creates `/path` (the connecting side writes into it) and,
//! for a duplex link (the default with framing), `/path.reply` for the way
//! back. The connecting side opens `/path.reply` for reading before it opens
//! `/path` for writing, so by the time the binder sees the first byte it can
//! open the reply end without waiting. A FIFO serves one peer at a time.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Instant;

use rustix::fs::FileType;

use super::descriptor::Descriptor;
use super::{Link, retry_until};
use crate::endpoint::{Codec, Endpoint};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::{ObjectKind, Registration, Registry};
use crate::sys;
use crate::sys::fd::Interest;

fn reply_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".reply");
    PathBuf::from(s)
}

fn paths(ep: &Endpoint) -> Result<(PathBuf, Option<PathBuf>)> {
    let p = ep.path().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidEndpoint("a FIFO endpoint is fifo:/path".into()),
            "fifo",
        )
        .at(ep)
    })?;
    let reply = ep.options().duplex.then(|| reply_path(p));
    Ok((p.to_path_buf(), reply))
}

/// The binding side of a FIFO endpoint.
#[derive(Debug)]
pub(crate) struct FifoListener {
    path: PathBuf,
    reply: Option<PathBuf>,
    /// The read end an accept that timed out had open: kept, because a
    /// writer may have opened the FIFO meanwhile, and closing the last read
    /// end would fail its hello with `EPIPE`.
    waiting: Option<OwnedFd>,
    /// The read descriptor of the link accepted last: a FIFO serves one peer
    /// at a time, so the next accept waits until that link is dropped.
    active: Weak<Descriptor>,
    /// What an accept waits on for a writer's first bytes (an inotify
    /// watch for writes to `path`, only while it waits), not the FIFO
    /// itself: a pipe that was once polled makes each later write wake its
    /// wait queue (see `StreamRx::await_hello`). `None` where inotify is
    /// refused (the per-user limit on instances): the FIFO is polled.
    watcher: Option<OwnedFd>,
    /// The watch on `path` while accepts wait (from the first look until
    /// a writer's bytes came; see `look`).
    watching: Option<i32>,
    _registration: Registration,
}

impl FifoListener {
    pub(crate) fn bind(ep: &Endpoint) -> Result<FifoListener> {
        let (path, reply) = paths(ep)?;
        let all: Vec<PathBuf> = std::iter::once(path.clone()).chain(reply.clone()).collect();
        let o = ep.options();
        let mut reg =
            Registry::open()?.claim(ObjectKind::Fifo, ep.url(), all.clone(), o.persist)?;
        for p in &all {
            match sys::fs::object_type(p).map_err(|e| Error::io("bind", e).at(ep))? {
                None => {
                    sys::fs::create_fifo(p, o.mode)
                        .map_err(|e| super::path_error("bind", ep, e))?;
                    reg.created(p);
                }
                // A FIFO someone made for us (mkfifo), or a persistent one:
                // use it, if it is ours and no more open than asked.
                Some(FileType::Fifo) => check_existing(ep, p, o.mode)?,
                Some(t) => {
                    return Err(Error::new(
                        ErrorKind::occupied(format!(
                            "{} exists and is a {t:?}, not a FIFO; remove it or pick another path",
                            p.display()
                        )),
                        "bind",
                    )
                    .at(ep));
                }
            }
        }
        Ok(FifoListener {
            watcher: sys::fd::watcher()
                .inspect_err(|e| tracing::debug!(error = %e, "no inotify: accept polls the FIFO"))
                .ok(),
            path,
            reply,
            waiting: None,
            active: Weak::new(),
            watching: None,
            _registration: reg,
        })
    }

    /// Waits for a writer's first bytes, then opens the way back.
    pub(crate) fn accept(&mut self, ep: &Endpoint, deadline: Option<Instant>) -> Result<Link> {
        let o = ep.options();
        let err = |e| Error::io("accept", e).at(ep);
        let timed_out = || Error::new(ErrorKind::TimedOut, "accept").at(ep);
        let mut backoff = crate::deadline::Backoff::new(ACTIVE_SLICE);
        let rd = loop {
            let (wait_on, slice) = match self.look().map_err(err)? {
                Look::Ready(rd) => break rd,
                // A second reader would steal the current peer's bytes.
                Look::Busy if backoff.sleep_within(deadline) => continue,
                Look::Busy => return Err(timed_out()),
                Look::Watch(w) => (w, Some(Instant::now() + UNWATCHED_SLICE)),
                Look::Poll(rd) => (rd, None),
            };
            let until = match (deadline, slice) {
                (Some(d), Some(s)) => Some(d.min(s)),
                (d, s) => d.or(s),
            };
            // Woken or not, the next look says: events are drained there.
            if !sys::fd::wait(wait_on.as_fd(), Interest::Read, until).map_err(err)?
                && deadline.is_some_and(|d| Instant::now() >= d)
            {
                return Err(timed_out());
            }
        };
        let wr = match &self.reply {
            Some(reply) => {
                let d = crate::deadline::far_after(o.handshake_timeout);
                Some(Descriptor::pipe(retry_until(ep, d, || {
                    sys::fs::open_fifo(reply, true)
                })?))
            }
            None => None,
        };
        let rd = Descriptor::pipe(rd);
        self.active = Arc::downgrade(&rd);
        let mut link = match wr {
            Some(wr) => Link::new(ep, Some(rd), wr),
            None => Link::receiving(ep, rd),
        };
        if o.codec == Codec::Framed {
            link.begin_handshake(o.crc, o.max_msg)?;
            link.finish_handshake(crate::deadline::far_after(o.handshake_timeout))?;
        }
        Ok(link)
    }

    /// One look for an async accept: `None` once a writer's first bytes
    /// are in the FIFO (a blocking accept then takes them at once and
    /// waits only for the rest of the handshake), else what to wait on
    /// before the next look (a duplicate) and when to look anyway.
    #[cfg(feature = "async")]
    pub(crate) fn poll_ready(
        &mut self,
        ep: &Endpoint,
    ) -> Result<Option<(Vec<OwnedFd>, Option<Instant>)>> {
        let err = |e| Error::io("accept", e).at(ep);
        let (wait_on, again) = match self.look().map_err(err)? {
            Look::Ready(rd) => {
                // The accept that follows takes it.
                self.waiting = Some(rd);
                return Ok(None);
            }
            Look::Busy => return Ok(Some((Vec::new(), Some(Instant::now() + ACTIVE_SLICE)))),
            Look::Watch(w) => (w, Some(Instant::now() + UNWATCHED_SLICE)),
            Look::Poll(rd) => (rd, None),
        };
        let dup = sys::fd::dup_cloexec(wait_on.as_fd()).map_err(err)?;
        Ok(Some((vec![dup], again)))
    }

    /// Whether a writer's first bytes are in the FIFO, without waiting.
    /// The read end opened for the look stays (`waiting`), as does the
    /// watch on `path` until the bytes came: events after this look make
    /// the watch readable.
    fn look(&mut self) -> std::io::Result<Look<'_>> {
        if self.active.strong_count() > 0 {
            return Ok(Look::Busy);
        }
        let rd = match self.waiting.take() {
            Some(rd) => rd,
            None => sys::fs::open_fifo(&self.path, false)?,
        };
        if let (Some(w), None) = (&self.watcher, self.watching) {
            match sys::fd::watch_writes(w.as_fd(), &self.path) {
                Ok(wd) => self.watching = Some(wd),
                // The link will pay a wake-up call per write (see above).
                Err(e) => tracing::debug!(error = %e, "no inotify watch: accept polls the FIFO"),
            }
        }
        let watch = self.watcher.as_ref().filter(|_| self.watching.is_some());
        if let Some(w) = watch {
            sys::fd::drain_events(w.as_fd());
        }
        // Bytes written before the watch began are seen here.
        match sys::fd::bytes_ready(rd.as_fd()) {
            Ok(0) => {}
            Ok(_) => {
                if let (Some(w), Some(wd)) = (&self.watcher, self.watching.take()) {
                    sys::fd::unwatch(w.as_fd(), wd);
                }
                return Ok(Look::Ready(rd));
            }
            Err(e) => {
                self.waiting = Some(rd);
                return Err(e);
            }
        }
        let rd = self.waiting.insert(rd);
        Ok(
            match self.watcher.as_ref().filter(|_| self.watching.is_some()) {
                Some(w) => Look::Watch(w),
                None => Look::Poll(rd),
            },
        )
    }
}

/// What a look at a waiting FIFO listener found.
enum Look<'a> {
    /// A writer's first bytes are in: the read end, taken out of
    /// `waiting`.
    Ready(OwnedFd),
    /// The last link is still up (a FIFO serves one peer at a time).
    Busy,
    /// Nothing yet: wait on the inotify watch (and look again after
    /// [`UNWATCHED_SLICE`], for file systems that report no writes).
    Watch(&'a OwnedFd),
    /// Nothing yet, and no watch: wait on the read end itself.
    Poll(&'a OwnedFd),
}

/// How often a waiting accept looks at the FIFO itself, in case its file
/// system reports no writes to the watch.
const UNWATCHED_SLICE: std::time::Duration = std::time::Duration::from_millis(500);

/// How often an accept looks whether the last link was dropped.
const ACTIVE_SLICE: std::time::Duration = std::time::Duration::from_millis(5);

/// Refuses a FIFO that belongs to another user or is open to more than
/// `mode` allows: whoever made it could read or inject the traffic.
fn check_existing(ep: &Endpoint, path: &Path, mode: u32) -> Result<()> {
    let (uid, bits) = sys::fs::owner_and_mode(path).map_err(|e| Error::io("bind", e).at(ep))?;
    if uid != sys::process::euid() || bits & !mode != 0 {
        return Err(Error::new(
            ErrorKind::occupied(format!(
                "{} is a FIFO of uid {uid} with mode {bits:04o}; ipcx uses an existing FIFO only if \
                 it is this user's and no more open than ?mode={mode:04o}",
                path.display()
            )),
            "bind",
        )
        .at(ep));
    }
    Ok(())
}

/// Opens the connecting side: the reply FIFO for reading (duplex), then the
/// request FIFO for writing, each waiting until `deadline` for the binder.
///
/// A FIFO serves one peer at a time (a second writer's bytes would land in
/// the middle of the first one's stream, a second reader would steal its
/// replies), so the connector holds an exclusive `flock` on the first FIFO
/// it opens while connected; the kernel releases it when the connector's
/// descriptor closes, also when it dies. A second connector waits for it up
/// to `deadline`.
pub(crate) fn connect(ep: &Endpoint, deadline: Instant) -> Result<Link> {
    let (path, reply) = paths(ep)?;
    let claimed = |fd: OwnedFd| -> std::io::Result<Option<OwnedFd>> {
        Ok(sys::fs::try_lock(&fd)?.then_some(fd))
    };
    let mut backoff = crate::deadline::Backoff::new(std::time::Duration::from_millis(50));
    loop {
        let first = match &reply {
            Some(r) => retry_until(ep, deadline, || sys::fs::open_fifo(r, false))?,
            None => retry_until(ep, deadline, || sys::fs::open_fifo(&path, true))?,
        };
        if let Some(first) = claimed(first).map_err(|e| Error::io("connect", e).at(ep))? {
            let (rd, wr) = match reply {
                Some(_) => {
                    let wr = retry_until(ep, deadline, || sys::fs::open_fifo(&path, true))?;
                    (Some(Descriptor::fifo_before_writer(first)), wr)
                }
                None => (None, first),
            };
            return Ok(Link::new(ep, rd, Descriptor::pipe(wr)));
        }
        if !backoff.sleep_until(deadline) {
            return Err(Error::new(
                ErrorKind::occupied(
                    "another peer is connected to this FIFO, which serves one at a time; \
                     wait for it to finish, or raise ?timeout="
                        .into(),
                ),
                "connect",
            )
            .at(ep));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removes the test's directory, also when the test fails.
    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Without inotify (the per-user limit reached), an accept polls the
    /// FIFO and still takes its connector. The branch is internal, so the
    /// connector is a thread of this process, over the same real FIFOs
    /// (the tests under `tests/` run every FIFO link between processes).
    #[test]
    fn an_accept_without_inotify_polls_the_fifo() {
        let dir = TempDir(
            std::env::temp_dir().join(format!("ipcx-fifo-noinotify-{}", std::process::id())),
        );
        std::fs::create_dir_all(&dir.0).unwrap();
        let url = format!("fifo:{}/f", dir.0.display());
        let ep = Endpoint::parse(&url).unwrap();
        let mut listener = FifoListener::bind(&ep).unwrap();
        listener.watcher = None;
        let connector = std::thread::spawn(move || {
            let mut link = Link::connect(&url).unwrap();
            link.send(b"hello through a polled FIFO").unwrap();
            link.recv().unwrap()
        });
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let mut link = listener.accept(&ep, Some(deadline)).unwrap();
        assert_eq!(link.recv().unwrap(), b"hello through a polled FIFO");
        link.send(b"seen").unwrap();
        assert_eq!(connector.join().unwrap(), b"seen");
        drop((link, listener));
    }
}
