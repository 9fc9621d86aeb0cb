//! `ipcx`: send, receive, inspect, clean up and benchmark IPC endpoints.
//!
//! The binary is thin: it parses arguments, calls the library, and prints.

mod bench;
mod journal;
mod objects;
mod pubsub;
mod recv;
mod rpc;
mod sem;
mod send;
mod signal;
mod workqueue;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ipcx",
    version,
    about = "Inter-process communication over every Linux mechanism, addressed by URL",
    after_help = "Examples:\n  ipcx recv unix:/tmp/app.sock -n 1 &\n  ipcx send unix:/tmp/app.sock hello\n  ipcx ls\n  ipcx bench --quick\n\nEndpoints: pipe: fifo:/path unix:/path unix:@name unixseq:/path tcp://host:port shm:name mq:/name sysvmq:KEY\n  (and netlink:route, netlink:uevent for ipcx recv)\nOptions ride in the query string: tcp://127.0.0.1:7000?max_msg=1MiB&timeout=5s"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How many messages a receiving command takes, and how long it waits.
#[derive(Args, Clone, Copy, Debug)]
pub struct Take {
    /// Exit 0 after this many.
    #[arg(short = 'n', long)]
    pub count: Option<u64>,
    /// Give up (exit 1) when they have not all arrived in this time.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

impl Take {
    /// Hands `each` what `next` receives (given the time left, `None`:
    /// no limit) until `count` were taken, or the sender is gone while
    /// waiting without a limit; a timeout is `next`'s error.
    pub fn run<T>(
        self,
        mut next: impl FnMut(Option<Duration>) -> ipcx::Result<T>,
        mut each: impl FnMut(T) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let deadline = self
            .timeout
            .and_then(|t| std::time::Instant::now().checked_add(t));
        let mut got = 0;
        while self.count.is_none_or(|n| got < n) {
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            let item = match next(left) {
                Err(e) if left.is_none() && e.is_closed() => break,
                r => r?,
            };
            each(item)?;
            got += 1;
        }
        Ok(())
    }
}

/// Who creates the endpoint; the default depends on the command.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct Role {
    /// Bind (create) the endpoint, whatever the command's default.
    #[arg(long, conflicts_with = "connect")]
    pub bind: bool,
    /// Connect to an existing endpoint, whatever the command's default.
    #[arg(long)]
    pub connect: bool,
}

