//! What the integration tests share: re-executed child processes, a
//! watchdog against hangs, per-test scratch directories, and the test
//! registry.
//!
//! A two-process test is one `#[test]` function that runs in both
//! processes. The parent re-executes the test binary with
//! `[<test name>, --exact, --nocapture, --test-threads=1, --include-ignored]` and
//! `IPCX_TEST_CHILD=<role>`; in the child, [`Test::child_role`] returns that
//! role and the function takes its child branch:
//!
//! ```ignore
//! #[test]
//! fn example() {
//!     let t = Test::start();
//!     if let Some(role) = t.child_role() {
//!         return child(role);
//!     }
//!     let mut child = t.spawn("sender", |cmd| cmd);
//!     // ... talk to it ...
//!     child.finish();
//! }
//! ```
// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

mod sweep;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::Duration;

use ipcx::{ErrorKind, Link, Listener};

/// Environment variable naming the role of a re-executed child.
pub const CHILD_ENV: &str = "IPCX_TEST_CHILD";
/// Prefix of the environment variables that carry a child's parameters.
const PARAM_PREFIX: &str = "IPCX_TEST_";
/// The line a child prints to say it is ready, followed by a payload.
const READY: &str = "IPCX-TEST-READY";
/// The line a child prints first, proving the test it was started for ran.
const STARTED: &str = "IPCX-TEST-STARTED";
/// How long a test may run before the watchdog aborts the process
/// (`IPCX_TEST_WATCHDOG_SECS` overrides it on a slow machine).
const HANG_LIMIT: Duration = Duration::from_secs(60);
/// How long a receive in a test waits before it fails that test (a hang
/// guard only, never a measurement): a broken behaviour fails its own test
/// instead of the watchdog aborting the whole binary.
pub const PATIENCE: Duration = Duration::from_secs(30);
/// How long a child waits for its peer to appear (a hang guard only).
pub const PEER_TIMEOUT: &str = "30s";

/// One running test: its name, its role, and its watchdog.
#[derive(Debug)]
pub struct Test {
    name: String,
    role: Option<String>,
    _watchdog: Watchdog,
}

impl Test {
    /// Starts a test: arms the watchdog, and makes sure `IPCX_REGISTRY`
    /// points to a registry of this test run. Call it first in every test.
    pub fn start() -> Test {
        let name = this_test();
        setup_registry();
        let role = std::env::var(CHILD_ENV).ok();
        let t = Test {
            _watchdog: Watchdog::arm(&name, role.as_deref()),
            name,
            role,
        };
        if t.role.is_some() {
            // A child must not outlive its parent: a parent aborted by its
            // own watchdog would otherwise leave it waiting for a peer.
            let _ = rustix::process::set_parent_process_death_signal(Some(
                rustix::process::Signal::KILL,
            ));
            println!("\n{STARTED}");
        }
        t
    }

    /// The test's name as libtest knows it (`module::function`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// In a re-executed child, its role; `None` in the parent.
    pub fn child_role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// A fresh scratch directory for this test, removed when dropped.
    pub fn scratch(&self) -> Scratch {
        Scratch::new(&self.name)
    }

    /// A command that re-executes this test as a child in `role`, with
    /// output captured (and shown if the child fails).
    pub fn command(&self, role: &str) -> Command {
        let exe = std::env::current_exe().expect("the path of the test binary");
        self.command_at(&exe, role)
    }

