//! `journal:/dir`: a writer in one process, readers in another following
//! it live across segment files; a writer killed at any instant loses no
//! record whose append returned, and the next writer opens at once; a
//! torn or damaged tail is cut off and reported.

mod common;

use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::{Test, param, ready, set_param};
use ipcx::ErrorKind;
use ipcx::journal::{JournalReader, JournalWriter};

/// Record `seq`'s payload: its number, then a length that varies.
fn payload(seq: u64) -> Vec<u8> {
    let mut p = seq.to_le_bytes().to_vec();
    p.resize(8 + (seq % 53) as usize, seq as u8);
    p
}

const PATIENCE: Duration = Duration::from_secs(30);

/// In a child: appends `COUNT` records (forever if 0) to `URL`, telling
/// the parent every 100 (or `EVERY`) which sequence number was appended
/// last.
fn writer() {
    let mut w = JournalWriter::open(&param("URL")).expect("open the writer");
    let count: u64 = param("COUNT").parse().expect("a count");
    let every: u64 = common::param_opt("EVERY").map_or(100, |e| e.parse().expect("a number"));
    ready("open");
    let mut seq = w.recovery().next_seq;
    while count == 0 || seq < count {
        assert_eq!(w.append(&payload(seq)).expect("append"), seq);
        if seq % every == every - 1 {
            ready(&seq.to_string());
        }
        seq += 1;
    }
}

/// A reader in this process follows a writer in another, live, across
/// many segment files (1 MiB each), and gets all 1 000 000 records whole
/// and in order; another reader starts in the middle.
#[test]
fn readers_follow_a_writer_in_another_process() {
    let t = Test::start();
    if t.child_role().is_some() {
        return writer();
    }
    let dir = t.scratch();
    let url = format!("journal:{}?size=1MiB", dir.path("j").display());
    let mut child = t.spawn("writer", |c| {
        set_param(set_param(c, "URL", &url), "COUNT", "1000000")
    });
    assert_eq!(child.wait_ready(), "open");
    let mut r = JournalReader::open(&url, 0).expect("open a reader");
    for want in 0..1_000_000u64 {
        let (seq, p) = r.next_timeout(PATIENCE).expect("the next record");
        assert_eq!((seq, p), (want, payload(want)));
    }
    child.finish();
    let segments = std::fs::read_dir(dir.path("j"))
        .expect("the journal")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
        })
        .count();
    assert!(
        segments > 3,
        "the records span several segments ({segments})"
    );
    let mut middle = JournalReader::open(&url, 654_321).expect("a reader from 654321");
    assert_eq!(
        middle.next().expect("record 654321"),
        (654_321, payload(654_321))
    );
    assert_eq!(
        r.try_next().expect("try_next"),
        None,
        "nothing after the last"
    );
    let err = JournalReader::open(&url, 2_000_000).expect_err("not appended yet");
    assert!(matches!(err.kind(), ErrorKind::OutOfBounds(_)), "{err}");
}

/// A writer killed (SIGKILL) while appending: the next writer opens at
/// once (the lock dies with its holder), every record whose append had
/// returned is there and whole, and appending goes on from there.
#[test]
fn a_killed_writer_loses_no_appended_record() {
    let t = Test::start();
    if t.child_role().is_some() {
        return writer();
    }
    let dir = t.scratch();
    let url = format!("journal:{}?size=256KiB", dir.path("j").display());
    let mut child = t.spawn("writer", |c| {
        set_param(set_param(c, "URL", &url), "COUNT", "0")
    });
    assert_eq!(child.wait_ready(), "open");
    let err = JournalWriter::open(&url).expect_err("a second writer");
    assert!(matches!(err.kind(), ErrorKind::InUse { .. }), "{err}");
    let mut acked = 0;
    while acked < 3000 {
        acked = child.wait_ready().parse().expect("a sequence number");
    }
    child.kill();
    let mut w = JournalWriter::open(&url).expect("the next writer opens at once");
    let next = w.recovery().next_seq;
    assert!(
        next > acked,
        "record {acked} was acknowledged; the journal ends before {next}"
    );
    let mut r = JournalReader::open(&url, 0).expect("reader");
    for want in 0..next {
        assert_eq!(
            r.next_timeout(PATIENCE).expect("record"),
            (want, payload(want))
        );
    }
    assert_eq!(w.append(b"after").expect("append"), next);
    assert_eq!(
        r.next_timeout(PATIENCE).expect("the new record"),
        (next, b"after".to_vec())
    );
}

