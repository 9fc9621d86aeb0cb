//! `mq:/name`: POSIX message queues, shared with C and Python programs.
//!
//! A message is the payload and nothing else (no header, no handshake),
//! so any program that calls `mq_send`/`mq_receive` on the same queue
//! interoperates; each has a priority, and the highest is taken first.
//! The binding side creates the queue (`?max_msgs=`, `?msg_size=`, checked
//! against `/proc/sys/fs/mqueue/` first, so an error can name the limit)
//! and owns its name in the registry; the connecting side opens it. A
//! queue has no peers: a link sends into it and takes from it, and its
//! listener hands out one link at a time, as a FIFO's does.

mod listener;

pub(crate) use listener::MqListener;
pub use listener::sysv_queues;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::{Link, Until};
use crate::endpoint::{Address, Endpoint, Scheme};
use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::sys::fd::Interest;

/// An open queue, shared by the two halves of a link.
#[derive(Debug)]
pub(crate) struct Queue {
    kind: Kind,
    /// Its largest message: what a send may carry, and the receive buffer.
    msg_size: usize,
    /// The type a plain send gives a System V message (`?type=`).
    send_type: i64,
    /// Raised when this handle is dropped: the listener's eventfd, for a
    /// link it handed out (a poller holding the listener sees it free).
    released: Option<OwnedFd>,
}

#[derive(Debug)]
enum Kind {
    /// A POSIX queue: its descriptor.
    Posix(OwnedFd),
    /// A System V queue, which has no descriptor: what event loops wait on
    /// is an eventfd a watcher thread raises while the queue holds
    /// messages (started when first asked for, looking every 10 ms).
    SysV {
        id: sys::sysvmq::QueueId,
        ready: OwnedFd,
        watcher: std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>>,
    },
}

/// How often a System V queue's watcher looks at its depth.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

impl Queue {
    fn posix(ep: &Endpoint, fd: OwnedFd) -> Result<Queue> {
        let attr = sys::mq::attr(fd.as_fd()).map_err(|e| Error::io("open", e).at(ep))?;
        Ok(Queue {
            kind: Kind::Posix(fd),
            msg_size: attr.msg_size,
            send_type: 1,
            released: None,
        })
    }

    fn sysv(ep: &Endpoint, id: sys::sysvmq::QueueId) -> Result<Queue> {
        let io = |e| Error::io("open", e).at(ep);
        Ok(Queue {
            kind: Kind::SysV {
                id,
                ready: sys::eventfd::create(0, false).map_err(io)?,
                watcher: std::sync::OnceLock::new(),
            },
            // No message may be larger than the system's msgmax or the
            // queue's own size (one larger than that would wait forever).
            msg_size: sys::sysvmq::max_message()
                .map_err(io)?
                .min(sys::sysvmq::stat(id).map_err(io)?.max_bytes as usize),
            send_type: ep.options().msg_type,
            released: None,
        })
    }

    /// A second handle on the same queue (the listener's next link),
    /// which raises the eventfd `released` when dropped.
    fn again(&self, ep: &Endpoint, released: OwnedFd) -> Result<Arc<Queue>> {
        let mut queue = match &self.kind {
            Kind::Posix(fd) => Queue::posix(
                ep,
                sys::fd::dup_cloexec(fd.as_fd()).map_err(|e| Error::io("accept", e))?,
            ),
            Kind::SysV { id, .. } => Queue::sysv(ep, *id),
        }?;
        queue.released = Some(released);
        Ok(Arc::new(queue))
    }

