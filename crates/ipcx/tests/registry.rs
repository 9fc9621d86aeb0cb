//! The registry records what an owner created precisely enough that
//! cleaning up never touches anything else.

mod common;

use std::path::Path;

use common::{Test, param, ready, set_param};
use ipcx::Listener;
use ipcx::registry::Registry;

fn bind_and_wait() {
    let _l = Listener::bind(&param("URL")).expect("bind");
    ready("bound");
    std::thread::sleep(std::time::Duration::from_secs(120));
}

/// A unix socket bound by a child that is then killed, in a registry of
/// the test's own (another test's `clean` must not take the record
/// first); `put_theirs` then puts something else at the path, and `clean`
/// must take the record and leave that.
fn clean_after(t: &Test, what: &str, put_theirs: impl FnOnce(&common::Scratch, &Path)) {
    let dir = t.scratch();
    let url = dir.url("unix", "s.sock");
    let path = dir.path("s.sock");
    let registry = dir.path("registry");
    let mut child = t.spawn("owner", |c| {
        set_param(c, "URL", &url).env("IPCX_REGISTRY", &registry)
    });
    child.wait_ready();
    child.kill();
    put_theirs(&dir, &path);
    let removed = Registry::at(&registry).unwrap().clean(false).unwrap();
    assert!(
        removed.iter().any(|e| e.record.url == url),
        "the record goes"
    );
    assert!(path.exists(), "the {what} someone else made stays");
}

/// After its owner died, someone else put a FIFO where the socket was:
/// `clean` removes the record but leaves the FIFO, which it never made.
#[test]
fn clean_leaves_what_someone_else_put_at_the_path() {
    let t = Test::start();
    if t.child_role().is_some() {
        return bind_and_wait();
    }
    clean_after(&t, "FIFO", |_, path| {
        std::fs::remove_file(path).expect("remove the stale socket by hand");
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("run mkfifo");
        assert!(status.success());
    });
}

/// After its owner died, someone else bound a socket of their own at the
/// path: the same type as ours, so only the recorded device and inode tell
/// it apart, and `clean` leaves it. (Bound beside the stale socket, then
/// renamed over it, so its inode cannot be the freed one.)
#[test]
fn clean_leaves_a_socket_of_someone_else_at_the_path() {
    let t = Test::start();
    if t.child_role().is_some() {
        return bind_and_wait();
    }
    clean_after(&t, "socket", |dir, path| {
        let theirs = dir.path("theirs.sock");
        let listener = std::os::unix::net::UnixListener::bind(&theirs).expect("bind theirs");
        std::fs::rename(&theirs, path).expect("put theirs at the path");
        // Bound until the test ends (the path stays a live socket).
        std::mem::forget(listener);
    });
}

/// A relative path is recorded absolute, so a reader in another working
/// directory finds (and would clean) the right object.
#[test]
fn relative_paths_are_recorded_absolute() {
    let t = Test::start();
    if t.child_role().is_some() {
        return bind_and_wait();
    }
    let dir = t.scratch();
    let mut cmd = t.command("owner");
    set_param(&mut cmd, "URL", "unix:rel.sock").current_dir(dir.dir());
    let mut child = common::ChildProcess::spawn(cmd, "owner");
    child.wait_ready();
    let entries = Registry::open().unwrap().list().unwrap();
    let entry = entries
        .iter()
        .find(|e| e.record.url == "unix:rel.sock" && e.record.owner_pid == child.id())
        .expect("the child's record");
    let want = std::path::absolute(dir.path("rel.sock")).unwrap();
    assert_eq!(entry.record.paths[0], want);
    assert_eq!(entry.record.created[0].path, want);
    child.kill();
}