    /// [`Test::command`] for a copy of the test binary at `exe`.
    pub fn command_at(&self, exe: &Path, role: &str) -> Command {
        let mut cmd = Command::new(exe);
        // `--include-ignored`: a test that is ignored unless asked for
        // (it needs root) runs its child branch when it was asked for.
        cmd.args([
            &self.name,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(CHILD_ENV, role)
        .env("IPCX_REGISTRY", registry_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        cmd
    }

    /// Spawns this test as a child in `role`; `setup` adds parameters.
    pub fn spawn(
        &self,
        role: &str,
        setup: impl FnOnce(&mut Command) -> &mut Command,
    ) -> ChildProcess {
        let mut cmd = self.command(role);
        setup(&mut cmd);
        ChildProcess::spawn(cmd, role)
    }

    /// Spawns this test as a child in `role` joined to this process by an
    /// ipcx pipe (`ipcx::spawn`); the child takes its end with
    /// [`Link::from_inherited`].
    pub fn spawn_with_pipe(
        &self,
        role: &str,
        setup: impl FnOnce(&mut Command) -> &mut Command,
    ) -> (ChildProcess, Link) {
        let mut cmd = self.command(role);
        setup(&mut cmd);
        let (child, link) = ipcx::spawn(cmd).expect("ipcx::spawn the test binary");
        (ChildProcess::new(child, role), link)
    }
}

/// The name of the running test, from the name libtest gives its thread.
fn this_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        other => panic!(
            "cannot tell which test is running (thread name {other:?}); \
             run the tests through libtest"
        ),
    }
}

/// A parameter the parent passed to a child (`IPCX_TEST_<NAME>`).
pub fn param(name: &str) -> String {
    let var = format!("{PARAM_PREFIX}{name}");
    std::env::var(&var).unwrap_or_else(|_| panic!("the parent did not set {var}"))
}

/// A parameter, if the parent passed it.
pub fn param_opt(name: &str) -> Option<String> {
    std::env::var(format!("{PARAM_PREFIX}{name}")).ok()
}

/// Sets a child's parameter `name` on `cmd`.
pub fn set_param<'a>(cmd: &'a mut Command, name: &str, value: &str) -> &'a mut Command {
    cmd.env(format!("{PARAM_PREFIX}{name}"), value)
}

/// In a child: tells the parent it is ready, with `payload`
/// (see [`ChildProcess::wait_ready`]).
pub fn ready(payload: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{READY} {payload}").expect("write to stdout");
    out.flush().expect("flush stdout");
}

/// Appends an option to a URL's query string.
pub fn with_option(url: &str, option: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{option}")
}

// ---------------------------------------------------------------------------
// Watchdog

/// Aborts the whole process, with a message, if the test it guards is still
/// running after the limit; disarmed when dropped (also while unwinding
/// from a failed assertion).
#[derive(Debug)]
pub struct Watchdog {
    _disarm: Sender<()>,
}

impl Watchdog {
    fn arm(test: &str, role: Option<&str>) -> Watchdog {
        let limit = std::env::var("IPCX_TEST_WATCHDOG_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(HANG_LIMIT, Duration::from_secs);
        let (tx, rx) = mpsc::channel::<()>();
        let who = match role {
            Some(r) => format!(
                "test `{test}` (child in role `{r}`, pid {})",
                std::process::id()
            ),
            None => format!("test `{test}`"),
        };
        std::thread::Builder::new()
            .name(format!("watchdog {test}"))
            .spawn(move || {
                if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                    // Straight to stderr: libtest captures `eprintln!` of
                    // the test's threads, and the abort would lose it.
                    let _ = writeln!(
                        std::io::stderr(),
                        "\nwatchdog: {who} still runs after {limit:?}: it hangs; aborting the process"
                    );
                    std::process::abort();
                }
            })
            .expect("start the watchdog thread");
        Watchdog { _disarm: tx }
    }
}

// ---------------------------------------------------------------------------
// Registry

static REGISTRY: Once = Once::new();

/// The registry directory of this test run: `IPCX_REGISTRY` if set (as
/// `scripts/test` does), else a directory of this test process.
pub fn registry_dir() -> PathBuf {
    setup_registry();
    PathBuf::from(std::env::var_os("IPCX_REGISTRY").expect("IPCX_REGISTRY is set"))
}

fn setup_registry() {
    REGISTRY.call_once(|| {
        // Under scripts/test too: an aborted run leaves its scratch
        // directories and segments whatever the registry.
        sweep_dead_runs();
        if std::env::var_os("IPCX_REGISTRY").is_some() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("ipcx-t{}-registry", std::process::id()));
        // SAFETY: `set_var` is unsound only while another thread reads the
        // environment through libc (std's own accesses take its lock).
        // Nothing in these tests calls C code that reads it, and every test
        // passes through this `Once` before it touches the environment or
        // the registry, so no test thread reads `IPCX_REGISTRY` before it is
        // set here, once.
        unsafe { std::env::set_var("IPCX_REGISTRY", &dir) };
    });
}

/// Removes what test processes that died without cleaning up left.
fn sweep_dead_runs() {
    sweep::sweep_dead_runs("ipcx-t");
}

