//! Semaphores, barriers, events and condition variables between real
//! processes, and what survivors see when a party is killed.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::ErrorKind;
use ipcx::shm::Segment;
use ipcx::sync::{Barrier, Condvar, Event, EventMode, Mutex, Semaphore, SharedAtomicU64};

fn unique() -> String {
    common::abstract_name()
}

fn waiting(name: &str) -> String {
    format!("shm:{name}?timeout={}", common::PEER_TIMEOUT)
}

/// A process holding permits of a tracked semaphore is killed: they come
/// back to a waiter; an untracked semaphore's do not.
#[test]
fn killed_holders_permits_return_to_a_tracked_semaphore() {
    let t = Test::start();
    if t.child_role().is_some() {
        let sem = Semaphore::open(&waiting(&param("NAME"))).expect("open");
        sem.acquire().expect("acquire");
        sem.acquire().expect("acquire");
        ready("holding");
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let name = unique();
    let sem = Semaphore::create_tracked(&name, 2).expect("create");
    let mut child = t.spawn("holder", |c| set_param(c, "NAME", &name));
    child.wait_ready();
    assert_eq!(sem.value(), 0);
    assert!(!sem.try_acquire().expect("try"), "all permits are held");
    child.kill();
    // The waiter finds the dead holder within a liveness interval.
    assert!(
        sem.acquire_timeout(Duration::from_secs(30))
            .expect("acquire")
    );
    assert!(sem.try_acquire().expect("try"), "both permits came back");
    sem.release().expect("release");
    sem.release().expect("release");
    assert!(
        sem.release().is_err(),
        "a process may release only what it holds"
    );
    assert_eq!(sem.value(), 2);

    let name = unique();
    let plain = Semaphore::create(&name, 2).expect("create");
    let mut child = t.spawn("holder", |c| set_param(c, "NAME", &name));
    child.wait_ready();
    child.kill();
    assert_eq!(
        plain.recover().expect("recover"),
        0,
        "untracked: nothing to recover"
    );
    assert!(
        !plain
            .acquire_timeout(Duration::from_millis(50))
            .expect("acquire")
    );
    plain
        .release()
        .expect("an untracked semaphore takes any release");
    assert_eq!(plain.value(), 1);
}

/// Semaphore ping-pong between two processes: every hand-over arrives.
#[test]
fn semaphore_ping_pong() {
    let t = Test::start();
    const ROUNDS: u32 = 10_000;
    if t.child_role().is_some() {
        let ping = Semaphore::open(&waiting(&format!("{}-ping", param("NAME")))).expect("open");
        let pong = Semaphore::open(&waiting(&format!("{}-pong", param("NAME")))).expect("open");
        for _ in 0..ROUNDS {
            ping.acquire().expect("acquire");
            pong.release().expect("release");
        }
        return;
    }
    let name = unique();
    let ping = Semaphore::create(&format!("{name}-ping"), 0).expect("create");
    let pong = Semaphore::create(&format!("{name}-pong"), 0).expect("create");
    let child = t.spawn("ponger", |c| set_param(c, "NAME", &name));
    for _ in 0..ROUNDS {
        ping.release().expect("release");
        pong.acquire().expect("acquire");
    }
    child.finish();
    assert_eq!((ping.value(), pong.value()), (0, 0));
}

const PARTIES: u64 = 4;
const GENERATIONS: u64 = 1_000;

/// Four processes pass a barrier 1 000 times; after each wait, every other
/// party has reached the same step (and none is more than one ahead).
#[test]
fn barrier_thousand_generations_four_processes() {
    let t = Test::start();
    let run = |barrier: &Barrier, seg: &Segment, me: u64| {
        let mut leaders = 0;
        for step in 1..=GENERATIONS {
            // SAFETY: the first 8 * PARTIES bytes are used only as these
            // atomics, by every party.
            unsafe { seg.atomic_u64(8 * me as usize) }
                .unwrap()
                .store(step, Ordering::SeqCst);
            if barrier.wait().expect("wait").is_leader() {
                leaders += 1;
            }
            for other in 0..PARTIES {
                // SAFETY: as above.
                let at = unsafe { seg.atomic_u64(8 * other as usize) }
                    .unwrap()
                    .load(Ordering::SeqCst);
                assert!(
                    at == step || at == step + 1,
                    "party {other} at {at} after generation {step}"
                );
            }
        }
        leaders
    };
    if t.child_role().is_some() {
        let barrier = Barrier::open(&waiting(&param("NAME"))).expect("open");
        let seg = Segment::open(&waiting(&format!("{}-steps", param("NAME")))).expect("open");
        let leaders = run(&barrier, &seg, param("ME").parse().unwrap());
        ready(&leaders.to_string());
        return;
    }
    let name = unique();
    let barrier = Barrier::create(&name, PARTIES as u32).expect("create");
    let seg = Segment::create(&format!("shm:{name}-steps?size=64")).expect("segment");
    let mut children: Vec<_> = (1..PARTIES)
        .map(|me| {
            t.spawn("party", |c| {
                set_param(set_param(c, "NAME", &name), "ME", &me.to_string())
            })
        })
        .collect();
    let mut leaders = run(&barrier, &seg, 0);
    for c in &mut children {
        leaders += c.wait_ready().parse::<u64>().unwrap();
    }
    for c in children {
        c.finish();
    }
    assert_eq!(leaders, GENERATIONS, "one leader per generation");
}

/// A party is killed before it arrives: the others get `BarrierBroken`
/// instead of waiting forever, and so does everyone after.
#[test]
fn barrier_breaks_when_a_party_dies() {
    let t = Test::start();
    if t.child_role().is_some() {
        let _barrier = Barrier::open(&waiting(&param("NAME"))).expect("open");
        ready("joined");
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let name = unique();
    let barrier = Barrier::create(&name, 3).expect("create");
    let mut child = t.spawn("party", |c| set_param(c, "NAME", &name));
    child.wait_ready();
    let second = Barrier::open(&name).expect("third party, in this process");
    let waiter = std::thread::spawn(move || second.wait().map(|_| ()));
    child.kill();
    let err = barrier.wait().expect_err("broken");
    assert_eq!(*err.kind(), ErrorKind::BarrierBroken, "{err}");
    let err = waiter.join().unwrap().expect_err("broken");
    assert_eq!(*err.kind(), ErrorKind::BarrierBroken, "{err}");
    assert_eq!(
        *barrier.wait().unwrap_err().kind(),
        ErrorKind::BarrierBroken
    );
}

#[test]
fn barrier_timeout_takes_the_arrival_back() {
    let _t = Test::start();
    let name = unique();
    let barrier = Barrier::create(&name, 2).expect("create");
    let err = barrier.wait_timeout(Duration::from_millis(30)).unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::TimedOut);
    // Had the arrival stayed, one more party would complete it alone.
    let other = Barrier::open(&name).expect("open");
    let err = other.wait_timeout(Duration::from_millis(30)).unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::TimedOut);
    assert!(Barrier::open(&name).is_err(), "two parties already");
}

