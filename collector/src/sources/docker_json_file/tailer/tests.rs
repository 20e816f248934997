//! Tailer tests on real files in temporary directories, doing to them what Docker does.

use super::*;
use crate::event::{EventFlags, Stream};
use crate::sources::docker_json_file::listing::unexplained;
use crate::tail::fingerprint::Fingerprint;
use crate::tail::siblings::list_siblings;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

static CLOCK: AtomicU64 = AtomicU64::new(1);

/// A json-file record; every record gets its own time, so every file its own fingerprint.
fn record(stream: &str, text: &str, newline: bool) -> String {
    let n = CLOCK.fetch_add(1, Ordering::Relaxed);
    format!(
        "{{\"log\":\"{text}{}\",\"stream\":\"{stream}\",\"time\":\"2026-11-25T13:04:22.{n:09}Z\"}}\n",
        if newline { "\\n" } else { "" }
    )
}

fn line(text: &str) -> String {
    record("stdout", text, true)
}

fn lines(range: std::ops::Range<usize>) -> String {
    range.map(|i| line(&format!("line {i}"))).collect()
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("line {i}")).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

struct Container {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    id: String,
}

impl Container {
    fn new() -> Container {
        let tmp = tempfile::tempdir().unwrap();
        let id = "c0ffee".to_string();
        let dir = tmp.path().join(&id);
        fs::create_dir(&dir).unwrap();
        Container { _tmp: tmp, dir, id }
    }

    fn live_name(&self) -> String {
        format!("{}-json.log", self.id)
    }

    fn path(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}{suffix}", self.live_name()))
    }

    fn append(&self, s: &str) {
        append_to(&self.path(""), s.as_bytes());
    }

    /// Docker's rotation: `.N` → `.N+1` …, live → `.1`, then a new empty live file; with
    /// `compress`, `.1` then becomes `.1.gz`.
    fn rotate(&self, compress: bool) {
        let mut ranks: Vec<(u32, bool)> = list_siblings(&self.dir, &self.live_name())
            .unwrap()
            .into_iter()
            .filter(|s| s.rank > 0)
            .map(|s| (s.rank, s.gz))
            .collect();
        ranks.sort();
        for (r, gz) in ranks.into_iter().rev() {
            let ext = if gz { ".gz" } else { "" };
            fs::rename(
                self.path(&format!(".{r}{ext}")),
                self.path(&format!(".{}{ext}", r + 1)),
            )
            .unwrap();
        }
        fs::rename(self.path(""), self.path(".1")).unwrap();
        if compress {
            self.compress(1);
        }
        fs::write(self.path(""), b"").unwrap();
    }

    fn compress(&self, rank: u32) {
        let plain = self.path(&format!(".{rank}"));
        let bytes = fs::read(&plain).unwrap();
        fs::write(self.path(&format!(".{rank}.gz")), gzip(&bytes)).unwrap();
        fs::remove_file(plain).unwrap();
    }

    fn start_with(
        &self,
        saved: Option<SavedPosition>,
        start_at: StartAt,
        settings: TailSettings,
    ) -> (ContainerTail, Option<ResumePoint>) {
        ContainerTail::start(StartParams {
            id: self.id.clone(),
            dir: self.dir.clone(),
            live_name: self.live_name(),
            settings,
            metrics: TailMetrics::noop(),
            saved,
            start_at,
            hold: None,
            sink: "test".into(),
        })
        .unwrap()
    }

    fn start(&self) -> ContainerTail {
        self.start_with(None, StartAt::Beginning, small()).0
    }
}

