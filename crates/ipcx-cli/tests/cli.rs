//! End to end: the real `ipcx` binary, run as separate processes, talking to
//! itself and to plain std sockets and FIFOs.

mod common;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use common::{
    Finished, Scratch, abstract_name, exists, finish_receiver, free_tcp_port, hang_limit,
    wait_until,
};
use serde_json::Value;

/// Generous: a guard against hangs on a loaded machine, never a measurement.
const PEER_WAIT: &str = "30s";

/// `ipcx recv URL -n N` and `ipcx send URL msgs...`, started together; the
/// receiver's result (the sender must succeed).
fn send_and_receive(s: &Scratch, url: &str, recv_opts: &[&str], msgs: &[OsString]) -> Finished {
    let n = msgs.len().to_string();
    let recv = s.spawn(["recv", url, "-n", &n].iter().chain(recv_opts));
    let mut send_args: Vec<OsString> = vec!["send".into(), "--timeout".into(), PEER_WAIT.into()];
    send_args.push(url.into());
    send_args.extend(msgs.iter().cloned());
    let mut send = s.spawn(send_args);
    let got = finish_receiver(recv, &mut send);
    if got.status.success() {
        send.finish().success();
    }
    got
}

fn texts(msgs: &[&str]) -> Vec<OsString> {
    msgs.iter().map(OsString::from).collect()
}

/// The same conversation over every mechanism: one message per line, exit 0
/// after N.
fn conversation(s: &Scratch, url: &str) {
    let got = send_and_receive(s, url, &[], &texts(&["a", "b c", "d"])).success();
    assert_eq!(got.stdout(), "a\nb c\nd\n", "{got}");
}

#[test]
fn unix_path() {
    let s = Scratch::new();
    conversation(&s, &s.url("unix", "s.sock"));
}

#[test]
fn unix_abstract() {
    let s = Scratch::new();
    conversation(&s, &format!("unix:{}", abstract_name()));
}

#[test]
fn fifo() {
    let s = Scratch::new();
    conversation(&s, &s.url("fifo", "f"));
}

#[test]
fn unixseq() {
    let s = Scratch::new();
    conversation(&s, &s.url("unixseq", "q.sock"));
}

#[test]
fn tcp() {
    let s = Scratch::new();
    // The free port may be taken before ipcx binds it: then try another.
    for _ in 0..5 {
        let url = format!("tcp://127.0.0.1:{}", free_tcp_port());
        let got = send_and_receive(&s, &url, &[], &texts(&["a", "b c", "d"]));
        if !got.status.success() && got.stderr.contains("in use") {
            continue;
        }
        let got = got.success();
        assert_eq!(got.stdout(), "a\nb c\nd\n", "{got}");
        return;
    }
    panic!("no free TCP port in five tries");
}

#[test]
fn send_waits_for_the_receiver_to_appear() {
    let s = Scratch::new();
    let url = s.url("unix", "late.sock");
    let mut send = s.spawn(["send", "--timeout", "60s", &url, "early"]);
    // Give the sender time to find nobody there; it must keep waiting.
    std::thread::sleep(Duration::from_millis(300));
    send.assert_running();
    let recv = s.spawn(["recv", &url, "-n", "1"]);
    let got = finish_receiver(recv, &mut send).success();
    assert_eq!(got.stdout(), "early\n");
    send.finish().success();
}

#[test]
fn format_hex() {
    let s = Scratch::new();
    let msgs = [OsString::from("hi"), OsString::from_vec(vec![0x01, 0xff])];
    let got = send_and_receive(&s, &s.url("unix", "h.sock"), &["--format", "hex"], &msgs);
    assert_eq!(got.success().stdout(), "6869\n01ff\n");
}

#[test]
fn format_json() {
    let s = Scratch::new();
    let msgs = [
        OsString::from("hé"),
        OsString::from_vec(vec![0xff, 0xfe, b'A']),
    ];
    let got = send_and_receive(&s, &s.url("unix", "j.sock"), &["--format", "json"], &msgs);
    let got = got.success();
    let lines: Vec<String> = got.stdout().lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "{got}");
    for line in &lines {
        assert!(line.starts_with("{\"seq\":"), "keys out of order: {line}");
    }
    let objects: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(
        objects[0],
        serde_json::json!({"seq": 0, "len": 3, "text": "hé"})
    );
    assert_eq!(
        objects[1],
        serde_json::json!({"seq": 1, "len": 3, "base64": "//5B"})
    );
}

#[test]
fn stdin_is_one_message() {
    let s = Scratch::new();
    let url = s.url("unix", "in.sock");
    let recv = s.spawn(["recv", &url, "-n", "1", "--format", "json"]);
    let mut send = s.spawn_with_stdin(["send", "--timeout", PEER_WAIT, &url], b"data\nmore");
    let got = finish_receiver(recv, &mut send).success();
    send.finish().success();
    let v: Value = serde_json::from_str(got.stdout().trim_end()).expect("one JSON line");
    assert_eq!(
        v,
        serde_json::json!({"seq": 0, "len": 9, "text": "data\nmore"})
    );
}

