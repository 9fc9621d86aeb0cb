//! The OS's own named semaphores, shared with a C program compiled here and
//! a Python one (ctypes), and the kernel undoing a killed process's SysV
//! operations.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Test, compile_c, param, ready, run_c, set_param};
use ipcx::ErrorKind;
use ipcx::sync::{NamedSemaphore, SysVSemaphoreSet};

/// A C program that opens a semaphore by name (POSIX) or key (SysV) and
/// posts to it or waits on it (30 s at most).
const PEER_C: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sem.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc != 4) return 64;
    int post = strcmp(argv[3], "post") == 0;
    if (strcmp(argv[1], "posix") == 0) {
        sem_t *s = sem_open(argv[2], 0);
        if (s == SEM_FAILED) { perror("sem_open"); return 2; }
        if (post) return sem_post(s) == 0 ? 0 : 3;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 30;
        if (sem_timedwait(s, &ts) != 0) { perror("sem_timedwait"); return 4; }
        return 0;
    }
    int id = semget((key_t)strtol(argv[2], NULL, 0), 0, 0);
    if (id < 0) { perror("semget"); return 5; }
    struct sembuf op = { 0, (short)(post ? 1 : -1), 0 };
    struct timespec ts = { 30, 0 };
    if (semtimedop(id, &op, 1, &ts) != 0) { perror("semtimedop"); return 6; }
    return 0;
}
"#;

fn unique() -> String {
    common::abstract_name()
}

#[test]
fn posix_named_semaphore_shared_with_a_c_program() {
    let t = Test::start();
    let dir = t.scratch();
    let exe = compile_c(&dir, PEER_C, "-pthread");
    let name = unique();
    let sem = NamedSemaphore::create(&name, 0).expect("create");
    let path = format!("/dev/shm/sem.{name}");
    assert!(Path::new(&path).exists());
    let c_name = format!("/{name}");
    run_c(&exe, &["posix", &c_name, "post"]);
    assert!(
        sem.acquire_timeout(Duration::from_secs(30)).expect("wait"),
        "the C post arrived"
    );
    sem.release().expect("post");
    run_c(&exe, &["posix", &c_name, "wait"]);
    assert_eq!(sem.value().unwrap(), 0, "the C program took it");

    // The name is ours: a second create is refused while we live; a file
    // of the same name that ipcx did not make is not touched.
    let err = NamedSemaphore::create(&name, 0).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InUse { .. }), "{err}");
    drop(sem);
    assert!(!Path::new(&path).exists(), "removed with its creator");
    let foreign = unique();
    let c_made = ipcx::bench_support::PosixSem::create(&foreign, 0o600, 0).expect("sem_open");
    let err = NamedSemaphore::create(&foreign, 0).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InUse { .. }), "{err}");
    drop(c_made);
    NamedSemaphore::unlink(&foreign).unwrap();
}

/// Removes a SysV set when dropped, even if the test fails.
struct RemoveSet(i32);

impl Drop for RemoveSet {
    fn drop(&mut self) {
        if let Ok(set) = SysVSemaphoreSet::open(self.0) {
            let _ = set.remove();
        }
    }
}