/// Manual and auto-reset events across processes.
#[test]
fn events_release_waiters_in_other_processes() {
    let t = Test::start();
    if t.child_role().is_some() {
        let go = Event::open(&waiting(&format!("{}-go", param("NAME")))).expect("open");
        let done = Event::open(&waiting(&format!("{}-done", param("NAME")))).expect("open");
        let count = SharedAtomicU64::open(&waiting(&format!("{}-n", param("NAME")))).expect("open");
        for _ in 0..100 {
            go.wait().expect("wait");
            count.fetch_add(1, Ordering::SeqCst);
            done.set();
        }
        return;
    }
    let name = unique();
    let go = Event::create(&format!("{name}-go"), EventMode::Auto).expect("create");
    let done = Event::create(&format!("{name}-done"), EventMode::Auto).expect("create");
    let count = SharedAtomicU64::create(&format!("{name}-n"), 0).expect("create");
    let child = t.spawn("waiter", |c| set_param(c, "NAME", &name));
    for i in 1..=100 {
        go.set();
        done.wait().expect("wait");
        assert_eq!(count.load(Ordering::SeqCst), i, "one wake-up per set");
    }
    child.finish();
    assert!(!go.is_set(), "an auto event is reset by its waiter");

    let manual = Event::create(&format!("{name}-manual"), EventMode::Manual).expect("create");
    assert!(!manual.wait_timeout(Duration::from_millis(10)).unwrap());
    manual.set();
    assert!(manual.wait_timeout(Duration::ZERO).unwrap());
    assert!(manual.wait_timeout(Duration::ZERO).unwrap(), "stays set");
    manual.reset();
    assert!(!manual.is_set());
}

