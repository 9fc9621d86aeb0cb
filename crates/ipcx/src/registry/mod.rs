//! The record of every named OS object ipcx created, with its owner's liveness.
//!
//! One directory per user (`$XDG_RUNTIME_DIR/ipcx`, else `/tmp/ipcx-$UID`,
//! mode 0700) holds a small record per object (lines of `key value`, values
//! percent-escaped, so any path round-trips). The owner keeps an
//! exclusive `flock` on its record for as long as it lives; the kernel drops
//! the lock the instant the process dies, so liveness needs no timeout and no
//! pid guessing. Claiming an address takes that lock first, which makes
//! "is it stale?" and "now it is mine" one atomic step.
//!
//! ```no_run
//! let reg = ipcx::registry::Registry::open()?;
//! for entry in reg.list()? {
//!     println!("{} pid {} alive={}", entry.record.url, entry.record.owner_pid, entry.alive);
//! }
//! # Ok::<(), ipcx::Error>(())
//! ```

mod record;

pub use record::{Created, Record};
use record::{read_record, write_record};

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// What kind of object a record names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A Unix socket file.
    Socket,
    /// A named pipe (and, for duplex links, its `.reply` twin).
    Fifo,
    /// A POSIX shared-memory object (in `/dev/shm`).
    Shm,
    /// A POSIX named semaphore (`/dev/shm/sem.NAME`).
    Sem,
    /// A POSIX message queue, recorded as `/dev/mqueue/NAME` (where it
    /// would show if that file system were mounted; nothing needs it).
    Mq,
    /// A System V message queue, recorded as `/proc/sysvipc/msg/0xKEY`
    /// with its key and id as identity.
    SysvMq,
}

impl ObjectKind {
    /// The name shown by `ipcx ls`.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Socket => "socket",
            ObjectKind::Fifo => "fifo",
            ObjectKind::Shm => "shm",
            ObjectKind::Sem => "sem",
            ObjectKind::Mq => "mq",
            ObjectKind::SysvMq => "sysvmq",
        }
    }
}

impl Record {
    /// Removes the objects this record's owner created and that are still
    /// the same objects.
    fn remove_created(&self) {
        for c in &self.created {
            if self.kind == ObjectKind::SysvMq {
                // The recorded id, if it still has the recorded key: never
                // a lookup by key (key 0 would make a new queue).
                let id = sys::sysvmq::QueueId(c.ino as i32);
                if sys::sysvmq::stat(id).is_ok_and(|s| s.key as u32 as u64 == c.dev) {
                    let _ = sys::sysvmq::remove(id);
                }
                continue;
            }
            if identity(self.kind, &c.path) == Some((c.dev, c.ino)) {
                remove_object(self.kind, &c.path);
            }
            if self.kind == ObjectKind::Shm {
                remove_doorbells(&c.path);
            }
        }
    }
}

/// Where a record's state line is kept (next to the record).
fn state_path(record_file: &Path) -> PathBuf {
    record_file.with_extension("state")
}

/// A record and whether its owner still lives.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The record.
    pub record: Record,
    /// True while the owner holds the record's lock.
    pub alive: bool,
    /// The record's own file in the registry directory.
    pub file: PathBuf,
}

impl Entry {
    /// What the owner last said the object is doing (one line, for
    /// `ipcx ls`: a publisher's subscribers, a server's calls in flight),
    /// while the owner lives.
    pub fn state(&self) -> Option<String> {
        if !self.alive {
            return None;
        }
        let text = std::fs::read_to_string(state_path(&self.file)).ok()?;
        Some(
            text.lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(400)
                .collect(),
        )
    }
}

