//! What the CLI tests share: a scratch directory and registry per test, the
//! real `ipcx` binary run as child processes that die with the test, and a
//! watchdog on every wait.
//!
//! ```ignore
//! let s = Scratch::new();
//! let url = s.url("unix", "a.sock");
//! let recv = s.spawn(["recv", &url, "-n", "1"]);
//! s.run(["send", &url, "hi"]).success();
//! assert_eq!(recv.finish().success().stdout(), "hi\n");
//! ```
//!
//! Declare the [`Scratch`] before the processes it starts: they are then
//! killed (dropped) before their directory is removed.

#[path = "../../../ipcx/tests/common/sweep.rs"]
mod sweep;

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long any one wait may last before the test is failed
/// (`IPCX_TEST_WATCHDOG_SECS` overrides it on a very slow machine). A guard
/// against hangs only: no test asserts how long anything took.
pub fn hang_limit() -> Duration {
    let secs = std::env::var("IPCX_TEST_WATCHDOG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// Polls `f` until it returns `Some`, failing the test after [`hang_limit`].
pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(
            start.elapsed() < hang_limit(),
            "watchdog: still waiting for {what} after {:?}",
            hang_limit()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A port on 127.0.0.1 that was free a moment ago. Someone may take it
/// before the test binds it: callers retry on "address in use".
pub fn free_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local address").port()
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A name for an abstract Unix socket (`unix:@name`) no other test uses.
pub fn abstract_name() -> String {
    format!("@ipcx-cli-test-{}", unique())
}

/// One test's directory: its paths, its registry (`IPCX_REGISTRY`) and its
/// `TMPDIR`, removed on drop, also when the test panics.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// A fresh, empty directory. Its path is short, so that socket paths
    /// under it stay within the 108 bytes of `sun_path`.
    pub fn new() -> Scratch {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(|| sweep::sweep_dead_runs("ipcx-cli-"));
        let dir = std::env::temp_dir().join(format!("ipcx-cli-{}", unique()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch directory");
        Scratch { dir }
    }

    /// `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `scheme:<dir>/name`.
    pub fn url(&self, scheme: &str, name: &str) -> String {
        format!("{scheme}:{}", self.path(name).display())
    }

    /// The `ipcx` binary with this test's environment.
    pub fn command<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipcx"));
        cmd.args(args)
            .env("IPCX_REGISTRY", self.path("registry"))
            .env("TMPDIR", &self.dir)
            .env_remove("IPCX_LOG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Starts `ipcx args...`; its output goes to files read by
    /// [`Running::finish`].
    pub fn spawn<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Running {
        self.start(self.command(args), None)
    }

    /// Starts `ipcx args...` with `input` on its standard input.
    pub fn spawn_with_stdin<S: AsRef<OsStr>>(
        &self,
        args: impl IntoIterator<Item = S>,
        input: &[u8],
    ) -> Running {
        self.start(self.command(args), Some(input))
    }

    /// Runs `ipcx args...` to its end.
    pub fn run<S: AsRef<OsStr>>(&self, args: impl IntoIterator<Item = S>) -> Finished {
        self.spawn(args).finish()
    }

    /// Starts `cmd`, with `input` written to its stdin (then closed).
    pub fn start(&self, mut cmd: Command, input: Option<&[u8]>) -> Running {
        let what = describe(&cmd);
        let n = unique();
        let stdout = self.path(&format!("stdout-{n}"));
        let stderr = self.path(&format!("stderr-{n}"));
        cmd.stdout(File::create(&stdout).expect("create stdout file"))
            .stderr(File::create(&stderr).expect("create stderr file"));
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        if let Some(input) = input {
            // Small inputs fit the pipe, so this never waits for the child.
            // A child that exited first shows in its status, not here.
            let mut stdin = child.stdin.take().expect("piped stdin");
            let _ = stdin.write_all(input);
        }
        Running {
            child,
            exited: None,
            what,
            stdout,
            stderr,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn describe(cmd: &Command) -> String {
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    format!("`ipcx {}`", args.join(" "))
}

/// A running `ipcx`, killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Running {
    child: Child,
    exited: Option<ExitStatus>,
    what: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it exited, if it has.
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// What the process wrote to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }

    /// Fails the test, with the process's output, if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.poll() {
            panic!("exited early: {}", self.result(status));
        }
    }

    /// Waits for the process to exit, up to [`hang_limit`]; then kills it
    /// and fails the test.
    pub fn finish(mut self) -> Finished {
        let start = Instant::now();
        loop {
            if let Some(status) = self.poll() {
                return self.result(status);
            }
            if start.elapsed() >= hang_limit() {
                self.watchdog_kill();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the process with SIGKILL (it gets no chance to clean up) and
    /// reaps it.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.exited = Some(self.child.wait().expect("reap"));
    }

    fn watchdog_kill(&mut self) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait().expect("reap");
        self.exited = Some(status);
        panic!(
            "watchdog: killed after {:?}: {}",
            hang_limit(),
            self.result(status)
        );
    }

    fn result(&self, status: ExitStatus) -> Finished {
        Finished {
            what: self.what.clone(),
            status,
            stdout: std::fs::read(&self.stdout).unwrap_or_default(),
            stderr: String::from_utf8_lossy(&std::fs::read(&self.stderr).unwrap_or_default())
                .into_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for `receiver` to exit, like [`Running::finish`], but fails at once
/// when `sender` fails first: the receiver would otherwise wait for its
/// messages until the watchdog.
pub fn finish_receiver(mut receiver: Running, sender: &mut Running) -> Finished {
    let start = Instant::now();
    loop {
        if let Some(status) = receiver.poll() {
            return receiver.result(status);
        }
        if let Some(status) = sender.poll().filter(|s| !s.success()) {
            panic!(
                "the sender failed while {} waited: {}",
                receiver.what,
                sender.result(status)
            );
        }
        if start.elapsed() >= hang_limit() {
            receiver.watchdog_kill();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An `ipcx` process that exited, with what it printed.
#[derive(Debug)]
pub struct Finished {
    what: String,
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Finished {
    /// Fails the test unless the process exited 0.
    pub fn success(self) -> Finished {
        assert!(self.status.success(), "expected success: {self}");
        self
    }

    /// Fails the test unless the process exited with the documented error
    /// status, 1, and printed no panic: a panic (101) or a crash by a
    /// signal is never a clean error.
    pub fn failure(self) -> Finished {
        assert_eq!(
            self.status.code(),
            Some(1),
            "expected exit code 1 (an error, not a panic): {self}"
        );
        assert!(
            !self.stderr.contains("panicked"),
            "a panic is not a clean error: {self}"
        );
        self
    }

    /// Stdout as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.status,
            self.stdout(),
            self.stderr
        )
    }
}

/// `true` when `path` exists (as anything, including a dangling socket).
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}
