//! What a benchmark cell measures: the mechanism, and whether through
//! ipcx or bare.

use clap::ValueEnum;

/// A mechanism the benchmark measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mech {
    Pipe,
    Fifo,
    Unix,
    Unixseq,
    Tcp,
    Shm,
    /// Zero-copy publish/subscribe, payload written and read whole.
    #[value(name = "shm-zc")]
    ShmZc,
    /// Zero-copy publish/subscribe, only the stamp written and read.
    #[value(name = "shm-zc-untouched")]
    ShmZcUntouched,
    /// POSIX message queues, one each way.
    Mq,
    /// System V message queues, one each way.
    Sysvmq,
    /// Journal appends against bare sequential `write()` of the same
    /// bytes (cells of their own, not links).
    Journal,
    /// A journal each way, each followed live by the other process: the
    /// writer-to-tailer latency (against the cache-line floor).
    #[value(name = "journal-tail")]
    JournalTail,
    /// Cross-process mutex and semaphore against the bare pthread and
    /// POSIX ones (cells of their own, not links).
    Sync,
    /// Typed messages (a `pattern::TypedLink` of `pattern::Bytes`, postcard)
    /// on unix:; its raw rows are the same bytes on an untyped unix: link.
    Typed,
    /// Request/reply calls (`pattern::Client` to a `Responder`) on unix:;
    /// its raw rows are bare ping-pong on a Unix socket.
    #[value(name = "rpc-unix")]
    RpcUnix,
    /// Request/reply calls on tcp:, against bare TCP ping-pong.
    #[value(name = "rpc-tcp")]
    RpcTcp,
    /// Publish/subscribe on unix: (a publisher each way, one subscriber
    /// each), against bare write() of one message per call on a Unix
    /// socket.
    #[value(name = "pubsub")]
    Pubsub,
}

impl Mech {
    pub const ALL: [Mech; 17] = [
        Mech::Pipe,
        Mech::Fifo,
        Mech::Unix,
        Mech::Unixseq,
        Mech::Tcp,
        Mech::Shm,
        Mech::Mq,
        Mech::Sysvmq,
        Mech::Journal,
        Mech::JournalTail,
        Mech::ShmZc,
        Mech::ShmZcUntouched,
        Mech::Sync,
        Mech::Typed,
        Mech::RpcUnix,
        Mech::RpcTcp,
        Mech::Pubsub,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mech::Pipe => "pipe",
            Mech::Fifo => "fifo",
            Mech::Unix => "unix",
            Mech::Unixseq => "unixseq",
            Mech::Tcp => "tcp",
            Mech::Shm => "shm",
            Mech::Mq => "mq",
            Mech::Sysvmq => "sysvmq",
            Mech::Journal => "journal",
            Mech::JournalTail => "journal-tail",
            Mech::ShmZc => "shm-zc",
            Mech::ShmZcUntouched => "shm-zc-untouched",
            Mech::Sync => "sync",
            Mech::Typed => "typed",
            Mech::RpcUnix => "rpc-unix",
            Mech::RpcTcp => "rpc-tcp",
            Mech::Pubsub => "pubsub",
        }
    }

    /// The ways a cell is measured, in the order they run: ipcx waiting
    /// as the raw baseline does, the raw baseline, then the other waits.
    /// Bare shared memory has no way to block, so its baseline spins.
    pub fn variants(self) -> &'static [(Impl, &'static str)] {
        match self {
            // Zero copy has no bare equivalent in the table; the floor and
            // memcpy rows of the same run are its yardsticks.
            Mech::ShmZc | Mech::ShmZcUntouched => &[(Impl::Ipcx, "spin"), (Impl::Ipcx, "adaptive")],
            Mech::Sync | Mech::Journal => &[],
            // No bare equivalent: the cache-line floor is the yardstick.
            Mech::JournalTail => &[(Impl::Ipcx, "spin"), (Impl::Ipcx, "block")],
            Mech::Shm => &[
                (Impl::Ipcx, "spin"),
                (Impl::Raw, "spin"),
                (Impl::Ipcx, "adaptive"),
                (Impl::Ipcx, "block"),
            ],
            _ => &[
                (Impl::Ipcx, "block"),
                (Impl::Raw, "block"),
                (Impl::Ipcx, "adaptive"),
            ],
        }
    }

    /// Whether (latency, throughput) messages are written and read whole.
    pub fn touches(self) -> (bool, bool) {
        match self {
            Mech::ShmZc => (true, true),
            Mech::ShmZcUntouched => (false, false),
            _ => (false, true),
        }
    }

    /// Largest message the raw mechanism carries in one piece.
    pub fn raw_limit(self) -> usize {
        match self {
            // One datagram must fit the socket send buffer (~208 KiB).
            Mech::Unixseq => 128 << 10,
            _ => self.limit(),
        }
    }

    /// Largest message the mechanism carries at all (queues: the system's
    /// limit, 8 KiB here).
    pub fn limit(self) -> usize {
        use ipcx::bench_support::queues;
        match self {
            Mech::Mq => queues::mq_max_message().unwrap_or(8192),
            Mech::Sysvmq => queues::sysv_max_message().unwrap_or(8192),
            _ => usize::MAX,
        }
    }
}

/// Through ipcx or bare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Impl {
    Ipcx,
    Raw,
}
