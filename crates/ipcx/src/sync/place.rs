//! Where a primitive lives: a [`SyncHeader`], the primitive's state, and the
//! value it guards, at an offset in a shared segment — its own named one, or
//! one the application already has.

mod constructors;

pub(crate) use constructors::{value_constructors, write_value};

use std::marker::PhantomData;
use std::mem::{offset_of, size_of};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::endpoint::Endpoint;
use crate::error::{Error, ErrorKind, Result};
use crate::shm::Segment;
use crate::stamp::Stamp;

/// `IPCXSYN1`, little-endian: the first bytes of every primitive.
const MAGIC: u64 = u64::from_le_bytes(*b"IPCXSYN1");
/// The magic while a creator initializes the place (`IPCXSYN0`).
const CLAIMING: u64 = u64::from_le_bytes(*b"IPCXSYN0");
/// Layout version of [`SyncHeader`] and of every primitive's state.
const VERSION: u32 = 1;
const LINE: usize = 64;

/// Which primitive a [`SyncHeader`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum PrimitiveKind {
    /// [`super::Mutex`].
    Mutex = 1,
    /// [`super::Condvar`].
    Condvar = 2,
    /// [`super::Semaphore`].
    Semaphore = 3,
    /// [`super::RwLock`].
    RwLock = 4,
    /// [`super::Barrier`].
    Barrier = 5,
    /// [`super::SpinLock`].
    SpinLock = 6,
    /// [`super::Event`].
    Event = 7,
    /// [`super::SharedAtomicU64`] and the other shared atomics.
    Value = 8,
}

impl PrimitiveKind {
    fn from_u32(v: u32) -> Option<PrimitiveKind> {
        Some(match v {
            1 => PrimitiveKind::Mutex,
            2 => PrimitiveKind::Condvar,
            3 => PrimitiveKind::Semaphore,
            4 => PrimitiveKind::RwLock,
            5 => PrimitiveKind::Barrier,
            6 => PrimitiveKind::SpinLock,
            7 => PrimitiveKind::Event,
            8 => PrimitiveKind::Value,
            _ => return None,
        })
    }

    /// The name `ipcx ls` shows.
    pub fn name(self) -> &'static str {
        match self {
            PrimitiveKind::Mutex => "mutex",
            PrimitiveKind::Condvar => "condvar",
            PrimitiveKind::Semaphore => "semaphore",
            PrimitiveKind::RwLock => "rwlock",
            PrimitiveKind::Barrier => "barrier",
            PrimitiveKind::SpinLock => "spinlock",
            PrimitiveKind::Event => "event",
            PrimitiveKind::Value => "value",
        }
    }
}

/// The cache line in front of every primitive (64 bytes).
#[repr(C)]
#[derive(Debug)]
pub struct SyncHeader {
    /// [`MAGIC`]; 0 until the creator has initialized the state.
    magic: AtomicU64,
    version: AtomicU32,
    /// A [`PrimitiveKind`].
    kind: AtomicU32,
    /// Size and alignment of the guarded value (0 for none): a process
    /// that opens it with another type is refused.
    value_size: AtomicU32,
    value_align: AtomicU32,
    /// The primitive's creation parameter (permits, parties, mode).
    param: AtomicU32,
    _pad: u32,
    /// The creator's PID namespace: holders' ids mean something only
    /// there (0: unknown).
    pid_ns: AtomicU64,
    _reserved: [u32; 6],
}

const _: () = assert!(size_of::<SyncHeader>() == LINE);
const _: () = assert!(offset_of!(SyncHeader, magic) == 0);
const _: () = assert!(offset_of!(SyncHeader, version) == 8);
const _: () = assert!(offset_of!(SyncHeader, kind) == 12);
const _: () = assert!(offset_of!(SyncHeader, value_size) == 16);
const _: () = assert!(offset_of!(SyncHeader, value_align) == 20);
const _: () = assert!(offset_of!(SyncHeader, param) == 24);
const _: () = assert!(offset_of!(SyncHeader, pid_ns) == 32);

/// A primitive's state: `#[repr(C)]`, cache-line aligned, only atomics (or
/// OS objects initialized by the creator), valid once zeroed and
/// initialized, shared by reference between processes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, aligned to at most 64, and sound to
/// reach through `&Self` from many processes at once.
pub(crate) unsafe trait State: Sized {
    const KIND: PrimitiveKind;
}

const fn round_up(n: usize) -> usize {
    n.div_ceil(LINE) * LINE
}

