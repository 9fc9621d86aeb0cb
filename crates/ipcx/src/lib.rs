//! # ipcx — inter-process communication for Rust
//!
//! Every Linux IPC mechanism behind one API, with endpoints named by URL:
//! `pipe:`, `fifo:/path`, `unix:/path`, `unix:@name`, `unixseq:/path`,
//! `tcp://host:port`, `shm:name`, `mq:/name`, `sysvmq:KEY` and
//! `journal:/dir` move whole messages today; `tls:` and `nats:` parse, and
//! say they are not built yet.
//!
//! ```no_run
//! use ipcx::{Link, Listener};
//!
//! # fn main() -> ipcx::Result<()> {
//! // One process binds (creates) the endpoint ...
//! let listener = Listener::bind("unix:/tmp/demo.sock")?;
//! // ... another connects, waiting up to `?timeout=` for it to appear.
//! let mut client = Link::connect("unix:/tmp/demo.sock?timeout=5s")?;
//! let mut server = listener.accept()?;
//! client.send(b"hello")?;
//! assert_eq!(server.recv()?, b"hello");
//! # Ok(()) }
//! ```
//!
//! The layers, bottom up: `sys` (every OS call; internal), [`wire`] (the
//! frame format), [`shm`] (segments, rings, zero copy), [`sync`]
//! (cross-process locks and signals), [`registry`] (who owns which named
//! object), [`transport`] (one module per mechanism behind [`Link`] and
//! [`Listener`]). See `docs/ARCHITECTURE.md` for how they fit together.
#![deny(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod copy;
mod deadline;
pub mod endpoint;
mod error;
pub mod journal;
pub mod netlink;
pub mod pattern;
pub mod poller;
mod process;
pub mod registry;
#[allow(unsafe_code)]
pub mod shm;
pub mod signal;
mod stamp;
#[allow(unsafe_code)]
pub mod sync;
#[allow(unsafe_code)]
pub(crate) mod sys;
mod wait;

/// Not API: what the `ipcx` command's benchmarks and the test suite reach
/// below the layers — the bare OS baselines a benchmark measures ipcx
/// against, process identities, raw shared-memory objects, and the fuzzing
/// entry. Hidden from the docs, with no stability promise; applications use
/// the layers above.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::sync::baseline::RawRobustMutex;
    pub use crate::sys::process::{cpus_allowed, is_alive, pack_identity, pin_to_cpu, start_time};
    pub use crate::sys::sem::PosixSem;
    pub use crate::sys::shm::{Mapping, create_exclusive, set_len, set_mode, unlink};
    /// Bare POSIX and System V queue calls, the baselines of the queue
    /// cells.
    pub mod queues {
        pub use crate::sys::mq::{
            open_blocking as mq_open, receive as mq_receive, send as mq_send, unlink as mq_unlink,
        };
        pub use crate::sys::sysvmq::{
            QueueId, get as sysv_get, max_message as sysv_max_message, receive as sysv_receive,
            remove as sysv_remove, send as sysv_send, text as sysv_text,
        };
        /// `/proc/sys/fs/mqueue/msgsize_max`.
        pub fn mq_max_message() -> std::io::Result<usize> {
            crate::sys::mq::limit("msgsize_max")
        }
    }
    pub use crate::wire::fuzz::{FUZZ_LIMIT, fuzz_decode};

    /// Claims a cell of `queue` for a push and never publishes it, as a
    /// producer killed there would (crash tests); whether one was free.
    pub fn abandon_push(queue: &crate::shm::Queue) -> bool {
        queue.abandon_push()
    }

    /// Claims a message of `queue` and never frees its cell, as a consumer
    /// killed there would (crash tests); whether one was queued.
    pub fn abandon_pop(queue: &crate::shm::Queue) -> bool {
        queue.abandon_pop()
    }
}
pub mod transport;
pub mod wire;

#[cfg(feature = "async")]
pub mod tokio;

/// Every code block of the README, run as a doc test, so that the first
/// thing a newcomer copies always works (with the `async` feature, which
/// some of them use; `scripts/test` builds with every feature).
#[doc = include_str!("../../../README.md")]
#[cfg(all(doctest, feature = "async"))]
pub struct ReadmeDoctests;

pub use endpoint::{Codec, Endpoint, Options, Scheme, WaitStrategy};
pub use error::{Error, ErrorKind, Result};
pub use poller::{Pollable, Poller, Refused, Source};
pub use process::Process;
pub use transport::{
    Capabilities, Incoming, Link, Listener, Messages, PeerCredentials, RecvHalf, SendHalf, spawn,
    spawn_endpoint,
};
pub use wire::FrameError;