// ---------------------------------------------------------------------------
// Scratch directories

/// A per-test temporary directory (`$TMPDIR/ipcx-t<pid>-<test>`), removed
/// with everything in it when dropped, even when the test fails.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        // Short, so that socket paths stay well under the 108-byte limit.
        let short: String = test
            .replace("::", ".")
            .chars()
            .rev()
            .take(32)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let dir = std::env::temp_dir().join(format!(
            "ipcx-t{}-{}-{short}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the scratch directory");
        Scratch { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path in the directory; checked to be short enough for a Unix
    /// socket address.
    pub fn path(&self, name: &str) -> PathBuf {
        let p = self.dir.join(name);
        assert!(
            p.as_os_str().len() < 100,
            "{} is too long for a socket path; set TMPDIR to a shorter directory",
            p.display()
        );
        p
    }

    /// `<scheme>:<dir>/<name>`.
    pub fn url(&self, scheme: &str, name: &str) -> String {
        format!("{scheme}:{}", self.path(name).display())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An abstract Unix socket name unique to this process and call.
pub fn abstract_name() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "ipcx-t{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The uid and gid of `nobody`, for tests run as another user.
pub const NOBODY: u32 = 65534;

/// The test binary, or a copy of it in `dir` when some directory on its
/// path is closed to other users (who could not run it otherwise).
pub fn executable_by_others(dir: &Scratch) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary");
    let open_to_others = |p: &Path, bits: u32| {
        std::fs::metadata(p)
            .is_ok_and(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & bits == bits)
    };
    let reachable =
        open_to_others(&exe, 0o005) && exe.ancestors().skip(1).all(|d| open_to_others(d, 0o001));
    if reachable {
        return exe;
    }
    let copy = dir.dir().join("test-binary");
    std::fs::copy(&exe, &copy).expect("copy the test binary");
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the copy");
    copy
}

/// Compiles the C program `source` in `dir` with the system's C compiler
/// (the one Rust links with), passing `flag` (a library or `-pthread`).
pub fn compile_c(dir: &Scratch, source: &str, flag: &str) -> PathBuf {
    let src = dir.path("peer.c");
    std::fs::write(&src, source).expect("write the C source");
    let exe = dir.path("peer");
    let out = Command::new("cc")
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .arg(flag)
        .output()
        .expect("run cc (the C compiler Rust links with)");
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Runs `cmd` (a peer in C or Python) to completion; fails the test with
/// its stderr unless it exits 0, else returns its stdout.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "run {:?}: {e} (scripts/test installs what the tests need)",
            cmd.get_program()
        )
    });
    assert!(
        out.status.success(),
        "{:?} {:?}: {} {}",
        cmd.get_program(),
        cmd.get_args().last(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the peer prints UTF-8")
}

/// Runs `ip` (iproute2) with `args`: whether it ran and succeeded.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a C peer built by [`compile_c`]: its stdout (see [`stdout_of`]).
pub fn run_c(exe: &Path, args: &[&str]) -> String {
    stdout_of(Command::new(exe).args(args))
}

// ---------------------------------------------------------------------------
// Child processes

/// A re-executed child. Dropping it kills (SIGKILL) and reaps the child, so
/// a failing test leaves no process behind; its captured output is printed
/// then, for the failure report.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    role: String,
    output: Arc<Mutex<String>>,
    ready: Receiver<String>,
    drains: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
    /// Whether a failure message already showed the child's output.
    reported: bool,
}

