//! Shared-memory segments between real processes: named and anonymous,
//! owner-only until opened up, reclaimed after their creator is killed.

mod common;

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;

use common::{NOBODY, Test, param, ready, set_param};
use ipcx::registry::Registry;
use ipcx::shm::Segment;
use ipcx::{ErrorKind, Link, Listener};

/// A segment name unique to this test run, and its file in `/dev/shm`.
fn unique() -> (String, std::path::PathBuf) {
    let name = common::abstract_name();
    let path = std::path::Path::new("/dev/shm").join(&name);
    (format!("shm:{name}"), path)
}

/// Both processes see each other's writes, and an atomic counter in the
/// segment counts every increment of both.
#[test]
fn named_segment_is_shared_between_processes() {
    let t = Test::start();
    if t.child_role().is_some() {
        let seg = Segment::open(&format!("{}?timeout=30s", param("URL"))).expect("open");
        let mut buf = [0u8; 4];
        // SAFETY: the parent wrote these bytes before starting this child,
        // and nobody writes them again.
        unsafe { seg.read_at(0, &mut buf) }.expect("read");
        assert_eq!(&buf, b"ping");
        // SAFETY: bytes 64..72 are used only as this counter, in both.
        let counter = unsafe { seg.atomic_u64(64) }.expect("counter");
        for _ in 0..100_000 {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // SAFETY: the parent reads these bytes only after this child exits.
        unsafe { seg.write_at(8, b"pong") }.expect("write");
        return;
    }
    let (url, path) = unique();
    let seg = Segment::create(&format!("{url}?size=4KiB")).expect("create");
    assert_eq!(seg.len(), 4096);
    // SAFETY: the child that reads these bytes is not started yet.
    unsafe { seg.write_at(0, b"ping") }.expect("write");
    let child = t.spawn("peer", |c| set_param(c, "URL", &url));
    // SAFETY: bytes 64..72 are used only as this counter, in both.
    let counter = unsafe { seg.atomic_u64(64) }.expect("counter");
    for _ in 0..100_000 {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    child.finish();
    let mut buf = [0u8; 4];
    // SAFETY: the child that wrote these bytes has exited.
    unsafe { seg.read_at(8, &mut buf) }.expect("read");
    assert_eq!(&buf, b"pong");
    assert_eq!(counter.load(std::sync::atomic::Ordering::Relaxed), 200_000);
    let listed = Registry::open().unwrap().list().unwrap();
    assert!(
        listed
            .iter()
            .any(|e| e.record.url.starts_with(&url) && e.alive)
    );
    drop(seg);
    assert!(!path.exists(), "the creator removes its segment");
    let listed = Registry::open().unwrap().list().unwrap();
    assert!(!listed.iter().any(|e| e.record.url.starts_with(&url)));
}

/// `open` waits for a segment that does not exist yet.
#[test]
fn open_waits_for_the_creator() {
    let t = Test::start();
    if t.child_role().is_some() {
        let seg = Segment::open(&format!("{}?timeout=30s", param("URL"))).expect("open");
        ready(&seg.creator_pid().to_string());
        return;
    }
    let (url, _) = unique();
    let mut child = t.spawn("opener", |c| set_param(c, "URL", &url));
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(child.exited().is_none(), "the opener waits");
    let _seg = Segment::create(&url).expect("create");
    assert_eq!(child.wait_ready(), std::process::id().to_string());
    child.finish();
}

/// An anonymous segment travels as a descriptor over a Unix socket.
#[test]
fn anonymous_segment_is_passed_as_a_descriptor() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = Link::connect(&param("URL")).expect("connect");
        let (msg, mut fds) = link.recv_fds().expect("recv the segment");
        assert_eq!(msg, b"segment");
        let seg = Segment::from_fd(fds.pop().expect("one descriptor")).expect("map it");
        let mut buf = [0u8; 5];
        // SAFETY: the parent wrote these bytes before sending the segment
        // and reads bytes 200.. only after our "done": the two take turns.
        unsafe { seg.read_at(100, &mut buf) }.expect("read");
        assert_eq!(&buf, b"hello");
        // SAFETY: as above.
        unsafe { seg.write_at(200, b"world") }.expect("write");
        link.send(b"done").expect("send");
        return;
    }
    let dir = t.scratch();
    let url = dir.url("unix", "s.sock");
    let mut listener = Listener::bind(&url).expect("bind");
    let seg = Segment::anonymous(8192).expect("anonymous segment");
    // SAFETY: nobody else has the segment yet.
    unsafe { seg.write_at(100, b"hello") }.expect("write");
    let mut child = t.spawn("peer", |c| set_param(c, "URL", &url));
    let mut link = common::accept(&mut listener, &mut child);
    link.send_fds(b"segment", &[seg.as_fd()])
        .expect("send the segment");
    assert_eq!(link.recv().expect("recv"), b"done");
    let mut buf = [0u8; 5];
    // SAFETY: the child wrote these bytes before its "done", and no more.
    unsafe { seg.read_at(200, &mut buf) }.expect("read");
    assert_eq!(&buf, b"world");
    child.finish();
}

