//! Work queues (push/pull): a [`Pusher`] binds and hands each job to one
//! of the [`Puller`]s that connect, load-balanced, and each job is
//! acknowledged. A job taken by a puller whose link breaks before it
//! acknowledged (its process died) goes to another puller, its delivery
//! count one higher: at-least-once delivery.
//!
//! Each puller takes at most `prefetch` unacknowledged jobs at a time
//! (default 1, as RabbitMQ's fair dispatch): a busy worker is not given
//! more while an idle one waits. On the link, after the schemas: the
//! puller sends `C` (u32: the jobs it takes at once) and `A` + id (u64)
//! per job done; the pusher sends `J`, id (u64), delivery count (u32),
//! priority (u32), payload. Integers little-endian.
//!
//! Either side may bind. The usual way: the pusher binds and workers
//! connect ([`Pusher::bind`], [`Puller::connect`]). The other way round, a
//! collecting worker binds and pushers connect to it
//! ([`Puller::bind`], [`Pusher::connect`]): it takes jobs from each pusher
//! that joins (`prefetch` from each), and a pusher whose puller went away
//! keeps its jobs and connects again until one is there.
//!
//! ```
//! # fn main() -> ipcx::Result<()> {
//! # let dir = std::env::temp_dir().join(format!("ipcx-doc-wq-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let url = format!("unix:{}/jobs.sock", dir.display());
//! use ipcx::pattern::{Puller, Pusher};
//!
//! let jobs = Pusher::bind(&url)?;
//! jobs.push(b"resize photo 17")?;
//! let mut worker = Puller::connect(&url)?;
//! let job = worker.recv()?;
//! assert_eq!((&job.payload[..], job.deliveries), (&b"resize photo 17"[..], 1));
//! worker.ack(job.id)?;
//! jobs.wait_acked(std::time::Duration::from_secs(5))?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

mod puller;
mod pullers;
mod pusher;
mod queue;
mod store;

pub use puller::Puller;
pub use pusher::{Pusher, WorkStats};

use super::typed::Way;
use crate::pattern::bad;

const CREDIT: u8 = b'C';
const ACK: u8 = b'A';
const JOB: u8 = b'J';
/// On `mq:`: a puller took a job (id, then who: `Process::to_bytes`).
const TAKEN: u8 = b'T';

fn ways(pusher: bool) -> [Way; 2] {
    [
        Way::named(pusher, "workqueue jobs".into(), 1),
        Way::named(!pusher, "workqueue acks".into(), 1),
    ]
}

/// The acknowledgement of job `id`: `A`, id.
fn ack_message(id: u64) -> [u8; 9] {
    let mut m = [ACK; 9];
    m[1..].copy_from_slice(&id.to_le_bytes());
    m
}

/// One job a puller received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Its id, to acknowledge it with ([`Puller::ack`]).
    pub id: u64,
    /// How many times it was handed out (1 the first time; more if a
    /// puller that took it left without acknowledging it).
    pub deliveries: u32,
    /// Its priority ([`Pusher::push_with_priority`]; 0 by default).
    pub priority: u32,
    /// Its bytes.
    pub payload: Vec<u8>,
}

impl Delivery {
    /// Reads a job message (`J`, id, delivery count, payload).
    fn parse(msg: &[u8]) -> crate::Result<Delivery> {
        let rest = msg
            .strip_prefix(&[JOB])
            .ok_or_else(|| bad("a pusher's message that is no job"))?;
        let (id, rest) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("a job cut short"))?;
        let (deliveries, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("a job cut short"))?;
        let (priority, payload) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("a job cut short"))?;
        Ok(Delivery {
            id: u64::from_le_bytes(*id),
            deliveries: u32::from_le_bytes(*deliveries),
            priority: u32::from_le_bytes(*priority),
            payload: crate::copy::to_vec(payload),
        })
    }
}
