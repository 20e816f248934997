//! The disk buffer end to end inside the crate: write through [`DiskWriter`], read through the
//! reader task into a sink queue, settle, reopen.

use super::*;
use crate::event::{Batch, Event, Stream};
use bytes::Bytes;
use logwharf_config::{ByteSize, Fsync, WhenFull};
use std::sync::Arc;
use std::time::Duration;

fn config(max_size: u64, fsync: Fsync) -> BufferConfig {
    BufferConfig {
        kind: logwharf_config::BufferType::Disk,
        max_size: ByteSize(max_size),
        fsync,
        ..Default::default()
    }
}

fn batch(from: u32, n: u32, size: usize) -> Batch {
    Batch {
        source: "src".into(),
        events: (from..from + n)
            .map(|i| {
                let mut m = format!("{i:08}").into_bytes();
                m.resize(size.max(8), b'.');
                Event::new(i as i64, Stream::Stdout, Bytes::from(m))
            })
            .collect(),
    }
}

fn number(e: &Event) -> u32 {
    std::str::from_utf8(&e.message[..8])
        .unwrap()
        .parse()
        .unwrap()
}

struct Open {
    buf: DiskBuffer,
    w: DiskWriter,
    rx: mpsc::UnboundedReceiver<SinkBatch>,
    shutdown: Shutdown,
}

fn open(dir: &Path, cfg: &BufferConfig) -> Open {
    let (mut buf, w) = DiskBuffer::open("t", dir, cfg).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let shutdown = Shutdown::new();
    buf.start_reader(tx, shutdown.clone());
    Open {
        buf,
        w,
        rx,
        shutdown,
    }
}

impl Open {
    async fn write(&self, b: Batch) {
        match self
            .w
            .write_and_wait(&Arc::new(b), WhenFull::Block)
            .await
            .unwrap()
        {
            WriteOutcome::Written => {}
            WriteOutcome::Full => panic!("full"),
        }
    }

    async fn recv(&mut self) -> SinkBatch {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a batch within 10 s")
            .expect("the reader is running")
    }

    async fn close(self) {
        self.shutdown.trigger();
        drop(self.w);
        drop(self.rx);
        self.buf.close().await;
    }
}

fn segments(dir: &Path) -> Vec<u64> {
    segment::list(dir).unwrap()
}

#[tokio::test]
async fn what_is_written_is_read_back_in_order_and_settled_records_are_not_read_again() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(64 << 20, Fsync::Batch);
    let mut o = open(d.path(), &cfg);
    for i in 0..10 {
        o.write(batch(i * 10, 10, 20)).await;
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        let sb = o.recv().await;
        got.extend(sb.batch.events.iter().map(number));
        sb.ack.delivered();
    }
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    // Read, not settled: sent again after the restart.
    let held = o.recv().await;
    assert_eq!(number(&held.batch.events[0]), 50);
    drop(held);
    o.close().await;

    // Restart with a partly delivered segment: the rest comes, from 50.
    let mut o = open(d.path(), &cfg);
    let mut got = Vec::new();
    for _ in 0..5 {
        let sb = o.recv().await;
        got.extend(sb.batch.events.iter().map(number));
        sb.ack.delivered();
    }
    assert_eq!(got, (50..100).collect::<Vec<_>>());
    o.close().await;

    // Everything delivered: nothing is left, and the old segment is gone.
    let mut o = open(d.path(), &cfg);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), o.rx.recv())
            .await
            .is_err(),
        "nothing left to read"
    );
    assert_eq!(segments(d.path()).len(), 1, "only the new active segment");
    o.close().await;
}

#[tokio::test]
async fn segments_roll_over_and_are_deleted_once_delivered_and_full_blocks() {
    let d = tempfile::tempdir().unwrap();
    // 8 MiB: 1 MiB segments.
    let cfg = config(8 << 20, Fsync::Every(Duration::from_millis(20)));
    let mut o = open(d.path(), &cfg);
    // 6 MiB in 64 KiB batches.
    for i in 0..96 {
        o.write(batch(i, 1, 64 << 10)).await;
    }
    assert!(segments(d.path()).len() >= 6, "{:?}", segments(d.path()));
    // Over max_size: the writer waits until delivered segments are deleted.
    let w = o.w.clone();
    let more = tokio::spawn(async move {
        for i in 96..160 {
            w.write_and_wait(&Arc::new(batch(i, 1, 64 << 10)), WhenFull::Block)
                .await
                .unwrap();
        }
    });
    let mut seen = 0;
    while seen < 160 {
        let sb = o.recv().await;
        assert_eq!(number(&sb.batch.events[0]), seen);
        sb.ack.delivered();
        seen += 1;
    }
    more.await.unwrap();
    // The tick deletes delivered segments and rolls a delivered active one.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while segments(d.path()).len() > 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(segments(d.path()).len() <= 2, "{:?}", segments(d.path()));
    o.close().await;
}