/// A live creator's name is refused with its pid; once it is SIGKILLed,
/// `clean` removes the segment and creating it again works.
#[test]
fn killed_creators_segment_is_cleaned_and_reclaimed() {
    let t = Test::start();
    if t.child_role().is_some() {
        let _seg = Segment::create(&param("URL")).expect("create");
        ready("created");
        std::thread::sleep(std::time::Duration::from_secs(120));
        return;
    }
    let (url, path) = unique();
    let mut child = t.spawn("creator", |c| set_param(c, "URL", &url));
    child.wait_ready();
    let err = Segment::create(&url).expect_err("create over a live creator");
    assert!(
        matches!(err.kind(), ErrorKind::InUse { pid: Some(p), .. } if *p == child.id()),
        "{err}"
    );
    child.kill();
    assert!(path.exists(), "SIGKILL leaves the segment behind");
    let removed = Registry::open().unwrap().clean(false).unwrap();
    assert!(
        removed.iter().any(|e| e.record.url == url),
        "clean removes it"
    );
    assert!(!path.exists(), "the segment file is gone");

    // And a creator killed again is simply reclaimed by the next create.
    let mut child = t.spawn("creator", |c| set_param(c, "URL", &url));
    child.wait_ready();
    child.kill();
    let seg = Segment::create(&url).expect("create reclaims a dead creator's segment");
    assert_eq!(seg.creator_pid(), std::process::id());
}

