//! The one check of a shared-memory header's magic and layout version.
//!
//! Every object ipcx puts in shared memory (segment, link, channel, queue,
//! primitive) starts with a magic its creator writes last, with release,
//! and a layout version. Openers read both the same way here; what each
//! does with "not yet" (wait, or report) is its own.

use crate::error::ErrorKind;

/// What a header's magic and version say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// Complete, and of this build's layout.
    Ready,
    /// Magic 0: the creator has not finished.
    Initializing,
    /// Another magic: not this kind of object (the value found).
    Foreign(u64),
    /// The right magic, another layout version (the version found).
    OtherVersion(u32),
}

impl Stamp {
    /// What a header says whose `magic` was loaded first, with acquire (so
    /// that a complete header is visible after it), and `version` after.
    pub(crate) fn of(magic: u64, want: u64, version: u32, expected: u32) -> Stamp {
        match magic {
            m if m == want && version == expected => Stamp::Ready,
            m if m == want => Stamp::OtherVersion(version),
            0 => Stamp::Initializing,
            other => Stamp::Foreign(other),
        }
    }

    /// The error for an opener that cannot use the object: `not_a` (the
    /// object is not one, or its header is still being written), or
    /// [`ErrorKind::VersionMismatch`] for another layout. `None` when ready.
    pub(crate) fn error(self, expected: u32, not_a: &str) -> Option<ErrorKind> {
        match self {
            Stamp::Ready => None,
            Stamp::Initializing | Stamp::Foreign(_) => Some(ErrorKind::Foreign(not_a.into())),
            Stamp::OtherVersion(found) => Some(ErrorKind::VersionMismatch { found, expected }),
        }
    }

    /// Reads the stamp with `read` until it is not `Initializing` or
    /// `deadline` passes (pauses from 50 µs, doubling to 1 ms): `Ok` when
    /// ready; [`ErrorKind::TimedOut`] when its creator is still writing it
    /// at the deadline (an opener that looks again later may find it
    /// ready); else the error for an object that is `not_a` (or another
    /// layout version).
    pub(crate) fn wait_ready(
        read: impl Fn() -> Stamp,
        expected: u32,
        deadline: std::time::Instant,
        not_a: &str,
    ) -> Result<(), ErrorKind> {
        let mut backoff = crate::deadline::Backoff::starting_at(
            std::time::Duration::from_micros(50),
            std::time::Duration::from_millis(1),
        );
        loop {
            let stamp = read();
            if stamp == Stamp::Initializing && !backoff.sleep_until(deadline) {
                return Err(ErrorKind::TimedOut);
            }
            if stamp != Stamp::Initializing {
                return stamp.error(expected, not_a).map_or(Ok(()), Err);
            }
        }
    }
}

/// The error of an open whose header check failed with `kind`
/// ([`Stamp::wait_ready`]): a time-out says the `what`'s header was still
/// being written.
pub(crate) fn open_error(kind: ErrorKind, ep: &crate::Endpoint, what: &str) -> crate::Error {
    let e = crate::Error::new(kind, "open");
    if *e.kind() == ErrorKind::TimedOut {
        e.at(format!(
            "{ep} ({what} header not yet written by its creator: is it still running? raise ?timeout= to wait longer)"
        ))
    } else {
        e.at(ep)
    }
}