/// A producer process fills a slot and notifies; a consumer waits on the
/// condition variable; 1 000 hand-overs, none lost.
#[test]
fn condvar_hand_over_between_processes() {
    let t = Test::start();
    const ITEMS: u64 = 1_000;
    if t.child_role().is_some() {
        let slot = Mutex::<[u64; 2]>::open(&waiting(&param("NAME"))).expect("open");
        let cond = Condvar::open(&waiting(&format!("{}-cv", param("NAME")))).expect("open");
        for i in 1..=ITEMS {
            let g = slot.lock().expect("lock");
            let mut g = cond.wait_while(g, |s| s[0] != 0).expect("wait");
            *g = [1, i];
            drop(g);
            cond.notify_all();
        }
        return;
    }
    let name = unique();
    let slot = Mutex::<[u64; 2]>::create(&name, [0, 0]).expect("create");
    let cond = Condvar::create(&format!("{name}-cv")).expect("create");
    let child = t.spawn("producer", |c| set_param(c, "NAME", &name));
    for i in 1..=ITEMS {
        let g = slot.lock().expect("lock");
        let (mut g, timeout) = cond
            .wait_timeout_while(g, Duration::from_secs(30), |s| s[0] == 0)
            .expect("wait");
        assert!(!timeout.timed_out(), "item {i} arrived");
        assert_eq!(g[1], i, "in order");
        *g = [0, 0];
        drop(g);
        cond.notify_all();
    }
    child.finish();
}

/// Opening a primitive as something else, or with another value type, is
/// refused with a message saying what it is.
#[test]
fn opening_with_the_wrong_kind_or_type_is_refused() {
    let _t = Test::start();
    let name = unique();
    let _m = Mutex::<u64>::create(&name, 7).expect("create");
    let err = Semaphore::open(&name).unwrap_err();
    assert!(err.to_string().contains("mutex"), "{err}");
    let err = Mutex::<u32>::open(&name).unwrap_err();
    assert!(err.to_string().contains("8 bytes"), "{err}");
    let err = Mutex::<u64>::create(&name, 0).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InUse { .. }), "{err}");
    assert_eq!(*Mutex::<u64>::open(&name).expect("open").lock().unwrap(), 7);
    let a = SharedAtomicU64::create(&format!("{name}-a"), 1).expect("create");
    let err = ipcx::sync::SharedAtomicI64::open(&format!("{name}-a")).unwrap_err();
    assert!(err.to_string().contains("another type"), "{err}");
    assert_eq!(a.load(Ordering::Relaxed), 1);
}

/// Primitives placed in a segment the application already shares.
#[test]
fn primitives_in_an_existing_segment() {
    let t = Test::start();
    let layout = |i: usize| i * 4096;
    if t.child_role().is_some() {
        let seg = std::sync::Arc::new(Segment::open(&waiting(&param("NAME"))).expect("open"));
        let m = Mutex::<u64>::open_in(&seg, layout(0)).expect("mutex");
        let sem = Semaphore::open_in(&seg, layout(1)).expect("semaphore");
        for _ in 0..1000 {
            *m.lock().unwrap() += 1;
        }
        sem.release().unwrap();
        return;
    }
    let name = unique();
    let seg = std::sync::Arc::new(Segment::create(&format!("shm:{name}?size=64KiB")).expect("seg"));
    // SAFETY (every `create_in` below): the segment is this test's own, and
    // the two primitives take their own 4 KiB each.
    let m = unsafe { Mutex::<u64>::create_in(&seg, layout(0), 0) }.expect("mutex");
    let sem = unsafe { Semaphore::create_in(&seg, layout(1), 0, false) }.expect("semaphore");
    assert!(
        unsafe { Mutex::<u64>::create_in(&seg, 65536 - 64, 0) }.is_err(),
        "does not fit"
    );
    assert!(
        unsafe { Mutex::<u64>::create_in(&seg, 100, 0) }.is_err(),
        "misaligned"
    );
    let child = t.spawn("user", |c| set_param(c, "NAME", &name));
    sem.acquire().expect("acquire");
    child.finish();
    assert_eq!(*m.lock().unwrap(), 1000);
}

