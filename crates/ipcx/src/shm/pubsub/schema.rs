//! What a typed channel carries ([`Schema`]): written by its creator into
//! the channel header before the channel is published, checked by each
//! publisher and subscriber that opens it typed.

use std::fmt;

use crate::error::{Error, ErrorKind, Result};
use crate::wait::primitive::{AtomicU32, AtomicU64, Ordering};

/// Most bytes of a schema's type name kept in the channel.
pub const SCHEMA_NAME_MAX: usize = 128;

/// A type carried by a channel: its name and version, size and alignment.
/// Opening a channel typed ([`Subscriber::open_typed`](super::Subscriber::open_typed))
/// with another schema fails, naming both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// The type's name (at most [`SCHEMA_NAME_MAX`] bytes are kept).
    pub name: String,
    /// A version the user raises when the type changes.
    pub version: u32,
    /// `size_of` the type.
    pub size: u32,
    /// `align_of` the type.
    pub align: u32,
}

impl Schema {
    /// `T`'s schema: its type name, `version`, size and alignment.
    pub fn of<T>(version: u32) -> Schema {
        Schema::named::<T>(std::any::type_name::<T>(), version)
    }

    /// `T`'s size and alignment under a name of the caller's.
    pub fn named<T>(name: &str, version: u32) -> Schema {
        let mut end = name.len().min(SCHEMA_NAME_MAX);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        Schema {
            name: name[..end].to_string(),
            version,
            size: size_of::<T>() as u32,
            align: align_of::<T>() as u32,
        }
    }
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` v{} ({} bytes, aligned to {})",
            self.name, self.version, self.size, self.align
        )
    }
}

/// The schema in a channel header: all atomics, as every byte of shared
/// memory is read (a peer may write it at any time).
#[repr(C)]
#[derive(Debug)]
pub(super) struct SchemaField {
    /// Bytes of the name; 0 for a channel of untyped bytes.
    len: AtomicU32,
    version: AtomicU32,
    size: AtomicU32,
    align: AtomicU32,
    name: [AtomicU64; SCHEMA_NAME_MAX / 8],
}

impl SchemaField {
    /// An empty field (what a fresh, zeroed segment holds), for models
    /// that build a header in memory.
    #[cfg(ipcx_loom)]
    pub(super) fn empty() -> SchemaField {
        SchemaField {
            len: AtomicU32::new(0),
            version: AtomicU32::new(0),
            size: AtomicU32::new(0),
            align: AtomicU32::new(0),
            name: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Writes `s` (before the channel is published).
    pub(super) fn store(&self, s: &Schema) {
        let name = s.name.as_bytes();
        for (i, word) in self.name.iter().enumerate() {
            let mut b = [0u8; 8];
            let from = (i * 8).min(name.len());
            let to = (from + 8).min(name.len());
            b[..to - from].copy_from_slice(&name[from..to]);
            word.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        self.version.store(s.version, Ordering::Relaxed);
        self.size.store(s.size, Ordering::Relaxed);
        self.align.store(s.align, Ordering::Relaxed);
        self.len.store(name.len() as u32, Ordering::Relaxed);
    }

    /// The schema written, if any; its bytes copied out, then checked.
    pub(super) fn load(&self) -> Option<Schema> {
        let len = (self.len.load(Ordering::Relaxed) as usize).min(SCHEMA_NAME_MAX);
        if len == 0 {
            return None;
        }
        let bytes: Vec<u8> = self
            .name
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .take(len)
            .collect();
        Some(Schema {
            name: String::from_utf8_lossy(&bytes).into_owned(),
            version: self.version.load(Ordering::Relaxed),
            size: self.size.load(Ordering::Relaxed),
            align: self.align.load(Ordering::Relaxed),
        })
    }

    /// Checks that the channel carries `want`; the error names both.
    pub(super) fn check(&self, want: &Schema, op: &'static str) -> Result<()> {
        match self.load() {
            Some(have) if have == *want => Ok(()),
            have => Err(Error::new(
                ErrorKind::Handshake(format!(
                    "schema mismatch: this side carries {want}, the channel {}; \
                     open it with the type (and version) its creator gave it",
                    have.map_or_else(|| "untyped bytes".to_string(), |h| h.to_string())
                )),
                op,
            )),
        }
    }
}