#[test]
fn stdin_lines_are_messages_of_any_bytes() {
    let s = Scratch::new();
    let url = s.url("unix", "lines.sock");
    let recv = s.spawn(["recv", &url, "-n", "3", "--format", "hex"]);
    let mut send = s.spawn_with_stdin(
        ["send", "--timeout", PEER_WAIT, "--lines", &url],
        b"l1\nl2\r\n\xff\n",
    );
    let got = finish_receiver(recv, &mut send).success();
    send.finish().success();
    assert_eq!(got.stdout(), "6c31\n6c32\nff\n");
}

#[test]
fn recv_reads_lines_written_into_a_plain_fifo() {
    let s = Scratch::new();
    let path = s.path("plain.fifo");
    let url = format!("fifo:{}?codec=lines", path.display());
    let mut recv = s.spawn(["recv", &url, "-n", "2"]);
    // ENOENT until ipcx made the FIFO, ENXIO until it opened it for reading.
    let mut fifo = wait_until("ipcx recv to open the FIFO", || {
        recv.assert_running();
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&path)
            .ok()
    });
    fifo.write_all(b"a\nb\n").expect("write into the FIFO");
    drop(fifo);
    assert_eq!(recv.finish().success().stdout(), "a\nb\n");
}

#[test]
fn send_raw_to_a_plain_unix_listener() {
    let s = Scratch::new();
    let path = s.path("plain.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("unix:{}?codec=raw", path.display());
    let mut send = s.spawn(["send", &url, "hello"]);
    let (mut conn, _) = wait_until("ipcx send to connect", || {
        if let Ok(c) = listener.accept() {
            return Some(c);
        }
        send.assert_running();
        None
    });
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(hang_limit())).expect("timeout");
    let mut got = Vec::new();
    conn.read_to_end(&mut got)
        .expect("read until ipcx hangs up");
    assert_eq!(got, b"hello");
    send.finish().success();
}

#[test]
fn send_lines_to_a_plain_tcp_listener() {
    let s = Scratch::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("tcp://127.0.0.1:{port}?codec=lines");
    let mut send = s.spawn(["send", &url, "hello", "world"]);
    let (conn, _) = wait_until("ipcx send to connect", || {
        if let Ok(c) = listener.accept() {
            return Some(c);
        }
        send.assert_running();
        None
    });
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(hang_limit())).expect("timeout");
    let mut lines = BufReader::new(conn);
    for want in ["hello\n", "world\n"] {
        let mut line = String::new();
        lines.read_line(&mut line).expect("read a line");
        assert_eq!(line, want);
    }
    send.finish().success();
}

#[test]
fn send_binds_and_recv_connects() {
    let s = Scratch::new();
    let url = s.url("unix", "rev.sock");
    let mut send = s.spawn(["send", "--bind", "--timeout", "60s", &url, "msg"]);
    let recv = s.spawn(["recv", "--connect", "--timeout", "60s", &url, "-n", "1"]);
    let got = finish_receiver(recv, &mut send).success();
    assert_eq!(got.stdout(), "msg\n");
    send.finish().success();
}

#[test]
fn recv_connect_without_count_ends_when_the_peer_closes() {
    let s = Scratch::new();
    let url = s.url("unix", "rev.sock");
    let mut send = s.spawn(["send", "--bind", "--timeout", "60s", &url, "x", "y"]);
    let recv = s.spawn(["recv", "--connect", "--timeout", "60s", &url]);
    let got = finish_receiver(recv, &mut send).success();
    assert_eq!(got.stdout(), "x\ny\n");
    send.finish().success();
}

#[test]
fn send_to_nobody_fails_naming_the_endpoint() {
    let s = Scratch::new();
    let path = s.path("nobody.sock");
    // --timeout overrides the URL's: with ?timeout=1h honoured, the watchdog
    // would fail the test.
    let url = format!("unix:{}?timeout=1h", path.display());
    let got = s.run(["send", "--timeout", "300ms", &url, "m"]).failure();
    assert!(
        got.stderr.contains(&path.display().to_string()),
        "stderr does not name the endpoint: {got}"
    );
}

#[test]
fn recv_with_no_sender_times_out() {
    let s = Scratch::new();
    let url = s.url("unix", "lonely.sock");
    let got = s
        .run(["recv", &url, "--timeout", "300ms", "-n", "1"])
        .failure();
    assert!(got.stderr.contains("timed out"), "{got}");
}

#[test]
fn recv_connect_with_no_binder_times_out() {
    let s = Scratch::new();
    let url = format!("{}?timeout=1h", s.url("unix", "nobody.sock"));
    s.run(["recv", "--connect", &url, "--timeout", "300ms", "-n", "1"])
        .failure();
}

/// The entries of `ipcx ls --json`.
fn ls(s: &Scratch) -> Vec<Value> {
    let got = s.run(["ls", "--json"]).success();
    match serde_json::from_slice(&got.stdout) {
        Ok(Value::Array(entries)) => entries,
        _ => panic!("ls --json did not print a JSON array: {got}"),
    }
}