/// A second `create_in` where a primitive lives is refused: it would zero
/// the state and value under a live guard (here 42, which must stay 42),
/// and re-initialize a robust mutex still on this thread's robust list.
#[test]
fn second_create_in_at_a_live_place_is_refused() {
    let _t = Test::start();
    let name = unique();
    let seg = std::sync::Arc::new(Segment::create(&format!("shm:{name}?size=4KiB")).expect("seg"));
    // SAFETY: the segment is this test's own; offset 0 is used only by this
    // mutex (the second create_in is the point of the test, and is refused
    // before it touches anything).
    let m = unsafe { Mutex::<u64>::create_in(&seg, 0, 42) }.expect("mutex");
    let guard = m.lock().unwrap();
    // SAFETY: as above.
    let again = unsafe { Mutex::<u64>::create_in(&seg, 0, 0) };
    let err = again.expect_err("a second create at a live place");
    assert!(
        matches!(err.kind(), ipcx::ErrorKind::InUse { pid: None, reason: why } if why.contains("already lives")),
        "{err}"
    );
    // SAFETY: as above.
    let err = unsafe { Event::create_in(&seg, 0, EventMode::Auto) }.expect_err("another kind");
    assert!(matches!(err.kind(), ipcx::ErrorKind::InUse { .. }), "{err}");
    assert_eq!(*guard, 42);
    drop(guard);
    assert_eq!(*m.lock().unwrap(), 42);
}

/// An event awaited on tokio in this process and set by another: with
/// `?liveness=1h` only the doorbell can wake the wait, so a lost ring hangs
/// the test and its watchdog fails it. Cancelling a wait takes nothing.
#[cfg(feature = "async")]
#[test]
fn async_event_is_woken_by_another_process() {
    use ipcx::tokio::AsyncEvent;
    let t = Test::start();
    const ROUNDS: u32 = 50;
    if t.child_role().is_some() {
        let go = Event::open(&waiting(&format!("{}-go", param("NAME")))).expect("open");
        let ack = Event::open(&waiting(&format!("{}-ack", param("NAME")))).expect("open");
        for _ in 0..ROUNDS {
            ack.wait().expect("wait");
            // Give the parent time to fall asleep in the reactor.
            std::thread::sleep(Duration::from_millis(2));
            go.set();
        }
        return;
    }
    let name = unique();
    // Multi-threaded, and the waits in a spawned task: the future is `Send`.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let _created = Event::create(&format!("{name}-go"), EventMode::Auto).expect("create");
        let mut go = AsyncEvent::open(&format!("shm:{name}-go?liveness=1h"))
            .await
            .expect("async");
        let ack = Event::create(&format!("{name}-ack"), EventMode::Auto).expect("create");
        let child = t.spawn("setter", |c| set_param(c, "NAME", &name));
        // A cancelled wait leaves nothing armed and takes nothing.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), go.wait())
                .await
                .is_err()
        );
        let go = tokio::spawn(async move {
            for _ in 0..ROUNDS {
                ack.set();
                go.wait().await.expect("wait");
            }
            go
        })
        .await
        .expect("the waiting task");
        assert!(!go.get_ref().is_set(), "each set was taken once");
        child.finish();
        // Two async waiters on a manual event are both released.
        let manual = format!("{name}-manual");
        let mut a =
            AsyncEvent::from_event(Event::create(&manual, EventMode::Manual).unwrap()).unwrap();
        let mut b = AsyncEvent::open(&manual).await.unwrap();
        let setter = Event::open(&manual).unwrap();
        let (ra, rb, ()) = tokio::join!(a.wait(), b.wait(), async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            setter.set();
        });
        ra.unwrap();
        rb.unwrap();
    });
}

/// A process in another PID namespace (a container sharing `/dev/shm`)
/// cannot tell whether holders it sees by pid live: opening is refused
/// instead of taking live holders' locks for dead.
#[test]
fn a_primitive_from_another_pid_namespace_is_refused() {
    let t = Test::start();
    if t.child_role().is_some() {
        let err = Mutex::<u64>::open(&waiting(&param("NAME"))).unwrap_err();
        assert!(err.to_string().contains("PID namespace"), "{err}");
        return;
    }
    let name = unique();
    let _m = Mutex::<u64>::create(&name, 0).expect("create");
    let mut inner = t.command("opener");
    set_param(&mut inner, "NAME", &name);
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--pid", "--fork"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in inner.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    common::ChildProcess::spawn(cmd, "opener").finish();
}