impl ChildProcess {
    fn new(mut child: Child, role: &str) -> ChildProcess {
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, ready) = mpsc::channel();
        let mut drains = Vec::new();
        if let Some(out) = child.stdout.take() {
            drains.push(drain(out, output.clone(), Some(tx)));
        }
        if let Some(err) = child.stderr.take() {
            drains.push(drain(err, output.clone(), None));
        }
        ChildProcess {
            child,
            role: role.to_string(),
            output,
            ready,
            drains,
            status: None,
            reported: false,
        }
    }

    /// A child started elsewhere (by `ipcx::spawn_endpoint`) from a
    /// [`Test::command`], with its output captured.
    pub fn spawn_adopted(child: Child, role: &str) -> ChildProcess {
        ChildProcess::new(child, role)
    }

    /// Spawns `cmd` (made by [`Test::command`]) as a child in `role`.
    pub fn spawn(mut cmd: Command, role: &str) -> ChildProcess {
        ChildProcess::new(cmd.spawn().expect("spawn the test binary"), role)
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child's standard input, if the command piped it.
    pub fn take_stdin(&mut self) -> Option<std::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Whether the child has exited (and then its status).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait on the child");
        }
        self.status
    }

    /// The payload of a [`ready`] the child sent and nobody took yet, if
    /// any (without waiting).
    pub fn try_ready(&mut self) -> Option<String> {
        self.ready.try_recv().ok()
    }

    /// Waits until the child calls [`ready`], and returns its payload.
    /// Fails the test, with the child's output, if it exits first.
    pub fn wait_ready(&mut self) -> String {
        loop {
            match self.ready.recv_timeout(Duration::from_millis(100)) {
                Ok(payload) => return payload,
                Err(RecvTimeoutError::Timeout) if self.exited().is_none() => {}
                Err(_) => {
                    let status = self.reap();
                    self.fail(&format!("exited ({status}) before it was ready"));
                }
            }
        }
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
        }
        self.reap();
    }

    /// Waits for the child to exit, and fails the test (showing the
    /// child's output) unless it succeeded after running its test.
    pub fn finish(mut self) {
        let status = self.reap();
        if !status.success() {
            self.fail(&format!("failed ({status})"));
        }
        let started = self.output.lock().is_ok_and(|o| o.contains(STARTED));
        if !started {
            self.fail("exited without running its test (is the test name right?)");
        }
    }

    /// Fails the test with `what` happened to the child, and its output.
    pub fn fail(&mut self, what: &str) -> ! {
        self.reported = true;
        panic!("child `{}` {what}\n{}", self.role, self.output_report());
    }

    /// Waits for the child to exit, collecting all its output.
    fn reap(&mut self) -> ExitStatus {
        let status = match self.status {
            Some(s) => s,
            None => self.child.wait().expect("wait for the child"),
        };
        self.status = Some(status);
        for d in self.drains.drain(..) {
            let _ = d.join();
        }
        status
    }

    fn output_report(&self) -> String {
        let out = self.output.lock().map(|o| o.clone()).unwrap_or_default();
        format!(
            "--- output of child `{}` (pid {}) ---\n{}--- end of child output ---",
            self.role,
            self.child.id(),
            out
        )
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && !self.reported {
            eprintln!("{}", self.output_report());
        }
    }
}

/// Copies a child's output into `into`, line by line, and sends the
/// payload of a ready line to `ready`.
fn drain(
    from: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    ready: Option<Sender<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            if let (Some(tx), Some((_, payload))) = (&ready, text.split_once(READY)) {
                let _ = tx.send(payload.trim().to_string());
            }
            if let Ok(mut out) = into.lock() {
                out.push_str(&text);
            }
        }
    })
}

// ---------------------------------------------------------------------------
// Links

/// Accepts the next peer, failing the test (with the child's output) if
/// `child`, the peer expected, exits without connecting.
pub fn accept(listener: &mut Listener, child: &mut ChildProcess) -> Link {
    loop {
        match listener.accept_timeout(Duration::from_millis(200)) {
            Ok(link) => return link,
            Err(e) if *e.kind() == ErrorKind::TimedOut => {
                if let Some(status) = child.exited() {
                    child.reap();
                    let ep = listener.endpoint().to_string();
                    child.fail(&format!("exited ({status}) without connecting to {ep}"));
                }
            }
            Err(e) => panic!("accept on {}: {e}", listener.endpoint()),
        }
    }
}

/// Connects to `url`, waiting up to [`PEER_TIMEOUT`] for it to be bound.
pub fn connect(url: &str) -> Link {
    let url = with_option(url, &format!("timeout={PEER_TIMEOUT}"));
    Link::connect(&url).unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// In a child: binds `URL`, says it is ready, and holds it until killed.
pub fn bind_and_hold() {
    let _listener = Listener::bind(&param("URL")).expect("bind");
    ready("bound");
    std::thread::sleep(Duration::from_secs(120));
}

/// Runs `Registry::clean` and checks that it reports removing `url`.
pub fn clean_reports(url: &str) {
    let removed = ipcx::registry::Registry::open()
        .expect("registry")
        .clean(false)
        .expect("clean");
    assert!(
        removed.iter().any(|e| e.record.url == url),
        "clean reports {url}: {removed:?}"
    );
}

/// Whether `fd` turns readable within `wait` (`poll(2)`, as an event loop
/// would wait on it).
pub fn readable(fd: impl std::os::fd::AsFd, wait: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: wait.as_secs() as i64,
        tv_nsec: i64::from(wait.subsec_nanos()),
    };
    poll(&mut fds, Some(&timeout)).expect("poll") == 1
}

