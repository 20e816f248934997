//! The file mode against a real temporary `docker.log`, doing to it what logrotate does
//! (rename and create, copytruncate) and what a restart finds (an old checkpoint, a reused
//! inode), with checkpoints that move on acknowledgement. Tests wait for events, never for
//! time.

use super::follow::{Follower, Step};
use super::*;
use crate::checkpoint::CheckpointStore;
use crate::event::Event;
use crate::sink::{SinkBatch, SinkInput};
use crate::sources::docker_daemon::{DaemonLogMode, DockerDaemon};
use crate::sources::testing::{self, Running};
use logwharf_config::{DurationValue, StartPosition};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Generous: the condition is what is waited for; this only bounds a hung test.
const WITHIN: Duration = Duration::from_secs(60);

struct LogDir {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    data: PathBuf,
}

impl LogDir {
    fn new() -> LogDir {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        fs::create_dir(&dir).unwrap();
        LogDir {
            data: tmp.path().join("data"),
            dir,
            _tmp: tmp,
        }
    }

    fn path(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("docker.log{suffix}"))
    }

    /// dockerd's lines `range` (each with its own time, so each file its own first line)
    /// appended to `docker.log{suffix}`.
    fn write(&self, suffix: &str, range: std::ops::Range<usize>) {
        let s: String = range
            .map(|i| format!("time=\"2026-11-25T13:04:22.{i:09}Z\" level=info msg=\"line {i}\"\n"))
            .collect();
        self.append(suffix, s.as_bytes());
    }

    fn append(&self, suffix: &str, bytes: &[u8]) {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.path(suffix))
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    /// logrotate's `copytruncate`: copy, then cut the file in place (same inode).
    fn copytruncate(&self) {
        fs::copy(self.path(""), self.path(".1")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(self.path(""))
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    fn config(&self) -> DockerDaemonConfig {
        DockerDaemonConfig {
            mode: DaemonLogMode::File,
            path: self.path(""),
            poll_interval: DurationValue::from_millis(20),
            ..DockerDaemonConfig::default()
        }
    }

    fn store(&self) -> Arc<CheckpointStore> {
        Arc::new(CheckpointStore::open(&self.data).unwrap())
    }
}

/// The source (in file mode) running against `config`, into a test sink buffering
/// `capacity` events.
fn start(
    config: DockerDaemonConfig,
    store: Arc<CheckpointStore>,
    once: bool,
    capacity: u32,
) -> Running {
    let src = Box::new(DockerDaemon::new(config).unwrap());
    testing::run("daemon", src, store, capacity, once)
}

/// The `msg` field of each event.
fn msgs(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e.fields.as_ref().unwrap()["msg"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn lines(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("line {i}")).collect()
}

fn deliver(b: SinkBatch) -> Vec<Event> {
    let (batch, ack) = b.into_parts();
    ack.delivered();
    batch.events.clone()
}

/// Receives and acknowledges batches until `n` events arrived.
async fn receive(input: &mut SinkInput, n: usize) -> Vec<Event> {
    let mut got = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(WITHIN, input.recv()).await {
            Ok(Some(b)) => got.extend(deliver(b)),
            Ok(None) => panic!("source stopped after {} of {n} events", got.len()),
            Err(_) => panic!("only {} of {n} events: {:?}", got.len(), msgs(&got)),
        }
    }
    got
}

/// Everything a `--once` run sends, acknowledged.
async fn once(d: &LogDir, store: Arc<CheckpointStore>) -> Vec<Event> {
    let mut run = start(d.config(), store, true, 1 << 20);
    let mut events = Vec::new();
    while let Some(b) = tokio::time::timeout(WITHIN, run.input.recv())
        .await
        .expect("--once finishes")
    {
        events.extend(deliver(b));
    }
    run.task.await.unwrap().unwrap();
    events
}

fn saved(store: &CheckpointStore) -> DaemonCheckpoint {
    DaemonCheckpoint::from_json(&store.get("daemon/file").expect("a checkpoint")).unwrap()
}

/// Waits until the checkpoint says `offset`.
async fn checkpoint_reaches(store: &CheckpointStore, offset: u64) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while store
        .get("daemon/file")
        .and_then(|v| DaemonCheckpoint::from_json(&v))
        .map(|c| c.offset)
        != Some(offset)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "checkpoint never reached {offset}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn once_parses_logfmt_and_a_second_run_resumes_at_the_checkpoint() {
    let d = LogDir::new();
    d.write("", 0..3);
    let store = d.store();
    let events = once(&d, store.clone()).await;
    assert_eq!(msgs(&events), lines(0..3));
    let e = &events[1];
    assert_eq!(
        &e.message[..],
        b"time=\"2026-11-25T13:04:22.000000001Z\" level=info msg=\"line 1\""
    );
    assert_eq!(e.fields.as_ref().unwrap()["level"], "info");
    assert_eq!(e.time_ns % 1_000_000_000, 1);
    let md = fs::metadata(d.path("")).unwrap();
    let cp = saved(&store);
    assert_eq!((cp.dev, cp.ino, cp.offset), (md.dev(), md.ino(), md.len()));
    assert!(cp.fingerprint().is_some(), "{cp:?}");
    d.write("", 3..5);
    assert_eq!(msgs(&once(&d, store.clone()).await), lines(3..5));
    assert!(once(&d, store).await.is_empty());
}