impl Role {
    /// Whether to bind, given the command's default.
    pub fn binds(self, default_bind: bool) -> bool {
        if self.bind {
            true
        } else if self.connect {
            false
        } else {
            default_bind
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Bind an endpoint and print each message received, one per line.
    #[command(
        after_help = "Examples:\n  ipcx recv unix:/tmp/app.sock -n 3\n  ipcx recv 'fifo:/tmp/f?codec=lines' --format json\n  ipcx recv tcp://0.0.0.0:7000 --timeout 10s --format hex\n  ipcx recv mq:/jobs                      # a POSIX queue (created here)\n  ipcx recv netlink:route                 # links, addresses, routes, as ip monitor prints them\n  ipcx recv netlink:uevent --format json  # the kernel's device events"
    )]
    Recv(recv::RecvArgs),
    /// Connect to an endpoint and send each argument (or stdin) as a message.
    #[command(
        after_help = "Examples:\n  ipcx send unix:/tmp/app.sock hello world     # two messages\n  echo hi | ipcx send tcp://127.0.0.1:7000     # stdin as one message\n  ipcx send 'fifo:/tmp/f?codec=lines' --lines < file.txt"
    )]
    Send(send::SendArgs),
    /// List the objects ipcx created (sockets, FIFOs, shared memory, locks, semaphores) with owner, liveness and state.
    #[command(
        after_help = "Examples:\n  ipcx ls\n  ipcx ls --json | jq '.[] | select(.alive == false)'"
    )]
    Ls(objects::LsArgs),
    /// Remove the objects whose owner process died.
    #[command(after_help = "Examples:\n  ipcx clean --dry-run\n  ipcx clean")]
    Clean(objects::CleanArgs),
    /// Remove an object whose owner is gone, durable (?persist=true) ones too.
    #[command(after_help = "Examples:\n  ipcx rm 'fifo:/var/run/app/jobs?persist=true'")]
    Rm(objects::RmArgs),
    /// Measure latency and throughput of every mechanism, through ipcx and raw.
    #[command(
        after_help = "Examples:\n  ipcx bench --quick\n  ipcx bench --mech unix,tcp --sizes 64,64KiB --json out.json\n  ipcx bench --quick --pin same"
    )]
    Bench(bench::BenchArgs),
    /// Create, release, acquire and read semaphores: ipcx's own, POSIX named or System V.
    #[command(
        after_help = "Examples:\n  ipcx sem create jobs --value 2\n  ipcx sem acquire jobs --timeout 5s && run-job; ipcx sem release jobs\n  ipcx sem create printer --posix      # a C program's sem_open(\"/printer\", 0) opens it\n  ipcx sem get 0x1234 --sysv\n  ipcx sem rm jobs"
    )]
    Sem(sem::SemArgs),
    /// Send signals to processes (with an integer, by sigqueue) and wait for them.
    #[command(
        after_help = "Examples:\n  ipcx signal wait SIGUSR1 SIGRTMIN+1 -n 2        # prints: SIGUSR1 - 4242\n  ipcx signal send 4243 SIGRTMIN+1 --value 7      # the waiter prints: SIGRTMIN+1 7 <sender pid>\n  ipcx signal wait SIGHUP --timeout 30s --format json\n\nA signal carries its number and, with sigqueue, one integer. Standard signals sent\nagain before they are taken arrive once; real-time ones (SIGRTMIN..SIGRTMAX) queue."
    )]
    Signal(signal::SignalArgs),
    /// Read a journal from any sequence number, follow it, and say what it holds.
    #[command(
        after_help = "Examples:\n  ipcx send journal:/var/lib/app/events 'order 42'   # appends (made if missing)\n  ipcx journal tail journal:/var/lib/app/events --from 100 -f\n  ipcx journal stat journal:/var/lib/app/events\n  ipcx recv journal:/var/lib/app/events -n 1         # the next record appended"
    )]
    Journal(journal::JournalArgs),
    /// Publish messages on a topic to the subscribers that connect.
    #[command(
        after_help = "Examples:\n  ipcx sub unix:/tmp/prices.sock 'prices.eu.>' -n 2 &\n  ipcx pub unix:/tmp/prices.sock prices.eu.sap 241.5 242.0   # waits for 1 subscriber\n  tail -f log | ipcx pub tcp://0.0.0.0:7200 logs.app --wait-subs 0\n  ipcx pub 'unix:/tmp/p.sock?history=5' t.a x --linger 10s      # kept for late subscribers\n  ipcx sub --bind unix:/tmp/all.sock '>' &  ipcx pub --connect unix:/tmp/all.sock t.a x\n  ipcx sub shm:ticks 'fx.>' &  ipcx pub shm:ticks fx.eurusd 1.0842   # zero-copy channel"
    )]
    Pub(pubsub::PubArgs),
    /// Subscribe to topics of a publisher and print `topic<TAB>message` per line.
    #[command(
        after_help = "Examples:\n  ipcx sub unix:/tmp/prices.sock 'prices.*.sap' 'fx.>'\n  ipcx sub 'tcp://127.0.0.1:7200?history=10' 'logs.>' --format json -n 100\n\nPatterns: levels split by '.', '*' for one level, a last '>' for the rest."
    )]
    Sub(pubsub::SubArgs),
    /// Hand out jobs to the workers that connect; exit once each is acknowledged.
    #[command(
        after_help = "Examples:\n  ipcx push unix:/tmp/jobs.sock 'resize 1.jpg' 'resize 2.jpg' &\n  ipcx pull unix:/tmp/jobs.sock -n 1     # prints a job, then acknowledges it\n  find . -name '*.log' | ipcx push tcp://0.0.0.0:7300 --timeout 10m\n  ipcx push unix:/tmp/collect.sock 'job' --connect   # to a puller that binds\n  ipcx push unix:/tmp/jobs.sock a b --journal journal:/var/lib/jobs   # survives a restart\n\nA job a worker took and did not acknowledge (it died) goes to another worker."
    )]
    Push(workqueue::PushArgs),
    /// Take jobs from a pusher, print each, and acknowledge it.
    #[command(
        after_help = "Examples:\n  ipcx pull unix:/tmp/jobs.sock\n  ipcx pull tcp://127.0.0.1:7300 -n 10 --timeout 1m --prefetch 4\n  ipcx pull unix:/tmp/collect.sock --bind   # pushers connect to it"
    )]
    Pull(workqueue::PullArgs),
    /// Answer calls (request/reply): each request with its own bytes.
    #[command(
        after_help = "Examples:\n  ipcx serve unix:/tmp/echo.sock --echo &\n  ipcx call unix:/tmp/echo.sock hello          # prints: hello\n  ipcx serve tcp://0.0.0.0:7100 --echo --threads 4\n  ipcx serve unix:/tmp/cb.sock --echo --connect   # to a caller that binds"
    )]
    Serve(rpc::ServeArgs),
    /// Make one call (request/reply) and print the reply.
    #[command(
        after_help = "Examples:\n  ipcx call unix:/tmp/echo.sock hello\n  echo '{\"q\":1}' | ipcx call tcp://127.0.0.1:7100 --timeout 2s\n  ipcx call unix:/tmp/cb.sock ping --bind      # wait for a server to connect\n\nAn error the server's handler answers exits 1 with its text; so does a\nserver that is not there after --timeout, or does not answer in it."
    )]
    Call(rpc::CallArgs),
    /// One side of a benchmark cell (started by `ipcx bench`).
    #[command(hide = true)]
    BenchPeer(bench::PeerArgs),
}

