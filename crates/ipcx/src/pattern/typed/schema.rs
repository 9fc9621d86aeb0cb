//! The schema each end of a typed link sends first: what goes each way,
//! by type name and version, checked against what this end expects.

use std::time::Duration;

use super::Message;
use crate::Link;
use crate::error::{Error, ErrorKind, Result};

/// What starts a schema message (the link's first message each way).
const SCHEMA_MAGIC: &[u8; 8] = b"ipcx-ty\x01";

/// How long a side waits for the peer's schema.
pub(in crate::pattern) const SCHEMA_WAIT: Duration = Duration::from_secs(10);

/// One direction of a typed link: what goes that way, by name and version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::pattern) struct Way {
    /// `true`: this side sends it.
    sends: bool,
    name: String,
    version: u32,
}

impl Way {
    /// A way by name (what is not one Rust type: an envelope of bytes).
    pub(in crate::pattern) fn named(sends: bool, name: String, version: u32) -> Way {
        Way {
            sends,
            name,
            version,
        }
    }

    pub(in crate::pattern) fn sends<T: Message>() -> Way {
        Way {
            sends: true,
            name: T::name().into_owned(),
            version: T::VERSION,
        }
    }

    pub(in crate::pattern) fn receives<T: Message>() -> Way {
        Way {
            sends: false,
            ..Way::sends::<T>()
        }
    }

    /// The same type, the other way (what the peer must have).
    fn mirrored(&self) -> Way {
        Way {
            sends: !self.sends,
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Way {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.sends { "sends" } else { "receives" };
        write!(f, "{verb} `{}` v{}", self.name, self.version)
    }
}

fn describe(ways: &[Way]) -> String {
    ways.iter()
        .map(Way::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// A schema message: magic, then per way its direction, version and name.
pub(in crate::pattern) fn encode_schema(ways: &[Way]) -> Vec<u8> {
    let mut b = SCHEMA_MAGIC.to_vec();
    for w in ways {
        b.push(u8::from(w.sends));
        b.extend_from_slice(&w.version.to_le_bytes());
        let name = &w.name.as_bytes()[..w.name.len().min(u16::MAX as usize)];
        b.extend_from_slice(&(name.len() as u16).to_le_bytes());
        b.extend_from_slice(name);
    }
    b
}

/// The ways of a schema message; `None` if it is not one.
fn decode_schema(b: &[u8]) -> Option<Vec<Way>> {
    let mut rest = b.strip_prefix(SCHEMA_MAGIC)?;
    let mut ways = Vec::new();
    while let Some((&dir, r)) = rest.split_first() {
        let (version, r) = r.split_first_chunk::<4>()?;
        let (len, r) = r.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        if r.len() < len || dir > 1 || ways.len() >= 8 {
            return None;
        }
        ways.push(Way {
            sends: dir == 1,
            version: u32::from_le_bytes(*version),
            name: String::from_utf8_lossy(&r[..len]).into_owned(),
        });
        rest = &r[len..];
    }
    Some(ways)
}

/// Sends this side's schema and checks the peer's: it must send what this
/// side receives and receive what it sends, nothing else.
pub(in crate::pattern) fn trade_schemas(link: &mut Link, mine: &[Way]) -> Result<()> {
    let url = link.url().to_string();
    link.send(&encode_schema(mine))?;
    check_schema(&url, mine, link.recv_timeout(SCHEMA_WAIT))
}

/// [`trade_schemas`] on tokio; `url` names the link in errors.
#[cfg(feature = "async")]
pub(in crate::pattern) async fn trade_schemas_async(
    link: &mut crate::tokio::AsyncLink,
    url: &str,
    mine: &[Way],
) -> Result<()> {
    link.send(&encode_schema(mine)).await?;
    let got = tokio::time::timeout(SCHEMA_WAIT, link.recv())
        .await
        .unwrap_or_else(|_| Err(Error::new(ErrorKind::TimedOut, "connect")));
    check_schema(url, mine, got)
}

/// Checks the peer's schema message (what waiting for it gave) against
/// this side's ways.
pub(in crate::pattern) fn check_schema(
    url: &str,
    mine: &[Way],
    got: Result<Vec<u8>>,
) -> Result<()> {
    let handshake = |why: String| Error::new(ErrorKind::Handshake(why), "connect").at(url);
    let theirs = match got {
        Err(e) if *e.kind() == ErrorKind::TimedOut => {
            return Err(handshake(format!(
                "the peer sent no schema within {SCHEMA_WAIT:?}: is it a typed end of ipcx?"
            )));
        }
        r => r?,
    };
    let Some(theirs) = decode_schema(&theirs) else {
        return Err(handshake(
            "the peer's first message is not a schema: it is not a typed end of ipcx".into(),
        ));
    };
    let mut wanted: Vec<Way> = mine.iter().map(Way::mirrored).collect();
    let mut got = theirs.clone();
    wanted.sort_by(|a, b| (a.sends, &a.name).cmp(&(b.sends, &b.name)));
    got.sort_by(|a, b| (a.sends, &a.name).cmp(&(b.sends, &b.name)));
    if wanted != got {
        return Err(handshake(format!(
            "schema mismatch: this side {}, the peer {}; build both ends with the same message \
             types and VERSION",
            describe(mine),
            describe(&theirs)
        )));
    }
    Ok(())
}
