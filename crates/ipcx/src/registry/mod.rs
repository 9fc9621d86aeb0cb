//! The record of every named OS object ipcx created, with its owner's liveness.
//!
//! One directory per user (`$XDG_RUNTIME_DIR/ipcx`, else `/tmp/ipcx-$UID`,
//! mode 0700) holds a small JSON record per object. The owner keeps an
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

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::sys;

/// What kind of object a record names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A Unix socket file.
    Socket,
    /// A named pipe (and, for duplex links, its `.reply` twin).
    Fifo,
    /// A POSIX shared-memory object (in `/dev/shm`).
    Shm,
}

impl ObjectKind {
    /// The name shown by `ipcx ls`.
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Socket => "socket",
            ObjectKind::Fifo => "fifo",
            ObjectKind::Shm => "shm",
        }
    }
}

/// One record, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The endpoint URL that created the object.
    pub url: String,
    /// The kind of object.
    pub kind: ObjectKind,
    /// The objects' paths on disk (the first is the main one).
    pub paths: Vec<PathBuf>,
    /// The creating process.
    pub owner_pid: u32,
    /// Its start time (clock ticks since boot), to tell a reused pid apart.
    pub owner_start: u64,
    /// Kept when the owner exits (`?persist=true`).
    pub persist: bool,
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
        self.dir.join(format!("{}-{h:016x}.json", kind.name()))
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
        let file_path = self.record_path(kind, &paths[0]);
        let ioerr = |e| Error::io("claim", e).at(url);
        loop {
            let mut file = sys::fs::open_private_file(&file_path, true).map_err(ioerr)?;
            if !sys::fs::try_lock(&file).map_err(ioerr)? {
                let pid = read_record(&mut file).map(|r| r.owner_pid).unwrap_or(0);
                return Err(Error::new(ErrorKind::InUse { pid }, "bind").at(url));
            }
            // The previous owner may have removed the file between our open
            // and our lock; then we hold a lock on a nameless file: retry.
            if sys::fs::identity_of(&file).ok() != sys::fs::identity(&file_path).ok() {
                continue;
            }
            if let Some(stale) = read_record(&mut file) {
                tracing::info!(url = %stale.url, pid = stale.owner_pid, "reclaiming object of dead owner");
                for p in &stale.paths {
                    remove_object(stale.kind, p);
                }
            }
            let pid = sys::process::pid();
            let record = Record {
                url: url.to_string(),
                kind,
                paths,
                owner_pid: pid,
                owner_start: sys::process::start_time(pid).unwrap_or(0),
                persist,
            };
            write_record(&mut file, &record).map_err(ioerr)?;
            return Ok(Registration {
                file,
                file_path,
                record,
                identities: Vec::new(),
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
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Ok(mut file) = sys::fs::open_private_file(&path, false) else {
                continue;
            };
            let Some(record) = read_record(&mut file) else {
                continue;
            };
            let alive = !sys::fs::try_lock(&file).unwrap_or(false);
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

    /// Removes the object created for `url` (durable or not), unless its
    /// owner is alive. Returns what was removed; an [`ErrorKind::InUse`]
    /// error names a live owner.
    pub fn remove(&self, url: &str) -> Result<Vec<Entry>> {
        let mut removed = Vec::new();
        for entry in self.list()?.into_iter().filter(|e| e.record.url == url) {
            if entry.alive {
                let pid = entry.record.owner_pid;
                return Err(Error::new(ErrorKind::InUse { pid }, "rm").at(url));
            }
            if self.remove_entry(&entry)? {
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
        if !sys::fs::try_lock(&file).map_err(|e| Error::io("clean", e))? {
            return Ok(false);
        }
        for p in &entry.record.paths {
            remove_object(entry.record.kind, p);
        }
        let _ = std::fs::remove_file(&entry.file);
        Ok(true)
    }
}

/// Removes the object of `kind` at `path`; anything of another type (a
/// regular file where a socket should be, a directory, a symlink) is left
/// alone, since ipcx never made it.
fn remove_object(kind: ObjectKind, path: &Path) {
    use rustix::fs::FileType;
    let ours = match (kind, sys::fs::object_type(path)) {
        (ObjectKind::Socket | ObjectKind::Fifo, Ok(Some(FileType::Socket | FileType::Fifo))) => {
            true
        }
        (ObjectKind::Shm, Ok(Some(FileType::RegularFile))) => {
            path.parent() == Some(Path::new(sys::shm::SHM_DIR))
        }
        _ => false,
    };
    if ours {
        let _ = sys::fs::remove(path);
    }
}

fn read_record(file: &mut File) -> Option<Record> {
    let mut s = String::new();
    file.rewind().ok()?;
    // Records are small; a huge one is not ours.
    file.take(64 << 10).read_to_string(&mut s).ok()?;
    serde_json::from_str(&s).ok()
}

fn write_record(file: &mut File, record: &Record) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(&json)?;
    file.write_all(b"\n")
}

/// A claimed object: while it lives, the registry shows this process as the
/// owner; when dropped, it removes the objects (unless persistent) and the
/// record.
#[derive(Debug)]
pub struct Registration {
    file: File,
    file_path: PathBuf,
    record: Record,
    identities: Vec<(PathBuf, (u64, u64))>,
}

impl Registration {
    /// Notes that an object now exists at `path`, so that drop removes that
    /// very object and not one someone else put there later.
    pub fn created(&mut self, path: &Path) {
        if let Ok(id) = sys::fs::identity(path) {
            self.identities.push((path.to_path_buf(), id));
        }
    }

    /// The record.
    pub fn record(&self) -> &Record {
        &self.record
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.record.persist {
            for (path, id) in &self.identities {
                if sys::fs::identity(path).ok() == Some(*id) {
                    let _ = sys::fs::remove(path);
                }
            }
            let _ = std::fs::remove_file(&self.file_path);
        }
        // Closing `file` releases the lock; a persistent object's record
        // stays, showing a dead owner, until `ipcx rm` or `ipcx clean`.
        let _ = &self.file;
    }
}
