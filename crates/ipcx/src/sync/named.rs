//! The OS's own named semaphores, for sharing with programs in other
//! languages: [`NamedSemaphore`] (POSIX, `sem_open`) and
//! [`SysVSemaphoreSet`] (System V, `semget`).

use std::path::PathBuf;
use std::time::Duration;

use super::semaphore::{Held, Permit};
use crate::error::{Error, ErrorKind, Result};
use crate::registry::{ObjectKind, Registration, Registry};
use crate::sys::sem::{self, PosixSem, SysVSemId};

/// The name without the leading slash C and Python write (`/jobs` and
/// `jobs` are one semaphore); refused if empty, too long, or holding
/// another slash.
fn check_name(name: &str) -> Result<&str> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.contains('/') || bare.len() > 250 {
        return Err(Error::new(
            ErrorKind::InvalidEndpoint(format!(
                "a named semaphore is 1 to 250 bytes, with no '/' but a leading one, not {name:?}"
            )),
            "semaphore",
        ));
    }
    Ok(bare)
}

/// A POSIX named semaphore (`sem_open("/NAME")`, the file
/// `/dev/shm/sem.NAME`), so a C program's `sem_open("/NAME", 0)` or
/// Python's `posix_ipc.Semaphore("/NAME")` opens the same one.
///
/// It has no owner: permits a process took are **not** returned when it
/// dies (use a tracked [`super::Semaphore`], or a [`SysVSemaphoreSet`],
/// whose `SEM_UNDO` does that).
///
/// ```no_run
/// use ipcx::sync::NamedSemaphore;
/// # fn main() -> ipcx::Result<()> {
/// let sem = NamedSemaphore::create("print-jobs", 0)?;
/// sem.release()?; // a C program blocked in sem_wait() wakes
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct NamedSemaphore {
    sem: PosixSem,
    name: String,
    _registration: Option<Registration>,
}

impl NamedSemaphore {
    /// Creates `NAME` (or `/NAME`, as C writes it; mode 0600) with
    /// `value`; it is removed when this handle drops. A name left by a dead ipcx process is reclaimed.
    pub fn create(name: &str, value: u32) -> Result<NamedSemaphore> {
        NamedSemaphore::create_with(name, value, false)
    }

    /// Creates `NAME` with `value` to outlive this process (until
    /// [`NamedSemaphore::unlink`], `ipcx rm` or `ipcx clean`).
    pub fn create_persistent(name: &str, value: u32) -> Result<NamedSemaphore> {
        NamedSemaphore::create_with(name, value, true)
    }

    fn create_with(name: &str, value: u32, persist: bool) -> Result<NamedSemaphore> {
        let name = check_name(name)?;
        let url = format!("sem:{name}");
        let path = PathBuf::from(crate::sys::shm::SHM_DIR).join(format!("sem.{name}"));
        let mut reg =
            Registry::open()?.claim(ObjectKind::Sem, &url, vec![path.clone()], persist)?;
        let sem = PosixSem::create(name, 0o600, value).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::new(
                    ErrorKind::occupied(format!(
                        "{} exists and ipcx has no record of it; if it is stale, remove it with `rm {}`",
                        path.display(),
                        path.display()
                    )),
                    "create",
                )
            } else {
                Error::io("create", e).at(&url)
            }
        })?;
        reg.created(&path);
        Ok(NamedSemaphore {
            sem,
            name: name.to_string(),
            _registration: Some(reg),
        })
    }

    /// Opens the existing `NAME`.
    pub fn open(name: &str) -> Result<NamedSemaphore> {
        let name = check_name(name)?;
        let sem =
            PosixSem::open(name).map_err(|e| Error::io("open", e).at(format!("sem:{name}")))?;
        Ok(NamedSemaphore {
            sem,
            name: name.to_string(),
            _registration: None,
        })
    }

    /// Removes `NAME`; processes that have it open keep using it.
    pub fn unlink(name: &str) -> Result<()> {
        let name = check_name(name)?;
        PosixSem::unlink(name).map_err(|e| Error::io("unlink", e).at(format!("sem:{name}")))
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds one, waking a waiter.
    pub fn release(&self) -> Result<()> {
        self.sem.post().map_err(|e| Error::io("post", e))
    }

    /// Takes one, waiting as long as it takes.
    pub fn acquire(&self) -> Result<()> {
        self.sem
            .wait(None)
            .map(drop)
            .map_err(|e| Error::io("wait", e))
    }

    /// Takes one if the value is above 0.
    pub fn try_acquire(&self) -> Result<bool> {
        self.sem
            .wait(Some(Duration::ZERO))
            .map_err(|e| Error::io("wait", e))
    }

    /// Takes one, waiting at most `timeout`; `false` if none came.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.sem
            .wait(Some(timeout))
            .map_err(|e| Error::io("wait", e))
    }

    /// Takes one as a guard that returns it when dropped.
    pub fn permit(&self) -> Result<Permit<'_>> {
        self.acquire()?;
        Ok(Permit::of(Held::Named(self)))
    }

    /// [`NamedSemaphore::permit`] if the value is above 0.
    pub fn try_permit(&self) -> Result<Option<Permit<'_>>> {
        Ok(self.try_acquire()?.then(|| Permit::of(Held::Named(self))))
    }

    /// [`NamedSemaphore::permit`], waiting at most `timeout`.
    pub fn permit_timeout(&self, timeout: Duration) -> Result<Option<Permit<'_>>> {
        Ok(self
            .acquire_timeout(timeout)?
            .then(|| Permit::of(Held::Named(self))))
    }

    /// The value now.
    pub fn value(&self) -> Result<u32> {
        self.sem.value().map_err(|e| Error::io("get", e))
    }
}