/// Another process scribbles over the primitives' state (not the header):
/// every timed operation still returns — a value or a typed error — with
/// no panic and no hang (the watchdog would fail a hang). The robust
/// pthread mutex is left out: glibc trusts its bytes (the documented trust
/// boundary of `?mode=`).
#[test]
fn scribbled_state_never_panics_or_hangs() {
    let t = Test::start();
    if t.child_role() == Some(common::SCRIBBLER) {
        return common::scribbler();
    }
    let short = Duration::from_millis(20);
    // A lock attempt ends in a guard or a `LockError`, typed by
    // construction; the `Failed` one carries an `ipcx::Error`.
    fn lock<T, G>(what: &str, r: Result<T, ipcx::sync::LockError<G>>) {
        if let Err(ipcx::sync::LockError::Failed(e)) = r {
            common::typed(what, Err::<(), _>(e));
        }
    }
    for seed in 1..=8u64 {
        let name = unique();
        let url = format!("shm:{name}");
        let seg =
            std::sync::Arc::new(Segment::create(&format!("{url}?size=64KiB")).expect("segment"));
        let at = |i: usize| i * 8192;
        // SAFETY (every `create_in` here): a new segment of this test's,
        // 8 KiB apart, far more than any footprint.
        let spin = unsafe { ipcx::sync::SpinLock::<u64>::create_in(&seg, at(0), 0) }.unwrap();
        let rw = unsafe { ipcx::sync::RwLock::<u64>::create_in(&seg, at(1), 0) }.unwrap();
        let sem = unsafe { Semaphore::create_in(&seg, at(2), 1, false) }.unwrap();
        let tracked = unsafe { Semaphore::create_in(&seg, at(3), 1, true) }.unwrap();
        let barrier = unsafe { Barrier::create_in(&seg, at(4), 2) }.unwrap();
        let event = unsafe { Event::create_in(&seg, at(5), EventMode::Auto) }.unwrap();
        // Garbage over everything after each header line, from another
        // process.
        let ranges: Vec<(usize, usize)> = (0..6).map(|i| (at(i) + 64, 8192 - 64)).collect();
        common::scribble(&t, &url, &ranges, seed);
        lock("spin lock_timeout", spin.lock_timeout(short).map(|g| *g));
        lock("spin try_lock", spin.try_lock().map(|g| *g));
        lock("rw read_timeout", rw.read_timeout(short).map(|g| *g));
        lock("rw write_timeout", rw.write_timeout(short).map(|g| *g));
        common::typed("sem acquire_timeout", sem.acquire_timeout(short));
        common::typed("sem try_acquire", sem.try_acquire());
        common::typed("sem release", sem.release());
        common::typed("tracked acquire_timeout", tracked.acquire_timeout(short));
        common::typed("tracked release", tracked.release());
        common::typed("tracked recover", tracked.recover());
        common::typed("barrier wait_timeout", barrier.wait_timeout(short));
        common::typed("event wait_timeout", event.wait_timeout(short));
        event.set();
        event.reset();
        // What `ipcx ls` reads of it (the spin lock at the start).
        let _state: Option<String> = ipcx::sync::describe(Segment::open(&url).expect("reopen"));
    }
}

/// A permit returns itself when dropped; `forget` keeps it taken.
#[test]
fn semaphore_permits_return_when_dropped() {
    let _t = Test::start();
    let name = unique();
    let sem = Semaphore::create(&name, 1).expect("create");
    let permit = sem.permit().expect("permit");
    assert!(
        sem.try_permit().expect("try").is_none(),
        "the only permit is out"
    );
    drop(permit);
    let again = sem.try_permit().expect("try").expect("returned on drop");
    again.forget();
    assert_eq!(sem.value(), 0, "a forgotten permit stays taken");
    sem.release().expect("release by hand");
    assert!(
        sem.permit_timeout(Duration::from_millis(10))
            .expect("timed")
            .is_some()
    );
}