/// Bytes a primitive of state `S` guarding `value_size` bytes takes.
pub(crate) const fn footprint<S>(value_size: usize) -> usize {
    LINE + round_up(size_of::<S>()) + round_up(value_size)
}

/// The size and alignment of the value a primitive guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValueLayout {
    pub(crate) size: usize,
    pub(crate) align: usize,
}

impl ValueLayout {
    pub(crate) const NONE: ValueLayout = ValueLayout { size: 0, align: 1 };

    pub(crate) fn of<T>() -> ValueLayout {
        ValueLayout {
            size: size_of::<T>(),
            align: std::mem::align_of::<T>(),
        }
    }
}

fn refused(kind: ErrorKind) -> Error {
    Error::new(kind, "sync")
}

/// `NAME` or a full `shm:NAME?...` URL, as an endpoint of a segment sized
/// for `len` bytes.
fn endpoint(name: &str, len: usize) -> Result<Endpoint> {
    let mut ep = if name.contains(':') {
        Endpoint::parse(name)?
    } else {
        Endpoint::parse(&format!("shm:{name}"))?
    };
    ep.shm_name("a primitive (named NAME or shm:NAME)", "sync")?;
    ep.options_mut().size = len;
    Ok(ep)
}

/// Creates the segment `shm:NAME` (or the full URL `name`) with `len` data
/// bytes, running `init` before any other process can open it.
pub(crate) fn named_segment(
    name: &str,
    len: usize,
    init: impl FnOnce(&Segment) -> Result<()>,
) -> Result<Arc<Segment>> {
    let ep = endpoint(name, len)?;
    Ok(Arc::new(Segment::create_endpoint_with(&ep, init)?))
}

/// Opens the segment `shm:NAME`, waiting up to the URL's `?timeout=`
/// (or until `deadline`).
pub(crate) fn open_segment(
    name: &str,
    deadline: Option<std::time::Instant>,
) -> Result<(Arc<Segment>, Endpoint)> {
    let ep = endpoint(name, 0)?;
    let deadline = deadline.unwrap_or_else(|| crate::deadline::far_after(ep.options().timeout));
    let seg = Segment::open_until(&ep, deadline)?;
    Ok((Arc::new(seg), ep))
}

/// A primitive of state `S` at `offset` in a segment.
#[derive(Debug)]
pub(crate) struct Place<S> {
    seg: Arc<Segment>,
    offset: usize,
    _state: PhantomData<fn() -> S>,
}

impl<S: State> Place<S> {
    /// Creates the primitive in a segment of its own, `shm:NAME`; `init`
    /// runs on the zeroed state and value before any other process can
    /// open it.
    pub(crate) fn create_named(
        name: &str,
        value: ValueLayout,
        param: u32,
        init: impl FnOnce(&S, *mut u8) -> Result<()>,
    ) -> Result<Place<S>> {
        let seg = named_segment(name, footprint::<S>(value.size), |seg| {
            // SAFETY: the segment is new, and nobody but its creator can
            // open it until this returns.
            unsafe { Place::<S>::init_at(seg, 0, value, param, init) }
        })?;
        Place::open_in(&seg, 0, value)
    }

    /// Opens the primitive `shm:NAME`, waiting up to the URL's `?timeout=`
    /// for it to exist.
    pub(crate) fn open_named(name: &str, value: ValueLayout) -> Result<Place<S>> {
        Place::open_named_until(name, value, None)
    }

    /// [`Place::open_named`], waiting until `deadline` (the URL's
    /// `?timeout=` with `None`).
    pub(crate) fn open_named_until(
        name: &str,
        value: ValueLayout,
        deadline: Option<std::time::Instant>,
    ) -> Result<Place<S>> {
        let (seg, ep) = open_segment(name, deadline)?;
        Place::open_in(&seg, 0, value).map_err(|e| e.at(&ep))
    }

    /// Creates the primitive at `offset` in `seg` (zeroing what was there).
    ///
    /// # Safety
    #[doc = create_in_safety!()]
    pub(crate) unsafe fn create_in(
        seg: &Arc<Segment>,
        offset: usize,
        value: ValueLayout,
        param: u32,
        init: impl FnOnce(&S, *mut u8) -> Result<()>,
    ) -> Result<Place<S>> {
        // SAFETY: forwarded to the caller.
        unsafe { Place::init_at(seg, offset, value, param, init)? };
        Ok(Place {
            seg: seg.clone(),
            offset,
            _state: PhantomData,
        })
    }

