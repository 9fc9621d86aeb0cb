//! The atomics and futex every wait uses: the real ones, or under `cfg(ipcx_loom)`
//! loom's, so the model checker can explore every interleaving of the ring
//! protocol (see the model in `ring.rs`).

#[cfg(not(ipcx_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg(ipcx_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg(not(ipcx_loom))]
pub(crate) use crate::sys::futex;

/// Inside a retry loop: a CPU hint, or under loom a yield, which tells the
/// model checker the loop waits for another thread.
pub(crate) fn spin_hint() {
    #[cfg(not(ipcx_loom))]
    std::hint::spin_loop();
    #[cfg(ipcx_loom)]
    loom::thread::yield_now();
}

/// A stand-in for the futex that loom can model: `wait` sleeps on a
/// condition variable unless the word already changed, checked under the
/// lock that `wake` takes, as the kernel checks under its bucket lock.
/// Timeouts are ignored, so a lost wake-up shows up as a deadlock.
#[cfg(ipcx_loom)]
pub(crate) mod futex {
    use std::time::Duration;

    use loom::sync::{Condvar, Mutex};

    use super::{AtomicU32, Ordering};

    pub(crate) const ALL: u32 = i32::MAX as u32;

    loom::lazy_static! {
        static ref BUCKET: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    pub(crate) fn wait(
        word: &AtomicU32,
        expected: u32,
        _timeout: Option<Duration>,
    ) -> std::io::Result<()> {
        let guard = BUCKET.0.lock().unwrap();
        if word.load(Ordering::SeqCst) == expected {
            drop(BUCKET.1.wait(guard).unwrap());
        }
        Ok(())
    }

    pub(crate) fn wake(_word: &AtomicU32, _n: u32) -> std::io::Result<usize> {
        let _guard = BUCKET.0.lock().unwrap();
        BUCKET.1.notify_all();
        Ok(0)
    }
}

/// The calling thread's id, as a lock word holds it. Under loom, whose
/// threads share one OS thread, a number unique to each model thread.
#[cfg(not(ipcx_loom))]
pub(crate) fn tid() -> u32 {
    crate::sys::process::tid()
}

#[cfg(ipcx_loom)]
pub(crate) fn tid() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    loom::thread_local!(static TID: u32 = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    TID.with(|t| *t)
}
