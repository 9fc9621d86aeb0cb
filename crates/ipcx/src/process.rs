//! [`Process`]: a process named so that a reused id is told apart.

/// A process: its id and its start time (clock ticks since boot, from
/// `/proc/PID/stat`), which together name it uniquely — a later process
/// given the same id has another start time. What one process tells
/// another so that the other can see it die (a work queue's pullers on
/// `mq:` do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Process {
    /// Its process id.
    pub pid: u32,
    /// Its start time; 0 when unknown (then only the id is checked).
    pub start: u64,
}

impl Process {
    /// This process.
    pub fn current() -> Process {
        let pid = crate::sys::process::pid();
        Process {
            pid,
            start: crate::sys::process::start_time(pid).unwrap_or(0),
        }
    }

    /// Whether it still runs: not gone, not a zombie, and its id not
    /// given to another process since. When `/proc` cannot be read, it
    /// counts as alive.
    pub fn is_alive(&self) -> bool {
        crate::sys::process::is_alive(self.pid, self.start)
    }

    /// Its 12-byte form: pid, then start time, little-endian.
    pub fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0; 12];
        b[..4].copy_from_slice(&self.pid.to_le_bytes());
        b[4..].copy_from_slice(&self.start.to_le_bytes());
        b
    }

    /// Reads [`Process::to_bytes`]'s form.
    pub fn from_bytes(b: [u8; 12]) -> Process {
        let (pid, start) = b.split_at(4);
        Process {
            pid: u32::from_le_bytes(pid.try_into().unwrap_or_default()),
            start: u64::from_le_bytes(start.try_into().unwrap_or_default()),
        }
    }
}