/// A deterministic pseudo-random payload (xorshift), so that misplaced or
/// reordered chunks cannot compare equal.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Asserts that two messages are equal without printing megabytes.
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {} bytes; first difference at {first:?}",
            got.len(),
            want.len()
        );
    }
}

/// A single-threaded tokio runtime for the async tests.
#[cfg(feature = "async")]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A single-threaded tokio runtime whose blocking-pool threads are named
/// `name` (at most 15 bytes, all of it shown in /proc's `comm`), so that
/// [`threads_named`] counts them.
#[cfg(feature = "async")]
pub fn named_runtime(name: &str) -> tokio::runtime::Runtime {
    assert!(name.len() <= 15, "a thread's comm holds 15 bytes");
    tokio::runtime::Builder::new_current_thread()
        .thread_name(name)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// How many threads of this process are named `name`.
pub fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .count()
}

/// Each of `results` failed with `ErrorKind::Unsupported` whose reason
/// contains `why` (any other failure, or a success, fails the test).
pub fn all_unsupported(results: impl IntoIterator<Item = ipcx::Result<()>>, why: &str) {
    for r in results {
        let err = r.expect_err("refused");
        assert!(
            matches!(err.kind(), ErrorKind::Unsupported(reason) if reason.contains(why)),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------
// Hostile memory

/// The child role that [`scribble`] starts; a test that uses it begins with
/// `if t.child_role() == Some(SCRIBBLER) { return scribbler(); }`.
pub const SCRIBBLER: &str = "scribbler";

/// Has another process write pseudo-random bytes (from `seed`) over
/// `ranges` (`offset..offset+len` of the data region) of the segment
/// `url`, and waits until it is done: a hostile peer of the same user.
pub fn scribble(t: &Test, url: &str, ranges: &[(usize, usize)], seed: u64) {
    let spec: Vec<String> = ranges.iter().map(|(o, l)| format!("{o}+{l}")).collect();
    let mut cmd = t.command(SCRIBBLER);
    set_param(&mut cmd, "SEG", url);
    set_param(&mut cmd, "RANGES", &spec.join(","));
    set_param(&mut cmd, "SEED", &seed.to_string());
    ChildProcess::spawn(cmd, SCRIBBLER).finish();
}

/// The child side of [`scribble`].
pub fn scribbler() {
    let seg = ipcx::shm::Segment::open(&param("SEG")).expect("open the segment");
    let mut x = param("SEED")
        .parse::<u64>()
        .expect("seed")
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        | 1;
    for range in param("RANGES").split(',') {
        let (offset, len) = range.split_once('+').expect("OFFSET+LEN");
        let (offset, len): (usize, usize) = (offset.parse().unwrap(), len.parse().unwrap());
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        // SAFETY: racing the owner's accesses is what a hostile peer does;
        // the bytes are plain integers to both (see the trust model).
        unsafe { seg.write_at(offset, &junk) }.expect("scribble");
    }
}

/// Fails the test unless `r` is a value or an error a caller can act on
/// after hostile writes: not a bare OS error, which would mean scribbled
/// memory reached a system call unchecked.
pub fn typed<T>(what: &str, r: ipcx::Result<T>) {
    if let Err(e) = r {
        assert!(
            !matches!(e.kind(), ErrorKind::Io)
                || e.os_error().is_some_and(|o| o.raw_os_error().is_none()),
            "{what}: an OS error after hostile writes: {e}"
        );
    }
}

/// One frame as a peer that is not ipcx would write it: a header with no
/// flags and no descriptors, then `payload`.
pub fn raw_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = ipcx::wire::Header {
        kind,
        flags: 0,
        nfds: 0,
        len: payload.len() as u64,
        crc: 0,
    }
    .encode()
    .to_vec();
    f.extend_from_slice(payload);
    f
}