    /// What an event loop waits on: the POSIX queue's descriptor, or a
    /// System V queue's eventfd (its watcher started on first use).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::Posix(fd) => fd.as_fd(),
            Kind::SysV { id, ready, watcher } => {
                watcher.get_or_init(|| watch(*id, ready.as_fd()));
                ready.as_fd()
            }
        }
    }

    /// The POSIX queue's descriptor, which tokio can await.
    pub(crate) fn pollable(&self) -> Option<BorrowedFd<'_>> {
        match &self.kind {
            Kind::Posix(fd) => Some(fd.as_fd()),
            Kind::SysV { .. } => None,
        }
    }

    /// Runs `op` until the queue does not find itself full or empty,
    /// waiting for `interest` in between, as `until` allows.
    fn retry<T>(
        &self,
        what: &'static str,
        interest: Interest,
        until: Until,
        op: impl FnMut() -> std::io::Result<T>,
    ) -> Result<T> {
        let fd = match &self.kind {
            Kind::Posix(fd) => fd.as_fd(),
            Kind::SysV { .. } => return sysv_retry(what, until, op),
        };
        match sys::fd::when_ready(fd, interest, until.deadline(), op) {
            Ok(Some(v)) => Ok(v),
            Ok(None) if matches!(until, Until::NoWait) => {
                Err(Error::new(ErrorKind::WouldBlock, what))
            }
            Ok(None) => Err(Error::new(ErrorKind::TimedOut, what)),
            Err(e) => Err(Error::io(what, e)),
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Some(released) = &self.released {
            let _ = sys::eventfd::add(released.as_fd(), 1);
        }
        if let Kind::SysV { watcher, .. } = &self.kind
            && let Some(stop) = watcher.get()
        {
            stop.store(true, std::sync::atomic::Ordering::Release);
        }
    }
}

/// Starts the thread that raises `ready` while queue `id` holds messages;
/// returns its stop flag.
fn watch(id: sys::sysvmq::QueueId, ready: BorrowedFd<'_>) -> Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::Ordering;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ready = match sys::fd::dup_cloexec(ready) {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!(error = %e, "a System V queue cannot be watched");
            return stop;
        }
    };
    let flag = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("ipcx-sysvmq-watch".into())
        .spawn(move || {
            while !flag.load(Ordering::Acquire) {
                let (waiting, gone) = match sys::sysvmq::stat(id) {
                    Ok(s) => (s.depth > 0, false),
                    // Removed (or no longer readable): raised once, so a
                    // waiter looks and sees the end; the watch ends.
                    Err(_) => (true, true),
                };
                let raised = sys::eventfd::inspect(ready.as_fd())
                    .ok()
                    .flatten()
                    .is_some_and(|i| i.count > 0);
                if waiting && !raised {
                    let _ = sys::eventfd::add(ready.as_fd(), 1);
                }
                if gone {
                    return;
                }
                std::thread::sleep(WATCH_EVERY);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "a System V queue cannot be watched");
    }
    stop
}

/// The waits of a System V queue, which has no descriptor: blocking in
/// the kernel when there is no deadline, else `IPC_NOWAIT` tries with
/// short sleeps between.
fn sysv_retry<T>(
    what: &'static str,
    until: Until,
    mut op: impl FnMut() -> std::io::Result<T>,
) -> Result<T> {
    let mut backoff = crate::deadline::Backoff::new(std::time::Duration::from_millis(5));
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if e.raw_os_error() == Some(libc::EIDRM)
                    || e.raw_os_error() == Some(libc::EINVAL) =>
            {
                return Err(Error::new(ErrorKind::Closed, what));
            }
            Err(e) => return Err(Error::io(what, e)),
        }
        match until {
            Until::NoWait => return Err(Error::new(ErrorKind::WouldBlock, what)),
            Until::Deadline(d) => {
                if !backoff.sleep_until(d) {
                    return Err(Error::new(ErrorKind::TimedOut, what));
                }
            }
            Until::Forever => {}
        }
    }
}

/// The receiving half of an `mq:` or `sysvmq:` link.
#[derive(Debug)]
pub(crate) struct MqRx {
    queue: Arc<Queue>,
    msg: Vec<u8>,
    /// The priority (POSIX) or type (System V) of the message taken last.
    tag: i64,
    /// Which System V messages a receive takes (`msgrcv`'s `msgtyp`).
    select: i64,
}

impl MqRx {
    /// Takes the next message (POSIX: the oldest of the highest priority;
    /// System V: the first the selector allows), which
    /// [`MqRx::take_message`] then gives.
    pub(crate) fn next(&mut self, until: Until) -> Result<()> {
        let (queue, msg, select) = (&self.queue, &mut self.msg, self.select);
        let got = match &queue.kind {
            Kind::Posix(fd) => {
                msg.resize(queue.msg_size, 0);
                queue
                    .retry("recv", Interest::Read, until, || {
                        sys::mq::receive(fd.as_fd(), msg)
                    })
                    .map(|(n, priority)| (n, i64::from(priority)))
            }
            Kind::SysV { id, .. } => {
                let wait = matches!(until, Until::Forever);
                queue.retry("recv", Interest::Read, until, || {
                    sys::sysvmq::receive(*id, select, queue.msg_size, !wait, msg)
                })
            }
        };
        let (n, tag) = match got {
            Err(e) if *e.kind() == ErrorKind::WouldBlock => {
                self.empty();
                return Err(e);
            }
            r => r?,
        };
        match &queue.kind {
            Kind::Posix(_) => msg.truncate(n),
            Kind::SysV { .. } => sys::sysvmq::text(msg, n),
        }
        self.tag = tag;
        Ok(())
    }

