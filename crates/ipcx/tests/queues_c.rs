//! Interop with C: a small C program, compiled here with the system's C
//! compiler, shares a POSIX queue and a System V queue with ipcx in both
//! directions, with priorities and types.

mod common;

use common::{Test, compile_c, run_c};
use ipcx::Listener;

const PEER_C: &str = r#"
#include <fcntl.h>
#include <mqueue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/msg.h>

struct msg { long mtype; char text[8192]; };

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *op = argv[1];
    if (!strcmp(op, "mqsend")) {
        mqd_t q = mq_open(argv[2], O_WRONLY);
        if (q == (mqd_t)-1) { perror("mq_open"); return 3; }
        if (mq_send(q, argv[4], strlen(argv[4]), (unsigned)atoi(argv[3])) != 0) { perror("mq_send"); return 4; }
        return 0;
    }
    if (!strcmp(op, "mqrecv")) {
        mqd_t q = mq_open(argv[2], O_RDONLY);
        if (q == (mqd_t)-1) { perror("mq_open"); return 3; }
        char buf[65536]; unsigned prio;
        ssize_t n = mq_receive(q, buf, sizeof buf, &prio);
        if (n < 0) { perror("mq_receive"); return 4; }
        printf("%u:%.*s\n", prio, (int)n, buf);
        return 0;
    }
    int id = msgget((key_t)strtol(argv[2], NULL, 0), 0);
    if (id < 0) { perror("msgget"); return 3; }
    struct msg m;
    if (!strcmp(op, "svsend")) {
        m.mtype = atol(argv[3]);
        size_t len = strlen(argv[4]);
        memcpy(m.text, argv[4], len);
        if (msgsnd(id, &m, len, 0) != 0) { perror("msgsnd"); return 4; }
        return 0;
    }
    if (!strcmp(op, "svrecv")) {
        ssize_t n = msgrcv(id, &m, sizeof m.text, atol(argv[3]), 0);
        if (n < 0) { perror("msgrcv"); return 4; }
        printf("%ld:%.*s\n", m.mtype, (int)n, m.text);
        return 0;
    }
    return 2;
}
"#;

#[test]
fn a_c_program_shares_both_kinds_of_queue() {
    let t = Test::start();
    let dir = t.scratch();
    let exe = compile_c(&dir, PEER_C, "-lrt");

    // POSIX: C sends two priorities, ipcx takes the higher first; ipcx
    // sends one, C reads it with its priority.
    let name = format!("/{}", common::abstract_name());
    let listener = Listener::bind(&format!("mq:{name}")).expect("bind mq");
    let mut q = listener.accept().expect("accept");
    run_c(&exe, &["mqsend", &name, "5", "five"]);
    run_c(&exe, &["mqsend", &name, "9", "nine"]);
    assert_eq!(q.recv_with_priority().expect("recv"), (b"nine".to_vec(), 9));
    assert_eq!(q.recv_with_priority().expect("recv"), (b"five".to_vec(), 5));
    q.send_with_priority(b"from ipcx", 3).expect("send");
    assert_eq!(run_c(&exe, &["mqrecv", &name]), "3:from ipcx\n");

    // System V: C sends types 4 and 2, ipcx selects the lowest up to 3;
    // ipcx sends type 7, C selects it.
    let key = format!("{:#x}", 0x5200_0000u32 | (std::process::id() & 0xffff));
    let listener = Listener::bind(&format!("sysvmq:{key}")).expect("bind sysvmq");
    let mut sv = listener.accept().expect("accept");
    run_c(&exe, &["svsend", &key, "4", "four"]);
    run_c(&exe, &["svsend", &key, "2", "two"]);
    assert_eq!(sv.recv_typed(-3).expect("recv_typed"), (b"two".to_vec(), 2));
    assert_eq!(sv.recv_typed(0).expect("recv_typed"), (b"four".to_vec(), 4));
    sv.send_typed(b"from ipcx", 7).expect("send_typed");
    assert_eq!(run_c(&exe, &["svrecv", &key, "7"]), "7:from ipcx\n");
}