/// A journal of `count` records in `dir/j`, its writer closed: its URL
/// and its first segment file, open to be damaged.
fn journal_of(dir: &common::Scratch, count: u64) -> (String, std::fs::File) {
    let url = format!("journal:{}", dir.path("j").display());
    let mut w = JournalWriter::open(&url).expect("writer");
    assert_eq!(w.recovery().dropped_bytes, 0);
    for seq in 0..count {
        w.append(&payload(seq)).expect("append");
    }
    drop(w);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path("j").join(format!("{:020}.seg", 0)))
        .expect("the segment");
    (url, file)
}

/// Bytes written after the last record (a torn append) are cut off and
/// counted; so is everything from a record whose CRC no longer matches.
#[test]
fn a_torn_or_damaged_tail_is_cut_and_reported() {
    let t = Test::start();
    let dir = t.scratch();
    let (url, file) = journal_of(&dir, 10);
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, 32)
        .expect("the committed end");
    let end = u64::from_le_bytes(word);
    // A torn append: 100 bytes past the committed end.
    file.write_all_at(&[0xab; 100], end).expect("scribble");
    let w = JournalWriter::open(&url).expect("writer");
    assert_eq!(w.recovery().dropped_bytes, 100);
    assert_eq!(w.recovery().next_seq, 10);
    drop(w);
    // Damage inside record 0's payload: everything from it goes.
    file.write_all_at(&[0xff], 4096 + 16 + 2).expect("damage");
    let w = JournalWriter::open(&url).expect("writer");
    assert_eq!(
        w.recovery().next_seq,
        0,
        "the journal ends before the damage"
    );
    assert!(
        w.recovery().dropped_bytes >= end - 4096 - 16,
        "{:?}",
        w.recovery()
    );
}

/// Retention by size: with 8 KiB segments and `?retain=24KiB`, old
/// segments go as new ones start. A reader opened at 0 afterwards is told
/// how far behind it is; one that was reading the first segment when it
/// went reads it to its end, then is told too. By age: `?retain_age=`
/// leaves only young segments.
#[test]
fn retention_removes_old_segments_and_tells_readers() {
    let t = Test::start();
    let dir = t.scratch();
    let url = format!("journal:{}?size=8KiB&retain=24KiB", dir.path("j").display());
    let mut w = JournalWriter::open(&url).expect("writer");
    w.append(&payload(0)).expect("append");
    let mut early = JournalReader::open(&url, 0).expect("a reader in the first segment");
    for seq in 1..2000 {
        w.append(&payload(seq)).expect("append");
    }
    let kept = std::fs::read_dir(dir.path("j"))
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
        })
        .count();
    assert!(kept <= 3, "at most 24 KiB of 8 KiB segments kept ({kept})");
    let err = JournalReader::open(&url, 0).expect_err("record 0 is gone");
    let ErrorKind::FellBehind { wanted, oldest } = *err.kind() else {
        panic!("not FellBehind: {err}");
    };
    assert_eq!(wanted, 0);
    assert!(oldest > 1000, "the oldest kept is recent ({oldest})");
    let mut read = 0;
    let err = loop {
        match early.next_timeout(PATIENCE) {
            Ok((seq, p)) => {
                assert_eq!((seq, p), (read, payload(read)));
                read += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(read > 0, "the open segment was read to its end");
    assert!(
        matches!(*err.kind(), ErrorKind::FellBehind { wanted, .. } if wanted == read),
        "{err}"
    );

    // By age: batches 20 ms apart; at each new segment, those last
    // written more than 10 ms before go.
    let aged = format!(
        "journal:{}?size=8KiB&retain_age=10ms",
        dir.path("aged").display()
    );
    let mut w = JournalWriter::open(&aged).expect("writer");
    for batch in 0..6u64 {
        for seq in batch * 100..(batch + 1) * 100 {
            w.append(&payload(seq)).expect("append");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let kept = std::fs::read_dir(dir.path("aged"))
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "seg"))
        })
        .count();
    assert!(kept <= 3, "only the last batches' segments stay ({kept})");
    assert!(
        !dir.path("aged").join(format!("{:020}.seg", 0)).exists(),
        "the first segment went"
    );
}