#[tokio::test]
async fn drop_newest_refuses_when_full() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, Fsync::Batch);
    let (buf, w) = DiskBuffer::open("t", d.path(), &cfg).unwrap();
    let mut full = 0;
    for i in 0..40 {
        if let WriteOutcome::Full = w
            .write_and_wait(&Arc::new(batch(i, 1, 64 << 10)), WhenFull::DropNewest)
            .await
            .unwrap()
        {
            full += 1;
        }
    }
    assert!(full > 20, "{full} of 40 refused");
    drop(w);
    buf.close().await;
}

/// Cuts the last `n` bytes of the newest non-empty segment.
fn cut_tail(dir: &Path, n: u64) -> PathBuf {
    let p = segment::list(dir)
        .unwrap()
        .into_iter()
        .map(|id| segment::path(dir, id))
        .rfind(|p| std::fs::metadata(p).unwrap().len() > 8)
        .unwrap();
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - n)
        .unwrap();
    p
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_damage_in_the_middle_is_skipped_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(64 << 20, Fsync::Batch);
    let o = open(d.path(), &cfg);
    for i in 0..10 {
        o.write(batch(i * 10, 10, 100)).await;
    }
    o.close().await;
    // Flip bytes in the middle of record 3 (each record: 10 events of ~100 bytes), and tear
    // the last one.
    let seg = cut_tail(d.path(), 7);
    let mut bytes = std::fs::read(&seg).unwrap();
    let rec = (bytes.len() - 8 + 7) / 10;
    bytes[8 + rec * 3 + rec / 2] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();

    let problems = check(d.path(), false);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].what.starts_with("damaged record"),
        "{problems:?}"
    );
    assert!(problems[1].what.starts_with("torn tail"), "{problems:?}");

    let mut o = open(d.path(), &cfg);
    let mut got = Vec::new();
    for _ in 0..8 {
        let sb = o.recv().await;
        got.extend(sb.batch.events.iter().map(number));
        sb.ack.delivered();
    }
    let want: Vec<u32> = (0..90).filter(|n| !(30..40).contains(n)).collect();
    assert_eq!(got, want, "all but the damaged and the torn record");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), o.rx.recv())
            .await
            .is_err()
    );
    o.close().await;
}

#[test]
fn check_repair_fixes_what_it_finds() {
    let d = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let o = open(d.path(), &config(64 << 20, Fsync::Batch));
        for i in 0..10 {
            o.write(batch(i * 10, 10, 100)).await;
        }
        o.close().await;
    });
    let seg = cut_tail(d.path(), 3);
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();
    std::fs::write(d.path().join("ack"), b"junk").unwrap();
    let found = check(d.path(), true);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found.iter().all(|p| p.repaired));
    assert_eq!(check(d.path(), false), vec![]);
    // The 8 whole records are left.
    let mut s = segment::Scanner::open(&seg, 0, None).unwrap();
    let mut n = 0;
    while let Some(i) = s.next_item().unwrap() {
        assert!(matches!(i, segment::Item::Record { .. }));
        n += 1;
    }
    assert_eq!(n, 8);
}

#[test]
fn sink_names_make_safe_directory_names() {
    let d = Path::new("/data");
    assert_eq!(dir_for(d, "central"), Path::new("/data/buffers/central"));
    assert_eq!(
        dir_for(d, "../x/y"),
        Path::new("/data/buffers/%2E%2E%2Fx%2Fy")
    );
}

#[tokio::test]
async fn a_reader_that_keeps_up_takes_records_from_memory_and_one_behind_reads_the_files() {
    let d = tempfile::tempdir().unwrap();
    let mut o = open(
        d.path(),
        &config(64 << 20, Fsync::Every(Duration::from_millis(20))),
    );
    let mut seen = 0;
    // Keeping up: each record is read as soon as it is written.
    for i in 0..20 {
        o.write(batch(i, 1, 1000)).await;
        let sb = o.recv().await;
        assert_eq!(number(&sb.batch.events[0]), seen);
        sb.ack.delivered();
        seen += 1;
    }
    // Behind by more than the cache holds: the oldest come from the files, then the cache.
    let n = (hot::HOT_BYTES / (64 << 10)) as u32 * 2;
    for i in 20..20 + n {
        o.write(batch(i, 1, 64 << 10)).await;
    }
    while seen < 20 + n {
        let sb = o.recv().await;
        assert_eq!(number(&sb.batch.events[0]), seen, "in order, once each");
        sb.ack.delivered();
        seen += 1;
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), o.rx.recv())
            .await
            .is_err(),
        "nothing twice"
    );
    o.close().await;
}
