//! System V message queues (`msgget(2)`, `msgsnd(2)`, `msgrcv(2)`,
//! `msgctl(2)`). A queue has no descriptor: waits sleep in `msgrcv` /
//! `msgsnd` or, with a deadline, retry with `IPC_NOWAIT`.

use std::ffi::CString;
use std::io;
use std::path::Path;

/// A queue's id (`msqid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueId(pub i32);

/// The key `ftok(3)` makes of an existing path and a project number.
pub fn ftok(path: &Path, proj: u8) -> io::Result<i32> {
    let p = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path.
    let key = unsafe { libc::ftok(p.as_ptr(), libc::c_int::from(proj)) };
    if key == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(key)
}

/// The queue of `key`; with `create`, a new one with those permission
/// bits (failing if it exists).
pub fn get(key: i32, create: Option<u32>) -> io::Result<QueueId> {
    let flags = match create {
        Some(mode) => libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as libc::c_int,
        None => 0,
    };
    // SAFETY: plain integers.
    let id = unsafe { libc::msgget(key, flags) };
    if id < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(QueueId(id))
}

/// Bytes before the text in a message buffer (`long mtype`).
const TYPE_LEN: usize = std::mem::size_of::<libc::c_long>();

/// Sends `msg` with type `mtype` (> 0); `nowait`: `WouldBlock` instead of
/// sleeping while the queue is full. `buf` is scratch space.
pub fn send(
    id: QueueId,
    mtype: i64,
    msg: &[u8],
    nowait: bool,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    buf.clear();
    buf.extend_from_slice(&(mtype as libc::c_long).to_ne_bytes());
    buf.extend_from_slice(msg);
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    // SAFETY: `buf` holds a long type then `msg.len()` bytes, as msgsnd
    // reads them.
    if unsafe { libc::msgsnd(id.0, buf.as_ptr().cast(), msg.len(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes a message chosen by `msgtyp` (0: the first; > 0: the first of
/// that type; < 0: the first of the lowest type up to `-msgtyp`) of at
/// most `max` bytes; `nowait`: `WouldBlock` instead of sleeping while
/// there is none. Returns the text in `buf` and its type. A longer
/// message stays in the queue (`E2BIG`).
pub fn receive(
    id: QueueId,
    msgtyp: i64,
    max: usize,
    nowait: bool,
    buf: &mut Vec<u8>,
) -> io::Result<(usize, i64)> {
    buf.resize(TYPE_LEN + max, 0);
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    // SAFETY: `buf` has room for a long and `max` bytes.
    let n = unsafe {
        libc::msgrcv(
            id.0,
            buf.as_mut_ptr().cast(),
            max,
            msgtyp as libc::c_long,
            flags,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        // No message of the kind asked for: as empty.
        if e.raw_os_error() == Some(libc::ENOMSG) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        return Err(e);
    }
    let mut t = [0u8; TYPE_LEN];
    t.copy_from_slice(&buf[..TYPE_LEN]);
    // `long` is 64 bits here, 32 on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let mtype = libc::c_long::from_ne_bytes(t) as i64;
    Ok((n as usize, mtype))
}

/// Moves the text of the message `receive` left in `buf` to its start.
pub fn text(buf: &mut Vec<u8>, len: usize) {
    buf.drain(..TYPE_LEN);
    buf.truncate(len);
}

/// Removes the queue (`IPC_RMID`): waiters get `EIDRM`.
pub fn remove(id: QueueId) -> io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    if unsafe { libc::msgctl(id.0, libc::IPC_RMID, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One queue as `/proc/sysvipc/msg` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueInfo {
    pub key: i32,
    pub id: QueueId,
    /// Messages in it.
    pub depth: u64,
    /// Bytes in it.
    pub bytes: u64,
    /// The process that sent last (0: none yet).
    pub last_sender: u32,
}

/// The queues whose owner is `uid` (any program's), as `ipcs -q` shows.
pub fn list(uid: u32) -> io::Result<Vec<QueueInfo>> {
    let text = std::fs::read_to_string("/proc/sysvipc/msg")?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let owner = f.get(7)?.parse::<u32>().ok()?;
            (owner == uid).then_some(QueueInfo {
                key: f.first()?.parse().ok()?,
                id: QueueId(f.get(1)?.parse().ok()?),
                bytes: f.get(3)?.parse().ok()?,
                depth: f.get(4)?.parse().ok()?,
                last_sender: f.get(5)?.parse().ok()?,
            })
        })
        .collect())
}

/// The largest message the system allows (`/proc/sys/kernel/msgmax`).
pub fn max_message() -> io::Result<usize> {
    let t = std::fs::read_to_string("/proc/sys/kernel/msgmax")?;
    t.trim()
        .parse()
        .map_err(|_| io::Error::other("/proc/sys/kernel/msgmax is not a number"))
}

/// What `msgctl(IPC_STAT)` says of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Its key.
    pub key: i32,
    /// Messages in it now.
    pub depth: u64,
    /// Most bytes it holds (`msg_qbytes`): no message can be larger.
    pub max_bytes: u64,
}

/// The queue's key, depth and size (`msgctl(IPC_STAT)`).
pub fn stat(id: QueueId) -> io::Result<Stat> {
    // SAFETY: a zeroed msqid_ds is valid to be filled in.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT fills the buffer it is given.
    if unsafe { libc::msgctl(id.0, libc::IPC_STAT, &mut ds) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Stat {
        key: ds.msg_perm.__key,
        depth: ds.msg_qnum as u64,
        max_bytes: ds.msg_qbytes as u64,
    })
}