/// The entry of the object at `url` (options in the query aside: the
/// record keeps the URL the owner used, with `--timeout` and the like).
fn entry_for(s: &Scratch, url: &str) -> Option<Value> {
    let base = |u: &str| u.split('?').next().unwrap_or(u).to_string();
    ls(s)
        .into_iter()
        .find(|e| e["url"].as_str().map(base) == Some(base(url)))
}

#[test]
fn ls_and_clean_follow_the_owner() {
    let s = Scratch::new();
    let path = s.path("owned.sock");
    let url = format!("unix:{}", path.display());
    // --timeout: should the test process itself be killed, recv ends anyway.
    let mut recv = s.spawn(["recv", &url, "--timeout", "120s"]);
    let entry = wait_until("the socket in `ipcx ls --json`", || {
        recv.assert_running();
        entry_for(&s, &url)
    });
    assert_eq!(entry["kind"], "socket", "{entry}");
    assert_eq!(entry["path"], path.display().to_string(), "{entry}");
    assert_eq!(entry["owner_pid"], recv.pid(), "{entry}");
    assert_eq!(entry["alive"], true, "{entry}");

    // A crash: the owner gets no chance to remove its socket.
    recv.kill();
    let entry = entry_for(&s, &url).expect("the record outlives its owner");
    assert_eq!(entry["alive"], false, "{entry}");
    assert!(exists(&path));

    let dry = s.run(["clean", "--dry-run"]).success();
    assert!(dry.stdout().contains(&url), "{dry}");
    assert!(exists(&path), "--dry-run removed the socket");
    assert!(
        entry_for(&s, &url).is_some(),
        "--dry-run removed the record"
    );

    let clean = s.run(["clean"]).success();
    assert!(clean.stdout().contains(&url), "{clean}");
    assert!(!exists(&path), "clean left the socket file");
    assert!(entry_for(&s, &url).is_none(), "clean left the record");
}

#[test]
fn option_of_another_scheme_is_rejected_by_name() {
    let s = Scratch::new();
    let got = s
        .run(["send", "--timeout", "300ms", "unix:/x?heartbeat=1s", "m"])
        .failure();
    assert!(
        got.stderr.contains("heartbeat") && got.stderr.contains("unix"),
        "{got}"
    );
}

#[test]
fn unknown_scheme_is_rejected() {
    let s = Scratch::new();
    let got = s.run(["send", "bogus:/x", "m"]).failure();
    assert!(got.stderr.contains("bogus"), "{got}");
}

#[test]
fn every_command_help_has_examples() {
    let s = Scratch::new();
    for cmd in ["recv", "send", "ls", "clean", "bench", "sem"] {
        let got = s.run([cmd, "--help"]).success();
        let out = got.stdout();
        assert!(out.contains("Examples:"), "{got}");
        assert!(out.contains(&format!("ipcx {cmd}")), "{got}");
    }
}

#[test]
fn bench_quick_writes_every_cell() {
    let s = Scratch::new();
    let json = s.path("bench.json");
    let got = s
        .run([
            "bench".as_ref(),
            "--quick".as_ref(),
            "--mech".as_ref(),
            "unix,pipe".as_ref(),
            "--sizes".as_ref(),
            "64".as_ref(),
            "--json".as_ref(),
            json.as_os_str(),
        ])
        .success();
    let table = got.stdout();
    assert!(
        table.contains("mechanism") && table.contains("p50"),
        "{got}"
    );
    let cells = read_cells(&json);
    for mech in ["unix", "pipe"] {
        for (imp, wait) in [("ipcx", "block"), ("ipcx", "adaptive"), ("raw", "block")] {
            let cell = cells
                .iter()
                .find(|c| c["mechanism"] == mech && c["impl"] == imp && c["wait"] == wait)
                .unwrap_or_else(|| panic!("no {mech} {imp} {wait} cell in {cells:#?}"));
            assert_eq!(cell["size"], 64, "{cell}");
            assert!(cell["samples"].as_u64().is_some_and(|n| n > 0), "{cell}");
        }
    }
}

/// The cells of a `--json` file, each checked for every documented key.
fn read_cells(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("bench --json file");
    let Ok(Value::Array(cells)) = serde_json::from_str(&text) else {
        panic!("not a JSON array: {text}");
    };
    assert!(!cells.is_empty());
    for cell in &cells {
        for key in [
            "mechanism",
            "size",
            "impl",
            "wait",
            "samples",
            "p50_ns",
            "p99_ns",
            "p999_ns",
            "max_ns",
            "msgs_per_s",
            "mb_per_s",
        ] {
            assert!(cell.get(key).is_some(), "no `{key}` in {cell}");
        }
    }
    cells
}

