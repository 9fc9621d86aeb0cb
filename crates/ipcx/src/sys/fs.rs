//! Filesystem objects: FIFOs, private directories, locks, and path checks
//! that never follow a symlink.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, FileType, FlockOperation, Mode, OFlags};

/// The type of the object at `path`, without following a final symlink;
/// `None` when nothing is there. See `lstat(2)`.
pub fn object_type(path: &Path) -> io::Result<Option<FileType>> {
    match rustix::fs::lstat(path) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Owner uid and permission bits of the object at `path` (not following
/// symlinks). See `lstat(2)`.
pub fn owner_and_mode(path: &Path) -> io::Result<(u32, u32)> {
    let st = rustix::fs::lstat(path)?;
    Ok((st.st_uid, st.st_mode & 0o7777))
}

/// Device and inode of the object at `path` (not following symlinks).
pub fn identity(path: &Path) -> io::Result<(u64, u64)> {
    let st = rustix::fs::lstat(path)?;
    Ok((st.st_dev, st.st_ino))
}

/// Device and inode of an open file.
pub fn identity_of(fd: impl AsFd) -> io::Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Removes the object at `path`; absent is not an error. See `unlink(2)`.
pub fn remove(path: &Path) -> io::Result<()> {
    match rustix::fs::unlinkat(CWD, path, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates a FIFO with exactly `mode` (the umask can only have narrowed it,
/// so there is no moment with wider access). See `mknod(2)`, `chmod(2)`.
pub fn create_fifo(path: &Path, mode: u32) -> io::Result<()> {
    rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(mode), 0)?;
    rustix::fs::chmodat(CWD, path, Mode::from_raw_mode(mode), AtFlags::empty())?;
    Ok(())
}

/// Opens a FIFO end, non-blocking, refusing a symlink. For writing, fails
/// with `ENXIO` while no reader has it open. See `open(2)`, `fifo(7)`.
pub fn open_fifo(path: &Path, write: bool) -> io::Result<OwnedFd> {
    let access = if write {
        OFlags::WRONLY
    } else {
        OFlags::RDONLY
    };
    let fd = rustix::fs::openat(
        CWD,
        path,
        access | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Fifo {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} exists and is not a FIFO", path.display()),
        ));
    }
    Ok(fd)
}

/// Opens a FIFO for reading and writing, non-blocking, refusing a symlink.
/// Linux allows it (POSIX leaves it open): the opener is then a reader and
/// a writer, so its writes never fail for want of a reader.
/// See `fifo(7)`.
pub fn open_fifo_rw(path: &Path) -> io::Result<OwnedFd> {
    let fd = rustix::fs::openat(
        CWD,
        path,
        OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) != FileType::Fifo {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a FIFO", path.display()),
        ));
    }
    Ok(fd)
}

/// Opens a directory as a path-only descriptor, refusing a symlink.
/// See `open(2)` `O_PATH`.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        CWD,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Sets the permission bits of `name` in the directory `dir`.
/// See `fchmodat(2)`.
pub fn chmod_in(dir: BorrowedFd<'_>, name: &str, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::chmodat(
        dir,
        name,
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    )?)
}

/// Moves `name` from the directory `dir` to `to`, failing if `to` exists.
/// See `renameat2(2)` `RENAME_NOREPLACE`.
pub fn rename_from_noreplace(dir: BorrowedFd<'_>, name: &str, to: &Path) -> io::Result<()> {
    Ok(rustix::fs::renameat_with(
        dir,
        name,
        CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )?)
}

/// Removes `name` from the directory `dir`; absent is not an error.
pub fn remove_in(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes `path` a directory owned by this user with mode 0700, creating it
/// if absent, and refuses one that is a symlink, belongs to someone else, or
/// is open to others. See `mkdir(2)`, `lstat(2)`.
pub fn private_dir(path: &Path) -> io::Result<()> {
    match rustix::fs::mkdirat(CWD, path, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let st = rustix::fs::lstat(path)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory (a symlink?)", path.display()),
        ));
    }
    if st.st_uid != rustix::process::geteuid().as_raw() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {}, not to this user",
                path.display(),
                st.st_uid
            ),
        ));
    }
    if st.st_mode & 0o077 != 0 {
        rustix::fs::chmodat(CWD, path, Mode::from_raw_mode(0o700), AtFlags::empty())?;
    }
    Ok(())
}

/// Opens (creating with mode 0600) a regular file, refusing a symlink.
pub fn open_private_file(path: &Path, create: bool) -> io::Result<File> {
    let mut flags = OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    if create {
        flags |= OFlags::CREATE;
    }
    let fd = rustix::fs::openat(CWD, path, flags, Mode::from_raw_mode(0o600))?;
    Ok(File::from(fd))
}

/// Tries to take an exclusive `flock(2)` without waiting; `false` when
/// another open file holds it.
pub fn try_lock(file: impl std::os::fd::AsFd) -> io::Result<bool> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// How many names an open file has (0: removed). See `fstat(2)`.
pub fn link_count(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_nlink as u64)
}

/// Writes all of `buf` at `offset`. See `pwrite(2)`.
pub fn write_all_at(fd: BorrowedFd<'_>, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads what is there of `buf.len()` bytes at `offset` (fewer at the end
/// of the file). See `pread(2)`.
pub fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::pread(fd, &mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}
