//! `netlink:route` and `netlink:uevent`: in a network namespace of its
//! own, a child process watches while the parent adds a veth pair, brings
//! it up and down and deletes it; each change arrives as its event.

mod common;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::{Test, ip, param, ready, set_param};
use ipcx::netlink::{Change, Watcher};

/// Removes the namespace (and the veth in it) when the test ends.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        ip(&["netns", "delete", &self.0]);
    }
}

/// Every event until `done` says the story is over (or 30 s pass).
fn collect(watcher: &mut Watcher, done: impl Fn(&[Change]) -> bool) -> Vec<Change> {
    let end = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !done(&seen) {
        let left = end.saturating_duration_since(Instant::now());
        match watcher.next_change_timeout(left) {
            Ok(e) => seen.push(e),
            Err(e) => panic!("waiting for events: {e}; seen {seen:#?}"),
        }
    }
    seen
}

fn watcher() {
    let netns = std::fs::File::open(param("NETNS")).expect("open the namespace");
    rustix::thread::move_into_link_name_space(
        netns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .expect("enter the namespace");
    let mut route = Watcher::open("netlink:route").expect("netlink:route");
    let mut uevent = Watcher::open("netlink:uevent").expect("netlink:uevent");
    ready("watching");

    // The story of v0: made (down), up, down, deleted.
    let v0 = |e: &&Change| match e {
        Change::Link { name, .. } | Change::LinkRemoved { name, .. } => name == "v0",
        _ => false,
    };
    let seen = collect(&mut route, |seen| {
        seen.iter()
            .filter(v0)
            .any(|e| matches!(e, Change::LinkRemoved { .. }))
    });
    let story: Vec<&str> = seen
        .iter()
        .filter(v0)
        .map(|e| match e {
            Change::Link { up: true, .. } => "up",
            Change::Link { up: false, .. } => "down",
            _ => "removed",
        })
        .fold(Vec::new(), |mut s, step| {
            if s.last() != Some(&step) {
                s.push(step);
            }
            s
        });
    assert_eq!(
        story,
        ["down", "up", "down", "removed"],
        "events: {seen:#?}"
    );
    let lines: Vec<String> = seen.iter().filter(v0).map(|e| e.to_string()).collect();
    assert!(lines.iter().any(|l| l.ends_with(": v0: <UP>")), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("Deleted ") && l.ends_with(": v0")),
        "{lines:?}"
    );

    let added = collect(&mut uevent, |seen| {
        seen.iter().any(|e| matches!(e, Change::Uevent { action, devpath, .. } if action == "add" && devpath.ends_with("/net/v0")))
    });
    let line = added.last().expect("the add").to_string();
    assert!(line.contains("INTERFACE=v0"), "{line}");
}

#[test]
#[ignore = "needs root and iproute2 (a network namespace); scripts/test runs it as root"]
fn link_changes_arrive_as_events() {
    let t = Test::start();
    if t.child_role().is_some() {
        return watcher();
    }
    let name = format!("ipcx-nl-{}", std::process::id());
    assert!(
        ip(&["netns", "add", &name]),
        "cannot create a network namespace here: needs root and iproute2 (`ip`), \
         which scripts/test installs and runs it with"
    );
    let ns = Namespace(name);
    let mut child = t.spawn("watcher", |c| {
        set_param(c, "NETNS", &format!("/run/netns/{}", ns.0))
    });
    child.wait_ready();
    for step in [
        &["link", "add", "v0", "type", "veth", "peer", "name", "v1"][..],
        &["link", "set", "v0", "up"],
        &["link", "set", "v0", "down"],
        &["link", "del", "v0"],
    ] {
        let mut args = vec!["-n", ns.0.as_str()];
        args.extend_from_slice(step);
        assert!(ip(&args), "ip {args:?}");
        // Apart, so that each state is reported before the next.
        std::thread::sleep(Duration::from_millis(50));
    }
    child.finish();
}

/// Only the two endpoints exist.
#[test]
fn other_netlink_endpoints_are_refused() {
    let _t = Test::start();
    let err = Watcher::open("netlink:audit").expect_err("not an endpoint");
    assert!(
        matches!(err.kind(), ipcx::ErrorKind::InvalidEndpoint(_)),
        "{err}"
    );
}
