//! Atomics in shared memory: [`SharedAtomicU64`] and friends.
//!
//! They are the standard library's atomics, placed in a segment: every
//! operation and [`std::sync::atomic::Ordering`] means across processes
//! what it means across threads, because processes mapping the same pages
//! share the same cache-coherent memory. `Relaxed` is enough for a
//! counter; publishing data written before a store needs `Release` on the
//! store and `Acquire` on the load that sees it. There is no lock, so there
//! is nothing a dead process can leave held. (There is no shared
//! `AtomicBool`: another process may store any byte, and a `bool` other
//! than 0 or 1 is undefined behaviour; use a `SharedAtomicU32` as a flag.)

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

use super::place::{Place, PrimitiveKind, State, ValueLayout, footprint};
use crate::error::{Error, ErrorKind, Result};
use crate::shm::Segment;

/// Which atomic type a value primitive holds, so that a `u64` is never
/// opened as an `i64`.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct ValueState {
    type_tag: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<ValueState>() == 64);

// SAFETY: repr(C), align 64, atomics only.
unsafe impl State for ValueState {
    const KIND: PrimitiveKind = PrimitiveKind::Value;
}

macro_rules! shared_atomic {
    ($(#[$doc:meta])* $name:ident, $atomic:ty, $int:ty, $tag:expr) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            place: Place<ValueState>,
        }

        impl $name {
            /// Creates it as `NAME` (a segment `shm:NAME`) holding `init`.
            pub fn create(name: &str, init: $int) -> Result<$name> {
                Ok($name {
                    place: Place::create_named(name, ValueLayout::of::<$atomic>(), $tag, |s, v| {
                        init_value::<$atomic>(s, v, $tag, <$atomic>::new(init))
                    })?,
                })
            }

            /// Opens `NAME`, waiting up to `?timeout=` for it.
            pub fn open(name: &str) -> Result<$name> {
                let place = Place::open_named(name, ValueLayout::of::<$atomic>())?;
                check_tag(&place, $tag, stringify!($name))?;
                Ok($name { place })
            }

            /// Creates it at `offset` in `seg`.
            ///
            /// # Safety
            #[doc = create_in_safety!()]
            pub unsafe fn create_in(seg: &Arc<Segment>, offset: usize, init: $int) -> Result<$name> {
                let layout = ValueLayout::of::<$atomic>();
                // SAFETY: forwarded to the caller.
                let place = unsafe {
                    Place::create_in(seg, offset, layout, $tag, |s, v| {
                        init_value::<$atomic>(s, v, $tag, <$atomic>::new(init))
                    })?
                };
                Ok($name { place })
            }

            /// Opens the one created at `offset` in `seg`.
            pub fn open_in(seg: &Arc<Segment>, offset: usize) -> Result<$name> {
                let place = Place::open_in(seg, offset, ValueLayout::of::<$atomic>())?;
                check_tag(&place, $tag, stringify!($name))?;
                Ok($name { place })
            }

            /// Bytes it takes in a segment.
            pub const fn footprint() -> usize {
                footprint::<ValueState>(std::mem::size_of::<$atomic>())
            }
        }

        impl Deref for $name {
            type Target = $atomic;
            fn deref(&self) -> &$atomic {
                // SAFETY: the value area is aligned room for the atomic,
                // initialized by the creator, valid for any bits, and only
                // ever reached atomically.
                unsafe { &*self.place.value().cast::<$atomic>() }
            }
        }
    };
}

fn init_value<A>(s: &ValueState, value: *mut u8, tag: u32, init: A) -> Result<()> {
    s.type_tag.store(tag, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: `value` is aligned room for an `A`, not yet shared.
    unsafe { value.cast::<A>().write(init) };
    Ok(())
}

fn check_tag(place: &Place<ValueState>, tag: u32, name: &str) -> Result<()> {
    let found = place
        .state()
        .type_tag
        .load(std::sync::atomic::Ordering::Relaxed);
    if found != tag {
        return Err(Error::new(
            ErrorKind::WrongType(format!(
                "this value was created as another type than {name}; open it with its own type"
            )),
            "open",
        ));
    }
    Ok(())
}

shared_atomic!(
    /// An [`AtomicU64`] shared between processes (derefs to it).
    ///
    /// ```no_run
    /// use std::sync::atomic::Ordering;
    /// use ipcx::sync::SharedAtomicU64;
    /// # fn main() -> ipcx::Result<()> {
    /// let served = SharedAtomicU64::create("requests-served", 0)?;
    /// served.fetch_add(1, Ordering::Relaxed);
    /// # Ok(()) }
    /// ```
    SharedAtomicU64, AtomicU64, u64, 1
);
shared_atomic!(
    /// An [`AtomicU32`] shared between processes (derefs to it).
    SharedAtomicU32, AtomicU32, u32, 2
);
shared_atomic!(
    /// An [`AtomicI64`] shared between processes (derefs to it).
    SharedAtomicI64, AtomicI64, i64, 3
);
