//! Loom models of the queue protocol over two cells: producers racing for
//! cells, and a producer that must sleep until the consumer frees one.
//! Every interleaving must deliver each message once, whole, with no lost
//! wake-up. (With one cell, "published" and "free for the next lap" would
//! be the same sequence number, which is why a queue needs two.) Run with
//! `scripts/loom`.

use super::*;
use crate::wait::EventCount;

#[repr(C, align(64))]
struct ModelCell {
    hdr: CellHeader,
    data: [u8; 48],
}

/// Runs `producers` (each a list of messages) against one consumer.
fn run(producers: &'static [&'static [&'static [u8]]]) {
    loom::model(move || {
        let hdr = Box::into_raw(Box::new(QueueHeader {
            info: Line(QueueInfo {
                magic: AtomicU64::new(MAGIC),
                version: AtomicU32::new(VERSION),
                cells: AtomicU32::new(2),
                cell_size: AtomicU32::new(48),
            }),
            enqueue: Line(AtomicU64::new(0)),
            dequeue: Line(AtomicU64::new(0)),
            data: Line(EventCount::new(AtomicU32::new(0), AtomicU32::new(0))),
            space: Line(EventCount::new(AtomicU32::new(0), AtomicU32::new(0))),
        }));
        let cells = Box::into_raw(Box::new([0u64, 1].map(|seq| ModelCell {
            hdr: CellHeader {
                seq: AtomicU64::new(seq),
                len: AtomicU32::new(0),
                _pad: 0,
                claim: AtomicU64::new(0),
                owner: AtomicU64::new(0),
            },
            data: [0; 48],
        })));
        let (h, c) = (hdr as usize, cells as usize);
        let view = move || View {
            hdr: h as *const QueueHeader,
            cells: c as *mut u8,
            n: 2,
            cell_size: 48,
            me: super::view::Me::known(crate::sys::process::fork_epoch(), 1),
        };
        let how = || Waiting {
            strategy: WaitStrategy::Block,
            spin: Duration::ZERO,
            deadline: None,
            peer_gone: &|| false,
        };
        let threads: Vec<_> = producers
            .iter()
            .map(|&msgs| {
                loom::thread::spawn(move || {
                    let v = view();
                    for &m in msgs {
                        while !v.try_push(m) {
                            let _ = wait(&v.hdr().space.0, || v.has_room(), &how());
                        }
                    }
                })
            })
            .collect();
        let v = view();
        let mut want: Vec<Vec<u8>> = producers
            .iter()
            .flat_map(|ms| ms.iter().map(|m| m.to_vec()))
            .collect();
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let mut out = Vec::new();
            while !v.try_pop(&mut out) {
                let _ = wait(&v.hdr().data.0, || v.has_data(), &how());
            }
            got.push(out);
        }
        for t in threads {
            t.join().unwrap();
        }
        got.sort();
        want.sort();
        assert_eq!(got, want);
        // SAFETY: all threads joined; both came from Box::into_raw.
        unsafe {
            drop(Box::from_raw(hdr));
            drop(Box::from_raw(cells));
        }
    });
}

#[test]
fn producers_race_for_cells() {
    run(&[&[b"a"], &[b"b"]]);
}

#[test]
fn a_producer_sleeps_until_a_cell_is_free() {
    run(&[&[b"1", b"2", b"3"]]);
}
