//! OS-native semaphores other languages open by name: POSIX named
//! semaphores (`sem_open`, in `/dev/shm/sem.NAME`) and System V semaphore
//! sets (`semget`, by numeric key).

use std::ffi::CString;
use std::io;
use std::ptr::NonNull;
use std::time::{Duration, SystemTime};

fn cname(name: &str) -> io::Result<CString> {
    CString::new(format!("/{name}"))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name holds a NUL byte"))
}

fn realtime_deadline(timeout: Duration) -> libc::timespec {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(timeout);
    libc::timespec {
        tv_sec: super::secs(d),
        tv_nsec: d.subsec_nanos() as _,
    }
}

/// An open POSIX named semaphore. See `sem_overview(7)`.
#[derive(Debug)]
pub struct PosixSem(NonNull<libc::sem_t>);

// SAFETY: a named semaphore is made to be used by many processes at once;
// every operation on it is thread-safe (POSIX).
unsafe impl Send for PosixSem {}
// SAFETY: as above.
unsafe impl Sync for PosixSem {}

impl PosixSem {
    /// Creates `/NAME` with `value` and `mode`, failing if it exists.
    /// See `sem_open(3)` with `O_CREAT | O_EXCL`.
    pub fn create(name: &str, mode: u32, value: u32) -> io::Result<PosixSem> {
        let n = cname(name)?;
        // SAFETY: `n` is a valid C string; the variadic arguments are the
        // mode and value `sem_open` reads when `O_CREAT` is given.
        let p = unsafe {
            libc::sem_open(
                n.as_ptr(),
                libc::O_CREAT | libc::O_EXCL,
                mode as libc::c_uint,
                value as libc::c_uint,
            )
        };
        PosixSem::from_ptr(p)
    }

    /// Opens the existing `/NAME`. See `sem_open(3)`.
    pub fn open(name: &str) -> io::Result<PosixSem> {
        let n = cname(name)?;
        // SAFETY: `n` is a valid C string; without `O_CREAT` no variadic
        // arguments are read.
        let p = unsafe { libc::sem_open(n.as_ptr(), 0) };
        PosixSem::from_ptr(p)
    }