/// `ipcx sem` on each kind of semaphore: create, release, acquire (with
/// and without a timeout that passes; `post` and `wait` as the same), get,
/// and `ls` showing the value.
#[test]
fn sem_commands_on_every_kind() {
    let s = Scratch::new();
    for flavor in [None, Some("--posix"), Some("--sysv")] {
        let name = abstract_name();
        // A SysV set is the system's, not the scratch directory's: removed
        // also when an assertion below fails, or `ls` in the other tests
        // would list it.
        let _set = (flavor == Some("--sysv"))
            .then(|| RemoveSysvSet(ipcx::sync::SysVSemaphoreSet::key_for(&name)));
        let with = |args: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            v.extend(flavor.map(str::to_string));
            v
        };
        s.run(with(&["sem", "create", &name, "--value", "1"]))
            .success();
        s.run(with(&["sem", "release", &name])).success();
        // `post` is `release`, as `sem_post` is.
        s.run(with(&["sem", "post", &name])).success();
        assert_eq!(
            s.run(with(&["sem", "get", &name]))
                .success()
                .stdout()
                .trim(),
            "3"
        );
        s.run(with(&["sem", "acquire", &name])).success();
        // `wait` is `acquire`, as `sem_wait` is.
        s.run(with(&["sem", "wait", &name])).success();
        s.run(with(&["sem", "acquire", &name, "--timeout", "10ms"]))
            .success();
        let empty = s
            .run(with(&["sem", "acquire", &name, "--timeout", "10ms"]))
            .failure();
        assert!(empty.stderr.contains("timed out"), "{empty}");
        assert_eq!(
            s.run(with(&["sem", "get", &name]))
                .success()
                .stdout()
                .trim(),
            "0"
        );
        {
            let url = match flavor {
                None => format!("shm:{name}?persist"),
                Some("--posix") => format!("sem:{name}"),
                _ => format!(
                    "sysvsem:{:#x}",
                    ipcx::sync::SysVSemaphoreSet::key_for(&name)
                ),
            };
            let entry = entry_for(&s, &url).expect("in ls");
            let state = entry["state"].as_str().unwrap_or_default().to_string();
            assert!(
                state.ends_with("value 0") || state.contains("values [0]"),
                "{entry}"
            );
            if url.starts_with("sysvsem:") {
                // The last to change it was an `ipcx sem acquire`, now gone.
                assert!(state.contains(" (dead)]"), "{entry}");
            }
        }
        s.run(with(&["sem", "rm", &name])).success();
        s.run(with(&["sem", "get", &name])).failure();
    }
}

/// Removes the SysV semaphore set of a key when dropped.
struct RemoveSysvSet(i32);

impl Drop for RemoveSysvSet {
    fn drop(&mut self) {
        if let Ok(set) = ipcx::sync::SysVSemaphoreSet::open(self.0) {
            let _ = set.remove();
        }
    }
}

/// Whether the registry of `s` records `path` as created (the last step of
/// making an object, after which its owner removes it on the way out).
fn recorded_as_created(s: &Scratch, path: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir(s.path("registry")) else {
        return false;
    };
    // A record is lines of `key value`; `created DEV INO PATH` for each
    // object made (these test paths need no escaping).
    let want = path.display().to_string();
    dir.flatten().any(|f| {
        std::fs::read_to_string(f.path()).is_ok_and(|record| {
            record.lines().any(|l| {
                l.strip_prefix("created ")
                    .and_then(|rest| rest.splitn(3, ' ').nth(2))
                    == Some(want.as_str())
            })
        })
    })
}

/// SIGINT and SIGTERM end a receiver with the conventional 130 and 143,
/// after it removed what it created: the socket file, the FIFO pair, the
/// shared-memory segment, and their registry records.
#[test]
fn termination_signals_remove_what_recv_created() {
    let s = Scratch::new();
    let shm = format!("ipcx-cli-{}-sig", std::process::id());
    for (signal, code) in [
        (rustix::process::Signal::INT, 130),
        (rustix::process::Signal::TERM, 143),
    ] {
        let cases = [
            (s.url("unix", "sig.sock"), vec![s.path("sig.sock")]),
            (
                s.url("fifo", "sig.fifo"),
                vec![s.path("sig.fifo"), s.path("sig.fifo.reply")],
            ),
            (format!("shm:{shm}"), vec![Path::new("/dev/shm").join(&shm)]),
        ];
        for (url, paths) in cases {
            let mut recv = s.spawn(["recv", &url, "--timeout", "120s"]);
            wait_until("the endpoint to be made and recorded", || {
                recv.assert_running();
                paths
                    .iter()
                    .all(|p| exists(p) && recorded_as_created(&s, p))
                    .then_some(())
            });
            let pid = rustix::process::Pid::from_raw(recv.pid() as i32).expect("a pid");
            rustix::process::kill_process(pid, signal).expect("signal the receiver");
            let got = recv.finish();
            assert_eq!(got.status.code(), Some(code), "{url} on {signal:?}: {got}");
            for p in &paths {
                assert!(
                    !exists(p),
                    "{} left behind on {signal:?}: {got}",
                    p.display()
                );
            }
            assert!(entry_for(&s, &url).is_none(), "{url}: the record is left");
        }
    }
}

