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
    /// A live process owns the object at this address.
    #[error("address in use by live pid {pid} — pick another path or stop that process")]
    InUse {
        /// The owner's process id.
        pid: u32,
    },
    /// The address is taken by something ipcx did not create.
    #[error("{0}")]
    Occupied(String),
    /// The peer sent a frame that breaks the wire format.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// The connect handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(String),
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

/// An error: what went wrong, during which operation, on which endpoint.
///
/// ```
/// let err = ipcx::Endpoint::parse("unix:/tmp/x?bogus=1").unwrap_err();
/// assert!(matches!(err.kind(), ipcx::ErrorKind::InvalidOption { .. }));
/// assert!(err.to_string().contains("bogus"));
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
        write!(f, ": {}", self.kind)?;
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

/// The OS error is part of the message (`Display`), so it is not repeated as
/// a `source()`: printing the chain would say it twice.
impl std::error::Error for Error {}