    fn from_ptr(p: *mut libc::sem_t) -> io::Result<PosixSem> {
        if p == libc::SEM_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p)
            .map(PosixSem)
            .ok_or_else(io::Error::last_os_error)
    }

    /// Removes the name; processes that have it open keep using it.
    /// Absent is not an error. See `sem_unlink(3)`.
    pub fn unlink(name: &str) -> io::Result<()> {
        let n = cname(name)?;
        // SAFETY: `n` is a valid C string.
        if unsafe { libc::sem_unlink(n.as_ptr()) } == 0 {
            return Ok(());
        }
        match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::NotFound => Ok(()),
            e => Err(e),
        }
    }

    /// Adds one. See `sem_post(3)`.
    pub fn post(&self) -> io::Result<()> {
        // SAFETY: the semaphore is open until `self` drops.
        if unsafe { libc::sem_post(self.0.as_ptr()) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Takes one, waiting at most `timeout` (forever with `None`); `false`
    /// when the time ran out. Retries after signals. See `sem_wait(3)`,
    /// `sem_timedwait(3)`, `sem_trywait(3)` (a zero timeout).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<bool> {
        let deadline = timeout.map(realtime_deadline);
        loop {
            // SAFETY: the semaphore is open until `self` drops; `deadline`
            // lives across the call.
            let rc = unsafe {
                match (timeout, &deadline) {
                    (Some(Duration::ZERO), _) => libc::sem_trywait(self.0.as_ptr()),
                    (_, Some(d)) => libc::sem_timedwait(self.0.as_ptr(), d),
                    (_, None) => libc::sem_wait(self.0.as_ptr()),
                }
            };
            if rc == 0 {
                return Ok(true);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ETIMEDOUT) | Some(libc::EAGAIN) => return Ok(false),
                _ => return Err(e),
            }
        }
    }

    /// The current value. See `sem_getvalue(3)`.
    pub fn value(&self) -> io::Result<u32> {
        let mut v: libc::c_int = 0;
        // SAFETY: the semaphore is open; `v` is a valid out-pointer.
        if unsafe { libc::sem_getvalue(self.0.as_ptr(), &mut v) } == 0 {
            Ok(v.max(0) as u32)
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Drop for PosixSem {
    fn drop(&mut self) {
        // SAFETY: opened by `sem_open`, closed once, here.
        unsafe { libc::sem_close(self.0.as_ptr()) };
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A System V semaphore set's identifier. See `svipc(7)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SysVSemId(pub i32);

/// Creates a set of `count` semaphores under `key`, each set to `value`,
/// failing if the key is taken. See `semget(2)`, `semctl(2)` `SETVAL`.
pub fn sysv_create(key: i32, count: u16, mode: u32, value: u16) -> io::Result<SysVSemId> {
    // SAFETY: plain system calls on integers.
    let id = cvt(unsafe {
        libc::semget(
            key,
            libc::c_int::from(count),
            libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as libc::c_int,
        )
    })?;
    let set = SysVSemId(id);
    for n in 0..count {
        if let Err(e) = sysv_set(set, n, value) {
            let _ = sysv_remove(set);
            return Err(e);
        }
    }
    Ok(set)
}

/// Opens the set under `key`. See `semget(2)`.
pub fn sysv_open(key: i32) -> io::Result<SysVSemId> {
    // SAFETY: a plain system call on integers.
    cvt(unsafe { libc::semget(key, 0, 0) }).map(SysVSemId)
}

/// Sets semaphore `n` of `set` to `value`. See `semctl(2)` `SETVAL`.
pub fn sysv_set(set: SysVSemId, n: u16, value: u16) -> io::Result<()> {
    // SAFETY: SETVAL reads its fourth argument as an int (the `val` member
    // of `union semun`, passed by value).
    cvt(unsafe {
        libc::semctl(
            set.0,
            libc::c_int::from(n),
            libc::SETVAL,
            libc::c_int::from(value),
        )
    })
    .map(drop)
}

/// The value of semaphore `n`. See `semctl(2)` `GETVAL`.
pub fn sysv_get(set: SysVSemId, n: u16) -> io::Result<u32> {
    // SAFETY: GETVAL reads no fourth argument.
    cvt(unsafe { libc::semctl(set.0, libc::c_int::from(n), libc::GETVAL) }).map(|v| v as u32)
}

/// The pid of the process that last operated on semaphore `n`.
/// See `semctl(2)` `GETPID`.
pub fn sysv_last_pid(set: SysVSemId, n: u16) -> io::Result<u32> {
    // SAFETY: GETPID reads no fourth argument.
    cvt(unsafe { libc::semctl(set.0, libc::c_int::from(n), libc::GETPID) }).map(|v| v as u32)
}

/// Removes the set; waiters fail with `EIDRM`. See `semctl(2)` `IPC_RMID`.
pub fn sysv_remove(set: SysVSemId) -> io::Result<()> {
    // SAFETY: IPC_RMID reads no fourth argument.
    cvt(unsafe { libc::semctl(set.0, 0, libc::IPC_RMID) }).map(drop)
}

/// Adds `delta` to semaphore `n` (negative: waits until it can take); with
/// `undo`, `SEM_UNDO`, so the kernel reverts it when this process exits. Waits at most
/// `timeout` (forever with `None`, not at all with zero); `false` when the
/// time ran out. Retries after signals. See `semop(2)`, `semtimedop(2)`.
pub fn sysv_op(
    set: SysVSemId,
    n: u16,
    delta: i16,
    timeout: Option<Duration>,
    undo: bool,
) -> io::Result<bool> {
    let mut flags = if undo {
        libc::SEM_UNDO as libc::c_short
    } else {
        0
    };
    if timeout == Some(Duration::ZERO) {
        flags |= libc::IPC_NOWAIT as libc::c_short;
    }
    let mut op = libc::sembuf {
        sem_num: n,
        sem_op: delta,
        sem_flg: flags,
    };
    let deadline = timeout.and_then(crate::deadline::after);
    loop {
        let ts = deadline.map(|d| {
            let left = d.saturating_duration_since(std::time::Instant::now());
            libc::timespec {
                tv_sec: super::secs(left),
                tv_nsec: left.subsec_nanos() as _,
            }
        });
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `op` and `ts` live across the call; one operation.
        let rc = unsafe { libc::syscall(libc::SYS_semtimedop, set.0, &mut op, 1usize, tsp) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// The System V semaphore sets whose owner is `uid`, as (key, id, count),
/// from `/proc/sysvipc/sem`. See `proc(5)`.
pub fn sysv_list(uid: u32) -> io::Result<Vec<(i32, SysVSemId, u16)>> {
    let text = std::fs::read_to_string("/proc/sysvipc/sem")?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (key, id, nsems, owner) = (
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
                f.get(4)?.parse::<u32>().ok()?,
            );
            (owner == uid).then_some((key, SysVSemId(id), nsems))
        })
        .collect())
}