/// 200 writers, each killed (SIGKILL) at a random moment while appending:
/// after each, a new writer recovers the journal, every acknowledged
/// record is there and intact, sequence numbers are contiguous, and no
/// broken record is ever returned.
#[test]
fn two_hundred_kills_lose_nothing_acknowledged() {
    let t = Test::start();
    if t.child_role().is_some() {
        return writer();
    }
    let dir = t.scratch();
    let url = format!("journal:{}?size=64KiB", dir.path("j").display());
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut acked = None;
    for _ in 0..200 {
        let mut child = t.spawn("writer", |c| {
            set_param(set_param(c, "URL", &url), "COUNT", "0")
        });
        assert_eq!(child.wait_ready(), "open");
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(rng % 3000));
        // The last sequence the writer said it appended, if it said any
        // since this run began (it says so every 100).
        while let Some(seq) = child.try_ready() {
            acked = Some(seq.parse::<u64>().expect("a sequence number"));
        }
        child.kill();
        while let Some(seq) = child.try_ready() {
            acked = Some(seq.parse::<u64>().expect("a sequence number"));
        }
        let w = JournalWriter::open(&url).expect("recover");
        let next = w.recovery().next_seq;
        if let Some(a) = acked {
            assert!(
                next > a,
                "record {a} was acknowledged; the journal ends before {next}"
            );
        }
        drop(w);
    }
    let mut r = JournalReader::open(&url, 0).expect("reader");
    let mut seq = 0;
    while let Some((s, p)) = r.try_next().expect("no broken record is returned") {
        assert_eq!((s, p), (seq, payload(seq)));
        seq += 1;
    }
    assert!(
        acked.is_some_and(|a| seq > a),
        "{seq} records, the last acknowledged {acked:?}"
    );
}

/// Bad journals are typed errors naming the segment, and a garbled record
/// is reported, never returned as data: a byte flipped in the middle, a
/// segment cut short by hand, a newer layout version.
#[test]
fn bad_journals_are_typed_errors() {
    let t = Test::start();
    let dir = t.scratch();
    let (url, file) = journal_of(&dir, 20);

    // A byte flipped in record 10's payload: records 0-9 read, then Corrupt.
    let mut r = JournalReader::open(&url, 0).expect("reader");
    let mut at = 4096u64;
    for seq in 0..10 {
        at += 16 + (payload(seq).len() as u64).div_ceil(8) * 8;
    }
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at + 16).expect("read");
    file.write_all_at(&[b[0] ^ 0xff], at + 16).expect("flip");
    for seq in 0..10 {
        assert_eq!(r.next().expect("a good record"), (seq, payload(seq)));
    }
    let err = r.next().expect_err("the garbled record");
    assert!(matches!(err.kind(), ErrorKind::Corrupt(_)), "{err}");

    // A newer layout version.
    file.write_all_at(&2u32.to_le_bytes(), 8).expect("version");
    let err = JournalReader::open(&url, 0).expect_err("a newer version");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::VersionMismatch {
                found: 2,
                expected: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(".seg"), "names the segment: {err}");

    // Cut short by hand.
    file.set_len(100).expect("truncate");
    let err = JournalReader::open(&url, 0).expect_err("a truncated segment");
    assert!(matches!(err.kind(), ErrorKind::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("too short"), "{err}");
}

