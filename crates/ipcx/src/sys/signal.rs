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

// ---------------------------------------------------------------------------
// Caught signals, written to pipes by a handler that does nothing else.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

/// One caught signal, as the handler writes it into a subscriber's pipe
/// (one `write` of [`CAUGHT_LEN`] bytes: atomic on a pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caught {
    /// The signal's number.
    pub signo: i32,
    /// `si_code`: who sent it (`SI_USER` for `kill`, `SI_QUEUE` for
    /// `sigqueue`, positive for the kernel).
    pub code: i32,
    /// `si_pid`, `si_uid`: the sender, for `kill` and `sigqueue`.
    pub pid: i32,
    pub uid: u32,
    /// `si_int`: the integer `sigqueue` sent.
    pub value: i32,
}

/// Bytes of one [`Caught`] in a pipe.
pub const CAUGHT_LEN: usize = 20;

impl Caught {
    fn encode(&self) -> [u8; CAUGHT_LEN] {
        let mut b = [0u8; CAUGHT_LEN];
        b[0..4].copy_from_slice(&self.signo.to_ne_bytes());
        b[4..8].copy_from_slice(&self.code.to_ne_bytes());
        b[8..12].copy_from_slice(&self.pid.to_ne_bytes());
        b[12..16].copy_from_slice(&self.uid.to_ne_bytes());
        b[16..20].copy_from_slice(&self.value.to_ne_bytes());
        b
    }

    /// Reads one record a handler wrote.
    pub fn decode(b: &[u8; CAUGHT_LEN]) -> Caught {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        Caught {
            signo: i32::from_ne_bytes(word(0)),
            code: i32::from_ne_bytes(word(4)),
            pid: i32::from_ne_bytes(word(8)),
            uid: u32::from_ne_bytes(word(12)),
            value: i32::from_ne_bytes(word(16)),
        }
    }
}

/// How many subscriptions may exist at once in a process.
pub const SUBSCRIBERS: usize = 32;

