//! [`Segment`]: a mapped shared-memory object with a checked header.

use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::registry::{ObjectKind, Registration, Registry};
use crate::stamp::Stamp;
use crate::sys;
use crate::sys::shm::Mapping;

/// `IPCXSEG1`, little-endian: the first eight bytes of every segment.
const MAGIC: u64 = u64::from_le_bytes(*b"IPCXSEG1");
/// Layout version of [`SegmentHeader`].
const VERSION: u32 = 1;

/// The header at the start of every segment (64 bytes, one cache line).
#[repr(C)]
#[derive(Debug)]
pub struct SegmentHeader {
    /// [`MAGIC`]; 0 while the creator is still initializing.
    magic: AtomicU64,
    /// Layout version.
    version: AtomicU32,
    /// Bytes before the data region (the header's size).
    header_len: AtomicU32,
    /// Bytes in the data region.
    data_len: AtomicU64,
    /// Process that created the segment.
    creator_pid: AtomicU32,
    _reserved: [u32; 9],
}

const HEADER_LEN: usize = size_of::<SegmentHeader>();
const _: () = assert!(HEADER_LEN == 64);
const _: () = assert!(offset_of!(SegmentHeader, magic) == 0);
const _: () = assert!(offset_of!(SegmentHeader, version) == 8);
const _: () = assert!(offset_of!(SegmentHeader, header_len) == 12);
const _: () = assert!(offset_of!(SegmentHeader, data_len) == 16);
const _: () = assert!(offset_of!(SegmentHeader, creator_pid) == 24);

/// A shared-memory segment mapped into this process.
///
/// ```no_run
/// use ipcx::shm::Segment;
/// # fn main() -> ipcx::Result<()> {
/// // One process creates it (owner-only until ready, then mode 0600) ...
/// let seg = Segment::create("shm:prices?size=1MiB")?;
/// // SAFETY: nobody else touches these bytes until the copy is done.
/// unsafe { seg.write_at(0, b"hello")? };
/// // ... another opens it by name, waiting up to ?timeout= for it.
/// let other = Segment::open("shm:prices")?;
/// let mut buf = [0u8; 5];
/// // SAFETY: the write above is finished; nobody writes these bytes now.
/// unsafe { other.read_at(0, &mut buf)? };
/// assert_eq!(&buf, b"hello");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Segment {
    map: Mapping,
    fd: OwnedFd,
    name: Option<String>,
    _registration: Option<Registration>,
}

fn shm_name(ep: &Endpoint) -> Result<&str> {
    ep.shm_name("a segment", "segment")
}

impl Segment {
    /// Creates the named segment of `url` (`shm:name?size=1MiB&mode=0600`).
    ///
    /// The object is created with no permissions, sized, mapped, given its
    /// header with the magic last, and only then opened up to `?mode=`. A
    /// segment left by a dead ipcx process is reclaimed; one whose owner
    /// lives is [`ErrorKind::InUse`].
    pub fn create(url: &str) -> Result<Segment> {
        Segment::create_endpoint(&Endpoint::parse(url)?)
    }

    /// [`Segment::create`] with a parsed endpoint.
    pub fn create_endpoint(ep: &Endpoint) -> Result<Segment> {
        Segment::create_endpoint_with(ep, |_| Ok(()))
    }