fn append_to(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

use std::path::Path;

/// Small blocks and batches, so that tests cross block and batch boundaries.
fn small() -> TailSettings {
    TailSettings {
        read_buffer_bytes: 4096,
        batch_max_events: 64,
        batch_max_bytes: 1 << 20,
        max_line_bytes: 1 << 20,
        raw_line_cap: (1 << 20) + 4096,
        partial_timeout: Duration::from_secs(5),
    }
}

fn batch(t: &mut ContainerTail) -> TailBatch {
    let b = t.next_batch(Flush::Expired, Instant::now());
    assert!(b.error.is_none(), "{:?}", b.error);
    b
}

/// Reads until caught up.
fn drain(t: &mut ContainerTail) -> Vec<Event> {
    drain_with(t, Flush::Expired, Instant::now())
}

fn drain_with(t: &mut ContainerTail, flush: Flush, now: Instant) -> Vec<Event> {
    let mut all = Vec::new();
    loop {
        let b = t.next_batch(flush, now);
        assert!(b.error.is_none(), "{:?}", b.error);
        all.extend(b.events);
        if b.idle {
            return all;
        }
    }
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.message).into_owned())
        .collect()
}

#[test]
fn reads_every_line_in_order_in_bounded_batches() {
    let c = Container::new();
    c.append(&lines(0..1000));
    let mut t = c.start();
    let mut all = Vec::new();
    loop {
        let b = batch(&mut t);
        assert!(b.events.len() <= 64);
        all.extend(b.events);
        if b.idle {
            break;
        }
    }
    assert_eq!(texts(&all), names(0..1000));
    let e = &all[0];
    assert_eq!(e.stream, Stream::Stdout);
    assert!(e.flags.is_empty());
    assert_eq!(e.container.as_ref().unwrap().id, "c0ffee");
    assert!(
        Arc::ptr_eq(
            e.container.as_ref().unwrap(),
            all[999].container.as_ref().unwrap()
        ),
        "one ContainerMeta per container"
    );
    // Nothing new: an idle batch with nothing in it.
    let b = batch(&mut t);
    assert!(b.idle && b.events.is_empty());
    // More lines arrive.
    c.append(&lines(1000..1010));
    assert_eq!(texts(&drain(&mut t)), names(1000..1010));
    // A trickle makes small batches that hold small allocations.
    c.append(&lines(1010..1011));
    let b = batch(&mut t);
    assert_eq!(b.events.len(), 1);
    assert!(b.events.capacity() <= 16, "{}", b.events.capacity());
}

#[test]
fn messages_of_a_batch_share_one_buffer() {
    let c = Container::new();
    c.append(&lines(0..10));
    let mut t = c.start();
    let b = batch(&mut t);
    let base = b.events[0].message.as_ptr() as usize;
    for (i, e) in b.events.iter().enumerate().skip(1) {
        let p = e.message.as_ptr() as usize;
        assert!(
            p > base && p < base + 4096,
            "event {i} is not in the batch buffer"
        );
    }
}

/// Reads one batch while behind: returns how many lines it took (fewer than all).
fn read_some(t: &mut ContainerTail, total: usize) -> usize {
    let first = batch(t);
    let k = first.events.len();
    assert!(k > 0 && k < total, "{k} of {total}");
    assert_eq!(texts(&first.events), names(0..k));
    k
}

#[test]
fn rename_rotation_while_reading_every_line_once_in_order() {
    let c = Container::new();
    c.append(&lines(0..100));
    let mut t = c.start();
    let k = read_some(&mut t, 100);
    c.rotate(false);
    c.append(&lines(100..200));
    assert_eq!(texts(&drain(&mut t)), names(k..200));
    // And again, with the reader caught up at the moment of rotation.
    c.rotate(false);
    c.append(&lines(200..210));
    assert_eq!(texts(&drain(&mut t)), names(200..210));
}

#[test]
fn a_batch_that_skips_the_rotation_look_still_finds_a_rotation_at_the_end_of_its_file() {
    let c = Container::new();
    c.append(&lines(0..10));
    let mut t = c.start();
    assert_eq!(texts(&drain(&mut t)), names(0..10));
    // A write to the file held: read without looking at the live path.
    c.append(&lines(10..12));
    t.skip_rotation_look();
    assert_eq!(texts(&batch(&mut t).events), names(10..12));
    // A rotation no name change reported (inotify was not watching yet): the file held has
    // nothing new, so the batch looks after all and reads the new live file.
    c.rotate(false);
    c.append(&lines(12..15));
    t.skip_rotation_look();
    assert_eq!(texts(&drain(&mut t)), names(12..15));
    // And the rewrite check reads only the first line: a rewrite in place is still found.
    truncate(&c.path(""));
    c.append(&lines(100..120));
    t.skip_rotation_look();
    assert_eq!(texts(&drain(&mut t)), names(100..120));
}