/// A subscription the handler serves: the signals it wants (bit `n - 1`
/// for signal `n`) and the write end of its pipe.
struct Subscriber {
    taken: AtomicBool,
    wanted: AtomicU64,
    fd: AtomicI32,
    /// Records the pipe had no room for.
    lost: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Subscriber = Subscriber {
    taken: AtomicBool::new(false),
    wanted: AtomicU64::new(0),
    fd: AtomicI32::new(-1),
    lost: AtomicU64::new(0),
};

static SUBSCRIPTIONS: [Subscriber; SUBSCRIBERS] = [FREE; SUBSCRIBERS];
/// Handlers running now, so that a subscription is not closed under one.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// Signals whose handler is installed (bit `n - 1` for signal `n`).
static INSTALLED: AtomicU64 = AtomicU64::new(0);

/// The handler: for each subscription that wants the signal, one
/// non-blocking `write` of the record into its pipe (async-signal-safe:
/// atomics and `write` only; `errno` is kept).
extern "C" fn on_signal(signo: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: errno is this thread's, and saved and restored around the
    // calls below, as a handler must.
    let errno = unsafe { *libc::__errno_location() };
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // the kill/rt fields are read as plain integers whatever the sender.
    let caught = unsafe {
        Caught {
            signo,
            code: (*info).si_code,
            pid: (*info).si_pid(),
            uid: (*info).si_uid(),
            value: (*info).si_int(),
        }
    };
    let record = caught.encode();
    let bit = 1u64 << ((signo - 1) as u32 & 63);
    for s in &SUBSCRIPTIONS {
        if s.wanted.load(Ordering::SeqCst) & bit == 0 {
            continue;
        }
        let fd = s.fd.load(Ordering::SeqCst);
        // SAFETY: `fd` is a subscription's open pipe end: a subscription
        // clears `wanted` and waits for `IN_HANDLER` to be 0 before it
        // closes it.
        let n = unsafe { libc::write(fd, record.as_ptr().cast(), CAUGHT_LEN) };
        if n != CAUGHT_LEN as isize {
            s.lost.fetch_add(1, Ordering::Relaxed);
        }
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// A subscription to some signals: the handler writes each of them into
/// the pipe whose write end is `write` (which must stay open until
/// [`unsubscribe`]). Installs the handler for signals that lack it.
/// Returns the subscription's index; an error of kind
/// [`io::ErrorKind::Other`] only when every slot is taken (the caller
/// maps that to a limit).
pub fn subscribe(signals: &[i32], write: BorrowedFd<'_>) -> io::Result<usize> {
    let mut wanted = 0u64;
    for &s in signals {
        if !(1..=64).contains(&s) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        wanted |= 1 << (s - 1);
    }
    let index = SUBSCRIPTIONS
        .iter()
        .position(|s| {
            s.taken
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })
        .ok_or_else(|| {
            io::Error::other(format!(
                "{SUBSCRIBERS} signal subscriptions at once at most: \
                 drop a Signals, or share one, to make room"
            ))
        })?;
    forget_in_children();
    let s = &SUBSCRIPTIONS[index];
    s.lost.store(0, Ordering::Relaxed);
    s.fd.store(write.as_raw_fd(), Ordering::SeqCst);
    s.wanted.store(wanted, Ordering::SeqCst);
    for &signo in signals {
        if let Err(e) = install(signo) {
            unsubscribe(index);
            return Err(e);
        }
    }
    Ok(index)
}

/// Installs the handler for `signo`, once per process. From then on the
/// signal's default action no longer runs (a signal no subscription
/// wants is dropped). See `sigaction(2)`.
fn install(signo: i32) -> io::Result<()> {
    let bit = 1u64 << (signo - 1);
    if INSTALLED.load(Ordering::Acquire) & bit != 0 {
        return Ok(());
    }
    // SAFETY: a zeroed sigaction is a valid starting point; the handler
    // is async-signal-safe (above) and has the SA_SIGINFO signature.
    let r = unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_signal as *const () as usize;
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(signo, &act, std::ptr::null_mut())
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    INSTALLED.fetch_or(bit, Ordering::AcqRel);
    Ok(())
}

/// A child made by `fork` inherits the table and the count of running
/// handlers as they were in the parent (a handler that ran on another
/// thread then never ends in the child): the child starts with no
/// subscriptions, so its own `Signals` never waits on a count that cannot
/// drop, and signals sent to it never reach the parent's pipes.
fn forget_in_children() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    extern "C" fn in_child() {
        for s in &SUBSCRIPTIONS {
            s.wanted.store(0, Ordering::SeqCst);
            s.fd.store(-1, Ordering::SeqCst);
            s.taken.store(false, Ordering::SeqCst);
        }
        IN_HANDLER.store(0, Ordering::SeqCst);
    }
    REGISTERED.call_once(|| {
        // SAFETY: `in_child` only stores to atomics (async-signal-safe, as
        // the child of a multithreaded fork requires).
        let r = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if r != 0 {
            tracing::warn!(
                errno = r,
                "pthread_atfork failed: forked children keep signal subscriptions"
            );
        }
    });
}

/// Ends subscription `index`: no handler writes into its pipe once this
/// returns, so the caller may close it.
pub fn unsubscribe(index: usize) {
    let s = &SUBSCRIPTIONS[index];
    s.wanted.store(0, Ordering::SeqCst);
    while IN_HANDLER.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
    s.fd.store(-1, Ordering::SeqCst);
    s.taken.store(false, Ordering::Release);
}

/// Records subscription `index`'s pipe had no room for.
pub fn lost(index: usize) -> u64 {
    SUBSCRIPTIONS[index].lost.load(Ordering::Relaxed)
}

/// Sends `signo` to process `pid`. See `kill(2)`.
pub fn kill(pid: i32, signo: i32) -> io::Result<()> {
    // SAFETY: plain integers.
    if unsafe { libc::kill(pid, signo) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `signo` with the integer `value` to process `pid`. See
/// `sigqueue(3)`.
pub fn queue(pid: i32, signo: i32, value: i32) -> io::Result<()> {
    // The integer rides in the low bytes of the union, where `si_int`
    // reads it.
    // `sival_int` is the union's first four bytes: the low half of the
    // pointer on little-endian, the high half on 64-bit big-endian.
    let shift = if cfg!(target_endian = "big") {
        (std::mem::size_of::<usize>() - 4) * 8
    } else {
        0
    };
    let sv = libc::sigval {
        sival_ptr: ((value as u32 as usize) << shift) as *mut libc::c_void,
    };
    // SAFETY: plain integers and a sigval by value.
    if unsafe { libc::sigqueue(pid, signo, sv) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The first real-time signal applications may use (glibc keeps a few).
pub fn rt_min() -> i32 {
    libc::SIGRTMIN()
}

/// The last real-time signal.
pub fn rt_max() -> i32 {
    libc::SIGRTMAX()
}

/// `SI_QUEUE` (`sigqueue`) and `SI_USER` (`kill`).
pub const SI_QUEUE: i32 = libc::SI_QUEUE;
pub const SI_USER: i32 = libc::SI_USER;