/// A receiver serves all its peers at once: while one sender stays
/// connected (its stdin open), another sender is received.
#[test]
fn recv_serves_peers_side_by_side() {
    let s = Scratch::new();
    let url = s.url("unix", "many.sock");
    let recv = s.spawn(["recv", &url, "-n", "1", "--timeout", "120s"]);
    // Connected, waiting for its stdin to end (which the test holds open).
    let mut cmd = s.command(["send", "--timeout", PEER_WAIT, &url]);
    cmd.stdin(std::process::Stdio::piped());
    let mut idle = cmd.spawn().expect("start the idle sender");
    let mut second = s.spawn(["send", "--timeout", PEER_WAIT, &url, "second"]);
    let got = finish_receiver(recv, &mut second).success();
    assert_eq!(got.stdout(), "second\n");
    second.finish().success();
    let _ = idle.kill();
    let _ = idle.wait();
}

/// One peer that breaks the protocol is dropped and reported on stderr;
/// the receiver goes on serving the others (here, the next sender).
#[test]
fn recv_outlives_a_bad_peer() {
    let s = Scratch::new();
    let path = s.path("bad.sock");
    let url = format!("unix:{}", path.display());
    let mut recv = s.spawn(["recv", &url, "-n", "1", "--timeout", "120s"]);
    wait_until("the socket", || {
        recv.assert_running();
        exists(&path).then_some(())
    });
    // Each bad peer says a valid hello first, so that the listener accepts
    // it and the receiver's own handling of the peer is what is tested.
    let header = |kind, len| {
        ipcx::wire::Header {
            kind,
            flags: 0,
            nfds: 0,
            len,
            crc: 0,
        }
        .encode()
        .to_vec()
    };
    let hello = ipcx::wire::Hello::new(false, 1 << 20);
    let mut hello_frame = header(ipcx::wire::KIND_HELLO, ipcx::wire::Hello::LEN as u64);
    hello_frame.extend_from_slice(&hello.encode());
    let bad_inputs: [Vec<u8>; 3] = [
        b"GARBAGE GARBAGE GARBAGE!".to_vec(),
        // A data header claiming 2^63 bytes.
        header(ipcx::wire::KIND_DATA, 1 << 63),
        // A header claiming 100 bytes, 3 of them, then the peer vanishes.
        [header(ipcx::wire::KIND_DATA, 100), b"abc".to_vec()].concat(),
    ];
    let mut peers = Vec::new();
    for bad in &bad_inputs {
        let mut raw = std::os::unix::net::UnixStream::connect(&path).expect("connect raw");
        raw.write_all(&hello_frame).expect("write the hello");
        raw.write_all(bad).expect("write");
        peers.push(raw);
    }
    // The vanishing peer vanishes; the others stay connected, dropped by
    // the receiver, not by themselves.
    drop(peers.pop());
    wait_until("the three bad peers reported", || {
        recv.assert_running();
        (recv.stderr_so_far().matches("dropped peer").count() == 3).then_some(())
    });
    let mut good = s.spawn(["send", "--timeout", PEER_WAIT, &url, "still here"]);
    let got = finish_receiver(recv, &mut good).success();
    assert_eq!(got.stdout(), "still here\n");
    assert_eq!(
        got.stderr.matches("dropped peer").count(),
        3,
        "each bad peer is reported: {got}"
    );
    good.finish().success();
    drop(peers);
}

/// Errors that used to say too little name what is wrong and what to do.
#[test]
fn errors_say_what_is_wrong() {
    let s = Scratch::new();
    let file = s.path("plain-file");
    std::fs::write(&file, b"not a socket").expect("write");
    let unix_file = format!("unix:{}", file.display());
    let cases: [(&[&str], &str); 7] = [
        // Refused before anything is made (it used to abort on allocation).
        (
            &["bench", "--sizes", "99999GiB"],
            "more than a benchmark can use",
        ),
        // Refused at once, not after the timeout.
        (
            &["send", "--timeout", "1h", &unix_file, "m"],
            "regular file, not a socket",
        ),
        (&["recv", "fifo:/proc/self/x"], "does not take new files"),
        (&["recv", "unix:/proc/self/x"], "does not take new files"),
        (
            &["send", "--timeout", "300ms", "shm:ipcx-cli-missing", "m"],
            "no segment",
        ),
        (
            &["recv", "--timeout", "0s", "unix:@ipcx-cli-zero", "-n", "1"],
            "timed out after 0 of 1 messages",
        ),
        (
            &[
                "send",
                "unix:/tmp/x?timeout=10000000000000000000s",
                "--timeout",
                "200ms",
                "m",
            ],
            "nobody bound it",
        ),
    ];
    for (args, needle) in cases {
        let got = s.run(args).failure();
        assert!(got.stderr.contains(needle), "{args:?}: {got}");
    }
    // Nothing left behind: no benchmark scratch directory, no record.
    let left: Vec<_> = std::fs::read_dir(s.path(""))
        .expect("the scratch directory")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ipcx-bench-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(ls(&s).is_empty(), "records left: {:?}", ls(&s));
}