#[test]
fn rotated_files_are_read_to_their_end_even_after_docker_deletes_them() {
    let c = Container::new();
    c.append(&lines(0..100));
    let mut t = c.start();
    let k = read_some(&mut t, 100);
    c.rotate(false);
    c.append(&lines(100..150));
    // The reader takes hold of the new file on its next batch...
    let mut got = texts(&batch(&mut t).events);
    c.rotate(false);
    c.append(&lines(150..160));
    got.extend(texts(&batch(&mut t).events));
    // ...so Docker dropping both rotated files (max-file reached) loses nothing.
    fs::remove_file(c.path(".1")).unwrap();
    fs::remove_file(c.path(".2")).unwrap();
    got.extend(texts(&drain(&mut t)));
    assert_eq!(got, names(k..160));
}

#[test]
fn several_rotations_between_two_looks() {
    let c = Container::new();
    c.append(&lines(0..10));
    let mut t = c.start();
    assert_eq!(texts(&drain(&mut t)), names(0..10));
    c.append(&lines(10..20));
    c.rotate(false);
    c.append(&lines(20..30));
    c.rotate(true);
    c.append(&lines(30..40));
    c.rotate(true);
    c.append(&lines(40..50));
    assert_eq!(texts(&drain(&mut t)), names(10..50));
}

#[test]
fn compressed_rotation_while_behind() {
    let c = Container::new();
    c.append(&lines(0..100));
    let mut t = c.start();
    let k = read_some(&mut t, 100);
    // Docker renames, compresses `.1` into `.1.gz` (another inode) and removes `.1`.
    c.rotate(true);
    c.append(&lines(100..120));
    assert!(!c.path(".1").exists() && c.path(".1.gz").exists());
    // The compressed copy is recognised as the file being read: no line twice.
    assert_eq!(texts(&drain(&mut t)), names(k..120));
}

#[test]
fn a_batch_that_reads_only_from_the_page_cache_stops_at_a_compressed_file() {
    let c = Container::new();
    c.append(&lines(0..100));
    c.rotate(true);
    c.append(&lines(100..120));
    let mut t = c.start();
    // A compressed file is read through the decompressor, which may wait for the disk: a
    // batch that must not wait stops before it and says so.
    t.set_cached_only(true);
    let b = batch(&mut t);
    assert!(b.uncached && !b.idle && b.events.is_empty());
    // As the reader does: the batch after such a one is read where it may wait, then from
    // the cache again. Nothing is lost or repeated.
    let mut got = Vec::new();
    let mut uncached = true;
    for _ in 0..1000 {
        t.set_cached_only(!uncached);
        let b = batch(&mut t);
        got.extend(texts(&b.events));
        if b.idle {
            break;
        }
        uncached = b.uncached;
    }
    assert_eq!(got, names(0..120));
}

#[test]
fn startup_from_a_checkpoint_inside_a_compressed_sibling() {
    let c = Container::new();
    c.append(&lines(0..10));
    c.rotate(true); // .1.gz = 0..10
    c.append(&lines(10..20));
    // Checkpoint taken while 10..20 was the live file, after "line 14".
    let live = fs::File::open(c.path("")).unwrap();
    let md = live.metadata().unwrap();
    let fp = Fingerprint::of_plain(&live, false).unwrap().unwrap();
    let content = fs::read(c.path("")).unwrap();
    let offset = content
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(4)
        .unwrap()
        .0 as u64
        + 1;
    let saved = SavedPosition {
        file: c.live_name(),
        dev: md.dev(),
        ino: md.ino(),
        fp: fp.crc,
        fp_len: fp.len,
        offset,
        ..SavedPosition::default()
    };
    drop(live);
    c.rotate(true); // .2.gz = 0..10, .1.gz = 10..20
    c.append(&lines(20..30));
    let (mut t, commit) = c.start_with(Some(saved), StartAt::Beginning, small());
    assert!(commit.is_none());
    let got = drain(&mut t);
    assert_eq!(
        texts(&got),
        names(15..30),
        "older files skipped, newer read from 0"
    );
}

