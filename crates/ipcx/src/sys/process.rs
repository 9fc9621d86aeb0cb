//! Processes: descriptors handed to a child, liveness, CPU pinning.

use std::cell::Cell;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Lets `fds` (created close-on-exec) survive into the child `cmd` starts,
/// by clearing `FD_CLOEXEC` between fork and exec, in the child only.
/// Other children spawned meanwhile do not inherit them. See `fcntl(2)`.
pub fn inherit_fds(cmd: &mut Command, fds: [RawFd; 2]) {
    let clear = move || -> io::Result<()> {
        for fd in fds {
            // SAFETY: the parent keeps these descriptors open until the
            // child has been spawned, so they are valid in the forked child.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        }
        Ok(())
    };
    // SAFETY: the closure only makes `fcntl` system calls, which are
    // async-signal-safe; it allocates nothing and takes no locks.
    unsafe { cmd.pre_exec(clear) };
}

static ADOPTED: AtomicBool = AtomicBool::new(false);

/// Takes ownership of two descriptors a parent passed to this process
/// (see [`inherit_fds`]). Works once per process, so two owners can never
/// close the same number; checks that both are open.
///
/// # Safety
/// The descriptors must have been handed to this process for this purpose
/// (by `ipcx::spawn` in its parent) and owned by nothing else in it: an
/// open descriptor owned by a `File` would be closed twice.
pub unsafe fn adopt_inherited(fds: [RawFd; 2]) -> io::Result<[OwnedFd; 2]> {
    for fd in fds {
        // SAFETY: borrowing only for the duration of the `fcntl` check.
        if !super::fd::is_open(unsafe { BorrowedFd::borrow_raw(fd) }) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("descriptor {fd} is not open in this process"),
            ));
        }
    }
    if fds[0] == fds[1] || ADOPTED.swap(true, Ordering::SeqCst) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the inherited pipe was already taken by this process",
        ));
    }
    use std::os::fd::FromRawFd;
    // SAFETY: both descriptors are open (checked above), owned by nothing
    // else (the caller's contract), and `ADOPTED` makes this the only place
    // that ever takes ownership of them.
    let owned = unsafe { [OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])] };
    for fd in &owned {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    }
    Ok(owned)
}

/// Start time of a process in clock ticks since boot (`/proc/PID/stat`,
/// field 22); with the pid, it names a process uniquely.
pub fn start_time(pid: u32) -> io::Result<u64> {
    stat(pid).map(|(_, start)| start)
}

/// State letter (field 3) and start time (field 22) from `/proc/PID/stat`.
fn stat(pid: u32) -> io::Result<(char, u64)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; fields after it follow `)`.
    let (_, after) = stat.rsplit_once(')').ok_or_else(bad)?;
    let mut fields = after.split_whitespace();
    let state = fields
        .next()
        .and_then(|f| f.chars().next())
        .ok_or_else(bad)?;
    let start = fields
        .nth(18)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    Ok((state, start))
}

/// The inode of this process's PID namespace (`/proc/self/ns/pid`), 0
/// when unknown: two processes see each other's pids only within one.
/// See `pid_namespaces(7)`.
pub fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    static NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *NS.get_or_init(|| std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino()))
}

/// This process's id.
pub fn pid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// This process's effective uid.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Pins the calling thread to one CPU. See `sched_setaffinity(2)`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    Ok(rustix::thread::sched_setaffinity(None, &set)?)
}

/// CPUs this process may run on.
pub fn cpus_allowed() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => vec![0],
    }
}

/// Whether the process `pid` that started at `start` (see [`start_time`])
/// still runs; a reused pid has another start time.
/// A zombie (exited, not yet reaped) counts as dead.
///
/// Only a definite answer counts as death: `/proc` saying the process is
/// gone, a zombie, or another process with the id. When `/proc` cannot be
/// read (out of descriptors, hidden), it counts as alive, since a survivor
/// that takes over a live holder's lock is worse than one that waits.
/// A `start` of 0 means unknown: only the id is checked. A process whose
/// main thread exited while other threads run is alive.
pub fn is_alive(pid: u32, start: u64) -> bool {
    liveness(pid, start, true)
}

