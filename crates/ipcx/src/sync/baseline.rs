//! The bare OS primitives `ipcx bench` measures ipcx's against, in the
//! same run: a robust process-shared pthread mutex with nothing around it.
//! Not for applications (use [`super::Mutex`]).

use crate::error::{Error, Result};
use crate::shm::Segment;
use crate::sys::pthread;

/// A robust, process-shared pthread mutex at the start of a segment, locked
/// and unlocked with one bare call each: no guard, no owner-died handling.
#[derive(Debug)]
pub struct RawRobustMutex {
    seg: Segment,
}

impl RawRobustMutex {
    /// Creates it in the segment `url` (`shm:NAME`).
    pub fn create(url: &str) -> Result<RawRobustMutex> {
        let seg = Segment::create(&format!("{url}?size=4KiB"))?;
        // SAFETY: the data region is page-aligned, 4 KiB long, and nobody
        // has opened the segment by name yet (it is in the registry, owned
        // by us, and the benchmark's peer is started after this returns).
        unsafe { pthread::init_robust(seg.as_ptr().cast()) }.map_err(|e| Error::io("create", e))?;
        Ok(RawRobustMutex { seg })
    }

    /// Opens the one another process created.
    ///
    /// # Safety
    /// `url` must name a segment made by [`RawRobustMutex::create`] whose
    /// creator lives: `lock` hands its first bytes to `pthread_mutex_lock`
    /// unchecked, and glibc trusts them (and writes through the robust list
    /// they point into).
    pub unsafe fn open(url: &str) -> Result<RawRobustMutex> {
        let seg = Segment::open(url)?;
        if seg.len() < 128 {
            return Err(Error::new(
                crate::ErrorKind::Foreign("not a RawRobustMutex segment (too small)".into()),
                "open",
            ));
        }
        Ok(RawRobustMutex { seg })
    }

    /// `pthread_mutex_lock`.
    pub fn lock(&self) {
        // SAFETY: initialized by `create` before the segment was shared,
        // and mapped while `self` lives.
        let _ = unsafe { pthread::lock(self.seg.as_ptr().cast()) };
    }

    /// `pthread_mutex_unlock` (an error, not undefined behaviour, when
    /// this thread does not hold it: robust mutexes check their owner).
    pub fn unlock(&self) {
        // SAFETY: as in `lock`.
        let _ = unsafe { pthread::unlock(self.seg.as_ptr().cast()) };
    }

    /// A counter next to the mutex (a cache line further), for the
    /// benchmark's critical section.
    pub fn counter(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: offset 64 is inside the data region (`create` makes 4 KiB,
        // `open` refuses less), 8-byte aligned, the counter's own line, and
        // used only as this atomic by the benchmark's processes.
        unsafe {
            &*self
                .seg
                .as_ptr()
                .add(64)
                .cast::<std::sync::atomic::AtomicU64>()
        }
    }
}
