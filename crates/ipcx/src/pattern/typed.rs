//! Typed messages: [`Sender<T>`] and [`Receiver<T>`] over any link, for
//! `T` that serde serializes, encoded with postcard.
//!
//! Both ends first trade their schema — the type's name and a version the
//! user sets ([`Message`]) — as the link's first message each way, so a
//! sender and a receiver that disagree fail at connect, with an error
//! naming both, instead of decoding garbage later. A message that does
//! not decode afterwards is [`ErrorKind::WrongType`] and the link stays
//! usable.
//!
//! ```
//! # fn main() -> ipcx::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("ipcx-doc-typed-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let url = format!("unix:{}/orders.sock", dir.display());
//! use ipcx::pattern::{Message, Receiver, Sender};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct Order { id: u64, qty: u32 }
//! impl Message for Order {
//!     const VERSION: u32 = 1;
//! }
//!
//! let listener = ipcx::Listener::bind(&url)?;
//! # let url2 = url.clone();
//! let client = std::thread::spawn(move || -> ipcx::Result<()> {
//!     let mut tx = Sender::<Order>::connect(&url2)?;
//!     tx.send(&Order { id: 7, qty: 3 })
//! });
//! let mut rx = Receiver::<Order>::accept(&listener)?;
//! assert_eq!(rx.recv()?, Order { id: 7, qty: 3 });
//! # client.join().unwrap()?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

mod schema;

#[cfg(feature = "async")]
pub(super) use schema::trade_schemas_async;
pub(super) use schema::{SCHEMA_WAIT, Way, check_schema, encode_schema, trade_schemas};

use std::borrow::Cow;
use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};
use crate::{Link, Listener};

/// A type that travels as a typed message: its name and version are its
/// schema, checked when a link opens.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Tick { price: f64 }
/// // Bump VERSION when the encoding changes in a way old peers cannot read.
/// impl ipcx::pattern::Message for Tick { const VERSION: u32 = 3; }
/// ```
pub trait Message: Serialize + DeserializeOwned {
    /// The version of the type's encoding (default 0).
    const VERSION: u32 = 0;

    /// The name peers know the type by (default: its Rust path, as
    /// `std::any::type_name` gives it). Override it to rename a type, or
    /// to share a schema with a differently named type.
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }
}

macro_rules! plain_messages {
    ($($t:ty),*) => {$(
        impl Message for $t {}
    )*};
}
plain_messages!(
    (),
    String,
    bool,
    u8,
    u16,
    u32,
    u64,
    u128,
    i8,
    i16,
    i32,
    i64,
    i128,
    f32,
    f64
);

/// Containers of messages: their name is the Rust path (with the inner
/// types'), their version derives from the inner types' versions, so a
/// `(Order, u64)` of `Order` v2 differs from one of `Order` v1.
impl<T: Message> Message for Vec<T> {
    const VERSION: u32 = T::VERSION;
}

impl<T: Message> Message for Option<T> {
    const VERSION: u32 = T::VERSION;
}

macro_rules! tuple_messages {
    ($(($($t:ident),+)),*) => {$(
        impl<$($t: Message),+> Message for ($($t,)+) {
            const VERSION: u32 = {
                let mut v = 0u32;
                $(v = v.wrapping_mul(31).wrapping_add($t::VERSION);)+
                v
            };
        }
    )*};
}
tuple_messages!((A, B), (A, B, C), (A, B, C, D));

/// A byte payload that serializes as one block of bytes (postcard: a
/// length and the bytes), where a `Vec<u8>` serializes byte by byte: use
/// it for blobs in typed messages. Derefs to `Vec<u8>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl std::ops::Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes(v)
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Bytes, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<Bytes, E> {
                Ok(Bytes(crate::copy::to_vec(v)))
            }
            fn visit_byte_buf<E: serde::de::Error>(
                self,
                v: Vec<u8>,
            ) -> std::result::Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visit)
    }

    /// Into the bytes already there, reusing their allocation.
    fn deserialize_in_place<D: serde::Deserializer<'de>>(
        d: D,
        place: &mut Bytes,
    ) -> std::result::Result<(), D::Error> {
        struct Into<'a>(&'a mut Vec<u8>);
        impl<'de> serde::de::Visitor<'de> for Into<'_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> std::result::Result<(), E> {
                self.0.clear();
                crate::copy::extend(self.0, v);
                Ok(())
            }
        }
        d.deserialize_byte_buf(Into(&mut place.0))
    }
}

