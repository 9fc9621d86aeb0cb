//! Signals, with no user code in a signal handler.
//!
//! [`Signals`] subscribes to signals: ipcx's handler writes each one, with
//! who sent it and the integer `sigqueue` gave it, into the subscription's
//! pipe, and you take them as ordinary values on an ordinary thread
//! ([`Signals::wait`], an iterator, or [`crate::tokio::AsyncSignals`]).
//! [`send`] and [`queue`] send them (`kill`, `sigqueue` with an integer).
//!
//! ```
//! use ipcx::signal::{self, Signals};
//! # fn main() -> ipcx::Result<()> {
//! let usr1 = signal::number("SIGUSR1")?;
//! let mut signals = Signals::new(&[usr1])?;
//! signal::queue(std::process::id(), usr1, 42)?;
//! let got = signals.wait_timeout(std::time::Duration::from_secs(5))?;
//! assert_eq!((got.signal, got.value), (usr1, Some(42)));
//! assert_eq!(got.sender, Some(std::process::id()));
//! # Ok(()) }
//! ```
//!
//! What a signal can carry is little: its number, and for `sigqueue` one
//! integer, with the sender's pid and uid. Standard signals (`SIGUSR1`,
//! `SIGTERM`, ...) sent again before they are taken arrive once (they
//! coalesce); real-time signals (`SIGRTMIN` to `SIGRTMAX`) queue, each
//! with its own integer, up to the `RLIMIT_SIGPENDING` limit, but signals
//! that arrive together may be taken in another order (the kernel hands
//! each to whichever thread is free, and the handlers run side by side).
//! Once a
//! process subscribes to a signal its default action (ending the process,
//! for most) no longer runs, even after the subscription ends.
//!
//! For graceful shutdown, [`on_termination`] blocks `SIGINT` and `SIGTERM`
//! and starts a thread that takes the first with `sigwait(3)`, then runs
//! your closure on that ordinary thread: it may lock, allocate, print,
//! remove files and exit. `Signals::termination()` gives the same two as
//! values to wait for, and [`crate::tokio::termination`] as a future.
//!
//! ```no_run
//! fn main() -> ipcx::Result<()> {
//!     // First thing, before any other thread starts.
//!     ipcx::signal::on_termination(|sig| {
//!         eprintln!("stopping on {sig:?}");
//!         std::process::exit(sig.exit_code());
//!     })?;
//!     let listener = ipcx::Listener::bind("unix:/tmp/app.sock")?;
//!     loop {
//!         let _link = listener.accept()?;
//!     }
//! }
//! ```
//!
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::sys::signal::{CAUGHT_LEN, Caught, SignalSet};

/// Which request to stop arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// `SIGINT` (Ctrl-C at a terminal).
    Interrupt,
    /// `SIGTERM` (`kill`, a service manager stopping the process).
    Terminate,
}

impl Termination {
    /// The signal's number.
    pub fn signal(self) -> i32 {
        match self {
            Termination::Interrupt => sigint(),
            Termination::Terminate => sigterm(),
        }
    }

    /// The request `signal` is, if it is one.
    pub fn of(signal: i32) -> Option<Termination> {
        match signal {
            s if s == sigint() => Some(Termination::Interrupt),
            s if s == sigterm() => Some(Termination::Terminate),
            _ => None,
        }
    }

    /// The exit status a shell expects from a process that stopped on
    /// this signal: 128 + its number (130 for `SIGINT`, 143 for `SIGTERM`).
    pub fn exit_code(self) -> i32 {
        128 + self.signal()
    }
}

fn sigint() -> i32 {
    rustix::process::Signal::INT.as_raw()
}

fn sigterm() -> i32 {
    rustix::process::Signal::TERM.as_raw()
}

/// Blocks `SIGINT` and `SIGTERM` in the calling thread and starts a thread
/// that waits for the first of them and calls `f` with it.
///
/// Call it first in `main`, before any other thread starts: threads inherit
/// the mask of the thread that starts them, and a thread that does not
/// block the signals could take one and die by its default action. After
/// `f` returns, later signals stay pending (blocked) and are ignored.
pub fn on_termination(f: impl FnOnce(Termination) + Send + 'static) -> Result<()> {
    let set = SignalSet::of(&[sigint(), sigterm()]).map_err(|e| Error::io("signal", e))?;
    set.block().map_err(|e| Error::io("signal", e))?;
    std::thread::Builder::new()
        .name("ipcx-signals".into())
        .spawn(move || {
            loop {
                match set.wait() {
                    Ok(s) if s == sigint() => return f(Termination::Interrupt),
                    Ok(s) if s == sigterm() => return f(Termination::Terminate),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "sigwait failed; termination signals stay blocked");
                        return;
                    }
                }
            }
        })
        .map_err(|e| Error::io("signal", e))?;
    Ok(())
}