/// `ipcx signal wait` prints `SIGNAL VALUE SENDER_PID` for each signal
/// `ipcx signal send` sends it (with its integer, by sigqueue; `-` for a
/// plain kill), and stops after `-n`; what cannot work fails with exit 1
/// and says why.
#[test]
fn signal_send_and_wait() {
    let s = Scratch::new();
    let waiter = s.spawn(["signal", "wait", "SIGRTMIN+3", "SIGUSR2", "-n", "3"]);
    let pid = waiter.pid().to_string();
    wait_until("the waiter to subscribe", || {
        waiter.stderr_so_far().contains("waiting for").then_some(())
    });
    let mut senders = Vec::new();
    for args in [
        vec!["signal", "send", &pid, "SIGRTMIN+3", "--value", "11"],
        vec!["signal", "send", &pid, "RTMIN+3", "--value", "-12"],
        vec!["signal", "send", &pid, "usr2"],
    ] {
        let sender = s.spawn(&args);
        senders.push(sender.pid());
        sender.finish().success();
    }
    let got = waiter.finish().success();
    let want = format!(
        "SIGRTMIN+3 11 {}\nSIGRTMIN+3 -12 {}\nSIGUSR2 - {}\n",
        senders[0], senders[1], senders[2]
    );
    assert_eq!(String::from_utf8_lossy(&got.stdout), want);

    let dead = s.run(["signal", "send", "999999999", "SIGUSR1"]).failure();
    assert!(dead.stderr.contains("No such process"), "{dead}");
    let kill = s.run(["signal", "wait", "SIGKILL"]).failure();
    assert!(kill.stderr.contains("cannot be caught"), "{kill}");
    let bad = s.run(["signal", "send", &pid, "SIGNOPE"]).failure();
    assert!(bad.stderr.contains("not a signal"), "{bad}");
    let quiet = s
        .run(["signal", "wait", "SIGUSR1", "--timeout", "100ms"])
        .failure();
    assert!(quiet.stderr.contains("no signal within"), "{quiet}");
}

/// `mq:` from the shell: `recv` creates the queue, `ls` shows it with its
/// depth and limits, `send` puts messages in, and the queue goes with the
/// receiver.
#[test]
fn mq_recv_send_and_ls() {
    let s = Scratch::new();
    let url = format!("mq:/{}?max_msgs=4&msg_size=128", abstract_name());
    let recv = s.spawn(["recv", &url, "-n", "2", "--timeout", "120s"]);
    let entry = wait_until("the queue in ls", || entry_for(&s, &url));
    assert_eq!(entry["kind"], "mq", "{entry}");
    assert_eq!(
        entry["state"], "0 of 4 messages, at most 128 bytes each",
        "{entry}"
    );
    let mut sender = s.spawn(["send", "--timeout", PEER_WAIT, &url, "first", "second"]);
    let got = finish_receiver(recv, &mut sender).success();
    assert_eq!(got.stdout(), "first\nsecond\n");
    sender.finish().success();
    assert!(entry_for(&s, &url).is_none(), "removed with the receiver");
    // Gone: a sender waits for it, then says nobody made it.
    let missing = s.run(["send", &url, "--timeout", "100ms", "x"]).failure();
    assert!(missing.stderr.contains("nobody bound it"), "{missing}");
}

/// `ipcx recv netlink:route` in a network namespace prints the link the
/// test adds there, one JSON object per event.
#[test]
#[ignore = "needs root and iproute2 (a network namespace); scripts/test runs it as root"]
fn recv_prints_netlink_events() {
    let s = Scratch::new();
    let ns = format!("ipcx-cli-nl-{}", std::process::id());
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|st| st.success())
    };
    assert!(
        ip(&["netns", "add", &ns]),
        "ip netns add (root and iproute2)"
    );
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &ns, env!("CARGO_BIN_EXE_ipcx")])
        .args([
            "recv",
            "netlink:route",
            "--format",
            "json",
            "--timeout",
            "60s",
            "-n",
            "1",
        ])
        .env("IPCX_REGISTRY", s.path("registry"));
    let recv = s.start(cmd, None);
    wait_until("the watcher", || {
        recv.stderr_so_far().contains("watching").then_some(())
    });
    // This kernel has no dummy links: a veth pair (v9, v8).
    assert!(ip(&[
        "-n", &ns, "link", "add", "v9", "type", "veth", "peer", "name", "v8"
    ]));
    let got = recv.finish();
    ip(&["netns", "delete", &ns]);
    let got = got.success();
    let line: serde_json::Value = serde_json::from_slice(&got.stdout).expect("one JSON line");
    assert_eq!(line["event"], "link", "{line}");
    assert!(line["name"] == "v9" || line["name"] == "v8", "{line}");
}

