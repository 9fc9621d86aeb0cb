//! Message-queue cells: a POSIX or System V queue each way, through ipcx
//! or bare.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::Result;
use ipcx::{Link, Listener};

use super::{Conn, Mech};

/// The two queue endpoints of cell `n`: driver to peer, and back.
pub(super) fn queue_urls(mech: Mech, n: usize) -> (String, String) {
    let pid = std::process::id();
    match mech {
        Mech::Mq => (
            format!("mq:/ipcx-bench-{pid}-{n}-down"),
            format!("mq:/ipcx-bench-{pid}-{n}-up"),
        ),
        _ => {
            let key = 0x6900_0000u32 | (pid & 0xfff) << 12 | (n as u32 & 0x7ff) << 1;
            (format!("sysvmq:{key:#x}"), format!("sysvmq:{:#x}", key | 1))
        }
    }
}

/// A queue each way, through ipcx.
pub(super) struct QueuePair {
    pub(super) tx: Link,
    pub(super) rx: Link,
    pub(super) _listeners: Option<(Box<Listener>, Box<Listener>)>,
}

impl Conn for QueuePair {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        self.tx.send(msg).map_err(io::Error::other)
    }
    fn recv(&mut self, buf: &mut Vec<u8>, _size: usize) -> io::Result<()> {
        self.rx.recv_into(buf).map_err(io::Error::other)
    }
}

/// A queue each way, bare: blocking `mq_send`/`mq_receive` or
/// `msgsnd`/`msgrcv`, nothing else. The driver made them and removes them.
pub(super) struct RawQueues {
    kind: RawKind,
    scratch: Vec<u8>,
    /// The queues to remove when done (the driver's side).
    owned: Vec<String>,
}

enum RawKind {
    Posix {
        tx: OwnedFd,
        rx: OwnedFd,
        cap: usize,
    },
    SysV {
        tx: ipcx::bench_support::queues::QueueId,
        rx: ipcx::bench_support::queues::QueueId,
    },
}

/// The SysV key of a `sysvmq:0xKEY` URL, or the name of an `mq:/name` one.
fn queue_name(url: &str) -> &str {
    url.trim_start_matches("mq:/").trim_start_matches("sysvmq:")
}

fn sysv_key(url: &str) -> Result<i32> {
    let hex = queue_name(url).trim_start_matches("0x");
    Ok(u32::from_str_radix(hex, 16)? as i32)
}

impl RawQueues {
    pub(super) fn create(mech: Mech, down: &str, up: &str, size: usize) -> Result<RawQueues> {
        use ipcx::bench_support::queues as q;
        let kind = match mech {
            Mech::Mq => {
                let make = |url| q::mq_open(queue_name(url), Some((0o600, 10, size)));
                RawKind::Posix {
                    tx: make(down)?,
                    rx: make(up)?,
                    cap: size,
                }
            }
            _ => RawKind::SysV {
                tx: q::sysv_get(sysv_key(down)?, Some(0o600))?,
                rx: q::sysv_get(sysv_key(up)?, Some(0o600))?,
            },
        };
        Ok(RawQueues {
            kind,
            scratch: Vec::new(),
            owned: vec![down.to_string(), up.to_string()],
        })
    }

    pub(super) fn open(mech: Mech, tx: &str, rx: &str) -> Result<RawQueues> {
        use ipcx::bench_support::queues as q;
        let kind = match mech {
            Mech::Mq => RawKind::Posix {
                tx: q::mq_open(queue_name(tx), None)?,
                rx: q::mq_open(queue_name(rx), None)?,
                cap: q::mq_max_message()?,
            },
            _ => RawKind::SysV {
                tx: q::sysv_get(sysv_key(tx)?, None)?,
                rx: q::sysv_get(sysv_key(rx)?, None)?,
            },
        };
        Ok(RawQueues {
            kind,
            scratch: Vec::new(),
            owned: Vec::new(),
        })
    }
}

impl Conn for RawQueues {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        use ipcx::bench_support::queues as q;
        match &self.kind {
            RawKind::Posix { tx, .. } => q::mq_send(tx.as_fd(), msg, 0),
            RawKind::SysV { tx, .. } => q::sysv_send(*tx, 1, msg, false, &mut self.scratch),
        }
    }
    fn recv(&mut self, buf: &mut Vec<u8>, size: usize) -> io::Result<()> {
        use ipcx::bench_support::queues as q;
        match &self.kind {
            RawKind::Posix { rx, cap, .. } => {
                buf.resize((*cap).max(size), 0);
                let (n, _) = q::mq_receive(rx.as_fd(), buf)?;
                buf.truncate(n);
            }
            RawKind::SysV { rx, .. } => {
                let (n, _) = q::sysv_receive(*rx, 0, size.max(1), false, buf)?;
                q::sysv_text(buf, n);
            }
        }
        Ok(())
    }
}

impl Drop for RawQueues {
    fn drop(&mut self) {
        use ipcx::bench_support::queues as q;
        for url in &self.owned {
            match &self.kind {
                RawKind::Posix { .. } => {
                    let _ = q::mq_unlink(queue_name(url));
                }
                RawKind::SysV { .. } => {
                    if let Ok(id) = sysv_key(url).and_then(|k| Ok(q::sysv_get(k, None)?)) {
                        let _ = q::sysv_remove(id);
                    }
                }
            }
        }
    }
}