/// One signal as it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The signal's number ([`name`] gives its name).
    pub signal: i32,
    /// The integer `sigqueue` sent with it; `None` for `kill` and the
    /// kernel's own signals.
    pub value: Option<i32>,
    /// The sending process, for signals a process sent (`kill`,
    /// `sigqueue`).
    pub sender: Option<u32>,
    /// The sender's real user id, with `sender`.
    pub uid: Option<u32>,
}

impl Received {
    fn of(c: Caught) -> Received {
        let from_process = c.code == sys::signal::SI_USER || c.code == sys::signal::SI_QUEUE;
        Received {
            signal: c.signo,
            value: (c.code == sys::signal::SI_QUEUE).then_some(c.value),
            sender: from_process.then_some(c.pid as u32),
            uid: from_process.then_some(c.uid),
        }
    }
}

/// A subscription to some signals, taken as values: see the
/// [module](self). Several subscriptions may want the same signal; each
/// gets every one. At most 32 exist at once in a process.
#[derive(Debug)]
pub struct Signals {
    read: OwnedFd,
    // Closed only after the handler was told to stop using it.
    write: Option<OwnedFd>,
    index: usize,
}

/// Signals that report a fault of the thread that gets them; a handler
/// that returns from one runs the faulting code again.
fn is_fault(signal: i32) -> bool {
    use rustix::process::Signal;
    [
        Signal::SEGV,
        Signal::BUS,
        Signal::ILL,
        Signal::FPE,
        Signal::TRAP,
    ]
    .iter()
    .any(|s| s.as_raw() == signal)
}

impl Signals {
    /// Subscribes to `signals` (numbers; [`number`] reads names). Refused:
    /// `SIGKILL` and `SIGSTOP` (no process can catch them), and the fault
    /// signals (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`, `SIGTRAP`).
    pub fn new(signals: &[i32]) -> Result<Signals> {
        let invalid = |why: String| Err(Error::new(ErrorKind::InvalidArgument(why), "signal"));
        for &s in signals {
            let name = name(s);
            if s == rustix::process::Signal::KILL.as_raw()
                || s == rustix::process::Signal::STOP.as_raw()
            {
                return invalid(format!("{name} cannot be caught"));
            }
            if is_fault(s) {
                return invalid(format!(
                    "{name} reports a fault of the thread that gets it: it cannot be taken as a value"
                ));
            }
            if !(1..=sys::signal::rt_max()).contains(&s) {
                return invalid(format!("{s} is not a signal number"));
            }
            if s > 31 && s < sys::signal::rt_min() {
                return invalid(format!(
                    "{s} is reserved by the C library (its threads use it), below SIGRTMIN"
                ));
            }
        }
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )
        .map_err(|e| Error::io("signal", e.into()))?;
        let index = sys::signal::subscribe(signals, write.as_fd()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::Other {
                Error::new(ErrorKind::LimitReached(e.to_string()), "signal")
            } else {
                Error::io("signal", e)
            }
        })?;
        Ok(Signals {
            read,
            write: Some(write),
            index,
        })
    }

    /// `SIGINT` and `SIGTERM`: the requests to stop.
    pub fn termination() -> Result<Signals> {
        Signals::new(&[sigint(), sigterm()])
    }

    /// Waits for the next signal.
    pub fn wait(&mut self) -> Result<Received> {
        self.next_until(None)
    }

    /// Waits at most `timeout` for the next signal
    /// ([`ErrorKind::TimedOut`]).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<Received> {
        match self.next_until(crate::deadline::after(timeout)) {
            Err(e) if *e.kind() == ErrorKind::WouldBlock => {
                Err(Error::new(ErrorKind::TimedOut, "signal"))
            }
            r => r,
        }
    }

    /// The next signal if one arrived, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<Received>> {
        match self.next_until(Some(Instant::now())) {
            Ok(r) => Ok(Some(r)),
            Err(e) if *e.kind() == ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Result<Received> {
        loop {
            if let Some(r) = self.take_one()? {
                return Ok(r);
            }
            let ready = sys::fd::wait(self.read.as_fd(), sys::fd::Interest::Read, deadline)
                .map_err(|e| Error::io("signal", e))?;
            if !ready {
                return Err(Error::new(ErrorKind::WouldBlock, "signal"));
            }
        }
    }

    /// One signal from the pipe, if one is there.
    pub(crate) fn take_one(&mut self) -> Result<Option<Received>> {
        let mut b = [0u8; CAUGHT_LEN];
        match sys::fd::read(self.read.as_fd(), &mut b) {
            Ok(CAUGHT_LEN) => Ok(Some(Received::of(Caught::decode(&b)))),
            // The handler writes whole records, atomically.
            Ok(n) => Err(Error::new(
                ErrorKind::Corrupt(format!("a signal record of {n} bytes")),
                "signal",
            )),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(Error::io("signal", e)),
        }
    }

    /// Signals this subscription missed because it did not take them and
    /// its pipe was full (about 3 000 waiting).
    pub fn lost(&self) -> u64 {
        sys::signal::lost(self.index)
    }
}