/// A journal from the shell: `send` appends, `journal tail` prints from a
/// sequence number, `journal stat` says what it holds, `recv` follows
/// from the end; a directory that is a file is refused, naming it.
#[test]
fn journal_from_the_shell() {
    let s = Scratch::new();
    let url = format!("journal:{}", s.path("events").display());
    s.run(["send", &url, "a", "b", "c"]).success();
    let tail = s.run(["journal", "tail", &url, "--from", "1"]).success();
    assert_eq!(tail.stdout(), "1\tb\n2\tc\n");
    let stat = s.run(["journal", "stat", &url, "--json"]).success();
    let v: Value = serde_json::from_slice(&stat.stdout).expect("json");
    assert_eq!(
        (v["first_seq"].as_u64(), v["next_seq"].as_u64()),
        (Some(0), Some(3)),
        "{v}"
    );
    let recv = s.spawn(["recv", &url, "-n", "1", "--timeout", "60s"]);
    wait_until("the follower", || {
        recv.stderr_so_far().contains("following").then_some(())
    });
    s.run(["send", &url, "d"]).success();
    assert_eq!(recv.finish().success().stdout(), "d\n");

    let file = s.path("plain");
    std::fs::write(&file, b"x").expect("a file");
    let bad = s
        .run(["send", &format!("journal:{}", file.display()), "x"])
        .failure();
    assert!(bad.stderr.contains(&file.display().to_string()), "{bad}");
    // A journal is durable data: clean never touches it.
    s.run(["clean"]).success();
    assert!(s.path("events").is_dir());
}

/// `ipcx serve --echo` answers `ipcx call` with its own bytes (from an
/// argument or stdin); either side may bind; a call with no server is an
/// error after its timeout (exit 1).
#[test]
fn serve_and_call() {
    let s = Scratch::new();
    let url = s.url("unix", "echo.sock");
    let server = s.spawn(["serve", &url, "--echo"]);
    let got = s.run(["call", &url, "hello there"]).success();
    assert_eq!(got.stdout(), "hello there\n");
    let got = s
        .spawn_with_stdin(["call", &url], b"from stdin\n")
        .finish()
        .success();
    assert_eq!(got.stdout(), "from stdin\n");
    server.kill();

    // The caller binds; the server connects to it.
    let back = s.url("unix", "back.sock");
    let caller = s.spawn(["call", "--bind", "--timeout", "60s", &back, "ping"]);
    wait_until("the caller binds", || {
        exists(&s.path("back.sock")).then_some(())
    });
    let server = s.spawn(["serve", "--connect", &back, "--echo"]);
    let got = caller.finish().success();
    assert_eq!(got.stdout(), "ping\n");
    server.kill();

    let nobody = s.url("unix", "nobody.sock");
    let got = s
        .run(["call", "--timeout", "300ms", &nobody, "x"])
        .failure();
    assert!(got.stderr.contains("nobody.sock"), "{got}");
}

/// `ipcx sub` prints `topic<TAB>message` (or JSON); `ipcx pub` waits for
/// a subscriber, publishes, and exits; a
/// malformed pattern is an error naming what is wrong.
#[test]
fn pub_and_sub() {
    let s = Scratch::new();
    let url = s.url("unix", "prices.sock");
    let sub = s.spawn(["sub", &url, "prices.eu.>", "-n", "2", "--timeout", "60s"]);
    let publisher = s.spawn([
        "pub",
        &url,
        "prices.eu.sap",
        "241.5",
        "242.0",
        "--timeout",
        "60s",
    ]);
    let got = sub.finish().success();
    assert_eq!(got.stdout(), "prices.eu.sap\t241.5\nprices.eu.sap\t242.0\n");
    publisher.finish().success();

    let sub = s.spawn([
        "sub",
        &url,
        "t.*",
        "-n",
        "1",
        "--format",
        "json",
        "--timeout",
        "60s",
    ]);
    s.run(["pub", &url, "t.x", "hi", "--timeout", "60s"])
        .success();
    let got = sub.finish().success();
    assert_eq!(
        got.stdout(),
        "{\"topic\":\"t.x\",\"len\":2,\"text\":\"hi\"}\n"
    );

    let got = s.run(["sub", &url, "a..b", "--timeout", "1s"]).failure();
    assert!(got.stderr.contains("level 2 is empty"), "{got}");
    let got = s
        .run(["pub", &url, "a.>", "x", "--timeout", "1s"])
        .failure();
    assert!(got.stderr.contains("level 2 holds '>'"), "{got}");
}

/// `ipcx push` hands each job to one `ipcx pull` and exits once all are
/// acknowledged; each worker prints the jobs it did.
#[test]
fn push_and_pull() {
    let s = Scratch::new();
    let url = s.url("unix", "jobs.sock");
    // Without --timeout, as in its --help: it waits as long as the pullers
    // take (the wait once panicked on an unbounded deadline).
    let pusher = s.spawn(["push", &url, "a", "b", "c"]);
    let got = s
        .run(["pull", &url, "-n", "2", "--timeout", "60s"])
        .success();
    let first = got.stdout();
    let got = s
        .run(["pull", &url, "-n", "1", "--timeout", "60s"])
        .success();
    let mut all: Vec<String> = format!("{first}{}", got.stdout())
        .lines()
        .map(String::from)
        .collect();
    all.sort();
    assert_eq!(all, ["a", "b", "c"]);
    pusher.finish().success();
}