    /// For a poller told this half's descriptor is readable: whether a
    /// receive would find a message. A POSIX queue's descriptor says so
    /// exactly; a System V queue's eventfd may still be raised for a
    /// message already taken: it is lowered then (the watcher raises it
    /// again within its period if one came meanwhile).
    pub(crate) fn confirm(&mut self) -> bool {
        match &self.queue.kind {
            Kind::Posix(_) => true,
            Kind::SysV { id, .. } => {
                if sys::sysvmq::stat(*id).is_ok_and(|s| s.depth == 0) {
                    self.empty();
                    return false;
                }
                true
            }
        }
    }

    /// A look that found nothing: a System V queue's eventfd is lowered
    /// (the watcher raises it again when a message comes).
    fn empty(&self) {
        if let Kind::SysV { ready, .. } = &self.queue.kind {
            let _ = sys::eventfd::take(ready.as_fd());
        }
    }

    /// [`MqRx::next`] taking only what `msgtyp` selects (System V).
    pub(crate) fn next_of(&mut self, msgtyp: i64, until: Until) -> Result<()> {
        let before = std::mem::replace(&mut self.select, msgtyp);
        let r = self.next(until);
        self.select = before;
        r
    }

    pub(crate) fn take_message(&mut self, out: &mut Vec<u8>) {
        std::mem::swap(out, &mut self.msg);
        self.msg.clear();
    }

    /// The priority (POSIX) or type (System V) of the message taken last.
    pub(crate) fn tag(&self) -> i64 {
        self.tag
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.queue.fd()
    }

    pub(crate) fn is_sysv(&self) -> bool {
        matches!(self.queue.kind, Kind::SysV { .. })
    }

    /// How many messages the queue holds now.
    pub(crate) fn depth(&self) -> Result<usize> {
        let io = |e| Error::io("queued", e);
        match &self.queue.kind {
            Kind::Posix(fd) => sys::mq::attr(fd.as_fd()).map(|a| a.depth).map_err(io),
            Kind::SysV { id, .. } => sys::sysvmq::stat(*id).map(|s| s.depth as usize).map_err(io),
        }
    }
}

/// The sending half of an `mq:` or `sysvmq:` link.
#[derive(Debug)]
pub(crate) struct MqTx {
    queue: Arc<Queue>,
    scratch: Vec<u8>,
}

impl MqTx {
    /// Sends `msg` with `tag` (POSIX: its priority, default 0; System V:
    /// its type, default `?type=`), waiting for room as `until` allows. A
    /// message larger than the queue's is refused whole
    /// ([`ErrorKind::MessageTooLarge`] with both sizes), never cut.
    pub(crate) fn send(&mut self, msg: &[u8], tag: Option<i64>, until: Until) -> Result<()> {
        let (queue, scratch) = (&self.queue, &mut self.scratch);
        if msg.len() > queue.msg_size {
            return Err(Error::new(
                ErrorKind::MessageTooLarge {
                    len: msg.len() as u64,
                    max: queue.msg_size as u64,
                },
                "send",
            ));
        }
        let invalid = |why: String| Err(Error::new(ErrorKind::InvalidArgument(why), "send"));
        match &queue.kind {
            Kind::Posix(fd) => {
                let Ok(priority) = u32::try_from(tag.unwrap_or(0)) else {
                    return invalid(format!("priority {tag:?} is not 0 to 2^32-1"));
                };
                queue.retry("send", Interest::Write, until, || {
                    sys::mq::send(fd.as_fd(), msg, priority)
                })
            }
            Kind::SysV { id, .. } => {
                let mtype = tag.unwrap_or(queue.send_type);
                if mtype <= 0 {
                    return invalid(format!("a System V message type is above 0, not {mtype}"));
                }
                let wait = matches!(until, Until::Forever);
                queue.retry("send", Interest::Write, until, || {
                    sys::sysvmq::send(*id, mtype, msg, !wait, scratch)
                })
            }
        }
    }

    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.queue.pollable()
    }

    /// The largest message the queue takes.
    pub(crate) fn max_msg(&self) -> u64 {
        self.queue.msg_size as u64
    }

    pub(crate) fn is_sysv(&self) -> bool {
        matches!(self.queue.kind, Kind::SysV { .. })
    }
}

