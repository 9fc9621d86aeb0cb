//! Objects are created owner-only (mode 0600) unless the endpoint says
//! otherwise: another user's process is refused with `PermissionDenied`,
//! and `?mode=0666` lets it in.
//!
//! The other user is a child re-executed as uid/gid 65534 (nobody), so these
//! tests need root; without it they print a note and pass.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use common::{NOBODY, Scratch, Test, param, set_param};
use ipcx::{ErrorKind, Listener};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Binds `url` in a scratch directory other users can traverse, and runs
/// the child as nobody: it must be refused (`open == false`) or get in and
/// make a round trip (`open == true`).
fn check(scheme: &str, name: &str, query: &str, open: bool) {
    let t = Test::start();
    if t.child_role().is_some() {
        return child(open);
    }
    assert!(
        is_root(),
        "needs root (runs a child as another user): run it as root, as scripts/test does"
    );
    let dir = t.scratch();
    std::fs::set_permissions(dir.dir(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755 the scratch directory");
    let url = format!("{}{query}", dir.url(scheme, name));
    let mut listener = Listener::bind(&url).unwrap_or_else(|e| panic!("bind {url}: {e}"));
    let want = if open { 0o666 } else { 0o600 };
    for path in created(&dir, name) {
        let mode = std::fs::symlink_metadata(&path)
            .expect("stat the created object")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, want, "mode of {}", path.display());
    }
    let exe = common::executable_by_others(&dir);
    let mut cmd = t.command_at(&exe, "other-user");
    set_param(&mut cmd, "URL", &url).uid(NOBODY).gid(NOBODY);
    let mut child = common::ChildProcess::spawn(cmd, "other-user");
    if open {
        let mut link = common::accept(&mut listener, &mut child);
        assert_eq!(link.recv().expect("recv from the other user"), b"hello");
        link.send(b"welcome").expect("answer the other user");
        if let Ok(creds) = link.peer_credentials() {
            assert_eq!((creds.uid, creds.gid), (NOBODY, NOBODY));
        }
    }
    child.finish();
}

/// The objects binding `name` creates.
fn created(dir: &Scratch, name: &str) -> Vec<PathBuf> {
    let main = dir.path(name);
    let reply = dir.path(&format!("{name}.reply"));
    [main, reply].into_iter().filter(|p| p.exists()).collect()
}

/// The child, as nobody: connects, and is refused or gets in.
fn child(open: bool) {
    assert_eq!(rustix::process::geteuid().as_raw(), NOBODY);
    let url = common::with_option(&param("URL"), "timeout=5s");
    match ipcx::Link::connect(&url) {
        Ok(mut link) if open => {
            link.send(b"hello").expect("send");
            assert_eq!(link.recv().expect("recv"), b"welcome");
        }
        Ok(_) => panic!("another user connected to a 0600 object"),
        Err(e) if !open => assert_eq!(*e.kind(), ErrorKind::PermissionDenied, "{e}"),
        Err(e) => panic!("another user was refused a 0666 object: {e}"),
    }
}

#[test]
#[ignore = "needs root (runs a child as another user); scripts/test runs it as root"]
fn unix_socket_is_owner_only() {
    check("unix", "s.sock", "", false);
}

#[test]
#[ignore = "needs root (runs a child as another user); scripts/test runs it as root"]
fn unix_socket_mode_0666_lets_others_in() {
    check("unix", "s.sock", "?mode=0666", true);
}

#[test]
#[ignore = "needs root (runs a child as another user); scripts/test runs it as root"]
fn fifo_is_owner_only() {
    check("fifo", "f", "", false);
}

#[test]
#[ignore = "needs root (runs a child as another user); scripts/test runs it as root"]
fn fifo_mode_0666_lets_others_in() {
    check("fifo", "f", "?mode=0666", true);
}

#[test]
#[ignore = "needs root (runs a child as another user); scripts/test runs it as root"]
fn unixseq_socket_is_owner_only() {
    check("unixseq", "q.sock", "", false);
}