fn liveness(id: u32, start: u64, whole_process: bool) -> bool {
    if id == 0 {
        return false;
    }
    match stat(id) {
        Ok((_, s)) if start != 0 && s != start => false,
        Ok(('Z' | 'X' | 'x', _)) => {
            // A leader that is a zombie while its other threads run.
            whole_process
                && std::fs::read_dir(format!("/proc/{id}/task")).is_ok_and(|d| d.count() > 1)
        }
        Ok(_) => true,
        Err(e) => !(e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)),
    }
}

static FORK_EPOCH: AtomicU64 = AtomicU64::new(0);

extern "C" fn forked() {
    FORK_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// A number that changes in a child after every `fork`, so that caches of
/// "who am I" (thread id, table slots) can tell they were inherited.
/// See `pthread_atfork(3)`.
pub fn fork_epoch() -> u64 {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // SAFETY: `forked` only does an atomic add, which is
        // async-signal-safe, as a handler run in a forked child must be.
        unsafe { libc::pthread_atfork(None, None, Some(forked)) };
    });
    FORK_EPOCH.load(Ordering::Relaxed)
}

/// The calling thread's id (`gettid(2)`), cached per thread: it is asked
/// for on every lock of a futex-based primitive.
/// A child of `fork` runs on a copy of the forking thread, with its
/// cache: [`fork_epoch`] tells.
pub fn tid() -> u32 {
    thread_local!(static TID: Cell<(u64, u32)> = const { Cell::new((u64::MAX, 0)) });
    let epoch = fork_epoch();
    TID.with(|t| match t.get() {
        (e, tid) if e == epoch => tid,
        _ => {
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            t.set((epoch, tid));
            tid
        }
    })
}

/// The calling thread's start time (see [`start_time`]), cached per thread
/// once read; 0 (unknown) while `/proc` cannot be read.
pub fn thread_start_time() -> u64 {
    thread_local!(static START: Cell<(u64, u64)> = const { Cell::new((u64::MAX, 0)) });
    let epoch = fork_epoch();
    START.with(|s| match s.get() {
        (e, start) if e == epoch && start != 0 => start,
        _ => {
            let start = start_time(tid()).unwrap_or(0);
            s.set((epoch, start));
            start
        }
    })
}

/// Whether thread `tid` still runs: `/proc/TID/stat` (reachable for every
/// thread, though only process leaders are listed) exists, is no zombie, and,
/// when `start` is given, started then (a reused id started later).
/// As with [`is_alive`], only a definite answer counts as death.
pub fn thread_alive(tid: u32, start: Option<u64>) -> bool {
    liveness(tid, start.unwrap_or(0), false)
}

/// The process (thread group) thread `tid` belongs to, from
/// `/proc/TID/status`; `None` once it is gone. See `proc(5)`.
pub fn thread_group(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A process (or thread) id and its start time packed in one word, so both
/// are read and written together: the start time (clock ticks since boot)
/// above bit 22, the id (below 2^22, `pid_max`'s ceiling) under it.
pub fn pack_identity(id: u32, start: u64) -> u64 {
    (start << 22) | u64::from(id & 0x3f_ffff)
}

/// The id and start time of a [`pack_identity`] word.
pub fn unpack_identity(v: u64) -> (u32, u64) {
    ((v & 0x3f_ffff) as u32, v >> 22)
}

/// This process's packed identity (two `/proc` and system-call reads:
/// callers on a hot path keep it).
pub fn identity() -> u64 {
    let me = pid();
    pack_identity(me, start_time(me).unwrap_or(0))
}

/// Whether the process a [`pack_identity`] word names still runs.
pub fn identity_alive(who: u64) -> bool {
    let (pid, start) = unpack_identity(who);
    is_alive(pid, start)
}