/// The two halves over one open queue.
fn halves(queue: &Arc<Queue>) -> (MqRx, MqTx) {
    (
        MqRx {
            queue: queue.clone(),
            msg: Vec::new(),
            tag: 0,
            select: 0,
        },
        MqTx {
            queue: queue.clone(),
            scratch: Vec::new(),
        },
    )
}

fn name(ep: &Endpoint) -> Result<&str> {
    match ep.address() {
        Address::Name(n) => Ok(n),
        _ => Err(Error::new(
            ErrorKind::InvalidEndpoint("a message queue is mq:/name".into()),
            "mq",
        )
        .at(ep)),
    }
}

/// What `ipcx ls` shows of the queue `name` (without its slash): how
/// many messages it holds, of how many, and their largest size
/// (`mq_getattr`). `None` if it cannot be opened.
pub fn queue_state(name: &str) -> Option<String> {
    let fd = sys::mq::open(name, None).ok()?;
    let a = sys::mq::attr(fd.as_fd()).ok()?;
    Some(format!(
        "{} of {} messages, at most {} bytes each",
        a.depth, a.max_msgs, a.msg_size
    ))
}

/// The path a queue would have if `/dev/mqueue` were mounted: how the
/// registry names it.
pub(crate) fn registry_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/mqueue/{name}"))
}

/// Opens the existing queue, waiting up to `deadline` for it to appear.
pub(crate) fn connect(ep: &Endpoint, deadline: Instant) -> Result<Link> {
    let opened = super::retry_until(ep, deadline, opener(ep)?)?;
    link(ep, opened)
}

/// A queue a connect found: a System V id, or a POSIX descriptor.
pub(crate) enum Opened {
    SysV(sys::sysvmq::QueueId),
    Posix(OwnedFd),
}

/// One look for the queue of `ep`, without waiting (`ENOENT` while its
/// binder has not made it), for a caller that waits its own way between
/// looks.
pub(crate) fn opener(
    ep: &Endpoint,
) -> Result<Box<dyn FnMut() -> std::io::Result<Opened> + Send + '_>> {
    Ok(match ep.scheme() {
        Scheme::SysvMq => {
            let key = sysv_key(ep)?;
            Box::new(move || sys::sysvmq::get(key, None).map(Opened::SysV))
        }
        _ => {
            let name = name(ep)?;
            Box::new(move || sys::mq::open(name, None).map(Opened::Posix))
        }
    })
}

/// The link over the queue a connect found.
pub(crate) fn link(ep: &Endpoint, opened: Opened) -> Result<Link> {
    let queue = match opened {
        Opened::SysV(id) => Queue::sysv(ep, id)?,
        Opened::Posix(fd) => Queue::posix(ep, fd)?,
    };
    let (rx, tx) = halves(&Arc::new(queue));
    Ok(Link::from_mq(ep, rx, tx))
}

/// A `sysvmq:` endpoint's key: the number, or `ftok` of the path and
/// `?proj=`.
fn sysv_key(ep: &Endpoint) -> Result<i32> {
    match ep.address() {
        Address::Key(k) => Ok(*k),
        Address::Path(p) => sys::sysvmq::ftok(p, ep.options().proj)
            .map_err(|e| Error::io("ftok", e).at(format!("{ep} (ftok needs an existing path)"))),
        _ => Err(Error::new(
            ErrorKind::InvalidEndpoint(
                "a System V queue is sysvmq:KEY or sysvmq:/path?proj=N".into(),
            ),
            "sysvmq",
        )
        .at(ep)),
    }
}

/// How the registry names a System V queue (no file is there).
pub(crate) fn sysv_registry_path(key: i32) -> PathBuf {
    PathBuf::from(format!("/proc/sysvipc/msg/{key:#x}"))
}