/// The per-user registry directory.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// Opens (creating) the registry of the current user. `IPCX_REGISTRY`
    /// overrides the location (tests use it to stay apart).
    pub fn open() -> Result<Registry> {
        let dir = match std::env::var_os("IPCX_REGISTRY") {
            Some(d) => PathBuf::from(d),
            None => match std::env::var_os("XDG_RUNTIME_DIR") {
                Some(d) if !d.is_empty() => PathBuf::from(d).join("ipcx"),
                _ => PathBuf::from(format!("/tmp/ipcx-{}", sys::process::euid())),
            },
        };
        Registry::at(dir)
    }

    /// Opens (creating) a registry in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Result<Registry> {
        let dir = dir.into();
        sys::fs::private_dir(&dir).map_err(|e| Error::io("open registry", e).at(dir.display()))?;
        Ok(Registry { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn record_path(&self, kind: ObjectKind, path: &Path) -> PathBuf {
        // FNV-1a of the path: a stable file name for "whoever owns this path".
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in path.as_os_str().as_encoded_bytes() {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.dir.join(format!("{}-{h:016x}.record", kind.name()))
    }

    /// Claims the object at `paths[0]` for this process. A live owner is an
    /// [`ErrorKind::InUse`] error naming its pid; a dead owner's objects are
    /// removed first (reclaimed). The caller then creates the objects; the
    /// returned [`Registration`] removes them when dropped.
    pub fn claim(
        &self,
        kind: ObjectKind,
        url: &str,
        paths: Vec<PathBuf>,
        persist: bool,
    ) -> Result<Registration> {
        // Absolute, so that a relative path names one object whatever the
        // working directory of whoever reads the record.
        let paths: Vec<PathBuf> = paths
            .into_iter()
            .map(|p| std::path::absolute(&p).unwrap_or(p))
            .collect();
        let Some(first) = paths.first() else {
            return Err(Error::new(
                ErrorKind::InvalidEndpoint("a claim names at least one path".into()),
                "claim",
            )
            .at(url));
        };
        let file_path = self.record_path(kind, first);
        let ioerr = |e| Error::io("claim", e).at(url);
        // How long a dead owner's lock may be held by a probe.
        let give_up = std::time::Instant::now() + PROBE_HOLD;
        let mut backoff = crate::deadline::Backoff::new(std::time::Duration::from_millis(1));
        loop {
            let mut file = sys::fs::open_private_file(&file_path, true).map_err(ioerr)?;
            if !sys::fs::try_lock(&file).map_err(ioerr)? {
                let owner = read_record(&mut file);
                let alive = owner
                    .as_ref()
                    .is_some_and(|r| sys::process::is_alive(r.owner_pid, r.owner_start));
                // A dead owner's lock held for a moment: `ipcx ls` probing it.
                if !alive && backoff.sleep_until(give_up) {
                    continue;
                }
                let pid = owner.map(|r| r.owner_pid).unwrap_or(0);
                return Err(Error::new(ErrorKind::in_use_by(pid), "bind").at(url));
            }
            // The previous owner may have removed the file between our open
            // and our lock; then we hold a lock on a nameless file: retry.
            if sys::fs::identity_of(&file).ok() != sys::fs::identity(&file_path).ok() {
                continue;
            }
            if let Some(stale) = read_record(&mut file) {
                tracing::info!(url = %stale.url, pid = stale.owner_pid, "reclaiming object of dead owner");
                stale.remove_created();
            }
            let pid = sys::process::pid();
            let record = Record {
                url: url.to_string(),
                kind,
                paths,
                owner_pid: pid,
                owner_start: sys::process::start_time(pid).unwrap_or(0),
                persist,
                created: Vec::new(),
            };
            write_record(&mut file, &record).map_err(ioerr)?;
            return Ok(Registration {
                file,
                file_path,
                record,
            });
        }
    }

    /// Every record, with liveness.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&self.dir)
            .map_err(|e| Error::io("list", e).at(self.dir.display()))?;
        for ent in rd.flatten() {
            let path = ent.path();
            if path.extension().is_none_or(|e| e != "record") {
                continue;
            }
            let Ok(mut file) = sys::fs::open_private_file(&path, false) else {
                continue;
            };
            let Some(record) = read_record(&mut file) else {
                continue;
            };
            let alive = owner_holds(&file, &record);
            out.push(Entry {
                record,
                alive,
                file: path,
            });
        }
        out.sort_by(|a, b| a.record.url.cmp(&b.record.url));
        Ok(out)
    }

    /// Removes the objects of dead owners (or, with `dry_run`, only lists
    /// them). Durable objects (`?persist=true`) stay: only [`Registry::remove`]
    /// removes those. Returns what was (or would be) removed.
    pub fn clean(&self, dry_run: bool) -> Result<Vec<Entry>> {
        let mut removed = Vec::new();
        for entry in self
            .list()?
            .into_iter()
            .filter(|e| !e.alive && !e.record.persist)
        {
            if dry_run || self.remove_entry(&entry)? {
                removed.push(entry);
            }
        }
        Ok(removed)
    }

    /// Removes the object created for `url` (durable or not; options in the
    /// query do not matter), unless its owner is alive. Returns what was removed; an [`ErrorKind::InUse`]
    /// error names a live owner.
    pub fn remove(&self, url: &str) -> Result<Vec<Entry>> {
        let mut removed = Vec::new();
        let base = |u: &str| u.split('?').next().unwrap_or(u).to_string();
        for entry in self
            .list()?
            .into_iter()
            .filter(|e| base(&e.record.url) == base(url))
        {
            if entry.alive {
                let pid = entry.record.owner_pid;
                return Err(Error::new(ErrorKind::in_use_by(pid), "rm").at(url));
            }
            if self.remove_entry(&entry)? {
                removed.push(entry);
            }
        }
        Ok(removed)
    }

    /// Removes the objects this process owns (not the durable ones) and
    /// their records, for a process about to exit without running its
    /// destructors: a signal's handler thread (see
    /// [`crate::signal::on_termination`]). Handles to those objects stay
    /// open but name nothing; use it only on the way out.
    pub fn release_own(&self) -> Result<Vec<Entry>> {
        let pid = sys::process::pid();
        let start = sys::process::start_time(pid).unwrap_or(0);
        let mut removed = Vec::new();
        for entry in self.list()? {
            let r = &entry.record;
            if r.owner_pid == pid && r.owner_start == start && !r.persist {
                r.remove_created();
                let _ = std::fs::remove_file(&entry.file);
                let _ = std::fs::remove_file(state_path(&entry.file));
                removed.push(entry);
            }
        }
        Ok(removed)
    }

    /// Removes a dead owner's objects and record; `false` if someone took
    /// the record meanwhile.
    fn remove_entry(&self, entry: &Entry) -> Result<bool> {
        let Ok(file) = sys::fs::open_private_file(&entry.file, false) else {
            return Ok(false);
        };
        // Lock, so that nobody claims it while we remove it.
        if owner_holds(&file, &entry.record) {
            return Ok(false);
        }
        entry.record.remove_created();
        let _ = std::fs::remove_file(&entry.file);
        let _ = std::fs::remove_file(state_path(&entry.file));
        Ok(true)
    }
}

/// Whether the record's owner still holds its lock (taking the lock when
/// not). Another process probing the same record (`ipcx ls`, a `clean`)
/// holds it for a moment: while the owner's pid is dead by `/proc`, the
/// probe is retried briefly before the lock counts as the owner's.
fn owner_holds(file: &File, record: &Record) -> bool {
    let give_up = std::time::Instant::now() + PROBE_HOLD;
    let mut backoff = crate::deadline::Backoff::new(std::time::Duration::from_millis(1));
    loop {
        if sys::fs::try_lock(file).unwrap_or(false) {
            return false;
        }
        if sys::process::is_alive(record.owner_pid, record.owner_start) {
            return true;
        }
        if !backoff.sleep_until(give_up) {
            return true;
        }
    }
}

/// The longest a probe (`ipcx ls`, another claim) holds a record's lock:
/// past it, a lock held while the owner's pid is dead counts as held.
const PROBE_HOLD: std::time::Duration = std::time::Duration::from_millis(100);

/// The device and inode of the object of `kind` at `path` now (a System
/// V queue is checked by its recorded id instead).
fn identity(kind: ObjectKind, path: &Path) -> Option<(u64, u64)> {
    match kind {
        ObjectKind::Mq => sys::mq::identity(&path.file_name()?.to_string_lossy()).ok(),
        ObjectKind::SysvMq => None,
        _ => sys::fs::identity(path).ok(),
    }
}

/// Removes the object of `kind` at `path`; anything of another type (a
/// regular file where a socket should be, a directory, a symlink) is left
/// alone, since ipcx never made it.
fn remove_object(kind: ObjectKind, path: &Path) {
    use rustix::fs::FileType;
    if kind == ObjectKind::Mq {
        if let Some(name) = path.file_name() {
            let _ = sys::mq::unlink(&name.to_string_lossy());
        }
        return;
    }
    if kind == ObjectKind::SysvMq {
        // Removed by its recorded id in `remove_created`.
        return;
    }
    let ours = match (kind, sys::fs::object_type(path)) {
        // Exactly the recorded type: an inode number can be reused by the
        // next object made at the path once ours is gone.
        (ObjectKind::Socket, Ok(Some(FileType::Socket))) => true,
        (ObjectKind::Fifo, Ok(Some(FileType::Fifo))) => true,
        (ObjectKind::Shm, Ok(Some(FileType::RegularFile))) => {
            path.parent() == Some(Path::new(sys::shm::SHM_DIR))
        }
        (ObjectKind::Sem, Ok(Some(FileType::RegularFile))) => {
            path.parent() == Some(Path::new(sys::shm::SHM_DIR))
                && path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("sem."))
        }
        _ => false,
    };
    if ours {
        let _ = sys::fs::remove(path);
    }
}