/// The header page mirrors the last record for readers that follow the
/// writer closely (they take it from there, not by `pread`). A mirror
/// that does not check out (scribbled over by another process of the same
/// user, or a length past the page) is passed over for the file: every
/// record still reads whole.
#[test]
fn a_scribbled_mirror_is_passed_over() {
    let t = Test::start();
    let dir = t.scratch();
    let url = format!("journal:{}", dir.path("j").display());
    let mut w = JournalWriter::open(&url).expect("writer");
    let mut r = JournalReader::open(&url, 0).expect("reader");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.path("j").join(format!("{:020}.seg", 0)))
        .expect("the segment");
    let word = |at: u64| {
        let mut b = [0u8; 8];
        file.read_exact_at(&mut b, at).expect("read the header");
        u64::from_le_bytes(b)
    };
    let scribbles: [(u64, Vec<u8>); 3] = [
        (128 + 16, vec![0x5a; 8]),               // the payload
        (128 + 8, 77u64.to_le_bytes().to_vec()), // the sequence number
        (64, u64::MAX.to_le_bytes().to_vec()),   // the length
    ];
    let mut at = 4096;
    for seq in 0..30u64 {
        w.append(&payload(seq)).expect("append");
        // What the writer left: this record, where it is in the file, whole.
        assert_eq!(word(56), at, "the mirror is of the last record");
        let mut mirrored = vec![0u8; word(64) as usize];
        file.read_exact_at(&mut mirrored, 128)
            .expect("read the mirror");
        let mut in_file = vec![0u8; mirrored.len()];
        file.read_exact_at(&mut in_file, at)
            .expect("read the record");
        assert_eq!(mirrored, in_file);
        at += mirrored.len() as u64;
        if let Some((off, bytes)) = scribbles.get(seq as usize % 4) {
            file.write_all_at(bytes, *off).expect("scribble");
        }
        assert_eq!(r.next().expect("a good record"), (seq, payload(seq)));
    }
    assert_eq!(r.try_next().expect("nothing more"), None);
}

/// An ext4 file system in an image file, mounted on a loop device with
/// journal commits only when forced (`commit=600`), so that what reached
/// the image is what was synced; unmounted when dropped, even by a
/// failing test.
struct Disk {
    image: std::path::PathBuf,
    mount: std::path::PathBuf,
}

impl Disk {
    fn make(image: std::path::PathBuf, mount: std::path::PathBuf) -> Disk {
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(64 << 20))
            .expect("the image file");
        common::stdout_of(
            std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F"])
                .arg(&image),
        );
        Disk::mount(image, mount)
    }

    fn mount(image: std::path::PathBuf, mount: std::path::PathBuf) -> Disk {
        std::fs::create_dir_all(&mount).expect("the mount point");
        common::stdout_of(
            std::process::Command::new("mount")
                .args(["-t", "ext4", "-o", "loop,commit=600"])
                .arg(&image)
                .arg(&mount),
        );
        Disk { image, mount }
    }

    /// The image as the disk holds it this instant: what the page cache of
    /// the mounted file system had not written is not in it, as after a
    /// power cut.
    fn cut_power(&self, copy: std::path::PathBuf, mount: std::path::PathBuf) -> Disk {
        std::fs::copy(&self.image, &copy).expect("copy the image");
        Disk::mount(copy, mount)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.mount)
            .status();
    }
}

