//! Shared memory: POSIX named objects, memfds, and mappings of them.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{Mode, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;

/// Where POSIX shared-memory objects live on Linux.
pub const SHM_DIR: &str = "/dev/shm";

/// Creates a new named object with no permissions at all (nobody, owner
/// included, can open it by name until [`set_mode`]), failing if it exists.
/// See `shm_open(3)`.
pub fn create_exclusive(name: &str) -> io::Result<OwnedFd> {
    Ok(shm::open(
        format!("/{name}"),
        shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
        Mode::empty(),
    )?)
}

/// Opens an existing named object for reading and writing. See `shm_open(3)`.
pub fn open(name: &str) -> io::Result<OwnedFd> {
    Ok(shm::open(
        format!("/{name}"),
        shm::OFlags::RDWR,
        Mode::empty(),
    )?)
}

/// Removes a named object; absent is not an error. See `shm_unlink(3)`.
pub fn unlink(name: &str) -> io::Result<()> {
    match shm::unlink(format!("/{name}")) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sets the permission bits of an open object. See `fchmod(2)`.
pub fn set_mode(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    Ok(rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// Sets the size of an object. See `ftruncate(2)`.
pub fn set_len(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    Ok(rustix::fs::ftruncate(fd, len)?)
}

/// The permission bits of an object. See `fstat(2)`.
pub fn mode(fd: BorrowedFd<'_>) -> io::Result<u32> {
    Ok(rustix::fs::fstat(fd)?.st_mode & 0o777)
}

/// The size of an object. See `fstat(2)`.
pub fn len(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_size as u64)
}

/// Whether `fd` is sealed against shrinking (`F_GET_SEALS` has
/// `F_SEAL_SHRINK`): only then can a mapping of it never lose its pages
/// under us (a shrink turns reads of the lost pages into `SIGBUS`). An
/// object that cannot be sealed at all (not a memfd) is not sealed.
///
/// # References
/// `fcntl(2)`, "File Sealing".
pub fn sealed_against_shrink(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) => Ok(seals.contains(SealFlags::SHRINK)),
        Err(rustix::io::Errno::INVAL) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// An anonymous object (`memfd`) of `len` bytes whose size is then sealed,
/// so a process it is passed to can trust the size it sees.
/// See `memfd_create(2)`, `fcntl(2)` `F_ADD_SEALS`.
pub fn anonymous(len: u64) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(
        "ipcx",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )?;
    rustix::fs::ftruncate(&fd, len)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
    Ok(fd)
}

/// Largest mapping populated when it is made.
const POPULATE_MAX: usize = 64 << 20;

/// A shared, read-write mapping of a whole object, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with other processes; the
// type hands out only a raw pointer, and callers synchronize access.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` gives no access that `Send` does not.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd`, shared. Mappings up to 64 MiB
    /// are populated at once (`MAP_POPULATE`), so the first pass over a
    /// ring does not page-fault on every new page. See `mmap(2)`.
    pub fn new(fd: impl AsFd, len: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map 0 bytes",
            ));
        }
        // SAFETY: a fresh mapping at an address the kernel picks aliases no
        // Rust object; `fd` is valid for the call.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                if len <= POPULATE_MAX {
                    MapFlags::SHARED | MapFlags::POPULATE
                } else {
                    MapFlags::SHARED
                },
                fd,
                0,
            )?
        };
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null pointer"))?;
        Ok(Mapping { ptr, len })
    }

    /// The first byte. Valid for [`Mapping::len`] bytes while `self` lives;
    /// page-aligned.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Writes `bytes` at `offset` (refused past the end).
    ///
    /// # Safety
    /// Nothing else in this process reads or writes those bytes of the
    /// mapping meanwhile (through this `Mapping`, another mapping of the
    /// same file, or a pointer from [`Mapping::as_ptr`]).
    pub unsafe fn write(&self, offset: usize, bytes: &[u8]) -> io::Result<()> {
        self.check(offset, bytes.len())?;
        // SAFETY: the range is inside the mapping (checked), which lives as
        // long as `self`; the source is a distinct Rust slice; nothing else
        // in this process touches the range (the caller's contract).
        unsafe {
            super::mem::copy(bytes.as_ptr(), self.ptr.as_ptr().add(offset), bytes.len());
        }
        Ok(())
    }

    fn check(&self, offset: usize, len: usize) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "past the end of the mapping",
            ));
        }
        Ok(())
    }

    /// Writes the pages holding `offset..offset + len` to the file and
    /// waits (`msync(MS_SYNC)`).
    pub fn sync(&self, offset: usize, len: usize) -> io::Result<()> {
        let start = offset & !4095;
        let end = offset.saturating_add(len).min(self.len);
        if end <= start {
            return Ok(());
        }
        // SAFETY: a page-aligned range inside the mapping.
        unsafe {
            rustix::mm::msync(
                self.ptr.as_ptr().add(start).cast(),
                end - start,
                rustix::mm::MsyncFlags::SYNC,
            )?;
        }
        Ok(())
    }

    /// Makes every page writable now (`MADV_POPULATE_WRITE`, Linux 5.14),
    /// so that the first write to each later takes no page fault. Best
    /// effort: older kernels say no, and writes then fault as usual.
    pub fn populate_for_writing(&self) -> io::Result<()> {
        // SAFETY: the whole mapping, which lives as long as `self`; the
        // advice changes no contents.
        unsafe {
            rustix::mm::madvise(
                self.ptr.as_ptr().cast(),
                self.len,
                rustix::mm::Advice::LinuxPopulateWrite,
            )?;
        }
        Ok(())
    }

    /// Always false: a mapping has at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful `mmap` and are unmapped
        // once, here; no reference into the mapping outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}