/// Removes the doorbell FIFOs (`NAME.bellK`) async subscribers of the
/// shared-memory channel at `path` left behind (only FIFOs, only there).
fn remove_doorbells(path: &Path) {
    use rustix::fs::FileType;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!("{}.bell", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let ours = e
            .file_name()
            .to_string_lossy()
            .strip_prefix(&prefix)
            .is_some_and(|k| k.parse::<u32>().is_ok());
        if ours && matches!(sys::fs::object_type(&p), Ok(Some(FileType::Fifo))) {
            let _ = sys::fs::remove(&p);
        }
    }
}

/// A claimed object: while it lives, the registry shows this process as the
/// owner; when dropped, it removes the objects (unless persistent) and the
/// record.
#[derive(Debug)]
pub struct Registration {
    file: File,
    file_path: PathBuf,
    record: Record,
}

impl Registration {
    /// Notes that an object now exists at `path`, so that drop removes that
    /// very object and not one someone else put there later.
    pub fn created(&mut self, path: &Path) {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        if let Ok((dev, ino)) = sys::fs::identity(&path) {
            self.record.created.push(Created { path, dev, ino });
            if let Err(e) = write_record(&mut self.file, &self.record) {
                tracing::warn!(error = %e, "cannot update a registry record");
            }
        }
    }

    /// Notes that the object at `path` (which has no file there: a
    /// message queue) was created with this identity.
    pub(crate) fn created_as(&mut self, path: &Path, dev: u64, ino: u64) {
        self.record.created.push(Created {
            path: path.to_path_buf(),
            dev,
            ino,
        });
        if let Err(e) = write_record(&mut self.file, &self.record) {
            tracing::warn!(error = %e, "cannot update a registry record");
        }
    }

    /// The record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Says what the object is doing now, for `ipcx ls` (one line,
    /// replaced whole: written aside, then renamed over).
    pub fn set_state(&self, text: &str) {
        let path = state_path(&self.file_path);
        let tmp = path.with_extension("state.tmp");
        let line = text.replace('\n', " ");
        let written =
            std::fs::write(&tmp, line.as_bytes()).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::debug!(error = %e, "cannot write a registry state line");
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(state_path(&self.file_path));
        if !self.record.persist {
            self.record.remove_created();
            let _ = std::fs::remove_file(&self.file_path);
        }
        // Closing `file` releases the lock; a persistent object's record
        // stays, showing a dead owner, until `ipcx rm` or `ipcx clean`.
        let _ = &self.file;
    }
}