/// Either side may bind: `ipcx sub --bind` collects from publishers that
/// connect (`ipcx pub --connect`).
#[test]
fn a_binding_subscriber_collects() {
    let s = Scratch::new();
    let url = s.url("unix", "all.sock");
    let sub = s.spawn(["sub", "--bind", &url, "t.>", "-n", "2", "--timeout", "60s"]);
    wait_until("the subscriber binds", || {
        exists(&s.path("all.sock")).then_some(())
    });
    s.run(["pub", "--connect", &url, "t.a", "one", "--timeout", "60s"])
        .success();
    s.run(["pub", "--connect", &url, "t.b", "two", "--timeout", "60s"])
        .success();
    let got = sub.finish().success();
    assert_eq!(got.stdout(), "t.a\tone\nt.b\ttwo\n");
}

/// `ipcx ls` shows what pattern endpoints are doing: a publisher's
/// subscribers and their patterns, a server's calls.
#[test]
fn ls_shows_publishers_and_servers() {
    let s = Scratch::new();
    let url = s.url("unix", "ls-pub.sock");
    let publisher = s.spawn([
        "pub",
        &url,
        "t.a",
        "x",
        "--wait-subs",
        "2",
        "--timeout",
        "60s",
    ]);
    let sub = s.spawn(["sub", &url, "t.>", "-n", "1", "--timeout", "60s"]);
    let state_of = |path: &str| {
        ls(&s)
            .into_iter()
            .find(|e| e["url"].as_str().is_some_and(|u| u.contains(path)))
            .and_then(|e| e["state"].as_str().map(String::from))
            .unwrap_or_default()
    };
    wait_until("the publisher's state", || {
        let st = state_of("ls-pub.sock");
        (st == "publisher: 1 subscribers [t.>], 0 delivered, 0 lost").then_some(())
    });
    publisher.kill();
    sub.kill();

    let url = s.url("unix", "ls-rpc.sock");
    let server = s.spawn(["serve", &url, "--echo"]);
    s.run(["call", &url, "hi"]).success();
    wait_until("the server's state", || {
        let st = state_of("ls-rpc.sock");
        st.ends_with("calls in flight, 1 served").then_some(())
    });
    server.kill();
}

/// Either side may bind: `ipcx pull --bind` collects the jobs of pushers
/// that connect (`ipcx push --connect`), each of which exits once its
/// jobs are acknowledged.
#[test]
fn a_binding_puller_collects() {
    let s = Scratch::new();
    let url = s.url("unix", "collect.sock");
    let puller = s.spawn(["pull", "--bind", &url, "-n", "3", "--timeout", "60s"]);
    wait_until("the puller binds", || {
        exists(&s.path("collect.sock")).then_some(())
    });
    s.run(["push", "--connect", &url, "one", "two", "--timeout", "60s"])
        .success();
    s.run(["push", "--connect", &url, "three", "--timeout", "60s"])
        .success();
    let got = puller.finish().success();
    assert_eq!(got.stdout(), "one\ntwo\nthree\n");
}

/// Topics on a shared-memory channel: `ipcx pub shm:…` creates it (and
/// waits for the subscriber), `ipcx sub shm:…` attaches.
#[test]
fn topics_on_shm() {
    let s = Scratch::new();
    let url = format!("shm:ipcx-cli-topics-{}?timeout=60s", std::process::id());
    let sub = s.spawn(["sub", &url, "a.>", "-n", "2", "--timeout", "60s"]);
    s.run(["pub", &url, "a.b", "one", "two", "--timeout", "60s"])
        .success();
    let got = sub.finish().success();
    assert_eq!(got.stdout(), "a.b\tone\na.b\ttwo\n");
}

/// `ipcx push --journal`: jobs a killed push left unacknowledged are
/// handed out by the next push on the same journal.
#[test]
fn push_with_a_journal_survives_a_kill() {
    let s = Scratch::new();
    let url = s.url("unix", "durable.sock");
    let journal = format!("journal:{}", s.path("jobs").display());
    let first = s.spawn(["push", &url, "a", "b", "--journal", &journal]);
    wait_until("the pusher binds", || {
        exists(&s.path("durable.sock")).then_some(())
    });
    let got = s
        .run(["pull", &url, "-n", "1", "--timeout", "60s"])
        .success();
    assert_eq!(got.stdout(), "a\n");
    first.kill();
    let again = s.spawn_with_stdin(
        ["push", &url, "--journal", &journal, "--timeout", "60s"],
        b"",
    );
    let got = s
        .run(["pull", &url, "-n", "1", "--timeout", "60s"])
        .success();
    assert_eq!(got.stdout(), "b\n");
    again.finish().success();
    let refused = s
        .run(["push", &url, "x", "--journal", &journal, "--connect"])
        .failure();
    assert!(
        refused.stderr.contains("does not go with --connect"),
        "{refused}"
    );
}