/// Segments are 0600 unless `?mode=` says otherwise (needs root to run a
/// child as another user; ignored unless run as root, as scripts/test does).
#[test]
#[ignore = "needs root (runs a child as another user); scripts/test runs it as root"]
fn segment_is_owner_only_unless_mode_says_otherwise() {
    let t = Test::start();
    if t.child_role().is_some() {
        let r = Segment::open(&format!("{}?timeout=300ms", param("URL")));
        match (param("OPEN").as_str(), r) {
            // SAFETY: the parent reads these bytes only after this exits.
            ("yes", Ok(seg)) => unsafe { seg.write_at(0, b"guest") }.expect("write"),
            ("no", Err(e)) => assert_eq!(*e.kind(), ErrorKind::PermissionDenied, "{e}"),
            (open, r) => panic!("open={open}: {r:?}"),
        }
        return;
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "needs root (runs a child as another user): run it as root, as scripts/test does"
    );
    let dir = t.scratch();
    std::fs::set_permissions(
        dir.dir(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let exe = common::executable_by_others(&dir);
    for (query, open) in [("", "no"), ("?mode=0666", "yes")] {
        let (url, path) = unique();
        let seg = Segment::create(&format!("{url}{query}")).expect("create");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, if open == "yes" { 0o666 } else { 0o600 });
        let mut cmd = t.command_at(&exe, "other-user");
        set_param(&mut cmd, "URL", &url);
        set_param(&mut cmd, "OPEN", open).uid(NOBODY).gid(NOBODY);
        common::ChildProcess::spawn(cmd, "other-user").finish();
        if open == "yes" {
            let mut buf = [0u8; 5];
            // SAFETY: the child that wrote these bytes has exited.
            unsafe { seg.read_at(0, &mut buf) }.unwrap();
            assert_eq!(&buf, b"guest");
        }
    }
}

/// A shared-memory object that ipcx did not make is refused, not misread.
#[test]
fn foreign_object_is_refused() {
    let _t = Test::start();
    let (url, _) = unique();
    let name = url.trim_start_matches("shm:");
    let fd = ipcx::bench_support::create_exclusive(name).expect("create a foreign object");
    ipcx::bench_support::set_mode(fd.as_fd(), 0o600).unwrap();
    ipcx::bench_support::set_len(fd.as_fd(), 4096).unwrap();
    let m = ipcx::bench_support::Mapping::new(fd.as_fd(), 4096).unwrap();
    // SAFETY: the mapping is 4096 bytes and only this test uses it.
    unsafe { std::ptr::copy_nonoverlapping(b"NOTIPCX!".as_ptr(), m.as_ptr(), 8) };
    let err = Segment::open(&format!("{url}?timeout=1s")).expect_err("a foreign object");
    let _ = ipcx::bench_support::unlink(name);
    assert!(err.to_string().contains("not an ipcx segment"), "{err}");
}

/// What `ipcx ls` says of a link, a channel and a queue
/// (`ipcx::shm::describe`).
#[test]
fn describe_links_channels_and_queues() {
    let t = Test::start();
    if t.child_role() == Some(common::SCRIBBLER) {
        return common::scribbler();
    }
    let me = std::process::id();
    let describe = |name: &str| {
        ipcx::shm::describe(&Segment::open(&format!("shm:{name}")).expect("open")).expect("known")
    };
    let name = common::abstract_name();
    let _listener = ipcx::Listener::bind(&format!("shm:{name}")).expect("bind");
    assert_eq!(describe(&name), format!("link: server pid {me}, no client"));

    let name = common::abstract_name();
    let mut publisher = ipcx::shm::Publisher::create(&format!("shm:{name}")).expect("create");
    let _sub = ipcx::shm::Subscriber::open(&format!("shm:{name}")).expect("open");
    publisher.send(b"x").expect("send");
    assert_eq!(
        describe(&name),
        format!("pub/sub: publisher pid {me}, subscribers 1, published 1")
    );

    let name = common::abstract_name();
    let q = ipcx::shm::Queue::create(&format!("shm:{name}?slots=4")).expect("create");
    q.push(b"a").expect("push");
    assert_eq!(describe(&name), "queue: 1 waiting of 4 cells");
    // Another layout version (its word scribbled by another process) is
    // not read as this one's.
    common::scribble(&t, &format!("shm:{name}"), &[(8, 4)], 7);
    assert!(ipcx::shm::describe(&Segment::open(&format!("shm:{name}")).unwrap()).is_none());

    let plain = common::abstract_name();
    let _seg = Segment::create(&format!("shm:{plain}?size=4KiB")).expect("create");
    assert!(ipcx::shm::describe(&Segment::open(&format!("shm:{plain}")).unwrap()).is_none());
}

/// A received descriptor that is not sealed against shrinking is refused:
/// its sender could truncate it under our mapping (`SIGBUS` on the next
/// access). Here a valid named segment's own file, which cannot be sealed,
/// and an unsealed memfd.
#[test]
fn unsealed_descriptors_are_refused() {
    let _t = Test::start();
    let (url, path) = unique();
    let _seg = Segment::create(&format!("{url}?size=4KiB")).expect("create");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open the segment's file");
    let memfd = rustix::fs::memfd_create("ipcx-test", rustix::fs::MemfdFlags::ALLOW_SEALING)
        .expect("memfd");
    rustix::fs::ftruncate(&memfd, 8192).expect("size it");
    for fd in [std::os::fd::OwnedFd::from(file), memfd] {
        let err = Segment::from_fd(fd).expect_err("an unsealed descriptor");
        assert!(
            matches!(err.kind(), ErrorKind::Foreign(why) if why.contains("F_SEAL_SHRINK")),
            "{err}"
        );
    }
}