/// A System V set as [`SysVSemaphoreSet::list`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysVSetState {
    /// The set's key.
    pub key: i32,
    /// Each semaphore's value.
    pub values: Vec<u32>,
    /// The pid that last operated on each semaphore (0: none yet).
    pub last_pids: Vec<u32>,
    /// Whether each of those processes still runs (`false` for 0).
    pub last_alive: Vec<bool>,
}

/// A System V semaphore set (`semget(KEY)`): `count` semaphores in one
/// kernel object, opened by numeric key from any language (`ipcs -s`
/// lists them). Operations are made with `SEM_UNDO` (unless
/// [`SysVSemaphoreSet::set_undo`] turns it off), so what a process did is
/// undone by the kernel when it dies: a dead holder's permits come back.
///
/// The kernel keeps `SEM_UNDO` adjustments per process and semaphore, and
/// applies them on *every* exit, normal ones too: a process that only
/// waits (a consumer) gives its takes back when it exits, and one whose
/// posts outrun its waits by more than 32767 gets `ERANGE`. That suits a
/// semaphore used as a lock (take, then give back); for producer and
/// consumer counts, turn it off with [`SysVSemaphoreSet::set_undo`].
///
/// A set lives until [`SysVSemaphoreSet::remove`] (or `ipcrm -s`); it is
/// not in ipcx's registry, which records objects by path, but `ipcx ls`
/// lists the user's sets ([`SysVSemaphoreSet::list`]).
///
/// ```no_run
/// use ipcx::sync::SysVSemaphoreSet;
/// # fn main() -> ipcx::Result<()> {
/// let key = SysVSemaphoreSet::key_for("print-jobs");
/// let set = SysVSemaphoreSet::create(key, 1, 1)?;
/// set.acquire(0)?; // taken; returned by the kernel if we die
/// set.release(0)?;
/// set.remove()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SysVSemaphoreSet {
    id: SysVSemId,
    key: i32,
    undo: bool,
}

impl SysVSemaphoreSet {
    /// The key ipcx uses for a set named `name`: CRC-32C of the name,
    /// top bit cleared (never `IPC_PRIVATE`).
    pub fn key_for(name: &str) -> i32 {
        ((crc32c::crc32c(name.as_bytes()) & 0x7fff_ffff) | 1) as i32
    }

