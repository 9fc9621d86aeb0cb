//! Plain-data messages on `shm:`, without copying: a [`PlainSender`]
//! writes each value where its receivers will read it, in a chunk of a
//! shared-memory channel ([`crate::shm::Publisher`]), and a
//! [`PlainReceiver`] reads it there ([`TypedSample`] derefs to the value
//! in shared memory). The channel carries the type's name, version, size
//! and alignment, written by its creator; a receiver (or another sender)
//! of another type is refused when it opens the channel, with an error
//! that names both — the typed links' schema check, for types with no
//! encoding at all.
//!
//! A type is plain data when zerocopy's traits say so: any bit pattern
//! is a valid value, no padding, no pointers (`#[derive(FromBytes,
//! IntoBytes, KnownLayout, Immutable)]` with `#[repr(C)]`); implement
//! [`Plain`] for it.
//!
//! ```
//! # fn main() -> ipcx::Result<()> {
//! # let url = format!("shm:ipcx-doc-plain-{}", std::process::id());
//! use ipcx::pattern::{Plain, PlainReceiver, PlainSender};
//!
//! /// Time and price: plain data.
//! type Tick = [u64; 2];
//!
//! let mut ticks = PlainSender::<Tick>::create(&url)?;
//! let prices = PlainReceiver::<Tick>::open(&url)?;
//! let mut tick = ticks.loan()?;
//! *tick = [1_700_000_000, 24_150]; // written straight into shared memory
//! tick.send()?;
//! assert_eq!(*prices.recv()?, [1_700_000_000, 24_150]); // read in place
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::marker::PhantomData;
use std::time::Duration;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::Result;
use crate::shm::{Publisher, Schema, Subscriber, TypedLoan, TypedSample};

/// A plain-data type sent without copying on `shm:` (see the
/// [module docs](self)): its name and version are checked as a typed
/// link's are.
pub trait Plain: FromBytes + IntoBytes + KnownLayout + Immutable + 'static {
    /// Raised when the type changes: ends of other versions are refused.
    const VERSION: u32 = 1;

    /// The name checked when a channel is opened (the Rust type name by
    /// default, at most [`SCHEMA_NAME_MAX`](crate::shm::SCHEMA_NAME_MAX)
    /// bytes).
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }
}

impl<T: FromBytes + IntoBytes + Immutable + 'static, const N: usize> Plain for [T; N] {}
macro_rules! plain {
    ($($t:ty),*) => { $(impl Plain for $t {})* };
}
plain!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

fn schema<T: Plain>() -> Schema {
    Schema::named::<T>(&T::name(), T::VERSION)
}

/// The sending end: creates (or opens) a typed channel and writes values
/// in place.
#[derive(Debug)]
pub struct PlainSender<T: Plain> {
    chan: Publisher,
    _t: PhantomData<fn(T)>,
}

impl<T: Plain> PlainSender<T> {
    /// Creates the channel `url` (`shm:name`; `?slots=`, `?overflow=`;
    /// a chunk holds one `T` unless `?max_msg=` says more), carrying `T`.
    pub fn create(url: &str) -> Result<PlainSender<T>> {
        Ok(PlainSender {
            chan: Publisher::create_typed(url, &schema::<T>())?,
            _t: PhantomData,
        })
    }

    /// Opens the channel `url` another sender created, as one more of its
    /// senders; it must carry `T` ([`ErrorKind::Handshake`](crate::ErrorKind::Handshake),
    /// naming both, if not).
    pub fn open(url: &str) -> Result<PlainSender<T>> {
        Ok(PlainSender {
            chan: Publisher::open_typed(url, &schema::<T>())?,
            _t: PhantomData,
        })
    }

    /// A `T` in shared memory to fill in place, then
    /// [`send`](TypedLoan::send); dropped unsent, nothing is delivered.
    pub fn loan(&mut self) -> Result<TypedLoan<'_, T>> {
        self.chan.loan_as::<T>()
    }

    /// Sends a copy of `value` (a loan filled from it).
    pub fn send(&mut self, value: &T) -> Result<()> {
        let mut loan = self.chan.loan(size_of::<T>())?;
        loan.copy_from_slice(value.as_bytes());
        loan.send()
    }

    /// Receivers attached now.
    pub fn receivers(&self) -> usize {
        self.chan.subscribers()
    }

    /// Waits until at least `n` receivers are attached, at most `timeout`.
    pub fn wait_for_receivers(&self, n: usize, timeout: Duration) -> Result<()> {
        self.chan.wait_for_subscribers(n, timeout)
    }
}

/// The receiving end: each value is read where its sender wrote it.
#[derive(Debug)]
pub struct PlainReceiver<T: Plain> {
    chan: Subscriber,
    _t: PhantomData<fn() -> T>,
}

impl<T: Plain> PlainReceiver<T> {
    /// Attaches to the channel `url` (waiting up to its `?timeout=` for
    /// the sender to create it); it must carry `T`
    /// ([`ErrorKind::Handshake`](crate::ErrorKind::Handshake), naming
    /// both, if not). Values sent from now on arrive.
    pub fn open(url: &str) -> Result<PlainReceiver<T>> {
        Ok(PlainReceiver {
            chan: Subscriber::open_typed(url, &schema::<T>())?,
            _t: PhantomData,
        })
    }

    /// The next value, in place; `Closed` once every sender is gone and
    /// everything sent was read.
    pub fn recv(&self) -> Result<TypedSample<'_, T>> {
        self.chan.recv_as::<T>()
    }

    /// [`PlainReceiver::recv`], waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<TypedSample<'_, T>> {
        self.chan.recv_timeout_as::<T>(timeout)
    }

    /// The next value if one is there now.
    pub fn try_recv(&self) -> Result<Option<TypedSample<'_, T>>> {
        self.chan.try_recv_as::<T>()
    }

    /// Values this receiver missed (`?overflow=drop_oldest`).
    pub fn lost(&self) -> u64 {
        self.chan.lost()
    }
}