#[test]
fn startup_from_a_checkpoint_on_a_file_rotated_since() {
    let c = Container::new();
    c.append(&lines(0..10));
    let mut t = c.start();
    assert_eq!(drain(&mut t).len(), 10);
    let saved = t.resume_point().unwrap().to_saved();
    drop(t);
    c.append(&lines(10..15));
    c.rotate(false);
    c.append(&lines(15..20));
    let (mut t, _) = c.start_with(Some(saved), StartAt::Beginning, small());
    assert_eq!(texts(&drain(&mut t)), names(10..20));
}

#[test]
fn checkpointed_file_gone_reads_everything_present() {
    let c = Container::new();
    c.append(&lines(0..5));
    let saved = SavedPosition {
        file: c.live_name(),
        dev: 0,
        ino: 0,
        fp: 12345,
        fp_len: 10,
        offset: 100,
        ..SavedPosition::default()
    };
    c.rotate(false);
    c.append(&lines(5..10));
    let (mut t, _) = c.start_with(Some(saved), StartAt::Beginning, small());
    assert_eq!(texts(&drain(&mut t)), names(0..10));
}

#[test]
fn checkpoint_offsets_that_cannot_be_right_are_not_trusted() {
    let c = Container::new();
    c.append(&lines(0..5));
    let mut t = c.start();
    drain(&mut t);
    let mut saved = t.resume_point().unwrap().to_saved();
    drop(t);
    // Past the end of the file.
    saved.offset += 1000;
    let (mut t, _) = c.start_with(Some(saved.clone()), StartAt::Beginning, small());
    assert_eq!(texts(&drain(&mut t)), names(0..5));
    // Not at a line start.
    saved.offset = 7;
    let (mut t, _) = c.start_with(Some(saved), StartAt::Beginning, small());
    assert_eq!(texts(&drain(&mut t)), names(0..5));
}

#[test]
fn reused_inode_with_other_content_does_not_match_the_checkpoint() {
    let c = Container::new();
    c.append(&lines(0..5));
    let mut t = c.start();
    drain(&mut t);
    let saved = t.resume_point().unwrap().to_saved();
    drop(t);
    // Same path, same inode, new content of the same length: the checkpoint's fingerprint
    // no longer matches, so the file is read from its start.
    truncate(&c.path(""));
    c.append(&lines(100..105));
    assert_eq!(
        fs::metadata(c.path("")).unwrap().ino(),
        saved.ino,
        "same inode"
    );
    let (mut t, _) = c.start_with(Some(saved), StartAt::Beginning, small());
    assert_eq!(texts(&drain(&mut t)), names(100..105));
}

#[test]
fn read_from_end_starts_after_the_last_complete_line_and_checkpoints_it() {
    let c = Container::new();
    c.append(&lines(0..3));
    c.rotate(false);
    c.append(&lines(3..10));
    c.append("{\"log\":\"half");
    let (mut t, commit) = c.start_with(None, StartAt::End, small());
    let commit = commit.expect("the start position is checkpointed at once");
    assert_eq!(
        commit.offset,
        fs::metadata(c.path("")).unwrap().len() - "{\"log\":\"half".len() as u64
    );
    assert!(drain(&mut t).is_empty());
    c.append("\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T13:04:22Z\"}\n");
    c.append(&lines(10..12));
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["half", "line 10", "line 11"]);
}

#[test]
fn truncation_in_place_restarts_at_zero() {
    let c = Container::new();
    c.append(&lines(0..50));
    let mut t = c.start();
    assert_eq!(drain(&mut t).len(), 50);
    // copytruncate / max-file=1: the same inode, emptied, then written again.
    truncate(&c.path(""));
    c.append(&lines(50..52));
    assert_eq!(texts(&drain(&mut t)), names(50..52));
    assert_eq!(
        t.losses(),
        LossTotals::default(),
        "caught up when cut: nothing it had seen was lost"
    );
    // Rewritten past our offset before we looked: caught by the first line's fingerprint.
    truncate(&c.path(""));
    c.append(&lines(100..160));
    assert_eq!(texts(&drain(&mut t)), names(100..160));
}

