//! One record of the registry, and its file's format: a header line with
//! the version, then lines of `key value`, values percent-escaped so that
//! any path round-trips.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use super::ObjectKind;

/// One record, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The endpoint URL that created the object.
    pub url: String,
    /// The kind of object.
    pub kind: ObjectKind,
    /// The objects' paths on disk (the first is the main one).
    pub paths: Vec<PathBuf>,
    /// The creating process.
    pub owner_pid: u32,
    /// Its start time (clock ticks since boot), to tell a reused pid apart.
    pub owner_start: u64,
    /// Kept when the owner exits (`?persist=true`).
    pub persist: bool,
    /// The objects the owner created, by device and inode: only these are
    /// ever removed (a FIFO the user made and ipcx reused is left alone,
    /// and so is anything put at the path later).
    pub created: Vec<Created>,
}

/// One object an owner created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Where it is.
    pub path: PathBuf,
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
}

pub(super) fn read_record(file: &mut File) -> Option<Record> {
    let mut bytes = Vec::new();
    file.rewind().ok()?;
    // Records are small; a huge one is not ours.
    file.take(64 << 10).read_to_end(&mut bytes).ok()?;
    decode_record(&bytes)
}

pub(super) fn write_record(file: &mut File, record: &Record) -> std::io::Result<()> {
    let bytes = encode_record(record);
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(&bytes)
}

/// The first line of every record file, with the format's version.
const RECORD_HEADER: &str = "ipcx-record 1";

/// A record as lines of `key value`; values are percent-escaped (`%`,
/// whitespace, control and non-ASCII bytes), so any path round-trips.
fn encode_record(r: &Record) -> Vec<u8> {
    let mut out = format!(
        "{RECORD_HEADER}\nurl {}\nkind {}\n",
        escape(r.url.as_bytes()),
        r.kind.name()
    );
    for p in &r.paths {
        out += &format!("path {}\n", escape(p.as_os_str().as_encoded_bytes()));
    }
    out += &format!(
        "owner_pid {}\nowner_start {}\npersist {}\n",
        r.owner_pid, r.owner_start, r.persist
    );
    for c in &r.created {
        let path = escape(c.path.as_os_str().as_encoded_bytes());
        out += &format!("created {} {} {path}\n", c.dev, c.ino);
    }
    out.into_bytes()
}

/// The record in `bytes`, or `None` if they are not a whole record.
fn decode_record(bytes: &[u8]) -> Option<Record> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    if lines.next()? != RECORD_HEADER {
        return None;
    }
    let path = |v: &str| -> Option<PathBuf> {
        let raw = unescape(v)?;
        Some(PathBuf::from(std::ffi::OsString::from(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&raw),
        )))
    };
    let (mut url, mut kind, mut pid, mut start, mut persist) = (None, None, None, None, None);
    let (mut paths, mut created) = (Vec::new(), Vec::new());
    for line in lines {
        let (key, value) = line.split_once(' ')?;
        match key {
            "url" => url = Some(String::from_utf8(unescape(value)?).ok()?),
            "kind" => {
                kind = Some(match value {
                    "socket" => ObjectKind::Socket,
                    "fifo" => ObjectKind::Fifo,
                    "shm" => ObjectKind::Shm,
                    "sem" => ObjectKind::Sem,
                    "mq" => ObjectKind::Mq,
                    "sysvmq" => ObjectKind::SysvMq,
                    _ => return None,
                })
            }
            "path" => paths.push(path(value)?),
            "owner_pid" => pid = Some(value.parse().ok()?),
            "owner_start" => start = Some(value.parse().ok()?),
            "persist" => persist = Some(value.parse().ok()?),
            "created" => {
                let mut parts = value.splitn(3, ' ');
                let dev = parts.next()?.parse().ok()?;
                let ino = parts.next()?.parse().ok()?;
                created.push(Created {
                    path: path(parts.next()?)?,
                    dev,
                    ino,
                });
            }
            _ => return None,
        }
    }
    Some(Record {
        url: url?,
        kind: kind?,
        paths,
        owner_pid: pid?,
        owner_start: start?,
        persist: persist?,
        created,
    })
}

fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b == b'%' || b <= b' ' || b >= 0x7f {
            s += &format!("%{b:02X}");
        } else {
            s.push(char::from(b));
        }
    }
    s
}

fn unescape(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_any_path() {
        use std::os::unix::ffi::OsStrExt;
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/a b\n%c\xff.sock"));
        let r = Record {
            url: "unix:/tmp/a b?mode=0600".into(),
            kind: ObjectKind::Socket,
            paths: vec![odd.clone(), PathBuf::from("/tmp/x")],
            owner_pid: 42,
            owner_start: 7,
            persist: true,
            created: vec![Created {
                path: odd,
                dev: 1,
                ino: 2,
            }],
        };
        assert_eq!(decode_record(&encode_record(&r)), Some(r));
        assert_eq!(decode_record(b"not a record"), None);
        assert_eq!(
            decode_record(b"ipcx-record 1\nurl x\n"),
            None,
            "fields missing"
        );
        assert_eq!(
            decode_record(b"ipcx-record 1\npath %G1\n"),
            None,
            "bad escape"
        );
    }
}