#[tokio::test]
async fn a_checkpoint_without_a_fingerprint_is_honoured() {
    let d = LogDir::new();
    d.write("", 0..3);
    let md = fs::metadata(d.path("")).unwrap();
    let first_line = fs::read(d.path(""))
        .unwrap()
        .iter()
        .position(|&b| b == b'\n')
        .unwrap();
    let store = d.store();
    // As the reader before fingerprints wrote it.
    store.set(
        "daemon/file",
        serde_json::json!({"dev": md.dev(), "ino": md.ino(), "offset": first_line + 1}),
    );
    assert_eq!(msgs(&once(&d, store.clone()).await), lines(1..3));
    // From then on with the fingerprint.
    assert!(saved(&store).fingerprint().is_some());
}

#[tokio::test]
async fn a_reused_inode_with_other_content_is_read_from_its_start() {
    let d = LogDir::new();
    d.write("", 0..3);
    let store = d.store();
    assert_eq!(once(&d, store.clone()).await.len(), 3);
    let ino = fs::metadata(d.path("")).unwrap().ino();
    // While logwharf is not running: the same inode now holds another log, longer than
    // the checkpointed offset (what an inode reused by a new file looks like to the old
    // reader, which would have resumed in the middle of it).
    fs::write(d.path(""), b"").unwrap();
    d.write("", 100..110);
    assert_eq!(fs::metadata(d.path("")).unwrap().ino(), ino);
    assert_eq!(msgs(&once(&d, store).await), lines(100..110));
}

/// Lines in the log before [`behind`]'s reader starts.
const N: usize = 10_000;

/// A reader far from the end of the log file, which it holds open: [`N`] lines, more than a
/// few reads' worth (256 KiB each), into a sink buffer smaller than a batch, of which only
/// the first batch was received.
async fn behind(d: &LogDir, store: Arc<CheckpointStore>) -> (Running, Vec<Event>) {
    d.write("", 0..N);
    let mut run = start(d.config(), store, false, 8);
    let got = receive(&mut run.input, 1).await;
    (run, got)
}

#[tokio::test]
async fn rotation_by_rename_while_behind_loses_nothing() {
    let d = LogDir::new();
    let store = d.store();
    let (mut run, mut got) = behind(&d, store.clone()).await;
    // logrotate `create`, twice: the writer appends to the renamed file before reopening.
    fs::rename(d.path(""), d.path(".1")).unwrap();
    d.write(".1", N..N + 10);
    d.write("", N + 10..N + 20);
    fs::rename(d.path(".1"), d.path(".2")).unwrap();
    fs::rename(d.path(""), d.path(".1")).unwrap();
    d.write("", N + 20..N + 30);
    got.extend(receive(&mut run.input, N + 30 - got.len()).await);
    assert_eq!(msgs(&got), lines(0..N + 30));
    // And on, in the new file, with the checkpoint in it.
    d.write("", N + 30..N + 32);
    assert_eq!(
        msgs(&receive(&mut run.input, 2).await),
        lines(N + 30..N + 32)
    );
    let md = fs::metadata(d.path("")).unwrap();
    checkpoint_reaches(&store, md.len()).await;
    assert_eq!(saved(&store).ino, md.ino());
    run.stop().await;
}

#[tokio::test]
async fn a_restart_after_rotations_resumes_in_the_rotated_file() {
    let d = LogDir::new();
    d.write("", 0..3);
    let store = d.store();
    assert_eq!(msgs(&once(&d, store.clone()).await), lines(0..3));
    // While logwharf is not running: more lines, two rotations (one compressed away is
    // not needed: plain `.N` siblings), lines in the new file.
    d.write("", 3..5);
    fs::rename(d.path(""), d.path(".1")).unwrap();
    d.write("", 5..7);
    fs::rename(d.path(".1"), d.path(".2")).unwrap();
    fs::rename(d.path(""), d.path(".1")).unwrap();
    d.write("", 7..9);
    assert_eq!(msgs(&once(&d, store).await), lines(3..9));
}

