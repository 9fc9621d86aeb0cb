//! The registry records what an owner created precisely enough that
//! cleaning up never touches anything else.

mod common;

use common::{Test, param, ready, set_param};
use ipcx::Listener;
use ipcx::registry::Registry;

fn bind_and_wait() {
    let _l = Listener::bind(&param("URL")).expect("bind");
    ready("bound");
    std::thread::sleep(std::time::Duration::from_secs(120));
}

/// After its owner died, someone else put a FIFO where the socket was:
/// `clean` removes the record but leaves the FIFO, which it never made.
#[test]
fn clean_leaves_what_someone_else_put_at_the_path() {
    let t = Test::start();
    if t.child_role().is_some() {
        return bind_and_wait();
    }
    let dir = t.scratch();
    let url = dir.url("unix", "s.sock");
    let path = dir.path("s.sock");
    let mut child = t.spawn("owner", |c| set_param(c, "URL", &url));
    child.wait_ready();
    child.kill();
    std::fs::remove_file(&path).expect("remove the stale socket by hand");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(status.success());

    let removed = Registry::open().unwrap().clean(false).unwrap();
    assert!(
        removed.iter().any(|e| e.record.url == url),
        "the record goes"
    );
    assert!(path.exists(), "the FIFO someone else made stays");
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
