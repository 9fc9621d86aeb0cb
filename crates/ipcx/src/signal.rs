//! Graceful shutdown on `SIGINT` and `SIGTERM`, with no user code in a
//! signal handler.
//!
//! [`on_termination`] blocks both signals and starts a thread that takes
//! the first with `sigwait(3)`, then runs your closure on that ordinary
//! thread: it may lock, allocate, print, remove files and exit.
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
//! A signal carries no more than its number (and, for `sigqueue`, one
//! integer); standard signals sent twice before they are taken arrive
//! once.

use crate::error::{Error, Result};
use crate::sys::signal::SignalSet;

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
