//! Loom models of the futex-based algorithms (run by `scripts/loom`): the
//! futex is loom's stand-in (`wait::primitive::futex`), which ignores
//! timeouts, so a lost wake-up shows up as a deadlock, and loom's cells
//! report any two threads inside a lock at once as a data race.
//!
//! The stand-in wakes every sleeper on every word, whatever the count, so
//! a wake-one that reaches the wrong sleeper, or a wake on the wrong word,
//! is not caught here.
//!
//! Not modelled: [`super::Mutex`] (the kernel's and glibc's robust mutex),
//! and the takeover from dead holders (`/proc` checks; under loom nobody
//! dies). Those are covered by the `SIGKILL` tests.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

use super::barrier::BarrierState;
use super::event::{EventMode, EventState};
use super::owner::{OwnerLock, Spinning};
use super::rwlock::{Patience, RwState};
use super::semaphore::SemState;
use crate::wait::EventCount;
use crate::wait::primitive::{AtomicU32, Ordering};

#[test]
fn model_owner_lock_excludes() {
    loom::model(|| {
        let shared = Arc::new((OwnerLock::new(), UnsafeCell::new(0u32)));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let s = shared.clone();
                thread::spawn(move || {
                    s.0.lock(Spinning::ThenSleep, None).unwrap();
                    // SAFETY: under the lock (loom checks it).
                    s.1.with_mut(|v| unsafe { *v += 1 });
                    s.0.unlock();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // SAFETY: both threads are done.
        shared.1.with(|v| assert_eq!(unsafe { *v }, 2));
    });
}

#[test]
fn model_semaphore_hands_permits_to_sleepers() {
    loom::model(|| {
        let sem = Arc::new(SemState::new(0, false));
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let s = sem.clone();
                thread::spawn(move || assert!(s.take(None, None).unwrap()))
            })
            .collect();
        sem.give(None).unwrap();
        sem.give(None).unwrap();
        for t in takers {
            t.join().unwrap();
        }
        assert!(
            !sem.try_take(None, None).unwrap(),
            "both permits were taken once"
        );
    });
}

#[test]
fn model_tracked_semaphore_hands_over_under_its_lock() {
    loom::model(|| {
        let sem = Arc::new(SemState::new(1, true));
        assert!(sem.try_take(Some(0), None).unwrap());
        let taker = {
            let s = sem.clone();
            thread::spawn(move || assert!(s.take(Some(1), None).unwrap()))
        };
        sem.give(Some(0)).unwrap();
        taker.join().unwrap();
        assert!(sem.give(Some(0)).is_err(), "slot 0 holds nothing now");
        sem.give(Some(1)).unwrap();
    });
}

#[test]
fn model_signal_never_loses_a_wake_up() {
    loom::model(|| {
        let shared = Arc::new((EventCount::zero(), AtomicU32::new(0)));
        let waiter = {
            let s = shared.clone();
            thread::spawn(move || {
                loop {
                    let seen = s.0.prepare();
                    if s.1.load(Ordering::SeqCst) == 1 {
                        s.0.cancel();
                        break;
                    }
                    s.0.sleep(seen, None);
                }
            })
        };
        shared.1.store(1, Ordering::SeqCst);
        shared.0.wake(1);
        waiter.join().unwrap();
    });
}

#[test]
fn model_barrier_two_generations() {
    loom::model(|| {
        let barrier = Arc::new(BarrierState::new(2));
        let party = |b: Arc<BarrierState>| {
            move || (0..2).filter(|_| b.wait(None).unwrap().is_leader()).count()
        };
        let other = thread::spawn(party(barrier.clone()));
        let leaders = party(barrier)() + other.join().unwrap();
        assert_eq!(leaders, 2, "one leader per generation");
    });
}

#[test]
fn model_rwlock_excludes_reader_and_writer() {
    loom::model(|| {
        let shared = Arc::new((RwState::new(), UnsafeCell::new(0u32)));
        let reader = {
            let s = shared.clone();
            thread::spawn(move || {
                s.0.read(0, Patience::Until(None)).unwrap();
                // SAFETY: under a read hold (loom checks no writer is in).
                let v = s.1.with(|v| unsafe { *v });
                s.0.read_unlock(0);
                v
            })
        };
        shared.0.write(Patience::Until(None)).unwrap();
        // SAFETY: under the write lock.
        shared.1.with_mut(|v| unsafe { *v = 1 });
        shared.0.write_unlock();
        assert!(reader.join().unwrap() <= 1);
    });
}

#[test]
fn model_auto_event_wakes_its_waiter_once() {
    loom::model(|| {
        let event = Arc::new(EventState::new(EventMode::Auto));
        let waiter = {
            let e = event.clone();
            thread::spawn(move || assert!(e.wait(None)))
        };
        event.set();
        waiter.join().unwrap();
        assert!(!event.wait(Some(std::time::Instant::now())), "consumed");
    });
}