impl Message for Bytes {}

/// Encodes `msg` into `buf` (cleared first).
pub(crate) fn encode<T: Serialize>(msg: &T, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    let out = std::mem::take(buf);
    *buf = postcard::to_extend(msg, out).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument(format!("the message cannot be encoded: {e}")),
            "send",
        )
    })?;
    Ok(())
}

/// The error for `len` bytes that do not decode as `T`.
fn undecodable<T: Message>(len: usize, why: String) -> Error {
    Error::new(
        ErrorKind::WrongType(format!(
            "a message of {len} bytes does not decode as `{}` v{}: {why}; \
             is the peer's type the same, with the same VERSION?",
            T::name(),
            T::VERSION
        )),
        "recv",
    )
}

/// Decodes one `T` that must fill `bytes` exactly.
pub(crate) fn decode<T: Message>(bytes: &[u8]) -> Result<T> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(undecodable::<T>(
            bytes.len(),
            format!("{} bytes left over", rest.len()),
        )),
        Err(e) => Err(undecodable::<T>(bytes.len(), e.to_string())),
    }
}

/// Decodes one `T` that must fill `bytes` exactly into `place`, reusing
/// what it holds where the type can (`Vec`s, `String`s, [`Bytes`]).
pub(crate) fn decode_into<T: Message>(bytes: &[u8], place: &mut T) -> Result<()> {
    let wrong = |why: String| undecodable::<T>(bytes.len(), why);
    let mut de = postcard::Deserializer::from_bytes(bytes);
    T::deserialize_in_place(&mut de, place).map_err(|e| wrong(e.to_string()))?;
    match de.finalize() {
        Ok([]) => Ok(()),
        Ok(rest) => Err(wrong(format!("{} bytes left over", rest.len()))),
        Err(e) => Err(wrong(e.to_string())),
    }
}

/// What every typed end holds: the link, and one buffer messages are
/// encoded into and received into.
#[derive(Debug)]
struct Typed {
    link: Link,
    buf: Vec<u8>,
}

impl Typed {
    /// Makes `link` typed: this end's `ways` are traded with the peer's.
    fn new(mut link: Link, ways: &[Way]) -> Result<Typed> {
        trade_schemas(&mut link, ways)?;
        Ok(Typed {
            link,
            buf: Vec::new(),
        })
    }

    fn send<T: Serialize>(&mut self, msg: &T, wait: bool) -> Result<()> {
        encode(msg, &mut self.buf)?;
        if wait {
            self.link.send(&self.buf)
        } else {
            self.link.try_send(&self.buf)
        }
    }

    fn recv<T: Message>(&mut self) -> Result<T> {
        self.link.recv_into(&mut self.buf)?;
        decode(&self.buf)
    }

    fn recv_into<T: Message>(&mut self, value: &mut T) -> Result<()> {
        self.link.recv_into(&mut self.buf)?;
        decode_into(&self.buf, value)
    }

    fn try_recv<T: Message>(&mut self) -> Result<Option<T>> {
        self.link.try_recv()?.map(|m| decode(&m)).transpose()
    }
}

/// The sending end of a typed link.
#[derive(Debug)]
pub struct Sender<T: Message> {
    ends: Typed,
    _t: PhantomData<fn(T)>,
}

impl<T: Message> Sender<T> {
    /// Connects to `url` (see [`Link::connect`]) and trades schemas with
    /// the receiver there: a different type or version is
    /// [`ErrorKind::Handshake`], naming both.
    pub fn connect(url: &str) -> Result<Sender<T>> {
        Sender::from_link(Link::connect(url)?)
    }

    /// Makes `link` typed (the schemas are traded on it first).
    pub fn from_link(link: Link) -> Result<Sender<T>> {
        Ok(Sender {
            ends: Typed::new(link, &[Way::sends::<T>()])?,
            _t: PhantomData,
        })
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &T) -> Result<()> {
        self.ends.send(msg, true)
    }

    /// Sends one message if the link has room now ([`Link::try_send`]).
    pub fn try_send(&mut self, msg: &T) -> Result<()> {
        self.ends.send(msg, false)
    }

    /// The link underneath.
    pub fn link(&mut self) -> &mut Link {
        &mut self.ends.link
    }

    /// The link, untyped again.
    pub fn into_link(self) -> Link {
        self.ends.link
    }
}

/// The receiving end of a typed link.
#[derive(Debug)]
pub struct Receiver<T: Message> {
    ends: Typed,
    _t: PhantomData<fn() -> T>,
}