#[tokio::test]
async fn copytruncate_is_detected_and_read_from_the_start() {
    let d = LogDir::new();
    d.write("", 0..4);
    let store = d.store();
    let mut run = start(d.config(), store.clone(), false, 1 << 20);
    assert_eq!(msgs(&receive(&mut run.input, 4).await), lines(0..4));
    let len = fs::metadata(d.path("")).unwrap().len();
    checkpoint_reaches(&store, len).await;
    d.copytruncate();
    d.write("", 4..6);
    assert_eq!(msgs(&receive(&mut run.input, 2).await), lines(4..6));
    run.stop().await;
}

/// Every step the follower takes until it is idle: the messages and the checkpoints.
fn drain(f: &mut Follower) -> (Vec<Vec<u8>>, Vec<DaemonCheckpoint>) {
    let (mut messages, mut cps) = (Vec::new(), Vec::new());
    loop {
        match f.step().unwrap() {
            Step::Lines(events, cp) => {
                assert!(events.len() <= follow::MAX_BATCH);
                messages.extend(events.iter().map(|e| e.message.to_vec()));
                cps.push(cp);
            }
            Step::Idle => return (messages, cps),
            Step::Missing(e) => panic!("{e}"),
        }
    }
}

fn msgs_of(messages: &[Vec<u8>]) -> Vec<String> {
    let events: Vec<Event> = messages
        .iter()
        .map(|m| crate::sources::docker_daemon::line_event(m, 0))
        .collect();
    msgs(&events)
}

#[test]
fn copytruncate_grown_past_the_old_end_is_told_by_its_first_line() {
    let d = LogDir::new();
    d.write("", 0..4);
    let mut f = Follower::new(
        "daemon",
        &d.path(""),
        None,
        StartPosition::Beginning,
        1 << 20,
    )
    .unwrap();
    assert_eq!(msgs_of(&drain(&mut f).0), lines(0..4));
    d.copytruncate();
    // Longer than before: the size alone does not tell.
    d.write("", 4..12);
    let (messages, cps) = drain(&mut f);
    assert_eq!(msgs_of(&messages), lines(4..12));
    let md = fs::metadata(d.path("")).unwrap();
    let last = cps.last().unwrap();
    assert_eq!((last.ino, last.offset), (md.ino(), md.len()));
}

#[tokio::test]
async fn copytruncate_while_behind_reads_the_rest_from_the_copy() {
    let d = LogDir::new();
    let (mut run, mut got) = behind(&d, d.store()).await;
    d.copytruncate();
    d.write("", N..N + 5);
    got.extend(receive(&mut run.input, N + 5 - got.len()).await);
    assert_eq!(msgs(&got), lines(0..N + 5));
    run.stop().await;
}

#[tokio::test]
async fn read_from_end_skips_what_is_there_and_checkpoints_at_once() {
    let d = LogDir::new();
    d.write("", 0..3);
    let config = DockerDaemonConfig {
        read_from: StartPosition::End,
        ..d.config()
    };
    let store = d.store();
    let mut run = start(config.clone(), store.clone(), true, 1 << 20);
    assert!(tokio::time::timeout(WITHIN, run.input.recv())
        .await
        .unwrap()
        .is_none());
    run.task.await.unwrap().unwrap();
    d.write("", 3..4);
    let mut run = start(config, store, true, 1 << 20);
    assert_eq!(msgs(&receive(&mut run.input, 1).await), lines(3..4));
    run.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn once_fails_clearly_when_the_file_is_missing() {
    let d = LogDir::new();
    let run = start(d.config(), d.store(), true, 1 << 20);
    let e = run.task.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("docker.log"), "{e}");
}

#[tokio::test]
async fn waits_for_the_file_to_appear() {
    let d = LogDir::new();
    let mut run = start(d.config(), d.store(), false, 1 << 20);
    d.write("", 0..2);
    assert_eq!(msgs(&receive(&mut run.input, 2).await), lines(0..2));
    run.stop().await;
}

#[test]
fn a_line_over_the_cap_is_shipped_in_pieces_and_batches_are_bounded() {
    let d = LogDir::new();
    let mut long = vec![b'x'; 25];
    long.push(b'\n');
    d.append("", &long);
    d.write("", 0..(follow::MAX_BATCH + 5));
    let mut f = Follower::new("daemon", &d.path(""), None, StartPosition::Beginning, 100).unwrap();
    let (messages, cps) = drain(&mut f);
    assert_eq!(messages[0], long[..25]);
    let mut f = Follower::new("daemon", &d.path(""), None, StartPosition::Beginning, 10).unwrap();
    let (messages, cps_cut) = drain(&mut f);
    assert_eq!(
        &messages[..3],
        [&b"xxxxxxxxxx"[..], b"xxxxxxxxxx", b"xxxxx"]
    );
    for cps in [cps, cps_cut] {
        assert!(cps.len() > 1, "more than one batch");
        let offsets: Vec<u64> = cps.iter().map(|c| c.offset).collect();
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
        assert_eq!(
            *offsets.last().unwrap(),
            fs::metadata(d.path("")).unwrap().len()
        );
    }
}
