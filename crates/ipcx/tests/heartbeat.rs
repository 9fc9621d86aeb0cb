//! `?heartbeat=` finds a TCP host that vanished without a word.
//!
//! The server runs in its own network namespace, reached over a veth pair.
//! Once a message has crossed, the test takes the server's interface down:
//! no FIN, no RST, nothing — the host is simply gone. The client, blocked in
//! `recv` with no timeout of its own, must get `Closed` (from keepalive
//! probes that go unanswered) instead of waiting forever; the watchdog turns
//! a hang into a failure. Needs root and `ip` (iproute2): ignored unless
//! asked for (`--include-ignored`, as `scripts/test` does as root), and failing
//! when asked for where it cannot run.

mod common;

use std::os::fd::AsFd;

use common::{Test, ip, param, ready, set_param};
use ipcx::{Link, Listener};

const NS_DIR: &str = "/var/run/netns";

/// A network namespace with a veth pair to it, removed on drop.
struct Namespace {
    name: String,
}

impl Namespace {
    /// `None` when namespaces cannot be made here (not root, no `ip`).
    fn create(id: u32, host_addr: &str, ns_addr: &str) -> Option<Namespace> {
        let name = format!("ipcx-hb-{id}");
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = Namespace { name };
        let (host_if, ns_if) = (format!("hb{id}a"), format!("hb{id}b"));
        let n = ns.name.as_str();
        let ok = ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]) && ip(&["link", "set", &ns_if, "netns", n])
            && ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host_if])
            && ip(&["link", "set", &host_if, "up"])
            && ip(&[
                "netns",
                "exec",
                n,
                "ip",
                "addr",
                "add",
                &format!("{ns_addr}/30"),
                "dev",
                &ns_if,
            ])
            && ip(&["netns", "exec", n, "ip", "link", "set", &ns_if, "up"])
            && ip(&["netns", "exec", n, "ip", "link", "set", "lo", "up"]);
        assert!(ok, "could not wire up network namespace {n}");
        Some(ns)
    }

    /// Takes the interface inside the namespace down: the host vanishes.
    fn cut(&self, id: u32) {
        let ns_if = format!("hb{id}b");
        assert!(
            ip(&[
                "netns", "exec", &self.name, "ip", "link", "set", &ns_if, "down"
            ]),
            "could not take {ns_if} down"
        );
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        ip(&["netns", "delete", &self.name]);
    }
}

#[test]
#[ignore = "needs root and iproute2 (a network namespace); scripts/test runs it as root"]
fn heartbeat_detects_a_vanished_host() {
    let t = Test::start();
    if t.child_role() == Some("server") {
        return server();
    }
    // Interface names are at most 15 bytes: keep the id short.
    let id = std::process::id() % 100_000;
    let subnet = id % 64 * 4;
    let (host_addr, ns_addr) = (
        format!("10.231.{}.{}", id / 64 % 256, subnet + 1),
        format!("10.231.{}.{}", id / 64 % 256, subnet + 2),
    );
    let Some(ns) = Namespace::create(id, &host_addr, &ns_addr) else {
        panic!(
            "cannot create a network namespace here: needs root and iproute2 (`ip`), \
             which scripts/test installs and runs it with"
        );
    };
    let mut child = t.spawn("server", |c| {
        set_param(c, "NETNS", &format!("{NS_DIR}/{}", ns.name));
        set_param(c, "ADDR", &ns_addr)
    });
    let url = child.wait_ready();
    let mut link = Link::connect(&url).expect("connect to the server in the namespace");
    assert_eq!(link.recv().expect("first message"), b"hello");

    ns.cut(id);
    let err = link
        .recv()
        .expect_err("recv must fail once the host is gone");
    assert!(err.is_closed(), "expected Closed, got {err}");
    child.kill();
}

fn server() {
    let netns = std::fs::File::open(param("NETNS")).expect("open the namespace");
    rustix::thread::move_into_link_name_space(
        netns.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .expect("enter the namespace");
    let listener =
        Listener::bind(&format!("tcp://{}:0?heartbeat=1s", param("ADDR"))).expect("bind");
    ready(listener.endpoint().url());
    let mut link = listener.accept().expect("accept");
    link.send(b"hello").expect("send");
    // Stay alive and silent: only the wire goes away.
    let _ = link.recv();
}