#[test]
fn sysv_set_shared_with_a_c_program_and_undone_when_a_holder_dies() {
    let t = Test::start();
    if t.child_role().is_some() {
        let set = SysVSemaphoreSet::open(param("KEY").parse().unwrap()).expect("open");
        set.acquire(0).expect("wait");
        set.acquire(0).expect("wait");
        ready("holding");
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let dir = t.scratch();
    let exe = compile_c(&dir, PEER_C, "-pthread");
    let key = SysVSemaphoreSet::key_for(&unique());
    let _cleanup = RemoveSet(key);
    let set = SysVSemaphoreSet::create(key, 2, 0).expect("create");
    let key_arg = key.to_string();
    run_c(&exe, &["sysv", &key_arg, "post"]);
    assert!(
        set.acquire_timeout(0, Duration::from_secs(30)).unwrap(),
        "the C post arrived"
    );
    set.release(0).unwrap();
    run_c(&exe, &["sysv", &key_arg, "wait"]);
    assert_eq!(set.value(0).unwrap(), 0);

    set.set_value(0, 2).unwrap();
    let mut child = t.spawn("holder", |c| set_param(c, "KEY", &key_arg));
    child.wait_ready();
    assert_eq!(set.value(0).unwrap(), 0, "the child took both");
    child.kill();
    assert_eq!(set.value(0).unwrap(), 2, "SEM_UNDO gave them back");
    assert!(!set.try_acquire(1).unwrap(), "semaphore 1 is still 0");
    let err = SysVSemaphoreSet::create(key, 1, 0).unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
}

/// The same with a Python peer (`ctypes`, no packages): it opens the POSIX
/// semaphore by name and the SysV set by key, and posts to each.
#[test]
fn python_peer_opens_both_by_name_and_key() {
    const PEER_PY: &str = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
kind, name = sys.argv[1], sys.argv[2]
if kind == "posix":
    libc.sem_open.restype = ctypes.c_void_p
    libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
    sem = libc.sem_open(name.encode(), 0)
    if not sem:
        sys.exit("sem_open failed: errno %d" % ctypes.get_errno())
    sys.exit(libc.sem_post(ctypes.c_void_p(sem)))
class SemBuf(ctypes.Structure):
    _fields_ = [("num", ctypes.c_ushort), ("op", ctypes.c_short), ("flg", ctypes.c_short)]
ident = libc.semget(int(name, 0), 0, 0)
if ident < 0:
    sys.exit("semget failed: errno %d" % ctypes.get_errno())
op = SemBuf(0, 1, 0)
sys.exit(libc.semop(ident, ctypes.byref(op), 1))
"#;
    let t = Test::start();
    let dir = t.scratch();
    let script = dir.path("peer.py");
    std::fs::write(&script, PEER_PY).unwrap();
    let run = |args: &[&str]| common::stdout_of(Command::new("python3").arg(&script).args(args));
    let name = unique();
    let sem = NamedSemaphore::create(&name, 0).expect("create");
    run(&["posix", &format!("/{name}")]);
    assert!(sem.try_acquire().unwrap(), "the Python post arrived");

    let key = SysVSemaphoreSet::key_for(&unique());
    let _cleanup = RemoveSet(key);
    let set = SysVSemaphoreSet::create(key, 1, 0).expect("create");
    run(&["sysv", &key.to_string()]);
    assert!(set.try_acquire(0).unwrap(), "the Python post arrived");
}

/// Permits of the OS's semaphores go back when dropped: a child takes one
/// of each (SysV without `SEM_UNDO`, so that only the drop returns it), and
/// while it still lives they are back.
#[test]
fn permits_of_os_semaphores_return_when_dropped() {
    let t = Test::start();
    if t.child_role().is_some() {
        let named = NamedSemaphore::open(&param("NAME")).expect("open");
        let mut set = SysVSemaphoreSet::open(param("KEY").parse().unwrap()).expect("open");
        set.set_undo(false);
        let a = named.permit().expect("named permit");
        let b = set.try_permit(0).expect("try").expect("the set's permit");
        ready("holding");
        // The parent posts semaphore 1 once it has looked.
        set.acquire(1).expect("the parent's go");
        drop((a, b));
        ready("returned");
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let name = unique();
    let named = NamedSemaphore::create(&name, 1).expect("create");
    let key = SysVSemaphoreSet::key_for(&unique());
    let _cleanup = RemoveSet(key);
    let set = SysVSemaphoreSet::create(key, 2, 1).expect("create set");
    set.set_value(1, 0).expect("no go yet");
    let mut child = t.spawn("holder", |c| {
        set_param(c, "NAME", &name);
        set_param(c, "KEY", &key.to_string())
    });
    assert_eq!(child.wait_ready(), "holding");
    assert!(
        named.try_permit().expect("try").is_none(),
        "the child holds it"
    );
    assert!(
        set.try_permit(0).expect("try").is_none(),
        "the child holds it"
    );
    set.release(1).expect("go");
    assert_eq!(child.wait_ready(), "returned");
    assert_eq!(named.value().unwrap(), 1, "back from the child's drop");
    assert_eq!(set.value(0).unwrap(), 1, "back from the child's drop");
    let timed = set
        .permit_timeout(0, Duration::from_millis(10))
        .expect("timed");
    assert!(timed.is_some());
    drop(timed);
    assert_eq!(set.value(0).unwrap(), 1, "our own permit went back too");
    child.kill();
}
