//! The binding side of `mq:` and `sysvmq:`: creates the queue (within
//! the system's limits), owns its name, and hands out one link at a time.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use super::{Queue, halves, name, registry_path, sysv_key, sysv_registry_path};
use crate::endpoint::{Endpoint, Scheme};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::{ObjectKind, Registration, Registry};
use crate::sys;
use crate::transport::Link;

/// The binding side: the queue's creator and owner.
#[derive(Debug)]
pub(crate) struct MqListener {
    queue: Queue,
    /// An eventfd holding 1 while no link is out: the token an accept
    /// takes and the link's queue handle puts back when dropped. What a
    /// blocking accept, tokio and a [`crate::Poller`] wait on.
    free: OwnedFd,
    _registration: Registration,
}

impl MqListener {
    pub(crate) fn bind(ep: &Endpoint) -> Result<MqListener> {
        if ep.scheme() == Scheme::SysvMq {
            return MqListener::bind_sysv(ep);
        }
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
            queue: Queue::posix(ep, fd)?,
            free: free(ep)?,
            _registration: reg,
        })
    }

    /// Creates the System V queue (permissions from `?mode=`), or uses
    /// one another program made for us.
    fn bind_sysv(ep: &Endpoint) -> Result<MqListener> {
        let o = ep.options();
        let key = sysv_key(ep)?;
        let path = sysv_registry_path(key);
        let mut reg =
            Registry::open()?.claim(ObjectKind::SysvMq, ep.url(), vec![path.clone()], o.persist)?;
        let id = match sys::sysvmq::get(key, Some(o.mode)) {
            Ok(id) => {
                reg.created_as(&path, key as u32 as u64, id.0 as u64);
                id
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                sys::sysvmq::get(key, None).map_err(|e| Error::io("bind", e).at(ep))?
            }
            Err(e) => return Err(Error::io("bind", e).at(ep)),
        };
        Ok(MqListener {
            queue: Queue::sysv(ep, id)?,
            free: free(ep)?,
            _registration: reg,
        })
    }

    /// A link on the queue, once the one handed out before was dropped
    /// (its queue handle raises `free` then).
    pub(crate) fn accept(&mut self, ep: &Endpoint, deadline: Option<Instant>) -> Result<Link> {
        loop {
            if let Some(link) = self.try_accept(ep)? {
                return Ok(link);
            }
            let raised = sys::fd::wait(self.free.as_fd(), sys::fd::Interest::Read, deadline)
                .map_err(|e| Error::io("accept", e).at(ep))?;
            if !raised {
                return Err(Error::new(ErrorKind::TimedOut, "accept").at(ep));
            }
        }
    }

    /// The eventfd holding 1 while no link is out.
    pub(crate) fn free_fd(&self) -> BorrowedFd<'_> {
        self.free.as_fd()
    }

    /// Whether no link is out (an accept would not wait), without
    /// changing that.
    pub(crate) fn is_free(&self) -> bool {
        sys::fd::wait(
            self.free.as_fd(),
            sys::fd::Interest::Read,
            Some(Instant::now()),
        )
        .unwrap_or(true)
    }

    /// A link on the queue, or `None` (at once) while the one handed out
    /// before lives. The eventfd is the token: taken here, put back by
    /// the link's queue handle when it is dropped (whichever thread drops
    /// it, whenever).
    pub(crate) fn try_accept(&mut self, ep: &Endpoint) -> Result<Option<Link>> {
        match sys::eventfd::take(self.free.as_fd()) {
            Ok(n) if n > 0 => {}
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(Error::io("accept", e).at(ep)),
        }
        let queue = sys::fd::dup_cloexec(self.free.as_fd())
            .map_err(|e| Error::io("accept", e).at(ep))
            .and_then(|released| self.queue.again(ep, released));
        let queue = match queue {
            Ok(queue) => queue,
            Err(e) => {
                // The token back: no link went out.
                let _ = sys::eventfd::add(self.free.as_fd(), 1);
                return Err(e);
            }
        };
        let (rx, tx) = halves(&queue);
        Ok(Some(Link::from_mq(ep, rx, tx)))
    }
}

/// The eventfd of a new listener: holding the token, since no link is out
/// yet.
fn free(ep: &Endpoint) -> Result<OwnedFd> {
    sys::eventfd::create(1, false).map_err(|e| Error::io("bind", e).at(ep))
}

/// The System V queues this user owns (any program's), as `ipcs -q`
/// shows them, for `ipcx ls`: `sysvmq:0xKEY` and what they hold.
pub fn sysv_queues() -> Vec<(String, String)> {
    sys::sysvmq::list(sys::process::euid())
        .unwrap_or_default()
        .into_iter()
        .map(|q| {
            let last = match q.last_sender {
                0 => "nobody sent yet".to_string(),
                pid => format!("last sent by {pid}"),
            };
            (
                format!("sysvmq:{:#x}", q.key),
                format!("{} messages ({} bytes), {last}", q.depth, q.bytes),
            )
        })
        .collect()
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