#[test]
fn nul_runs_are_skipped_and_the_data_after_them_is_read() {
    let c = Container::new();
    let mut bytes = line("before").into_bytes();
    bytes.extend_from_slice(b"{\"log\":\"torn");
    bytes.extend_from_slice(&[0u8; 300]);
    bytes.extend_from_slice(line("after").as_bytes());
    bytes.extend_from_slice(&[0u8; 50]);
    bytes.push(b'\n');
    bytes.extend_from_slice(&[0u8; 20]);
    bytes.extend_from_slice(line("last").as_bytes());
    append_to(&c.path(""), &bytes);
    let mut t = c.start();
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["before", "{\"log\":\"torn", "after", "last"]);
    assert!(got[1].flags.contains(EventFlags::MALFORMED));
    assert!(got[2].flags.is_empty() && got[3].flags.is_empty());
    assert_eq!(t.counts_total.skipped, 370, "every NUL, nothing else");
}

#[test]
fn malformed_lines_flow_on_raw_and_flagged() {
    let c = Container::new();
    c.append(&line("one"));
    c.append("this is not json\n");
    c.append(&line("two"));
    c.append(
        "{\"log\":\"bad escape \\q\",\"stream\":\"stdout\",\"time\":\"2026-11-25T13:04:22Z\"}\n",
    );
    c.append(&line("three"));
    let mut t = c.start();
    let before = crate::time::now_nanos();
    let got = drain(&mut t);
    assert_eq!(
        texts(&got),
        [
            "one",
            "this is not json",
            "two",
            "{\"log\":\"bad escape \\q\",\"stream\":\"stdout\",\"time\":\"2026-11-25T13:04:22Z\"}",
            "three"
        ]
    );
    for bad in [&got[1], &got[3]] {
        assert!(bad.flags.contains(EventFlags::MALFORMED));
        assert_eq!(bad.stream, Stream::Unknown);
        assert!(bad.time_ns >= before, "stamped with the read time");
    }
    assert_eq!(t.counts_total.malformed, 2);
}

#[test]
fn an_incomplete_last_line_is_waited_for() {
    let c = Container::new();
    let whole = line("slow");
    let (a, b) = whole.split_at(20);
    c.append(&line("first"));
    c.append(a);
    let mut t = c.start();
    assert_eq!(texts(&drain(&mut t)), ["first"]);
    let r = t.resume_point().unwrap();
    assert_eq!(
        r.offset as usize,
        line("first").len(),
        "not past the incomplete line"
    );
    c.append(b);
    assert_eq!(texts(&drain(&mut t)), ["slow"]);
}

#[test]
fn an_endless_line_is_cut_and_memory_stays_bounded() {
    let c = Container::new();
    let settings = TailSettings {
        max_line_bytes: 100,
        raw_line_cap: 10_000,
        ..small()
    };
    let junk = vec![b'x'; 50_000];
    append_to(&c.path(""), &junk);
    let (mut t, _) = c.start_with(None, StartAt::Beginning, settings);
    let got = drain(&mut t);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message.len(), 100);
    assert!(got[0].flags.contains(EventFlags::MALFORMED));
    assert!(got[0].flags.contains(EventFlags::TRUNCATED));
    assert!(
        t.rb.buf.len() <= 10_000 + 4096,
        "buffer grew to {}",
        t.rb.buf.len()
    );
    append_to(&c.path(""), &junk);
    c.append("\n");
    c.append(&line("next"));
    assert_eq!(texts(&drain(&mut t)), ["next"]);
    assert!(t.rb.buf.len() <= 10_000 + 4096);
}