fn main() -> ExitCode {
    tracing_init();
    let cli = Cli::parse();
    // Before any thread starts (they inherit the blocked signals). A
    // command that waits for signals takes them itself.
    let takes_signals = matches!(&cli.command, Command::Signal(a) if signal::takes_signals(a));
    if !takes_signals && let Err(e) = ipcx::signal::on_termination(remove_ours_and_exit) {
        eprintln!("ipcx: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Recv(a) => recv::run(a),
        Command::Send(a) => send::run(a),
        Command::Ls(a) => objects::ls(a),
        Command::Clean(a) => objects::clean(a),
        Command::Rm(a) => objects::rm(a),
        Command::Sem(a) => sem::run(a),
        Command::Signal(a) => signal::run(a),
        Command::Journal(a) => journal::run(a),
        Command::Serve(a) => rpc::serve(a),
        Command::Pub(a) => pubsub::publish(a),
        Command::Push(a) => workqueue::push(a),
        Command::Pull(a) => workqueue::pull(a),
        Command::Sub(a) => pubsub::subscribe(a),
        Command::Call(a) => rpc::call(a),
        Command::Bench(a) => bench::run(a),
        Command::BenchPeer(a) => bench::peer(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ipcx: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// On SIGINT or SIGTERM (on the signal thread, not in a handler): removes
/// what this process created — its registry objects (sockets, FIFOs,
/// segments) and the benchmark's scratch directory — and exits with the
/// conventional status (130, 143).
fn remove_ours_and_exit(sig: ipcx::signal::Termination) {
    match ipcx::registry::Registry::open().and_then(|r| r.release_own()) {
        Ok(removed) => {
            for e in removed {
                tracing::info!(url = %e.record.url, "removed on {sig:?}");
            }
        }
        Err(e) => eprintln!("ipcx: cleaning up on {sig:?}: {e}"),
    }
    let _ = std::fs::remove_dir_all(bench::scratch_dir());
    std::process::exit(sig.exit_code());
}

/// Library logs (a dropped peer, a reclaimed object) go to stderr, filtered
/// by `RUST_LOG` (`RUST_LOG=ipcx=debug`, `RUST_LOG=warn`); `IPCX_LOG` alone
/// means `info`. With neither, nothing is logged: the CLI prints what it
/// has to say itself.
fn tracing_init() {
    let filter = match (std::env::var("RUST_LOG"), std::env::var_os("IPCX_LOG")) {
        (Ok(f), _) => f,
        (Err(_), Some(_)) => "info".to_string(),
        (Err(_), None) => return,
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

/// Parses `500ms`, `5s`, ... for clap.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    ipcx::endpoint::parse_duration(s)
}

/// Parses `64`, `4KiB`, `1MiB`, ... for clap.
pub fn parse_size(s: &str) -> Result<usize, String> {
    ipcx::endpoint::parse_size(s)
}