impl AsFd for Signals {
    /// Readable while a signal waits to be taken.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl std::os::fd::AsRawFd for Signals {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// Waits for each signal in turn; ends at the first error.
impl Iterator for Signals {
    type Item = Received;

    fn next(&mut self) -> Option<Received> {
        self.wait().ok()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        sys::signal::unsubscribe(self.index);
        drop(self.write.take());
    }
}

/// Sends `signal` to process `pid` (`kill(2)`).
pub fn send(pid: u32, signal: i32) -> Result<()> {
    sys::signal::kill(pid_of(pid)?, signal).map_err(|e| Error::io("kill", e))
}

/// Sends `signal` with the integer `value` to process `pid`
/// (`sigqueue(3)`); a subscriber gets `value` in [`Received::value`].
pub fn queue(pid: u32, signal: i32, value: i32) -> Result<()> {
    sys::signal::queue(pid_of(pid)?, signal, value).map_err(|e| Error::io("sigqueue", e))
}

fn pid_of(pid: u32) -> Result<i32> {
    match i32::try_from(pid) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::new(
            ErrorKind::InvalidArgument(format!("{pid} is not a process id")),
            "kill",
        )),
    }
}

/// The standard signals' names, by number.
const NAMES: &[(&str, i32)] = &[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGSTKFLT", 16),
    ("SIGCHLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
];

/// A signal's number from its name, as `kill -l` and C write it
/// (`SIGUSR1`, `USR1`, `usr1`, `SIGRTMIN+2`, `RTMAX-1`) or as a number.
pub fn number(name: &str) -> Result<i32> {
    let bad = || {
        Error::new(
            ErrorKind::InvalidArgument(format!(
                "{name:?} is not a signal: a name (SIGUSR1, USR1, SIGRTMIN+2) or a number 1-{}",
                sys::signal::rt_max()
            )),
            "signal",
        )
    };
    if let Ok(n) = name.parse::<i32>() {
        return (1..=sys::signal::rt_max())
            .contains(&n)
            .then_some(n)
            .ok_or_else(bad);
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    let rt = |rest: &str, base: i32, sign: i32| -> Option<i32> {
        let offset = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix(if sign > 0 { '+' } else { '-' })?
                .parse::<i32>()
                .ok()?
        };
        let n = base.checked_add(sign.checked_mul(offset)?)?;
        (sys::signal::rt_min()..=sys::signal::rt_max())
            .contains(&n)
            .then_some(n)
    };
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        return rt(rest, sys::signal::rt_min(), 1).ok_or_else(bad);
    }
    if let Some(rest) = bare.strip_prefix("RTMAX") {
        return rt(rest, sys::signal::rt_max(), -1).ok_or_else(bad);
    }
    NAMES
        .iter()
        .find(|(n, _)| &n[3..] == bare)
        .map(|&(_, number)| number)
        .ok_or_else(bad)
}

/// A signal's name: `SIGUSR1`, `SIGRTMIN+2`, or the number.
pub fn name(signal: i32) -> String {
    if let Some((n, _)) = NAMES.iter().find(|&&(_, number)| number == signal) {
        return (*n).to_string();
    }
    let (min, max) = (sys::signal::rt_min(), sys::signal::rt_max());
    match signal {
        s if s == min => "SIGRTMIN".into(),
        s if s > min && s <= max => format!("SIGRTMIN+{}", s - min),
        s => s.to_string(),
    }
}
