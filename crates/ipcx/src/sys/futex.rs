//! Process-shared futexes: sleep on a 32-bit word in shared memory until
//! another process changes it and wakes us.

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::thread::futex;

/// Sleeps while `*word == expected`, for at most `timeout`. Returns when
/// woken, when the word already differs, on a signal, or on timeout; the
/// caller re-checks its condition either way. Shared between processes
/// (no `FUTEX_PRIVATE_FLAG`). See `futex(2)` `FUTEX_WAIT`.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|t| futex::Timespec {
        tv_sec: super::secs(t),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(())
        | Err(rustix::io::Errno::AGAIN)
        | Err(rustix::io::Errno::TIMEDOUT)
        | Err(rustix::io::Errno::INTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Wake everyone: the kernel reads the count as a signed int, so
/// `u32::MAX` would be -1 and wake only one.
pub const ALL: u32 = i32::MAX as u32;

/// Wakes up to `n` processes sleeping on `word`. See `futex(2)` `FUTEX_WAKE`.
pub fn wake(word: &AtomicU32, n: u32) -> io::Result<usize> {
    Ok(futex::wake(word, futex::Flags::empty(), n)?)
}