/// Power loss, simulated: the journal lives on ext4 in a loop-mounted
/// image; the writer is killed while appending and the image is copied as
/// the disk holds it (the page cache is lost, as in a power cut); the copy
/// is mounted and recovered. With `?durability=sync` every acknowledged
/// record is there, whole and in order, across segment files. The
/// control: with `none`, the same cut loses acknowledged records, so the
/// simulation does drop what was not synced.
#[test]
#[ignore = "needs root: mounts ext4 images on loop devices"]
fn power_loss_keeps_what_sync_acknowledged() {
    let t = Test::start();
    if t.child_role().is_some() {
        return writer();
    }
    let dir = t.scratch();
    for (durability, wait_for) in [("sync", 1_500u64), ("none", 20_000)] {
        let disk = Disk::make(
            dir.path(&format!("{durability}.img")),
            dir.path(&format!("{durability}.mnt")),
        );
        let url = |root: &std::path::Path| {
            format!(
                "journal:{}?size=64KiB&durability={durability}",
                root.join("j").display()
            )
        };
        let mut child = t.spawn("writer", |c| {
            set_param(
                set_param(set_param(c, "URL", &url(&disk.mount)), "COUNT", "0"),
                "EVERY",
                "1",
            )
        });
        assert_eq!(child.wait_ready(), "open");
        let mut acked = 0;
        while acked < wait_for {
            acked = child
                .wait_ready()
                .parse::<u64>()
                .expect("a sequence number");
        }
        child.kill();
        while let Some(seq) = child.try_ready() {
            acked = seq.parse::<u64>().expect("a sequence number");
        }
        let after = disk.cut_power(
            dir.path(&format!("{durability}-cut.img")),
            dir.path(&format!("{durability}-cut.mnt")),
        );
        let w = JournalWriter::open(&url(&after.mount)).expect("recover after the cut");
        let next = w.recovery().next_seq;
        drop(w);
        if durability == "none" {
            assert!(
                next <= acked,
                "nothing lost without sync: {next} records, {acked} acknowledged"
            );
            continue;
        }
        assert!(
            next > acked,
            "record {acked} was acknowledged; the journal ends before {next}"
        );
        let mut r = JournalReader::open(&url(&after.mount), 0).expect("reader");
        let mut seq = 0;
        while let Some((s, p)) = r.try_next().expect("no broken record is returned") {
            assert_eq!((s, p), (seq, payload(seq)));
            seq += 1;
        }
        assert_eq!(seq, next, "every record recovery counted reads back");
    }
}

/// A journal as a link: every link reads what is appended (from
/// `?from=`, by default from the end); the first to send becomes the
/// writer, and a link in another process that sends meanwhile is `InUse`
/// until that link is gone. A journal has no listener.
#[test]
fn links_append_and_follow() {
    let t = Test::start();
    if t.child_role().is_some() {
        let mut link = ipcx::Link::connect(&param("URL")).expect("connect");
        let err = link.send(b"from the child").expect_err("a second writer");
        assert!(matches!(err.kind(), ErrorKind::InUse { .. }), "{err}");
        ready("refused");
        assert_eq!(param("GO"), "go");
        loop {
            match link.send(b"from the child") {
                Ok(()) => break,
                Err(e) if matches!(e.kind(), ErrorKind::InUse { .. }) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("send once the writer left: {e}"),
            }
        }
        return;
    }
    let dir = t.scratch();
    let url = format!("journal:{}", dir.path("j").display());
    let err = ipcx::Listener::bind(&url).expect_err("a journal has no listener");
    assert!(matches!(err.kind(), ErrorKind::Unsupported(_)), "{err}");

    let mut writer = ipcx::Link::connect(&url).expect("connect");
    writer.send(b"before").expect("send");
    let mut follower = ipcx::Link::connect(&url).expect("connect from the end");
    let mut replay = ipcx::Link::connect(&format!("{url}?from=0")).expect("connect from 0");
    let mut child = t.spawn("second", |c| {
        set_param(set_param(c, "URL", &url), "GO", "go")
    });
    assert_eq!(child.wait_ready(), "refused");
    writer.send(b"after").expect("send");
    // A link reads from where the journal ended when it opened: its own
    // records too.
    assert_eq!(writer.recv().expect("the writer reads too"), b"before");
    assert_eq!(writer.recv().expect("the writer reads too"), b"after");
    assert_eq!(follower.recv().expect("from the end"), b"after");
    assert_eq!(follower.last_seq(), 1);
    assert_eq!(replay.recv().expect("from 0"), b"before");
    assert_eq!(replay.recv().expect("from 0"), b"after");
    drop(writer);
    assert_eq!(
        follower.recv().expect("the child's record"),
        b"from the child"
    );
    assert_eq!(follower.last_seq(), 2);
    child.finish();
}
