//! `ipcx::spawn` and `Link::from_inherited`: what is particular to a link a
//! parent makes for its child (the rest is in the conformance suite).

mod common;

use std::io::Read;
use std::process::Stdio;

use common::Test;
use ipcx::{ErrorKind, Link};

/// The parent checks the child's hello on its first `recv`. When the hello
/// and the first message arrive in one read, that `recv` must return the
/// message rather than wait for more bytes that never come.
#[test]
fn hello_and_first_message_in_one_read() {
    let t = Test::start();
    if t.child_role().is_some() {
        // SAFETY: started by ipcx::spawn; nothing else took the pipe, and
        // this test's one thread is the only one using the environment.
        let mut link = unsafe { Link::from_inherited() }.expect("Link::from_inherited");
        assert!(
            std::env::var_os("IPCX_PIPE").is_none(),
            "the variable is removed once read, so a grandchild cannot misuse it"
        );
        link.send(b"first").expect("send");
        common::ready("sent");
        assert_eq!(link.recv().expect("recv"), b"bye");
        return;
    }
    let (mut child, mut link) = t.spawn_with_pipe("child", |c| c);
    // Both the hello and the message are in the pipe now.
    child.wait_ready();
    assert_eq!(link.recv().expect("recv"), b"first");
    link.send(b"bye").expect("send");
    child.finish();
}

/// A parent may send everything and close before its child even starts:
/// the child still connects, reads it all, then sees `Closed`.
#[test]
fn parent_that_already_left() {
    let t = Test::start();
    if t.child_role().is_some() {
        // Stdin closes once the parent has closed its end of the link.
        std::io::stdin()
            .read_to_end(&mut Vec::new())
            .expect("wait for the parent");
        // SAFETY: as in `hello_and_first_message_in_one_read`.
        let mut link =
            unsafe { Link::from_inherited() }.expect("from_inherited after the parent closed");
        for want in [&b"one"[..], b"two", b"three"] {
            assert_eq!(link.recv().expect("recv what the parent sent"), want);
        }
        let end = link.recv().expect_err("the end");
        assert!(end.is_closed(), "{end}");
        let err = link
            .send(b"anyone?")
            .expect_err("send to a parent that left");
        assert!(err.is_closed(), "{err}");
        return;
    }
    let (mut child, mut link) = t.spawn_with_pipe("child", |c| c.stdin(Stdio::piped()));
    for msg in [&b"one"[..], b"two", b"three"] {
        link.send(msg).expect("send");
    }
    link.close();
    drop(child.take_stdin());
    child.finish();
}

/// A process that ipcx did not spawn has no inherited link, and says so.
#[test]
fn from_inherited_without_a_parent_link() {
    let t = Test::start();
    if t.child_role().is_some() {
        // SAFETY: no IPCX_PIPE, so nothing is adopted; one thread.
        let err = unsafe { Link::from_inherited() }.expect_err("no IPCX_PIPE");
        assert_eq!(*err.kind(), ErrorKind::NotInherited, "{err}");
        assert!(err.to_string().contains("ipcx::spawn"), "{err}");
        return;
    }
    t.spawn("orphan", |c| c.env_remove("IPCX_PIPE")).finish();
}

/// Descriptor numbers in a URL are not adopted by the safe `connect`: a
/// `pipe:fd=0,1` would otherwise take over stdin and stdout, which `File`s
/// or std own, and close them when the link drops.
#[test]
fn connect_does_not_adopt_descriptor_numbers() {
    let _t = Test::start();
    let err = Link::connect("pipe:fd=0,1").expect_err("pipe:fd= through connect");
    assert!(matches!(err.kind(), ErrorKind::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("from_inherited"), "{err}");
    // Both are still open and ours.
    for fd in [0, 1] {
        // SAFETY: borrowed for the one fcntl call; 0 and 1 are open in
        // every test process (stdin is null or a pipe, stdout captured).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_getfd(fd).expect("still open");
    }
}

/// Options set in code (`Endpoint::with_options`) reach the child through
/// `spawn_endpoint`: here the child's `max_msg`, which its hello tells the
/// parent, so the parent's send of a larger message is refused.
#[test]
fn options_set_in_code_reach_the_child() {
    let t = Test::start();
    if t.child_role().is_some() {
        // SAFETY: as in `hello_and_first_message_in_one_read`.
        let mut link = unsafe { Link::from_inherited() }.expect("Link::from_inherited");
        link.send(b"ready").expect("send");
        let _ = link.recv();
        return;
    }
    let ep = ipcx::Endpoint::parse("pipe:")
        .and_then(|ep| ep.with_options(|o| o.max_msg = 100))
        .expect("endpoint");
    let (child, mut link) = ipcx::spawn_endpoint(&ep, t.command("child")).expect("spawn_endpoint");
    let child = common::ChildProcess::spawn_adopted(child, "child");
    assert_eq!(link.recv().expect("recv"), b"ready");
    let err = link
        .send(&[0u8; 200])
        .expect_err("over the child's max_msg");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::MessageTooLarge { len: 200, max: 100 }
        ),
        "{err}"
    );
    link.close();
    child.finish();
}