    /// Initializes the primitive at `offset` in `seg`, publishing it last.
    ///
    /// # Safety
    #[doc = create_in_safety!()]
    pub(crate) unsafe fn init_at(
        seg: &Segment,
        offset: usize,
        value: ValueLayout,
        param: u32,
        init: impl FnOnce(&S, *mut u8) -> Result<()>,
    ) -> Result<()> {
        check_room::<S>(seg, offset, value)?;
        // SAFETY: the range is inside the segment (checked).
        let base = unsafe { seg.as_ptr().add(offset) };
        let place = PlaceRef::<S> {
            base,
            _state: PhantomData,
        };
        let h = place.header();
        // Claim the place: only a zero magic can be taken, by one process.
        // A live primitive here (or one being made) is refused, so a
        // second create never zeroes state that guards or waiters use.
        if let Err(found) =
            h.magic
                .compare_exchange(0, CLAIMING, Ordering::AcqRel, Ordering::Acquire)
        {
            return Err(Error::new(
                ErrorKind::occupied(if found == MAGIC || found == CLAIMING {
                    format!("a primitive already lives at offset {offset}: open it with open_in")
                } else {
                    format!(
                        "the bytes at offset {offset} are in use (not zeroed): pick a free offset"
                    )
                }),
                "create",
            ));
        }
        // SAFETY: in bounds; the claim above (and, for `create_in`, its
        // caller's contract) means no process uses these bytes. The magic
        // word itself is left as claimed.
        unsafe { std::ptr::write_bytes(base.add(8), 0, footprint::<S>(value.size) - 8) };
        if let Err(e) = init(place.state(), place.value()) {
            h.magic.store(0, Ordering::Release);
            return Err(e);
        }
        h.version.store(VERSION, Ordering::Relaxed);
        h.kind.store(S::KIND as u32, Ordering::Relaxed);
        h.value_size.store(value.size as u32, Ordering::Relaxed);
        h.value_align.store(value.align as u32, Ordering::Relaxed);
        h.param.store(param, Ordering::Relaxed);
        h.pid_ns
            .store(crate::sys::process::pid_namespace(), Ordering::Relaxed);
        // Last, with release: whoever sees the magic sees the state.
        h.magic.store(MAGIC, Ordering::Release);
        Ok(())
    }

    /// Opens the primitive at `offset` in `seg`, checking what it is.
    pub(crate) fn open_in(
        seg: &Arc<Segment>,
        offset: usize,
        value: ValueLayout,
    ) -> Result<Place<S>> {
        // The header first, to say what is there if it is something else.
        check_room::<()>(seg, offset, ValueLayout::NONE)?;
        let place = Place {
            seg: seg.clone(),
            offset,
            _state: PhantomData,
        };
        let h = place.header();
        let stamp = h.stamp();
        let none = format!(
            "no ipcx primitive at offset {offset} (not created yet, or other data): create it there first with create_in, or check the offset"
        );
        if let Some(kind) = stamp.error(VERSION, &none) {
            return Err(refused(kind));
        }
        let kind = h.kind.load(Ordering::Relaxed);
        if kind != S::KIND as u32 {
            let found = PrimitiveKind::from_u32(kind).map_or("unknown", PrimitiveKind::name);
            return Err(refused(ErrorKind::Foreign(format!(
                "this is a {found}, not a {}",
                S::KIND.name()
            ))));
        }
        let (theirs, ours) = (
            h.pid_ns.load(Ordering::Relaxed),
            crate::sys::process::pid_namespace(),
        );
        if theirs != 0 && ours != 0 && theirs != ours {
            return Err(refused(ErrorKind::Foreign(
                "the primitive was created in another PID namespace (another container): \
                 ipcx could not tell whether its holders live; open it from the creator's namespace"
                    .into(),
            )));
        }
        let (size, align) = (
            h.value_size.load(Ordering::Relaxed) as usize,
            h.value_align.load(Ordering::Relaxed) as usize,
        );
        if (size, align) != (value.size, value.align) {
            return Err(refused(ErrorKind::WrongType(format!(
                "it guards a value of {size} bytes (align {align}), this type has {} bytes (align {}); open it with the type it was created with",
                value.size, value.align
            ))));
        }
        check_room::<S>(seg, offset, value)?;
        Ok(place)
    }