    /// [`Segment::create_endpoint`], running `init` on the data region
    /// before anyone but the creator can open the segment.
    pub(crate) fn create_endpoint_with(
        ep: &Endpoint,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        let name = shm_name(ep)?;
        let o = ep.options();
        let err = |e| Error::io("create", e).at(ep);
        let path = PathBuf::from(sys::shm::SHM_DIR).join(name);
        let mut reg =
            Registry::open()?.claim(ObjectKind::Shm, ep.url(), vec![path.clone()], o.persist)?;
        let fd = match sys::shm::create_exclusive(name) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::new(
                    ErrorKind::occupied(format!(
                        "{} exists and ipcx has no record of it; if it is stale, remove it with `rm {}`",
                        path.display(),
                        path.display()
                    )),
                    "create",
                )
                .at(ep));
            }
            Err(e) => return Err(err(e)),
        };
        reg.created(&path);
        let total = HEADER_LEN + o.size;
        sys::shm::set_len(fd.as_fd(), total as u64).map_err(err)?;
        let seg =
            Segment::init(fd, total, Some(name.to_string()), Some(reg)).map_err(|e| e.at(ep))?;
        init(&seg).map_err(|e| e.at(ep))?;
        sys::shm::set_mode(seg.fd.as_fd(), o.mode).map_err(err)?;
        Ok(seg)
    }

    /// An anonymous segment with `size` data bytes, to hand to another
    /// process as a descriptor ([`Segment::as_fd`], then
    /// [`Segment::from_fd`] there). Its size is sealed.
    pub fn anonymous(size: usize) -> Result<Segment> {
        let total = HEADER_LEN + size;
        let fd = sys::shm::anonymous(total as u64).map_err(|e| Error::io("create", e))?;
        Segment::init(fd, total, None, None)
    }

    fn init(
        fd: OwnedFd,
        total: usize,
        name: Option<String>,
        reg: Option<Registration>,
    ) -> Result<Segment> {
        let map = Mapping::new(fd.as_fd(), total).map_err(|e| Error::io("create", e))?;
        let seg = Segment {
            map,
            fd,
            name,
            _registration: reg,
        };
        let h = seg.header();
        h.version.store(VERSION, Ordering::Relaxed);
        h.header_len.store(HEADER_LEN as u32, Ordering::Relaxed);
        h.data_len
            .store((total - HEADER_LEN) as u64, Ordering::Relaxed);
        h.creator_pid.store(sys::process::pid(), Ordering::Relaxed);
        // Last, and with release: whoever sees the magic sees the rest.
        h.magic.store(MAGIC, Ordering::Release);
        Ok(seg)
    }

    /// Opens the named segment of `url`, waiting up to its `?timeout=` for
    /// it to exist and be initialized.
    pub fn open(url: &str) -> Result<Segment> {
        Segment::open_endpoint(&Endpoint::parse(url)?)
    }

    /// [`Segment::open`] with a parsed endpoint.
    pub fn open_endpoint(ep: &Endpoint) -> Result<Segment> {
        let deadline = crate::deadline::far_after(ep.options().timeout);
        Segment::open_until(ep, deadline)
    }

    /// [`Segment::open_endpoint`], waiting until `deadline` (the errors
    /// name the endpoint's `?timeout=`).
    pub(crate) fn open_until(ep: &Endpoint, deadline: Instant) -> Result<Segment> {
        let mut backoff = crate::deadline::Backoff::new(Duration::from_millis(50));
        loop {
            let not_yet = match Segment::look(ep)? {
                Ok(seg) => return Ok(seg),
                Err(not_yet) => not_yet,
            };
            if !backoff.sleep_until(deadline) {
                return Err(not_yet.gave_up(ep));
            }
        }
    }

    /// One look for the named segment of `ep`, without waiting: the
    /// segment, or why it cannot be opened yet (absent, or still being
    /// made by its creator); an error for what will never open.
    pub(crate) fn look(ep: &Endpoint) -> Result<std::result::Result<Segment, NotYet>> {
        let name = shm_name(ep)?;
        match sys::shm::open(name) {
            Ok(fd) => match Segment::attach(fd, Some(name.to_string())) {
                Ok(seg) => Ok(Ok(seg)),
                Err(Attach::Fatal(e)) => Err(e.at(ep)),
                Err(Attach::NotReady(why)) => Ok(Err(NotYet::Made(why))),
            },
            // Absent, or still owner-only while its creator builds it.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                Ok(Err(NotYet::Absent(e)))
            }
            Err(e) => Err(Error::io("open", e).at(ep)),
        }
    }

    /// Maps a segment received as a descriptor (see [`Segment::anonymous`]).
    ///
    /// The descriptor must be sealed against shrinking (as
    /// [`Segment::anonymous`] makes it): a peer that could shrink the
    /// object after we map it would turn our next access into `SIGBUS`.
    /// Anything else is refused with [`ErrorKind::Foreign`].
    pub fn from_fd(fd: OwnedFd) -> Result<Segment> {
        let sealed =
            sys::shm::sealed_against_shrink(fd.as_fd()).map_err(|e| Error::io("open", e))?;
        if !sealed {
            return Err(Error::new(
                ErrorKind::Foreign(
                    "the received descriptor is not sealed against shrinking (F_SEAL_SHRINK): \
                     its sender could cut the mapping under us; send one made by Segment::anonymous"
                        .into(),
                ),
                "open",
            ));
        }
        Segment::attach(fd, None).map_err(|e| match e {
            Attach::Fatal(e) => e,
            Attach::NotReady(why) => {
                Error::new(ErrorKind::Foreign(format!("segment {why}")), "open")
            }
        })
    }

    fn attach(fd: OwnedFd, name: Option<String>) -> std::result::Result<Segment, Attach> {
        let fatal = |kind: ErrorKind| Attach::Fatal(Error::new(kind, "open"));
        let total = sys::shm::len(fd.as_fd()).map_err(|e| Attach::Fatal(Error::io("open", e)))?;
        if total < HEADER_LEN as u64 {
            return Err(Attach::NotReady("not yet sized by its creator"));
        }
        let total = usize::try_from(total).map_err(|_| {
            fatal(ErrorKind::OutOfBounds(
                "segment larger than the address space".into(),
            ))
        })?;
        let map =
            Mapping::new(fd.as_fd(), total).map_err(|e| Attach::Fatal(Error::io("open", e)))?;
        let seg = Segment {
            map,
            fd,
            name,
            _registration: None,
        };
        let h = seg.header();
        let magic = h.magic.load(Ordering::Acquire);
        match Stamp::of(magic, MAGIC, h.version.load(Ordering::Relaxed), VERSION) {
            Stamp::Ready => {}
            Stamp::Initializing => {
                return Err(Attach::NotReady("not yet initialized by its creator"));
            }
            Stamp::Foreign(other) => {
                return Err(fatal(ErrorKind::Foreign(format!(
                    "not an ipcx segment (magic {:?}): another program made it; pick another name",
                    other.to_le_bytes().map(char::from)
                ))));
            }
            Stamp::OtherVersion(found) => {
                return Err(fatal(ErrorKind::VersionMismatch {
                    found,
                    expected: VERSION,
                }));
            }
        }
        let data_len = h.data_len.load(Ordering::Relaxed);
        if h.header_len.load(Ordering::Relaxed) as usize != HEADER_LEN
            || data_len != (total - HEADER_LEN) as u64
        {
            return Err(fatal(ErrorKind::Corrupt(
                "the segment header disagrees with the object's size".into(),
            )));
        }
        Ok(seg)
    }

    fn header(&self) -> &SegmentHeader {
        // SAFETY: the mapping is page-aligned and at least HEADER_LEN bytes
        // (checked at creation and attach), and SegmentHeader holds only
        // atomics and plain integers, valid for any bit pattern.
        unsafe { &*self.map.as_ptr().cast::<SegmentHeader>() }
    }

    /// Bytes in the data region.
    pub fn len(&self) -> usize {
        self.map.len() - HEADER_LEN
    }

    /// True when the data region is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of a named segment.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The permission bits (`?mode=` at creation).
    pub fn mode(&self) -> Result<u32> {
        sys::shm::mode(self.fd.as_fd()).map_err(|e| Error::io("stat", e))
    }

    /// The pid of the process that created the segment.
    pub fn creator_pid(&self) -> u32 {
        self.header().creator_pid.load(Ordering::Relaxed)
    }

    /// The first byte of the data region (cache-line aligned). Other
    /// processes may write it at any time: synchronize access yourself.
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: HEADER_LEN is within the mapping (checked at creation).
        unsafe { self.map.as_ptr().add(HEADER_LEN) }
    }

    /// The data region's first bytes as an `H` (an object's header), when
    /// the region holds one.
    ///
    /// # Safety
    ///
    /// Every bit pattern must be a valid `H`: atomics, integers and padding
    /// only, which another process may write at any time.
    pub(crate) unsafe fn data_header<H>(&self) -> Option<&H> {
        const {
            assert!(
                std::mem::align_of::<H>() <= 64,
                "the data region is cache-line aligned"
            )
        };
        if self.len() < std::mem::size_of::<H>() {
            return None;
        }
        // SAFETY: within the data region (checked), aligned (the region
        // starts on a cache line; `H` asks no more, asserted above), valid
        // for any bits (the caller's word); borrowed no longer than the
        // mapping lives (`&self`).
        Some(unsafe { &*self.as_ptr().cast::<H>() })
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::new(
                ErrorKind::OutOfBounds(format!(
                    "bytes {offset}..+{len} are outside the segment's {} data bytes",
                    self.len()
                )),
                "segment",
            )),
        }
    }

    /// Copies `data` into the data region at `offset`.
    ///
    /// # Safety
    /// No other access to these bytes may race with the copy, in this
    /// process or another: no primitive, loan, sample or guard covers them,
    /// and no other thread or process reads or writes them until it
    /// returns (synchronize with a lock or an event). A concurrent access
    /// is a data race, which Rust defines as undefined behaviour even for
    /// plain bytes. The range is checked: out of bounds is an error.
    pub unsafe fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check(offset, data.len())?;
        // SAFETY: the range is inside the mapping (checked); `data` is a
        // Rust slice and cannot overlap shared memory we only reach by
        // pointer; no access races with this one (the caller's contract).
        unsafe { crate::sys::mem::copy(data.as_ptr(), self.as_ptr().add(offset), data.len()) };
        Ok(())
    }

    /// Copies bytes of the data region at `offset` into `buf`.
    ///
    /// # Safety
    /// No write to these bytes may race with the copy, in this process or
    /// another (see [`Segment::write_at`]).
    pub unsafe fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        // SAFETY: in bounds (checked), and no write races with it (the
        // caller's contract).
        unsafe { crate::sys::mem::copy(self.as_ptr().add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// An atomic counter at `offset` in the data region (8-byte aligned).
    ///
    /// # Safety
    /// While the reference lives, these 8 bytes are accessed only as this
    /// atomic, in every process: no primitive, loan, guard or non-atomic
    /// copy ([`Segment::write_at`]) covers them.
    pub unsafe fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64> {
        self.check(offset, 8)?;
        if !offset.is_multiple_of(8) {
            return Err(Error::new(
                ErrorKind::OutOfBounds(format!("offset {offset} is not 8-byte aligned")),
                "segment",
            ));
        }
        // SAFETY: in bounds and aligned (checked; the data region starts
        // cache-line aligned); AtomicU64 is valid for any bit pattern; the
        // bytes are used only as this atomic (the caller's contract).
        Ok(unsafe { &*self.as_ptr().add(offset).cast::<AtomicU64>() })
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl std::os::fd::AsRawFd for Segment {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// Why a named segment cannot be opened yet.
#[derive(Debug)]
pub(crate) enum NotYet {
    /// No such object, or one still open to its creator only.
    Absent(std::io::Error),
    /// There, and still being sized or initialized by its creator.
    Made(&'static str),
}

impl NotYet {
    /// The error of an open that waited until its deadline.
    pub(crate) fn gave_up(self, ep: &Endpoint) -> Error {
        match self {
            NotYet::Absent(e) => {
                let why = format!(
                    "no segment /dev/shm/{} appeared within {:?} ({e}): start the side that \
                     creates it first, or raise ?timeout=",
                    shm_name(ep).unwrap_or("?"),
                    ep.options().timeout
                );
                Error::io("open", std::io::Error::new(e.kind(), why)).at(ep)
            }
            NotYet::Made(why) => {
                Error::new(ErrorKind::TimedOut, "open").at(format!("{ep} (segment {why})"))
            }
        }
    }
}

enum Attach {
    /// Not (yet) usable; opening may retry.
    NotReady(&'static str),
    /// Never usable.
    Fatal(Error),
}
