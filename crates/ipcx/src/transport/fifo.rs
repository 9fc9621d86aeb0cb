//! `fifo:/path`: named pipes.
//!
//! The binding side creates `/path` (the connecting side writes into it) and,
//! for a duplex link (the default with framing), `/path.reply` for the way
//! back. The connecting side opens `/path.reply` for reading before it opens
//! `/path` for writing, so by the time the binder sees the first byte it can
//! open the reply end without waiting. A FIFO serves one peer at a time.

use std::os::fd::OwnedFd;
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
    /// The watch an async accept left on `path` between its looks (see
    /// `poll_ready`).
    polled_watch: Option<i32>,
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
            polled_watch: None,
            _registration: reg,
        })
    }

    /// Waits for a writer's first bytes, then opens the way back.
    pub(crate) fn accept(&mut self, ep: &Endpoint, deadline: Option<Instant>) -> Result<Link> {
        let o = ep.options();
        let err = |e| Error::io("accept", e).at(ep);
        let mut backoff = crate::deadline::Backoff::new(ACTIVE_SLICE);
        while self.active.strong_count() > 0 {
            // A second reader would steal the current peer's bytes.
            if !backoff.sleep_within(deadline) {
                return Err(Error::new(ErrorKind::TimedOut, "accept").at(ep));
            }
        }
        let rd = match self.waiting.take() {
            Some(rd) => rd,
            None => sys::fs::open_fifo(&self.path, false).map_err(err)?,
        };
        let arrived = self.first_bytes(&rd, deadline);
        // Its watch (the same as an async look's: one per path) is gone.
        self.polled_watch = None;
        if !arrived.map_err(err)? {
            self.waiting = Some(rd);
            return Err(Error::new(ErrorKind::TimedOut, "accept").at(ep));
        }
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
}

/// How often a waiting accept looks at the FIFO itself, in case its file
/// system reports no writes to the watch.
const UNWATCHED_SLICE: std::time::Duration = std::time::Duration::from_millis(500);

/// How often an accept looks whether the last link was dropped.
const ACTIVE_SLICE: std::time::Duration = std::time::Duration::from_millis(5);

impl FifoListener {
    /// One look without waiting, for an async accept: `None` once a
    /// writer's first bytes are in the FIFO (a blocking accept then takes
    /// them at once and waits only for the rest of the handshake), else
    /// what to wait on before the next look: duplicates of the inotify
    /// watch (or of the read end, without inotify), and an instant.
    #[cfg(feature = "async")]
    pub(crate) fn poll_ready(
        &mut self,
        ep: &Endpoint,
    ) -> Result<Option<(Vec<OwnedFd>, Option<Instant>)>> {
        use std::os::fd::AsFd;
        let err = |e| Error::io("accept", e).at(ep);
        if self.active.strong_count() > 0 {
            return Ok(Some((Vec::new(), Some(Instant::now() + ACTIVE_SLICE))));
        }
        let rd = match self.waiting.take() {
            Some(rd) => rd,
            None => sys::fs::open_fifo(&self.path, false).map_err(err)?,
        };
        let rd = self.waiting.insert(rd);
        let watch = match (&self.watcher, self.polled_watch) {
            (Some(w), Some(_)) => Some(w),
            (Some(w), None) => match sys::fd::watch_writes(w.as_fd(), &self.path) {
                Ok(wd) => {
                    self.polled_watch = Some(wd);
                    Some(w)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no inotify watch: accept polls the FIFO");
                    None
                }
            },
            (None, _) => None,
        };
        // Events seen so far are spent: the watch is readable again only
        // for a write after this look.
        if let Some(w) = watch {
            sys::fd::drain_events(w.as_fd());
        }
        // Bytes written before the watch began are seen here.
        if sys::fd::bytes_ready(rd.as_fd()).map_err(err)? > 0 {
            if let (Some(w), Some(wd)) = (&self.watcher, self.polled_watch.take()) {
                sys::fd::unwatch(w.as_fd(), wd);
            }
            return Ok(None);
        }
        let (wait_on, again) = match watch {
            // A file system that reports no writes still gets its bytes
            // seen, a slice later.
            Some(w) => (w.as_fd(), Some(Instant::now() + UNWATCHED_SLICE)),
            // The link will pay a wake-up call per write (see above).
            None => (rd.as_fd(), None),
        };
        Ok(Some((
            vec![sys::fd::dup_cloexec(wait_on).map_err(err)?],
            again,
        )))
    }
}

impl FifoListener {
    /// Waits until a writer has written into the FIFO (read end `rd`), or
    /// `deadline`: `false` then.
    fn first_bytes(&self, rd: &OwnedFd, deadline: Option<Instant>) -> std::io::Result<bool> {
        use std::os::fd::AsFd;
        let watch = self.watcher.as_ref().and_then(|w| {
            sys::fd::watch_writes(w.as_fd(), &self.path)
                .inspect_err(
                    |e| tracing::debug!(error = %e, "no inotify watch: accept polls the FIFO"),
                )
                .ok()
                .map(|wd| (w.as_fd(), wd))
        });
        let Some((watcher, wd)) = watch else {
            // The link will pay a wake-up call per write (see above).
            return sys::fd::wait(rd.as_fd(), Interest::Read, deadline);
        };
        let arrived = loop {
            // Bytes written before the watch began are seen here.
            match sys::fd::bytes_ready(rd.as_fd()) {
                Ok(0) => {}
                Ok(_) => break Ok(true),
                Err(e) => break Err(e),
            }
            // A file system that reports no writes (some FUSE ones) still
            // gets its bytes seen, a slice later.
            let slice = Instant::now() + UNWATCHED_SLICE;
            match sys::fd::wait(
                watcher,
                Interest::Read,
                Some(deadline.map_or(slice, |d| d.min(slice))),
            ) {
                Ok(true) => sys::fd::drain_events(watcher),
                Ok(false) if deadline.is_some_and(|d| Instant::now() >= d) => break Ok(false),
                Ok(false) => {}
                Err(e) => break Err(e),
            }
        };
        sys::fd::unwatch(watcher, wd);
        arrived
    }
}

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