    fn as_ref(&self) -> PlaceRef<'_, S> {
        PlaceRef {
            // SAFETY: in bounds, checked when the place was made.
            base: unsafe { self.seg.as_ptr().add(self.offset) },
            _state: PhantomData,
        }
    }

    pub(crate) fn header(&self) -> &SyncHeader {
        self.as_ref().header()
    }

    pub(crate) fn state(&self) -> &S {
        self.as_ref().state()
    }

    /// The guarded value's first byte (64-byte aligned).
    pub(crate) fn value(&self) -> *mut u8 {
        self.as_ref().value()
    }

    /// The creation parameter.
    pub(crate) fn param(&self) -> u32 {
        self.header().param.load(Ordering::Relaxed)
    }

    /// The segment the primitive lives in.
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Keeps the segment mapped until the process exits.
    pub(crate) fn leak_mapping(&self) {
        std::mem::forget(self.seg.clone());
    }

    /// Whether the primitive has its named segment to itself (it starts
    /// the segment, and the segment has a name).
    pub(crate) fn is_named_whole(&self) -> bool {
        self.offset == 0 && self.seg.name().is_some()
    }

    /// The segment's name, for messages.
    pub(crate) fn name(&self) -> &str {
        self.seg.name().unwrap_or("(anonymous)")
    }
}

fn check_room<S>(seg: &Segment, offset: usize, value: ValueLayout) -> Result<()> {
    if value.align > LINE {
        return Err(refused(ErrorKind::WrongType(format!(
            "values aligned to more than {LINE} bytes are not supported"
        ))));
    }
    let end = offset.checked_add(footprint::<S>(value.size));
    if !offset.is_multiple_of(LINE) || end.is_none_or(|e| e > seg.len()) {
        return Err(refused(ErrorKind::OutOfBounds(format!(
            "a primitive needs {} bytes at a 64-byte aligned offset; {offset} in a segment of {} bytes does not fit",
            footprint::<S>(value.size),
            seg.len()
        ))));
    }
    Ok(())
}

/// Borrowed view of a place's bytes.
struct PlaceRef<'a, S> {
    base: *mut u8,
    _state: PhantomData<&'a S>,
}

impl SyncHeader {
    /// What the header's magic and layout version say.
    fn stamp(&self) -> Stamp {
        let magic = self.magic.load(Ordering::Acquire);
        Stamp::of(magic, MAGIC, self.version.load(Ordering::Relaxed), VERSION)
    }
}

impl<'a, S> PlaceRef<'a, S> {
    fn header(&self) -> &'a SyncHeader {
        // SAFETY: `base` is 64-byte aligned with a footprint in bounds
        // (checked); SyncHeader is atomics and integers, valid for any bits.
        unsafe { &*self.base.cast::<SyncHeader>() }
    }

    fn state(&self) -> &'a S {
        // SAFETY: in bounds and aligned as above; `S: State` is sound to
        // share by reference, and was zeroed then initialized by its creator
        // before the magic was published.
        unsafe { &*self.base.add(LINE).cast::<S>() }
    }

    fn value(&self) -> *mut u8 {
        // SAFETY: in bounds (the footprint covers it).
        unsafe { self.base.add(LINE + round_up(size_of::<S>())) }
    }
}

/// What `ipcx ls` says of the primitive at the start of `seg`, if one is
/// there: its kind and state (who holds it, its value, its generation).
pub fn describe(seg: Segment) -> Option<String> {
    let seg = Arc::new(seg);
    let any = Place::<super::event::EventState> {
        seg: seg.clone(),
        offset: 0,
        _state: PhantomData,
    };
    if seg.len() < LINE || any.header().stamp() != Stamp::Ready {
        return None;
    }
    let kind = PrimitiveKind::from_u32(any.header().kind.load(Ordering::Relaxed))?;
    let value = ValueLayout {
        size: any.header().value_size.load(Ordering::Relaxed) as usize,
        align: any.header().value_align.load(Ordering::Relaxed) as usize,
    };
    fn open<S: State>(seg: &Arc<Segment>, value: ValueLayout) -> Option<Place<S>> {
        Place::open_in(seg, 0, value).ok()
    }
    let state = match kind {
        PrimitiveKind::Mutex => super::mutex::describe(&open(&seg, value)?),
        PrimitiveKind::Condvar => String::new(),
        PrimitiveKind::Semaphore => super::semaphore::describe(&open(&seg, value)?),
        PrimitiveKind::RwLock => super::rwlock::describe(&open(&seg, value)?),
        PrimitiveKind::Barrier => super::barrier::describe(&open(&seg, value)?),
        PrimitiveKind::SpinLock => super::spin::describe(&open(&seg, value)?),
        PrimitiveKind::Event => super::event::describe(&open(&seg, value)?),
        PrimitiveKind::Value => String::new(),
    };
    Some(if state.is_empty() {
        kind.name().to_string()
    } else {
        format!("{} {state}", kind.name())
    })
}
