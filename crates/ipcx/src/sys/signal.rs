//! Signals taken by a thread with `sigwait(3)` instead of a handler: the
//! signals are blocked, so the kernel keeps them pending until a thread
//! asks for one, and no code runs in signal context.

use std::io;

/// A set of signal numbers.
#[derive(Clone, Copy)]
pub struct SignalSet(libc::sigset_t);

impl std::fmt::Debug for SignalSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignalSet")
    }
}

impl SignalSet {
    /// The set of `signals`; an unknown number is `EINVAL`.
    /// See `sigemptyset(3)`, `sigaddset(3)`.
    pub fn of(signals: &[i32]) -> io::Result<SignalSet> {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `sigemptyset` initializes the set it is given.
        if unsafe { libc::sigemptyset(set.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: initialized just above.
        let mut set = unsafe { set.assume_init() };
        for &s in signals {
            // SAFETY: `set` is an initialized sigset_t.
            if unsafe { libc::sigaddset(&mut set, s) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(SignalSet(set))
    }

    /// Blocks the set in the calling thread (threads it starts later
    /// inherit the mask). See `pthread_sigmask(3)`.
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: a valid set; the old mask is not asked for.
        let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &self.0, std::ptr::null_mut()) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(())
    }

    /// Waits until one signal of the set is pending for this thread or the
    /// process, takes it, and returns its number. The set must be blocked
    /// (else the default action may run first). See `sigwait(3)`.
    pub fn wait(&self) -> io::Result<i32> {
        let mut signo = 0;
        // SAFETY: a valid set and a valid place for the number.
        let r = unsafe { libc::sigwait(&self.0, &mut signo) };
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        Ok(signo)
    }
}