impl<T: Message> Receiver<T> {
    /// Accepts the next peer of `listener` and trades schemas with it.
    pub fn accept(listener: &Listener) -> Result<Receiver<T>> {
        Receiver::from_link(listener.accept()?)
    }

    /// Connects to `url` (a sender that binds) and trades schemas.
    pub fn connect(url: &str) -> Result<Receiver<T>> {
        Receiver::from_link(Link::connect(url)?)
    }

    /// Makes `link` typed (the schemas are traded on it first).
    pub fn from_link(link: Link) -> Result<Receiver<T>> {
        Ok(Receiver {
            ends: Typed::new(link, &[Way::receives::<T>()])?,
            _t: PhantomData,
        })
    }

    /// Receives one message, waiting as long as it takes. One that does
    /// not decode is [`ErrorKind::WrongType`]; the next is received as
    /// usual.
    pub fn recv(&mut self) -> Result<T> {
        self.ends.recv()
    }

    /// Receives one message into `value`, reusing what it holds where the
    /// type can (`Vec`s and `String`s, [`Bytes`]): no allocation per
    /// message once they are large enough, as [`Link::recv_into`]. On a
    /// decoding error `value` may be left part-written.
    pub fn recv_into(&mut self, value: &mut T) -> Result<()> {
        self.ends.recv_into(value)
    }

    /// A message if one is there now.
    pub fn try_recv(&mut self) -> Result<Option<T>> {
        self.ends.try_recv()
    }

    /// [`Receiver::recv`], waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        decode(&self.ends.link.recv_timeout(timeout)?)
    }

    /// The link underneath.
    pub fn link(&mut self) -> &mut Link {
        &mut self.ends.link
    }

    /// The link, untyped again.
    pub fn into_link(self) -> Link {
        self.ends.link
    }
}

/// A typed link both ways: it sends `S` and receives `R` (its peer is a
/// `TypedLink<R, S>`), as a request/reply client and server are.
#[derive(Debug)]
pub struct TypedLink<S: Message, R: Message> {
    ends: Typed,
    _t: PhantomData<fn(S) -> R>,
}

impl<S: Message, R: Message> TypedLink<S, R> {
    /// Connects to `url` and trades schemas: the peer must send `R` and
    /// receive `S`.
    pub fn connect(url: &str) -> Result<TypedLink<S, R>> {
        TypedLink::from_link(Link::connect(url)?)
    }

    /// Accepts the next peer of `listener` and trades schemas.
    pub fn accept(listener: &Listener) -> Result<TypedLink<S, R>> {
        TypedLink::from_link(listener.accept()?)
    }

    /// Makes `link` typed (the schemas are traded on it first).
    pub fn from_link(link: Link) -> Result<TypedLink<S, R>> {
        Ok(TypedLink {
            ends: Typed::new(link, &[Way::sends::<S>(), Way::receives::<R>()])?,
            _t: PhantomData,
        })
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &S) -> Result<()> {
        self.ends.send(msg, true)
    }

    /// Receives one message ([`ErrorKind::WrongType`] if it does not
    /// decode; the link goes on).
    pub fn recv(&mut self) -> Result<R> {
        self.ends.recv()
    }

    /// Receives one message into `value`, reusing what it holds (see
    /// [`Receiver::recv_into`]).
    pub fn recv_into(&mut self, value: &mut R) -> Result<()> {
        self.ends.recv_into(value)
    }

    /// A message if one is there now.
    pub fn try_recv(&mut self) -> Result<Option<R>> {
        self.ends.try_recv()
    }

    /// The link underneath.
    pub fn link(&mut self) -> &mut Link {
        &mut self.ends.link
    }

    /// The link, untyped again.
    pub fn into_link(self) -> Link {
        self.ends.link
    }
}

impl<T: Message> crate::Pollable for Receiver<T> {
    fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.ends.link.poll_fd()
    }

    fn ready_now(&mut self) -> bool {
        self.ends.link.ready_now()
    }

    fn confirm(&mut self) -> bool {
        self.ends.link.confirm()
    }

    fn check_every(&self) -> Option<Duration> {
        self.ends.link.check_every()
    }
}

impl<T: Message> Iterator for Receiver<T> {
    type Item = Result<T>;

    /// The next message; `None` once the peer closed the link.
    fn next(&mut self) -> Option<Result<T>> {
        match self.recv() {
            Err(e) if e.is_closed() => None,
            r => Some(r),
        }
    }
}