#[test]
fn partial_records_are_joined_with_the_first_time() {
    let c = Container::new();
    let first = record("stdout", "aaa", false);
    c.append(&first);
    c.append(&record("stderr", "err between", true));
    c.append(&record("stdout", "bbb", false));
    c.append(&record("stdout", "ccc", true));
    c.append(&line("after"));
    let mut t = c.start();
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["err between", "aaabbbccc", "after"]);
    let first_time = first.split("\"time\":\"").nth(1).unwrap();
    assert_eq!(
        got[1].time_ns,
        crate::time::parse_rfc3339_nanos(&first_time.as_bytes()[..first_time.len() - 3]).unwrap()
    );
    assert!(got[1].flags.is_empty());
    assert_eq!(got[0].stream, Stream::Stderr);
}

#[test]
fn resume_point_stays_at_a_pending_partial_line() {
    let c = Container::new();
    c.append(&line("done"));
    let start_of_group = line("done").len() as u64;
    c.append(&record("stdout", "part", false));
    c.append(&record("stderr", "other stream", true));
    let mut t = c.start();
    let b = batch(&mut t);
    assert_eq!(texts(&b.events), ["done", "other stream"]);
    assert_eq!(b.resume.unwrap().offset, start_of_group);
    c.append(&record("stdout", "ial", true));
    let b = batch(&mut t);
    assert_eq!(texts(&b.events), ["partial"]);
    assert_eq!(
        b.resume.unwrap().offset,
        fs::metadata(c.path("")).unwrap().len()
    );
}

#[test]
fn a_partial_line_straddling_a_rotation_is_joined() {
    let c = Container::new();
    c.append(&line("before"));
    c.append(&record("stdout", "head-", false));
    let mut t = c.start();
    let b = batch(&mut t);
    assert_eq!(texts(&b.events), ["before"]);
    let pending = b.resume.unwrap();
    c.rotate(false);
    c.append(&record("stdout", "tail", true));
    let b = batch(&mut t);
    assert_eq!(texts(&b.events), ["head-tail"]);
    // While pending, the resume point was in the old file.
    assert_eq!(pending.file.name, c.live_name());
    assert!(b.resume.unwrap().file.seq > pending.file.seq);
}

#[test]
fn a_partial_line_waiting_too_long_is_shipped_flagged() {
    let c = Container::new();
    c.append(&record("stdout", "last words", false));
    let mut t = c.start();
    let t0 = Instant::now();
    let b = t.next_batch(Flush::Expired, t0);
    assert!(b.events.is_empty());
    let deadline = b
        .partial_deadline
        .expect("a pending partial line has a deadline");
    let got = drain_with(&mut t, Flush::Expired, deadline);
    assert_eq!(texts(&got), ["last words"]);
    assert!(got[0].flags.contains(EventFlags::PARTIAL));
    assert_eq!(
        t.resume_point().unwrap().offset,
        fs::metadata(c.path("")).unwrap().len()
    );
}

#[test]
fn joined_lines_are_capped_flagged_and_keep_their_head() {
    let c = Container::new();
    let settings = TailSettings {
        max_line_bytes: 10,
        ..small()
    };
    c.append(&record("stdout", "0123456", false));
    c.append(&record("stdout", "789abcdef", false));
    c.append(&record("stdout", "ghij", true));
    c.append(&line("short"));
    c.append(&line("a complete line that is too long"));
    let (mut t, _) = c.start_with(None, StartAt::Beginning, settings);
    let got = drain(&mut t);
    assert_eq!(texts(&got), ["0123456789", "short", "a complete"]);
    assert!(got[0].flags.contains(EventFlags::TRUNCATED));
    assert!(got[2].flags.contains(EventFlags::TRUNCATED));
    assert_eq!(t.counts_total.truncated, 2);
}

#[test]
fn flush_partials_and_final_flush() {
    let c = Container::new();
    c.append(&record("stdout", "pending", false));
    let mut t = c.start();
    assert!(drain(&mut t).is_empty());
    let got = drain_with(&mut t, Flush::Partials, Instant::now());
    assert_eq!(texts(&got), ["pending"]);
    assert!(got[0].flags.contains(EventFlags::PARTIAL));
    // An unterminated raw line is shipped only when the container is gone.
    c.append("{\"log\":\"cut");
    assert!(drain_with(&mut t, Flush::Partials, Instant::now()).is_empty());
    let got = drain_with(&mut t, Flush::Final, Instant::now());
    assert_eq!(texts(&got), ["{\"log\":\"cut"]);
    assert!(got[0].flags.contains(EventFlags::MALFORMED));
}

