//! What the primitives that guard a value share: the initializer that
//! writes the value, and their constructors (a macro, one set per type).

use crate::error::Result;

/// An initializer that writes `init` as the guarded value.
pub(crate) fn write_value<S, T>(init: T) -> impl FnOnce(&S, *mut u8) -> Result<()> {
    move |_, value| {
        // SAFETY: `value` is 64-byte aligned room for a `T` (the footprint
        // covers it; alignment above 64 is refused), not yet shared.
        unsafe { value.cast::<T>().write(init) };
        Ok(())
    }
}

/// The constructors of a primitive guarding a `T`: by name, or placed in a
/// segment the application shares (`$what` names it in the docs; `$init`
/// makes the initializer from the value).
macro_rules! value_constructors {
    ($what:literal, $state:ty, $init:expr) => {
        #[doc = concat!("Creates the ", $what, " `NAME` (a segment `shm:NAME`; a full")]
        #[doc = "`shm:NAME?mode=0660` URL works too) holding `init`."]
        pub fn create(name: &str, init: T) -> Result<Self> {
            Ok(Self::from_place(Place::create_named(
                name,
                ValueLayout::of::<T>(),
                0,
                $init(init),
            )?))
        }

        #[doc = concat!("Opens the ", $what, " `NAME`, waiting up to `?timeout=` for it to")]
        #[doc = "exist. Refused if it is another kind of primitive, or guards a value"]
        #[doc = "of another size."]
        pub fn open(name: &str) -> Result<Self> {
            Ok(Self::from_place(Place::open_named(
                name,
                ValueLayout::of::<T>(),
            )?))
        }

        #[doc = concat!("Creates a ", $what, " at `offset` (64-byte aligned) in a segment")]
        #[doc = "the application shares; it takes [`Self::footprint`] bytes."]
        #[doc = ""]
        #[doc = "# Safety"]
        #[doc = ""]
        #[doc = create_in_safety!()]
        pub unsafe fn create_in(seg: &Arc<Segment>, offset: usize, init: T) -> Result<Self> {
            // SAFETY: forwarded to the caller.
            Ok(Self::from_place(unsafe {
                Place::create_in(seg, offset, ValueLayout::of::<T>(), 0, $init(init))
            }?))
        }

        #[doc = concat!("Opens the ", $what, " another process created at `offset` in `seg`.")]
        pub fn open_in(seg: &Arc<Segment>, offset: usize) -> Result<Self> {
            Ok(Self::from_place(Place::open_in(
                seg,
                offset,
                ValueLayout::of::<T>(),
            )?))
        }

        #[doc = concat!("Bytes a ", $what, " guarding a `T` takes in a segment.")]
        pub const fn footprint() -> usize {
            footprint::<$state>(size_of::<T>())
        }
    };
}
pub(crate) use value_constructors;