    /// Creates a set of `count` semaphores under `key`, each `value`
    /// (mode 0600), failing if the key is taken.
    pub fn create(key: i32, count: u16, value: u16) -> Result<SysVSemaphoreSet> {
        let id = sem::sysv_create(key, count, 0o600, value).map_err(|e| {
            let at = format!("sysv semaphore key {key:#x}");
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                let why = format!(
                    "a SysV semaphore set with key {key:#x} exists; open it, remove it \
                     (`ipcx sem rm {key:#x} --sysv`), or pick another key"
                );
                return Error::new(ErrorKind::occupied(why), "create").at(at);
            }
            Error::io("create", e).at(at)
        })?;
        Ok(SysVSemaphoreSet {
            id,
            key,
            undo: true,
        })
    }

    /// Opens the set under `key`.
    pub fn open(key: i32) -> Result<SysVSemaphoreSet> {
        let id = sem::sysv_open(key)
            .map_err(|e| Error::io("open", e).at(format!("sysv semaphore key {key:#x}")))?;
        Ok(SysVSemaphoreSet {
            id,
            key,
            undo: true,
        })
    }

    /// The sets this user owns (any program's), for `ipcx ls`: key, each
    /// semaphore's value, and the pid that last operated on each (0:
    /// none yet).
    pub fn list() -> Result<Vec<SysVSetState>> {
        let sets = sem::sysv_list(crate::sys::process::euid()).map_err(|e| Error::io("list", e))?;
        Ok(sets
            .into_iter()
            .map(|(key, id, count)| {
                let values = (0..count)
                    .filter_map(|n| sem::sysv_get(id, n).ok())
                    .collect();
                let last: Vec<u32> = (0..count)
                    .filter_map(|n| sem::sysv_last_pid(id, n).ok())
                    .collect();
                let last_alive = last
                    .iter()
                    .map(|&pid| pid != 0 && crate::sys::process::is_alive(pid, 0))
                    .collect();
                SysVSetState {
                    key,
                    values,
                    last_pids: last,
                    last_alive,
                }
            })
            .collect())
    }

    /// Whether operations are made with `SEM_UNDO` (the default), so the
    /// kernel reverts them when this process exits. A command-line tool
    /// whose `wait` must outlive it turns it off.
    pub fn set_undo(&mut self, undo: bool) {
        self.undo = undo;
    }

    /// The key.
    pub fn key(&self) -> i32 {
        self.key
    }

    fn op(
        &self,
        n: u16,
        delta: i16,
        timeout: Option<Duration>,
        what: &'static str,
    ) -> Result<bool> {
        sem::sysv_op(self.id, n, delta, timeout, self.undo)
            .map_err(|e| Error::io(what, e).at(format!("sysv semaphore key {:#x}", self.key)))
    }

    /// Adds one to semaphore `n`.
    pub fn release(&self, n: u16) -> Result<()> {
        self.op(n, 1, None, "post").map(drop)
    }

    /// Takes one from semaphore `n`, waiting as long as it takes.
    pub fn acquire(&self, n: u16) -> Result<()> {
        self.op(n, -1, None, "wait").map(drop)
    }

    /// Takes one from semaphore `n` if it is above 0.
    pub fn try_acquire(&self, n: u16) -> Result<bool> {
        self.op(n, -1, Some(Duration::ZERO), "wait")
    }

    /// Takes one from semaphore `n`, waiting at most `timeout`.
    pub fn acquire_timeout(&self, n: u16, timeout: Duration) -> Result<bool> {
        self.op(n, -1, Some(timeout), "wait")
    }

    /// Takes one from semaphore `n` as a guard that returns it when
    /// dropped.
    pub fn permit(&self, n: u16) -> Result<Permit<'_>> {
        self.acquire(n)?;
        Ok(Permit::of(Held::SysV(self, n)))
    }

    /// [`SysVSemaphoreSet::permit`] if semaphore `n` is above 0.
    pub fn try_permit(&self, n: u16) -> Result<Option<Permit<'_>>> {
        Ok(self
            .try_acquire(n)?
            .then(|| Permit::of(Held::SysV(self, n))))
    }

    /// [`SysVSemaphoreSet::permit`], waiting at most `timeout`.
    pub fn permit_timeout(&self, n: u16, timeout: Duration) -> Result<Option<Permit<'_>>> {
        Ok(self
            .acquire_timeout(n, timeout)?
            .then(|| Permit::of(Held::SysV(self, n))))
    }

    /// The value of semaphore `n`.
    pub fn value(&self, n: u16) -> Result<u32> {
        sem::sysv_get(self.id, n).map_err(|e| Error::io("get", e))
    }

    /// Sets semaphore `n` to `value`.
    pub fn set_value(&self, n: u16, value: u16) -> Result<()> {
        sem::sysv_set(self.id, n, value).map_err(|e| Error::io("set", e))
    }

    /// Removes the set; processes waiting on it get an error.
    pub fn remove(self) -> Result<()> {
        sem::sysv_remove(self.id).map_err(|e| Error::io("remove", e))
    }
}