#[test]
fn a_container_without_files_yet_picks_them_up() {
    let c = Container::new();
    let mut t = c.start();
    assert!(t.resume_point().is_none());
    assert!(drain(&mut t).is_empty());
    c.append(&lines(0..3));
    assert_eq!(texts(&drain(&mut t)), names(0..3));
}

#[test]
fn rotated_siblings_are_read_oldest_first_on_startup() {
    let c = Container::new();
    c.append(&lines(0..5));
    c.rotate(true);
    c.append(&lines(5..10));
    c.rotate(false);
    c.append(&lines(10..15));
    c.rotate(true);
    c.append(&lines(15..20));
    let mut t = c.start();
    assert_eq!(texts(&drain(&mut t)), names(0..20));
}

#[test]
fn a_file_whose_first_line_is_long_reads_normally() {
    let c = Container::new();
    let long = "y".repeat(10_000);
    c.append(&line(&long));
    c.append(&line("short"));
    let mut t = c.start();
    let got = drain(&mut t);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].message.len(), 10_000);
    assert_eq!(t.resume_point().unwrap().file.fp.len as usize, 4096);
}

#[test]
fn vanished_files_count_as_lost_only_when_nothing_explains_them() {
    let sib = |name: &str, ino: u64, gz: bool| Sibling {
        name: name.into(),
        rank: 1,
        gz,
        size: 1000,
        ino,
    };
    // Renamed (.1.gz → .2.gz): its inode is still there.
    assert!(unexplained(vec![sib("x.1.gz", 7, true)], &[(7, true), (8, false)]).is_empty());
    // Compressed (.1 → .1.gz) in a log with .gz siblings.
    assert!(unexplained(vec![sib("x.1", 5, false)], &[(9, true), (8, false)]).is_empty());
    // Deleted: the oldest .gz, or a plain file in a log without compression.
    assert_eq!(
        unexplained(vec![sib("x.2.gz", 4, true)], &[(9, true), (8, false)]).len(),
        1
    );
    assert_eq!(
        unexplained(vec![sib("x.2", 4, false)], &[(3, false), (8, false)]).len(),
        1
    );
}

