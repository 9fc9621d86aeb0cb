//! Cross-process locks between real processes: mutual exclusion counted
//! exactly, and recovery when a holder is killed with `SIGKILL`.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Test, param, ready, set_param};
use ipcx::shm::Segment;
use ipcx::sync::{
    Event, EventMode, LockError, Monitor, Mutex, RwLock, Semaphore, SharedAtomicU32,
    SharedAtomicU64, SpinLock,
};

fn unique() -> String {
    common::abstract_name()
}

/// `name?timeout=30s`: children wait for the parent's object.
fn waiting(name: &str) -> String {
    format!("shm:{name}?timeout={}", common::PEER_TIMEOUT)
}

const PROCESSES: u64 = 4;
const ROUNDS: u64 = 20_000;

/// A non-atomic increment: a load and a store with room between them, so
/// that two processes inside at once lose counts.
fn bump(v: &mut u64) {
    let old = std::hint::black_box(*v);
    for _ in 0..20 {
        std::hint::spin_loop();
    }
    *v = old + 1;
}

/// In a child: says it is ready, then waits for the parent's start signal,
/// so that all children run their loops at the same time.
fn start_together() {
    let go = Event::open(&waiting(&format!("{}-go", param("NAME")))).expect("open go");
    ready("ready");
    go.wait().expect("wait for go");
}

/// In a child: increments the counter guarded by primitive `KIND` named
/// `NAME` `ROUNDS` times.
fn increment_in_child() {
    let name = waiting(&param("NAME"));
    match param("KIND").as_str() {
        "mutex" => {
            let m = Mutex::<u64>::open(&name).expect("open");
            start_together();
            for _ in 0..ROUNDS {
                bump(&mut m.lock().expect("lock"));
            }
        }
        "spinlock" => {
            let m = SpinLock::<u64>::open(&name).expect("open");
            start_together();
            for _ in 0..ROUNDS {
                bump(&mut m.lock().expect("lock"));
            }
        }
        "rwlock" => {
            let m = RwLock::<u64>::open(&name).expect("open");
            start_together();
            for i in 0..ROUNDS {
                bump(&mut m.write().expect("write"));
                // Readers mixed in: they must never see a torn state.
                if i % 8 == 0 {
                    assert!(*m.read().expect("read") <= PROCESSES * ROUNDS);
                }
            }
        }
        "monitor" => {
            let m = Monitor::<u64>::open(&name).expect("open");
            start_together();
            for _ in 0..ROUNDS {
                bump(&mut m.lock().expect("lock"));
                m.notify_all();
            }
        }
        "semaphore" => {
            // A binary semaphore guarding a plain counter in a segment.
            let sem = Semaphore::open(&name).expect("open");
            let data =
                Segment::open(&waiting(&format!("{}-data", param("NAME")))).expect("open data");
            start_together();
            for _ in 0..ROUNDS {
                sem.acquire().expect("acquire");
                let mut b = [0u8; 8];
                // SAFETY: the binary semaphore excludes every other
                // process from the counter (what the test checks).
                unsafe { data.read_at(0, &mut b) }.unwrap();
                let mut v = u64::from_le_bytes(b);
                bump(&mut v);
                // SAFETY: as above.
                unsafe { data.write_at(0, &v.to_le_bytes()) }.unwrap();
                sem.release().expect("release");
            }
        }
        other => panic!("unknown kind {other}"),
    }
}

/// Runs `PROCESSES` children incrementing under `kind`, then returns.
fn run_incrementers(t: &Test, kind: &str, name: &str) {
    let go = Event::create(&format!("{name}-go"), EventMode::Manual).expect("create go");
    let mut children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            t.spawn("inc", |c| {
                set_param(set_param(c, "KIND", kind), "NAME", name)
            })
        })
        .collect();
    for c in &mut children {
        c.wait_ready();
    }
    go.set();
    for c in children {
        c.finish();
    }
}

#[test]
fn counter_is_exact_under_every_lock() {
    let t = Test::start();
    if t.child_role().is_some() {
        increment_in_child();
        return;
    }
    let want = PROCESSES * ROUNDS;
    {
        let name = unique();
        let m = Mutex::<u64>::create(&name, 0).expect("create mutex");
        run_incrementers(&t, "mutex", &name);
        assert_eq!(*m.lock().expect("lock"), want, "mutex");
    }
    {
        let name = unique();
        let m = SpinLock::<u64>::create(&name, 0).expect("create spinlock");
        run_incrementers(&t, "spinlock", &name);
        assert_eq!(*m.lock().expect("lock"), want, "spinlock");
    }
    {
        let name = unique();
        let m = RwLock::<u64>::create(&name, 0).expect("create rwlock");
        run_incrementers(&t, "rwlock", &name);
        assert_eq!(*m.read().expect("read"), want, "rwlock");
    }
    {
        let name = unique();
        let m = Monitor::<u64>::create(&name, 0).expect("create monitor");
        run_incrementers(&t, "monitor", &name);
        assert_eq!(*m.lock().expect("lock"), want, "monitor");
    }
    for tracked in [false, true] {
        let name = unique();
        let _sem = if tracked {
            Semaphore::create_tracked(&name, 1)
        } else {
            Semaphore::create(&name, 1)
        }
        .expect("create semaphore");
        let data = Segment::create(&format!("shm:{name}-data?size=64")).expect("data");
        run_incrementers(&t, "semaphore", &name);
        let mut b = [0u8; 8];
        // SAFETY: every process that wrote the counter has exited.
        unsafe { data.read_at(0, &mut b) }.unwrap();
        assert_eq!(
            u64::from_le_bytes(b),
            want,
            "semaphore (tracked: {tracked})"
        );
    }
}

