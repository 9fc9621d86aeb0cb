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

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Instant;

use super::{Link, Until};
use crate::endpoint::{Address, Endpoint};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::{ObjectKind, Registration, Registry};
use crate::sys;
use crate::sys::fd::Interest;

/// An open queue, shared by the two halves of a link.
#[derive(Debug)]
pub(crate) struct Queue {
    fd: OwnedFd,
    /// Its largest message: what a send may carry, and the receive buffer.
    msg_size: usize,
}

impl Queue {
    fn open(ep: &Endpoint, fd: OwnedFd) -> Result<Arc<Queue>> {
        let attr = sys::mq::attr(fd.as_fd()).map_err(|e| Error::io("open", e).at(ep))?;
        Ok(Arc::new(Queue {
            fd,
            msg_size: attr.msg_size,
        }))
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
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
        match sys::fd::when_ready(self.fd(), interest, until.deadline(), op) {
            Ok(Some(v)) => Ok(v),
            Ok(None) if matches!(until, Until::NoWait) => {
                Err(Error::new(ErrorKind::WouldBlock, what))
            }
            Ok(None) => Err(Error::new(ErrorKind::TimedOut, what)),
            Err(e) => Err(Error::io(what, e)),
        }
    }
}

/// The receiving half of an `mq:` link.
#[derive(Debug)]
pub(crate) struct MqRx {
    queue: Arc<Queue>,
    msg: Vec<u8>,
    priority: u32,
}

impl MqRx {
    /// Takes the next message (the oldest of the highest priority), which
    /// [`MqRx::take_message`] then gives.
    pub(crate) fn next(&mut self, until: Until) -> Result<()> {
        let (queue, msg) = (&self.queue, &mut self.msg);
        msg.resize(queue.msg_size, 0);
        let (n, priority) = queue.retry("recv", Interest::Read, until, || {
            sys::mq::receive(queue.fd(), msg)
        })?;
        msg.truncate(n);
        self.priority = priority;
        Ok(())
    }

    pub(crate) fn take_message(&mut self, out: &mut Vec<u8>) {
        std::mem::swap(out, &mut self.msg);
        self.msg.clear();
    }

    /// The priority of the message taken last.
    pub(crate) fn priority(&self) -> u32 {
        self.priority
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.queue.fd()
    }
}

/// The sending half of an `mq:` link.
#[derive(Debug)]
pub(crate) struct MqTx {
    queue: Arc<Queue>,
}

impl MqTx {
    /// Sends `msg` with `priority`, waiting for room as `until` allows. A
    /// message larger than the queue's is refused whole
    /// ([`ErrorKind::MessageTooLarge`] with both sizes), never cut.
    pub(crate) fn send(&mut self, msg: &[u8], priority: u32, until: Until) -> Result<()> {
        let queue = &self.queue;
        if msg.len() > queue.msg_size {
            return Err(Error::new(
                ErrorKind::MessageTooLarge {
                    len: msg.len() as u64,
                    max: queue.msg_size as u64,
                },
                "send",
            ));
        }
        queue.retry("send", Interest::Write, until, || {
            sys::mq::send(queue.fd(), msg, priority)
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.queue.fd()
    }
}

/// The two halves over one open queue.
fn halves(queue: &Arc<Queue>) -> (MqRx, MqTx) {
    (
        MqRx {
            queue: queue.clone(),
            msg: Vec::new(),
            priority: 0,
        },
        MqTx {
            queue: queue.clone(),
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
    let name = name(ep)?;
    let fd = super::retry_until(ep, deadline, || sys::mq::open(name, None))?;
    let queue = Queue::open(ep, fd)?;
    let (rx, tx) = halves(&queue);
    Ok(Link::from_mq(ep, rx, tx))
}

/// The binding side: the queue's creator and owner.
#[derive(Debug)]
pub(crate) struct MqListener {
    queue: Arc<Queue>,
    /// The link accepted last: the next accept waits until it is dropped.
    active: Weak<Queue>,
    _registration: Registration,
}

impl MqListener {
    pub(crate) fn bind(ep: &Endpoint) -> Result<MqListener> {
        let name = name(ep)?;
        let o = ep.options();
        let max_msgs = within_limit(ep, "max_msgs", o.max_msgs, "msg_max", "msg_default")?;
        let msg_size = within_limit(ep, "msg_size", o.msg_size, "msgsize_max", "msgsize_default")?;
        let path = registry_path(name);
        let mut reg =
            Registry::open()?.claim(ObjectKind::Mq, ep.url(), vec![path.clone()], o.persist)?;
        let fd = match sys::mq::open(name, Some((o.mode, max_msgs, msg_size))) {
            Ok(fd) => {
                if let Ok((dev, ino)) = sys::fs::identity_of(&fd) {
                    reg.created_as(&path, dev, ino);
                }
                fd
            }
            // A queue someone made for us (a C program, or a persistent
            // one): used as it is.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                sys::mq::open(name, None).map_err(|e| Error::io("bind", e).at(ep))?
            }
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                let max = sys::mq::limit("queues_max").unwrap_or(0);
                return Err(Error::new(
                    ErrorKind::LimitReached(format!(
                        "this user has as many message queues as RLIMIT_MSGQUEUE allows \
                         (/proc/sys/fs/mqueue/queues_max is {max}); remove some (ipcx clean)"
                    )),
                    "bind",
                )
                .at(ep));
            }
            Err(e) => return Err(Error::io("bind", e).at(ep)),
        };
        Ok(MqListener {
            queue: Queue::open(ep, fd)?,
            active: Weak::new(),
            _registration: reg,
        })
    }

    /// A link on the queue, once the one handed out before was dropped.
    pub(crate) fn accept(&mut self, ep: &Endpoint, deadline: Option<Instant>) -> Result<Link> {
        let mut backoff = crate::deadline::Backoff::new(std::time::Duration::from_millis(5));
        while self.active.strong_count() > 0 {
            let left = match deadline {
                Some(d) => backoff.sleep_until(d),
                None => backoff.sleep_until(crate::deadline::far_after(std::time::Duration::MAX)),
            };
            if !left {
                return Err(Error::new(ErrorKind::TimedOut, "accept").at(ep));
            }
        }
        let queue = Arc::new(Queue {
            fd: sys::fd::dup_cloexec(self.queue.fd()).map_err(|e| Error::io("accept", e))?,
            msg_size: self.queue.msg_size,
        });
        self.active = Arc::downgrade(&queue);
        let (rx, tx) = halves(&queue);
        Ok(Link::from_mq(ep, rx, tx))
    }
}

/// The value of a creation limit (`option`, or the system's default from
/// `default`), refused if over the system's `max`, naming the file under
/// `/proc/sys/fs/mqueue/` and its value (raising it needs
/// `CAP_SYS_RESOURCE`).
fn within_limit(
    ep: &Endpoint,
    option: &str,
    asked: Option<usize>,
    max: &str,
    default: &str,
) -> Result<usize> {
    let read = |file: &str| sys::mq::limit(file).map_err(|e| Error::io("bind", e).at(ep));
    let Some(n) = asked else {
        return read(default);
    };
    let limit = read(max)?;
    if n > limit {
        return Err(Error::new(
            ErrorKind::InvalidOption {
                scheme: "mq",
                option: option.into(),
                reason: format!(
                    "{n} is over the system's limit: /proc/sys/fs/mqueue/{max} is {limit} \
                     (raising it needs CAP_SYS_RESOURCE)"
                ),
            },
            "bind",
        )
        .at(ep));
    }
    Ok(n)
}
