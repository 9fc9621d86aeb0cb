//! The one error type of the library.

use std::fmt;
use std::io;

use crate::wire::FrameError;

/// Result with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in a form callers can branch on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The peer closed the link, or went away.
    #[error("the peer closed the link")]
    Closed,
    /// A timed operation ran out of time.
    #[error("timed out")]
    TimedOut,
    /// A non-blocking operation found nothing to do.
    #[error("no message is ready")]
    WouldBlock,
    /// The mechanism or operation is not available; the text says why.
    #[error("{0}")]
    Unsupported(String),
    /// This end of a one-way link does not go that way (a FIFO opened
    /// with `?duplex=false`, or raw, is written by its connector and read
    /// by its listener); the text says which way it goes.
    #[error("{0}")]
    OneWay(String),
    /// An argument is out of range, or the call does not fit the object's
    /// state (a release without an acquire); the text says which.
    #[error("{0}")]
    InvalidArgument(String),
    /// An offset and length that do not fit a segment's data region (or are
    /// misaligned for what was asked).
    #[error("{0}")]
    OutOfBounds(String),
    /// The object at the name or offset is not what was asked for: another
    /// program's, another kind of ipcx object, or not in a usable state (a
    /// descriptor not sealed, a primitive not created yet).
    #[error("{0}")]
    Foreign(String),
    /// The object was made by another layout version of ipcx.
    #[error("layout version {found}, this build reads {expected}; use the same ipcx on both sides")]
    VersionMismatch {
        /// The version the object carries.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// A journal reader wants a record that retention already removed.
    #[error("sequence {wanted} was removed by retention; the oldest kept is {oldest} ({} records behind)", oldest.saturating_sub(*wanted))]
    FellBehind {
        /// The sequence number the reader wanted.
        wanted: u64,
        /// The oldest sequence number still kept.
        oldest: u64,
    },
    /// A fixed table of the object is full (subscriber or publisher places,
    /// barrier parties, semaphore holders, async waiters); the text says
    /// what to do.
    #[error("{0}")]
    LimitReached(String),
    /// A message or value is not the type (size, alignment) it is read as.
    #[error("{0}")]
    WrongType(String),
    /// This process was not started by `ipcx::spawn`: there is no inherited
    /// pipe (`IPCX_PIPE` is not set).
    #[error("IPCX_PIPE is not set: this process was not started by ipcx::spawn")]
    NotInherited,
    /// A lock inside ipcx was poisoned by a panic in another thread.
    #[error(
        "an internal lock was poisoned by a panic in another thread: drop this object and open it again"
    )]
    Poisoned,
    /// The URL could not be parsed; the text says which part is wrong.
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(String),
    /// A query option is unknown, does not apply to the scheme, or has a bad value.
    #[error("option `{option}` for scheme `{scheme}:` {reason}")]
    InvalidOption {
        /// The scheme of the endpoint.
        scheme: &'static str,
        /// The option as written.
        option: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The address or object is taken: by a live process (`pid`), or by
    /// something ipcx did not make (`pid` is `None`); the text says what to
    /// do.
    #[error("{reason}")]
    InUse {
        /// The live owner's process id, when an ipcx process owns it.
        pid: Option<u32>,
        /// What holds it, and what to do.
        reason: String,
    },
    /// The peer sent a frame that breaks the wire format.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The connect handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The server's handler answered a call with an error (the transport
    /// worked); the text is the server's.
    #[error("the server answered with an error: {0}")]
    Remote(String),
    /// A message is larger than the limit of the link or of its peer.
    #[error(
        "message of {len} bytes exceeds the limit of {max} bytes (raise ?max_msg= on both sides)"
    )]
    MessageTooLarge {
        /// The message's length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The queue is full and its overflow policy is `fail`; the message was
    /// not sent (the caller still has it).
    #[error("the queue is full (?overflow=fail); the message was not sent")]
    Full,
    /// A holder of a lock died holding it; its data may be half-updated
    /// (see [`crate::sync::LockError::OwnerDied`], which hands over the lock).
    #[error("the previous holder died holding the lock")]
    OwnerDied,
    /// A lock whose dead holder's data was never repaired can not be taken
    /// again; remove and recreate it.
    #[error("the lock is not recoverable (a holder died and nobody repaired it); recreate it")]
    NotRecoverable,
    /// A party of a barrier died: its generation can never complete.
    #[error("the barrier is broken: a party died")]
    BarrierBroken,
    /// Shared memory a peer writes breaks its layout: an index, a length
    /// or a header is impossible. The peer is hostile or its memory was
    /// scribbled on; the link or object cannot be used further. The text
    /// says what was wrong.
    #[error(
        "shared memory is corrupt: {0}; the peer wrote outside the protocol (recreate the object)"
    )]
    Corrupt(String),
    /// The OS refused access.
    #[error("permission denied")]
    PermissionDenied,
    /// Any other OS error; the source holds it.
    #[error("I/O error")]
    Io,
}

impl ErrorKind {
    /// [`ErrorKind::InUse`] by something ipcx did not make, with what to do.
    pub(crate) fn occupied(reason: String) -> ErrorKind {
        ErrorKind::InUse { pid: None, reason }
    }

    /// [`ErrorKind::InUse`] by the live ipcx process `pid`.
    pub(crate) fn in_use_by(pid: u32) -> ErrorKind {
        ErrorKind::InUse {
            pid: Some(pid),
            reason: format!(
                "address in use by live pid {pid} — pick another path or stop that process"
            ),
        }
    }
}