/// In a child: takes `KIND` named `NAME` (mutex, spinlock, rwlock-write,
/// rwlock-read, monitor), says so, and waits to be killed.
fn hold_until_killed() {
    let name = waiting(&param("NAME"));
    match param("KIND").as_str() {
        "mutex" => {
            let m = Mutex::<u64>::open(&name).expect("open");
            let mut g = m.lock().expect("lock");
            *g = 13; // half-way through an update
            ready("holding");
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        "spinlock" => {
            let m = SpinLock::<u64>::open(&name).expect("open");
            let _g = m.lock().expect("lock");
            ready("holding");
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        "rwlock-write" => {
            let m = RwLock::<u64>::open(&name).expect("open");
            let _g = m.write().expect("write");
            ready("holding");
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        "rwlock-read" => {
            let m = RwLock::<u64>::open(&name).expect("open");
            let _a = m.read().expect("read");
            let _b = m.read().expect("read twice");
            ready("holding");
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        "monitor" => {
            let m = Monitor::<u64>::open(&name).expect("open");
            let _g = m.lock().expect("lock");
            ready("holding");
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        other => panic!("unknown kind {other}"),
    }
}

fn kill_holder(t: &Test, kind: &str, name: &str) {
    let mut child = t.spawn("hold", |c| {
        set_param(set_param(c, "KIND", kind), "NAME", name)
    });
    child.wait_ready();
    child.kill();
}

#[test]
fn killed_mutex_holder_is_reported_and_repaired() {
    let t = Test::start();
    if t.child_role().is_some() {
        hold_until_killed();
        return;
    }
    let name = unique();
    let m = Mutex::<u64>::create(&name, 0).expect("create");
    kill_holder(&t, "mutex", &name);
    match m.lock() {
        Err(LockError::OwnerDied(mut g)) => {
            assert_eq!(*g, 13, "the dead holder's half-done write is visible");
            *g = 0;
            g.make_consistent().expect("make consistent");
        }
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
    }
    *m.lock().expect("a repaired mutex locks normally") += 1;
    assert_eq!(*m.try_lock().expect("free again"), 1);

    // Not repaired: nobody can take it again, and nobody hangs.
    kill_holder(&t, "mutex", &name);
    drop(
        m.lock()
            .expect_err("owner died")
            .into_guard()
            .expect("guard"),
    );
    assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
    let err = m.lock().unwrap_err().into_error();
    assert_eq!(*err.kind(), ipcx::ErrorKind::NotRecoverable, "{err}");
}

#[test]
fn killed_spinlock_holder_is_reported() {
    let t = Test::start();
    if t.child_role().is_some() {
        hold_until_killed();
        return;
    }
    let name = unique();
    let m = SpinLock::<u64>::create(&name, 0).expect("create");
    kill_holder(&t, "spinlock", &name);
    let mut g = m
        .lock()
        .expect_err("owner died")
        .into_guard()
        .expect("guard");
    g.make_consistent();
    drop(g);
    drop(m.lock().expect("repaired"));

    kill_holder(&t, "spinlock", &name);
    // try_lock looks at the holder too, so it does not fail forever.
    drop(
        m.try_lock()
            .expect_err("owner died")
            .into_guard()
            .expect("guard"),
    );
    assert!(matches!(m.lock(), Err(LockError::NotRecoverable)));
}

#[test]
fn killed_rwlock_holders_are_recovered() {
    let t = Test::start();
    if t.child_role().is_some() {
        hold_until_killed();
        return;
    }
    let name = unique();
    let m = RwLock::<u64>::create(&name, 0).expect("create");
    // A dead reader (two holds) does not keep writers out.
    kill_holder(&t, "rwlock-read", &name);
    *m.write().expect("write after a reader died") += 1;
    // A dead writer: a reader learns of it, then the next writer repairs.
    kill_holder(&t, "rwlock-write", &name);
    let r = m
        .read()
        .expect_err("owner died")
        .into_guard()
        .expect("read guard");
    assert_eq!(*r, 1);
    drop(r);
    let mut w = m
        .write()
        .expect_err("owner died")
        .into_guard()
        .expect("write guard");
    *w += 1;
    w.make_consistent();
    drop(w);
    assert_eq!(*m.read().expect("consistent again"), 2);
}

#[test]
fn killed_monitor_holder_wakes_the_waiter_with_owner_died() {
    let t = Test::start();
    if t.child_role().is_some() {
        hold_until_killed();
        return;
    }
    let name = unique();
    let m = Monitor::<u64>::create(&name, 0).expect("create");
    kill_holder(&t, "monitor", &name);
    let mut g = m
        .wait_until(|n| *n > 0)
        .expect_err("owner died")
        .into_guard()
        .expect("guard");
    *g = 1;
    g.make_consistent().expect("make consistent");
    drop(g);
    assert_eq!(*m.wait_until(|n| *n > 0).expect("ready"), 1);
}

/// Three reader processes keep the lock read-held all the time; a writer
/// still gets in, each time after at most one read per reader that was
/// already under way (readers count the reads they were granted while a
/// writer waited).
#[test]
fn writer_gets_in_under_continuous_reads() {
    let t = Test::start();
    const READERS: u64 = 3;
    const WRITES: u64 = 50;
    if t.child_role().is_some() {
        let base = param("NAME");
        let m = RwLock::<u64>::open(&waiting(&base)).expect("open");
        let overtakes = SharedAtomicU64::open(&waiting(&format!("{base}-over"))).expect("open");
        let stop = SharedAtomicU32::open(&waiting(&format!("{base}-stop"))).expect("open");
        let mut reads = 0u64;
        drop(m.read().expect("read"));
        ready("reading");
        while stop.load(Ordering::Relaxed) == 0 {
            let g = m.read().expect("read");
            if m.writer_waiting() {
                overtakes.fetch_add(1, Ordering::Relaxed);
            }
            reads += 1;
            std::hint::black_box(*g);
            // Hold a little, so that the three holds overlap.
            for _ in 0..200 {
                std::hint::spin_loop();
            }
        }
        ready(&reads.to_string());
        return;
    }
    let base = unique();
    let m = Arc::new(RwLock::<u64>::create(&base, 0).expect("create"));
    let overtakes = SharedAtomicU64::create(&format!("{base}-over"), 0).expect("create");
    let stop = SharedAtomicU32::create(&format!("{base}-stop"), 0).expect("create");
    let mut readers: Vec<_> = (0..READERS)
        .map(|_| t.spawn("reader", |c| set_param(c, "NAME", &base)))
        .collect();
    for r in &mut readers {
        r.wait_ready();
    }
    for _ in 0..WRITES {
        std::thread::sleep(std::time::Duration::from_millis(2));
        *m.write().expect("write") += 1;
    }
    stop.store(1, Ordering::Relaxed);
    let reads: u64 = readers
        .iter_mut()
        .map(|r| r.wait_ready().parse::<u64>().unwrap())
        .sum();
    for r in readers {
        r.finish();
    }
    assert_eq!(*m.read().expect("read"), WRITES);
    let over = overtakes.load(Ordering::Relaxed);
    assert!(
        over <= READERS * WRITES,
        "{over} reads were granted while a writer waited (at most {} allowed); {reads} reads in all",
        READERS * WRITES
    );
    assert!(reads > 0, "the readers read");
}

/// What `ipcx ls` shows of a primitive (`ipcx::sync::describe`): who holds
/// a mutex, and that its holder died; a spin lock's and a semaphore's
/// state.
#[test]
fn describe_tells_holder_and_state() {
    let t = Test::start();
    if t.child_role() == Some(common::SCRIBBLER) {
        return common::scribbler();
    }
    if t.child_role().is_some() {
        hold_until_killed();
        return;
    }
    let describe = |name: &str| {
        ipcx::sync::describe(Segment::open(&format!("shm:{name}")).expect("open segment"))
            .expect("a primitive")
    };
    let name = unique();
    let m = Mutex::<u64>::create(&name, 0).expect("create");
    assert_eq!(describe(&name), "mutex free");
    let mut child = t.spawn("hold", |c| {
        set_param(set_param(c, "KIND", "mutex"), "NAME", &name)
    });
    child.wait_ready();
    let held = describe(&name);
    let want = format!("mutex locked by live pid {} (thread ", child.id());
    assert!(held.starts_with(&want), "{held}");
    child.kill();
    assert_eq!(describe(&name), "mutex free (a holder died)");
    drop(m);

    let name = unique();
    let _s = SpinLock::<u64>::create(&name, 0).expect("create");
    kill_holder(&t, "spinlock", &name);
    let dead = describe(&name);
    assert!(
        dead.starts_with("spinlock locked by dead thread "),
        "{dead}"
    );

    let name = unique();
    let sem = Semaphore::create_tracked(&name, 3).expect("create");
    sem.acquire().unwrap();
    let d = describe(&name);
    assert!(d.starts_with("semaphore value 2 of 3, pid "), "{d}");
    assert!(d.ends_with(" holds 1"), "{d}");

    // A header of another layout version (its word scribbled by another
    // process) is not read as this one's.
    let name = unique();
    let _c = ipcx::sync::Condvar::create(&name).expect("create");
    assert_eq!(describe(&name), "condvar");
    common::scribble(&t, &format!("shm:{name}"), &[(8, 4)], 7);
    assert!(ipcx::sync::describe(Segment::open(&format!("shm:{name}")).unwrap()).is_none());
}