fn truncate(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

#[test]
fn truncation_while_behind_counts_exactly_the_bytes_seen_and_not_read() {
    let c = Container::new();
    c.append(&lines(0..200)); // ≈16 KB; the reader takes one 4 KB block per batch
    let mut t = c.start();
    let first = batch(&mut t);
    assert!(!first.events.is_empty() && !first.idle);
    // More is written; the reader looks again (one more batch) and is still behind.
    c.append(&lines(200..300));
    let second = batch(&mut t);
    assert!(!second.idle);
    let got = first.events.len() + second.events.len();
    let consumed = second.resume.unwrap().offset;
    let before = fs::read(c.path("")).unwrap();
    // copytruncate: the file is emptied in place and written again.
    truncate(&c.path(""));
    c.append(&lines(1000..1005));
    assert_eq!(texts(&drain(&mut t)), names(1000..1005));
    let unread = &before[consumed as usize..];
    assert_eq!(
        unread.iter().filter(|&&b| b == b'\n').count(),
        300 - got,
        "the bytes past the position are the lines the sink never got"
    );
    let lost = t.losses();
    assert_eq!(lost.bytes(LossReason::Truncated), unread.len() as u64);
    assert_eq!(lost.gaps(LossReason::Truncated), 1);
    assert_eq!(lost.bytes(LossReason::RotatedAway), 0);
}

/// Docker writing while logwharf is stopped: lines from `from` until the live file reaches
/// `max_size` (Docker checks before each write); returns the next line number.
fn write_until_full(c: &Container, from: usize, max_size: u64) -> usize {
    let mut i = from;
    while fs::metadata(c.path("")).map_or(0, |m| m.len()) < max_size {
        c.append(&line(&format!("line {i}")));
        i += 1;
    }
    i
}

/// Docker's rotation with `max-file=2`: `.1` deleted, live → `.1`, a new live file.
fn rotate_keeping_two(c: &Container) {
    let _ = fs::remove_file(c.path(".1"));
    c.rotate(false);
}

#[test]
fn files_docker_deleted_while_stopped_are_counted_once_from_the_checkpoint() {
    let c = Container::new();
    fs::write(
        c.dir.join("hostconfig.json"),
        r#"{"LogConfig":{"Type":"json-file","Config":{"max-size":"3k","max-file":"2"}}}"#,
    )
    .unwrap();
    c.append(&lines(0..10));
    let mut t = c.start();
    assert_eq!(drain(&mut t).len(), 10);
    let mut saved = t.resume_point().unwrap().to_saved();
    assert!(
        saved.time_ns.is_some(),
        "the last line's time is checkpointed"
    );
    // What the hold records into the checkpoint: the live file's size as last seen.
    saved.size = Some(fs::metadata(c.path("")).unwrap().len());
    let offset = saved.offset;
    drop(t);
    // logwharf is stopped; Docker fills the checkpointed file, rotates it, fills the next
    // one and rotates again: the checkpointed file is deleted.
    let a = write_until_full(&c, 10, 3_000);
    let x_final = fs::metadata(c.path("")).unwrap().len();
    rotate_keeping_two(&c);
    let b = write_until_full(&c, a, 3_000);
    rotate_keeping_two(&c);
    c.append(&lines(b..b + 5));

    let (mut t, commit) = c.start_with(Some(saved), StartAt::Beginning, small());
    let lost = t.losses();
    assert_eq!(lost.gaps(LossReason::DeletedWhileStopped), 1);
    let known = lost.bytes(LossReason::DeletedWhileStopped);
    assert_eq!(
        known,
        3_000 - offset,
        "the file reached max-size before Docker rotated it"
    );
    let record = line("line 99").len() as u64;
    assert!(
        x_final - offset >= known && x_final - offset - known < record,
        "short of the real loss ({}) by less than the record Docker's rotation overshot by",
        x_final - offset
    );
    assert_eq!(texts(&drain(&mut t)), names(a..b + 5), "the rest, in order");
    // Counted once: the checkpoint moved to the start of the oldest file present.
    let commit = commit.expect("checkpointed at once");
    assert_eq!(commit.offset, 0);
    let oldest = OpenFile::open(
        &c.dir,
        &list_siblings(&c.dir, &c.live_name()).unwrap()[0],
        &metrics::Gauge::noop(),
    )
    .unwrap();
    assert_eq!(Some(commit.file.fp), oldest.fp);
    let (mut again, _) = c.start_with(Some(commit.to_saved()), StartAt::Beginning, small());
    assert_eq!(again.losses(), LossTotals::default());
    assert_eq!(texts(&drain(&mut again)), names(a..b + 5));
}

#[test]
fn without_a_checkpoint_the_first_files_start_is_checkpointed_once_it_has_a_line() {
    let c = Container::new();
    c.append("");
    let mut t = c.start();
    let b = batch(&mut t);
    assert!(b.start.is_none(), "no line yet: no identity");
    c.append(&lines(0..3));
    let b = batch(&mut t);
    let start = b.start.expect("the start of the first file");
    assert_eq!(start.offset, 0);
    assert_eq!(
        Some(start.file.fp),
        Fingerprint::of_plain(&fs::File::open(c.path("")).unwrap(), false).unwrap()
    );
    assert_eq!(texts(&b.events), names(0..3));
    c.append(&lines(3..4));
    assert!(batch(&mut t).start.is_none(), "once");
    // With a checkpoint, reading starts there: nothing to checkpoint at once.
    let (mut t, commit) = c.start_with(Some(start.to_saved()), StartAt::Beginning, small());
    assert!(commit.is_none());
    assert!(batch(&mut t).start.is_none());
}