/// An error: what went wrong, during which operation, on which endpoint.
///
/// ```
/// let err = ipcx::Endpoint::parse("unix:/tmp/x?bogus=1").unwrap_err();
/// assert!(matches!(err.kind(), ipcx::ErrorKind::InvalidOption { .. }));
/// assert!(err.to_string().contains("bogus"));
///
/// // The OS error behind one is its source, as in any error chain.
/// let err = ipcx::Link::connect("unix:/nonexistent/dir/x.sock?timeout=0s").unwrap_err();
/// let os = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<std::io::Error>());
/// assert!(os.is_some(), "{err}");
/// ```
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    op: &'static str,
    endpoint: Option<String>,
    source: Option<io::Error>,
}

impl Error {
    /// An error of `kind` during `op`.
    pub fn new(kind: ErrorKind, op: &'static str) -> Error {
        Error {
            kind,
            op,
            endpoint: None,
            source: None,
        }
    }

    /// An error from the OS during `op`, classified by its errno.
    pub fn io(op: &'static str, err: io::Error) -> Error {
        let kind = match err.kind() {
            io::ErrorKind::WouldBlock => ErrorKind::WouldBlock,
            io::ErrorKind::TimedOut => ErrorKind::TimedOut,
            io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => ErrorKind::Closed,
            _ => ErrorKind::Io,
        };
        Error {
            kind,
            op,
            endpoint: None,
            source: Some(err),
        }
    }

    /// An error reading from or writing to a peer: the OS timing out the
    /// connection (keepalive, `TCP_USER_TIMEOUT`) or finding no route to it
    /// means the peer is gone, so the kind is [`ErrorKind::Closed`].
    pub fn peer_io(op: &'static str, err: io::Error) -> Error {
        let gone = matches!(
            err.kind(),
            io::ErrorKind::TimedOut
                | io::ErrorKind::HostUnreachable
                | io::ErrorKind::NetworkUnreachable
        );
        let mut e = Error::io(op, err);
        if gone {
            e.kind = ErrorKind::Closed;
        }
        e
    }

    /// Names the endpoint the error happened on.
    pub fn at(mut self, endpoint: impl fmt::Display) -> Error {
        if self.endpoint.is_none() {
            self.endpoint = Some(endpoint.to_string());
        }
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The operation that failed (`"connect"`, `"recv"`, ...).
    pub fn op(&self) -> &'static str {
        self.op
    }

    /// The endpoint, when known.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// The OS error behind this one, if any.
    pub fn os_error(&self) -> Option<&io::Error> {
        self.source.as_ref()
    }

    /// True when the peer is gone and the link should be dropped.
    pub fn is_closed(&self) -> bool {
        self.kind == ErrorKind::Closed
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if let Some(ep) = &self.endpoint {
            write!(f, " {ep}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The OS error behind an error is its `source()`, not part of its
/// `Display` (printing the chain, as `anyhow`'s `{:#}` does, would say it
/// twice): print the chain to see it, or ask [`Error::os_error`].
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An ipcx error where `std::io` is expected (`?` in a function returning
/// `io::Result`). An OS error comes back as itself; any other is wrapped
/// with the closest `io::ErrorKind`, and `get_ref()` / `downcast` give the
/// ipcx error back.
///
/// ```
/// fn parse(url: &str) -> std::io::Result<ipcx::Endpoint> {
///     Ok(ipcx::Endpoint::parse(url)?)
/// }
/// let err = parse("unix:/tmp/x?bogus=1").unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// let inner = err.get_ref().and_then(|e| e.downcast_ref::<ipcx::Error>()).unwrap();
/// assert!(matches!(inner.kind(), ipcx::ErrorKind::InvalidOption { .. }));
/// ```
impl From<Error> for io::Error {
    fn from(mut e: Error) -> io::Error {
        if e.kind == ErrorKind::Io
            && let Some(os) = e.source.take()
        {
            return os;
        }
        let kind = match &e.kind {
            ErrorKind::Closed => io::ErrorKind::BrokenPipe,
            ErrorKind::TimedOut => io::ErrorKind::TimedOut,
            ErrorKind::WouldBlock => io::ErrorKind::WouldBlock,
            ErrorKind::PermissionDenied => io::ErrorKind::PermissionDenied,
            ErrorKind::Unsupported(_) | ErrorKind::OneWay(_) => io::ErrorKind::Unsupported,
            ErrorKind::InvalidEndpoint(_)
            | ErrorKind::InvalidOption { .. }
            | ErrorKind::InvalidArgument(_)
            | ErrorKind::OutOfBounds(_)
            | ErrorKind::MessageTooLarge { .. } => io::ErrorKind::InvalidInput,
            ErrorKind::FellBehind { .. } => io::ErrorKind::NotFound,
            ErrorKind::InUse { .. } => io::ErrorKind::AddrInUse,
            ErrorKind::Frame(_)
            | ErrorKind::Corrupt(_)
            | ErrorKind::Handshake(_)
            | ErrorKind::Foreign(_)
            | ErrorKind::VersionMismatch { .. }
            | ErrorKind::WrongType(_) => io::ErrorKind::InvalidData,
            ErrorKind::NotInherited => io::ErrorKind::NotFound,
            ErrorKind::LimitReached(_) | ErrorKind::Full => io::ErrorKind::QuotaExceeded,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
