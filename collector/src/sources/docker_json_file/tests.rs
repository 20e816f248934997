//! The whole source against a temporary Docker root: discovery, reader tasks, checkpoints
//! that move only on acknowledgement, `--once`, container removal.
//!
//! Real files and inotify, so no paused clock: every test waits for the condition it means,
//! and its deadline ([`PATIENCE`]) only caps a hang — a loaded machine takes longer, never fails.

use super::*;
use crate::checkpoint::CheckpointStore;
use crate::event::{Event, EventFlags};
use crate::shutdown::Shutdown;
use crate::sink::{SinkBatch, SinkInput};
use crate::sources::testing::{self, Running};
use logwharf_config::DurationValue;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

static CLOCK: AtomicU64 = AtomicU64::new(1);

/// How long a test waits for what it expects before failing.
const PATIENCE: Duration = Duration::from_secs(60);

/// Polls `cond` until it holds; panics with `what` after [`PATIENCE`].
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn record(text: &str, newline: bool) -> String {
    let n = CLOCK.fetch_add(1, Ordering::Relaxed);
    format!(
        "{{\"log\":\"{text}{}\",\"stream\":\"stdout\",\"time\":\"2026-11-25T13:05:00.{n:09}Z\"}}\n",
        if newline { "\\n" } else { "" }
    )
}

struct Root {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
}

impl Root {
    fn new() -> Root {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("containers");
        let data = tmp.path().join("data");
        fs::create_dir(&root).unwrap();
        Root {
            _tmp: tmp,
            root,
            data,
        }
    }

    fn append(&self, id: &str, s: &str) {
        let dir = self.root.join(id);
        fs::create_dir_all(&dir).unwrap();
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join(format!("{id}-json.log")))
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }

    fn lines(&self, id: &str, range: std::ops::Range<usize>) {
        let s: String = range.map(|i| record(&format!("{id} {i}"), true)).collect();
        self.append(id, &s);
    }

    fn config(&self) -> DockerJsonFileConfig {
        DockerJsonFileConfig {
            root: self.root.clone(),
            rescan_interval: DurationValue::from_millis(100),
            partial_timeout: DurationValue::from_millis(300),
            ..DockerJsonFileConfig::default()
        }
    }

    fn store(&self) -> Arc<CheckpointStore> {
        Arc::new(CheckpointStore::open(&self.data).unwrap())
    }
}

fn run(config: DockerJsonFileConfig, store: Arc<CheckpointStore>, once: bool) -> Running {
    let src = Box::new(DockerJsonFile::new(config).unwrap());
    testing::run("src", src, store, 1 << 20, once)
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.message).into_owned())
        .collect()
}

/// Receives batches until `n` events arrived (or fails after `within`).
async fn receive(input: &mut SinkInput, n: usize, within: Duration) -> Vec<SinkBatch> {
    let mut got = Vec::new();
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + within;
    while count < n {
        match tokio::time::timeout_at(deadline, input.recv()).await {
            Ok(Some(b)) => {
                count += b.batch.len();
                got.push(b);
            }
            Ok(None) => panic!("source stopped after {count} of {n} events"),
            Err(_) => panic!("only {count} of {n} events within {within:?}"),
        }
    }
    got
}

fn events_of(batches: &[SinkBatch]) -> Vec<Event> {
    batches
        .iter()
        .flat_map(|b| b.batch.events.iter().cloned())
        .collect()
}

fn deliver(batches: Vec<SinkBatch>) {
    for b in batches {
        b.into_parts().1.delivered();
    }
}

fn saved_offset(store: &CheckpointStore, id: &str) -> Option<u64> {
    store
        .get(&sink_checkpoint_key("src", id, "test"))
        .and_then(|v| SavedPosition::from_json(&v))
        .map(|p| p.offset)
}

fn file_len(r: &Root, id: &str) -> u64 {
    fs::metadata(r.root.join(id).join(format!("{id}-json.log")))
        .unwrap()
        .len()
}

/// Everything a `--once` run sends, acknowledged; returns its events.
async fn once(r: &Root, store: Arc<CheckpointStore>) -> Vec<Event> {
    let mut run = run(r.config(), store, true);
    let mut events = Vec::new();
    while let Some(b) = tokio::time::timeout(PATIENCE, run.input.recv())
        .await
        .expect("--once finishes")
    {
        events.extend(b.batch.events.iter().cloned());
        b.into_parts().1.delivered();
    }
    run.task.await.unwrap().unwrap();
    events
}

#[tokio::test]
async fn once_ships_everything_present_and_a_second_run_nothing() {
    let r = Root::new();
    r.lines("aaa", 0..500);
    r.append("aaa", &record("unfinished", false));
    r.lines("bbb", 0..3);
    let store = r.store();
    let events = once(&r, store.clone()).await;
    let a: Vec<_> = events
        .iter()
        .filter(|e| e.container.as_ref().unwrap().id == "aaa")
        .cloned()
        .collect();
    assert_eq!(a.len(), 501);
    assert_eq!(texts(&a[..2]), ["aaa 0", "aaa 1"]);
    assert_eq!(texts(&a[500..]), ["unfinished"]);
    assert!(a[500].flags.contains(EventFlags::PARTIAL));
    assert_eq!(events.len(), 504);
    // The acknowledgements wrote the checkpoints (the runtime flushes them to disk).
    assert_eq!(saved_offset(&store, "aaa"), Some(file_len(&r, "aaa")));
    assert_eq!(saved_offset(&store, "bbb"), Some(file_len(&r, "bbb")));
    store.flush().unwrap();

    let again = once(&r, r.store()).await;
    assert!(again.is_empty(), "shipped again: {:?}", texts(&again));

    r.lines("bbb", 3..5);
    assert_eq!(texts(&once(&r, r.store()).await), ["bbb 3", "bbb 4"]);
}

#[tokio::test]
async fn checkpoint_moves_only_when_the_batch_is_delivered() {
    let r = Root::new();
    r.lines("aaa", 0..10);
    let store = r.store();
    let mut run = run(r.config(), store.clone(), false);
    let first = receive(&mut run.input, 10, PATIENCE).await;
    // A chance to move it wrongly (no wait can prove a negative; a slow machine only makes
    // this check weaker, never red).
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        saved_offset(&store, "aaa"),
        Some(0),
        "nothing delivered yet: the start of the file"
    );
    deliver(first);
    assert_eq!(saved_offset(&store, "aaa"), Some(file_len(&r, "aaa")));

    // A batch that is not delivered holds the checkpoint back for good.
    let before = file_len(&r, "aaa");
    r.lines("aaa", 10..12);
    let failed = receive(&mut run.input, 2, PATIENCE).await;
    drop(failed);
    r.lines("aaa", 12..14);
    let later = receive(&mut run.input, 2, PATIENCE).await;
    assert_eq!(texts(&events_of(&later)), ["aaa 12", "aaa 13"]);
    deliver(later);
    assert_eq!(saved_offset(&store, "aaa"), Some(before));
    run.shutdown.trigger();
    run.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn finds_new_containers_quickly_and_reads_what_they_write() {
    let r = Root::new();
    let config = DockerJsonFileConfig {
        // Far beyond the test's patience: only inotify can explain a discovery.
        rescan_interval: DurationValue::from_millis(24 * 3600 * 1000),
        ..r.config()
    };
    // A container present at the start: its first line says the first scan is done, and
    // the root is watched from then on.
    r.lines("bbb", 0..1);
    let mut run = run(config, r.store(), false);
    let got = receive(&mut run.input, 1, PATIENCE).await;
    assert_eq!(texts(&events_of(&got)), ["bbb 0"]);
    r.lines("ccc", 0..3);
    let got = receive(&mut run.input, 3, PATIENCE).await;
    assert_eq!(texts(&events_of(&got)), ["ccc 0", "ccc 1", "ccc 2"]);
    r.lines("ccc", 3..4);
    let got = receive(&mut run.input, 1, PATIENCE).await;
    assert_eq!(texts(&events_of(&got)), ["ccc 3"]);
    run.shutdown.trigger();
    run.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn waits_for_a_missing_root() {
    let r = Root::new();
    let config = DockerJsonFileConfig {
        root: r.root.join("later"),
        ..r.config()
    };
    let mut run = run(config, r.store(), false);
    // Found by a rescan whether the source looked before or after the root appeared.
    let dir = r.root.join("later/ddd");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("ddd-json.log"), record("hello", true)).unwrap();
    let got = receive(&mut run.input, 1, PATIENCE).await;
    assert_eq!(texts(&events_of(&got)), ["hello"]);
    run.shutdown.trigger();
    run.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn include_and_exclude_by_id_prefix() {
    let r = Root::new();
    r.lines("abc1", 0..1);
    r.lines("abc2", 0..1);
    r.lines("xyz1", 0..1);
    let config = DockerJsonFileConfig {
        include: vec!["abc".into()],
        exclude: vec!["abc2".into()],
        ..r.config()
    };
    let mut run = run(config, r.store(), true);
    let mut got = Vec::new();
    while let Some(b) = run.input.recv().await {
        got.extend(texts(&b.batch.events));
    }
    assert_eq!(got, ["abc1 0"]);
}

#[tokio::test]
async fn a_removed_container_is_drained_flushed_and_forgotten() {
    let r = Root::new();
    r.lines("eee", 0..2);
    r.append("eee", &record("no end", false));
    let store = r.store();
    let config = DockerJsonFileConfig {
        partial_timeout: DurationValue::from_millis(60_000),
        ..r.config()
    };
    let mut run = run(config, store.clone(), false);
    deliver(receive(&mut run.input, 2, PATIENCE).await);
    assert!(saved_offset(&store, "eee").is_some());
    fs::remove_dir_all(r.root.join("eee")).unwrap();
    let got = receive(&mut run.input, 1, PATIENCE).await;
    let events = events_of(&got);
    assert_eq!(texts(&events), ["no end"]);
    assert!(events[0].flags.contains(EventFlags::PARTIAL));
    deliver(got);
    // The reader drops the checkpoint once it has stopped.
    wait_until("checkpoint not dropped", || {
        saved_offset(&store, "eee").is_none()
    })
    .await;
    run.shutdown.trigger();
    run.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn checkpoints_of_vanished_containers_are_dropped_at_startup() {
    let r = Root::new();
    r.lines("fff", 0..1);
    let store = r.store();
    store.set("src/gone", serde_json::json!({"offset": 1}));
    store.set("other/gone", serde_json::json!({"offset": 1}));
    let mut run = run(r.config(), store.clone(), true);
    while run.input.recv().await.is_some() {}
    run.task.await.unwrap().unwrap();
    assert_eq!(store.get("src/gone"), None);
    assert!(store.get("other/gone").is_some(), "another source's entry");
}

#[tokio::test]
async fn read_from_end_skips_the_backlog_of_containers_present_at_start() {
    let r = Root::new();
    r.lines("ggg", 0..5);
    let config = DockerJsonFileConfig {
        read_from: ReadFrom::End,
        ..r.config()
    };
    let store = r.store();
    let mut run = run(config, store.clone(), false);
    // The reader starts at the end and says so in its checkpoint.
    wait_until("no checkpoint at the end of ggg's backlog", || {
        saved_offset(&store, "ggg") == Some(file_len(&r, "ggg"))
    })
    .await;
    r.lines("ggg", 5..6);
    r.lines("hhh", 0..1); // new since the start: read from its beginning
    let got = events_of(&receive(&mut run.input, 2, PATIENCE).await);
    let mut t = texts(&got);
    t.sort();
    assert_eq!(t, ["ggg 5", "hhh 0"]);
    run.shutdown.trigger();
    run.task.await.unwrap().unwrap();
}

/// Against the real Docker daemon of `scripts/testbed` (`DOCKER_HOST` as needed,
/// an image with busybox tools in `LOGWHARF_TEST_IMAGE`, default `logwharf-busybox`; see
/// TESTBED.md). A container writes 20,000 lines (with attrs, ~2.5 MB) as fast as it can into
/// a log rotated at 200 KiB, `max-file=16`, `compress=true` (a dozen rotations), then a
/// 40,000-byte line (Docker splits it into 16 KiB partial records) and a last line without a
/// newline. Every line must arrive once, in order, joined, with the container's attrs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_docker_rotation_compression_and_partial_lines() {
    if !docker_available() {
        return;
    }
    let image = std::env::var("LOGWHARF_TEST_IMAGE").unwrap_or("logwharf-busybox".into());
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .expect("docker client");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let docker_root = docker(&["info", "--format", "{{.DockerRootDir}}"]);
    // Docker deletes a rotated file max-file − 1 rotations after it stopped being live; the
    // reader must have looked at least once in between, a race with dockerd that a loaded
    // machine can lose at any max-file that is smaller than the output. 200 KiB × 16 keeps
    // all of it, so the test is about following rotation and compression, not about speed;
    // override (e.g. LOGWHARF_TEST_MAX_FILE=4) to make it a race.
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or(d.into());
    let max_size = format!("max-size={}", env("LOGWHARF_TEST_MAX_SIZE", "200k"));
    let max_file = format!("max-file={}", env("LOGWHARF_TEST_MAX_FILE", "16"));
    let id = docker(&[
        "create",
        "--network",
        "none",
        "--log-driver",
        "json-file",
        "--log-opt",
        &max_size,
        "--log-opt",
        &max_file,
        "--log-opt",
        "compress=true",
        "--log-opt",
        "tag=lw/{{.Name}}",
        "--label",
        "team=logs",
        "--log-opt",
        "labels=team",
        &image,
        "sh",
        "-c",
        "seq 1 20000; head -c 40000 /dev/zero | tr '\\0' x; echo; printf nonl",
    ]);
    let data = tempfile::tempdir().unwrap();
    let config = DockerJsonFileConfig {
        root: PathBuf::from(&docker_root).join("containers"),
        include: vec![id.clone()],
        partial_timeout: DurationValue::from_millis(500),
        ..DockerJsonFileConfig::default()
    };
    let store = Arc::new(CheckpointStore::open(data.path()).unwrap());
    let mut run = run(config, store.clone(), false);
    // Whether the source looks before or after the start, it reads every file oldest first.
    docker(&["start", &id]);
    // Collect until everything came (or the patience ran out), then a moment more so that
    // duplicates would show; then judge (a shortfall is reported with its gaps).
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + 2 * PATIENCE;
    let mut wait = deadline;
    while let Ok(Some(b)) = tokio::time::timeout_at(wait, run.input.recv()).await {
        events.extend(b.batch.events.iter().cloned());
        b.into_parts().1.delivered();
        if events.len() >= 20_002 {
            wait = wait.min(tokio::time::Instant::now() + Duration::from_secs(1));
        }
    }
    docker(&["rm", "-f", &id]);
    run.shutdown.trigger();
    run.task.await.unwrap().unwrap();

    let got = texts(&events);
    let numbers: Vec<u32> = got.iter().filter_map(|t| t.parse().ok()).collect();
    let gaps: Vec<(u32, u32)> = numbers
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        gaps.is_empty() && numbers.first() == Some(&1) && numbers.last() == Some(&20_000),
        "{} lines, first {:?}, last {:?}, gaps {gaps:?}",
        numbers.len(),
        numbers.first(),
        numbers.last()
    );
    let want: Vec<String> = (1..=20_000).map(|i| i.to_string()).collect();
    assert_eq!(got[..20_000], want[..], "every line once, in order");
    assert_eq!(got[20_000], "x".repeat(40_000), "partial records joined");
    assert!(events[20_000].flags.is_empty());
    assert_eq!(got[20_001], "nonl");
    assert!(events[20_001].flags.contains(EventFlags::PARTIAL));
    let attrs = events[0].attrs.as_ref().expect("attrs from labels/tag");
    assert!(
        attrs.contains(&("team".to_string(), "logs".to_string())),
        "{attrs:?}"
    );
    assert!(
        attrs
            .iter()
            .any(|(k, v)| k == "tag" && v.starts_with("lw/")),
        "{attrs:?}"
    );
    assert_eq!(events.len(), 20_002, "nothing more");
}

/// Against the real Docker daemon (like the test above): logwharf stops mid-stream,
/// Docker keeps writing, rotating and compressing, and a restart from the checkpoint (by then
/// inside a `.N.gz`) ships every line — at least once, none lost, in order per run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_docker_restart_resumes_inside_a_compressed_file() {
    if !docker_available() {
        return;
    }
    let image = std::env::var("LOGWHARF_TEST_IMAGE").unwrap_or("logwharf-busybox".into());
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .expect("docker client");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let docker_root = docker(&["info", "--format", "{{.DockerRootDir}}"]);
    // ~2,000 lines a second for ~3 s, rotated every ~50 KiB (~1,000 lines), 8 files kept.
    let id = docker(&[
        "run", "-d", "--network", "none",
        "--log-opt", "max-size=50k", "--log-opt", "max-file=8", "--log-opt", "compress=true",
        &image, "sh", "-c",
        "i=0; while [ $i -lt 6000 ]; do i=$((i+1)); echo $i; [ $((i % 100)) = 0 ] && sleep 0.05; done",
    ]);
    let data = tempfile::tempdir().unwrap();
    let config = DockerJsonFileConfig {
        root: PathBuf::from(&docker_root).join("containers"),
        include: vec![id.clone()],
        ..DockerJsonFileConfig::default()
    };
    let numbers = |events: &[Event]| -> Vec<u32> {
        texts(events).iter().map(|t| t.parse().unwrap()).collect()
    };

    // First run: read about a third, acknowledge it, stop.
    let store = Arc::new(CheckpointStore::open(data.path()).unwrap());
    let mut first = run(config.clone(), store.clone(), false);
    let got = receive(&mut first.input, 2000, PATIENCE).await;
    let before = numbers(&events_of(&got));
    deliver(got);
    first.shutdown.trigger();
    first.task.await.unwrap().unwrap();
    store.flush().unwrap();
    let saved =
        SavedPosition::from_json(&store.get(&sink_checkpoint_key("src", &id, "test")).unwrap())
            .unwrap();

    // Down while Docker rotates the checkpointed file away and compresses it.
    docker(&["wait", &id]);
    let second_store = Arc::new(CheckpointStore::open(data.path()).unwrap());
    let after = once(
        &Root {
            _tmp: tempfile::tempdir().unwrap(),
            root: config.root.clone(),
            data: data.path().to_path_buf(),
        },
        second_store,
    )
    .await;
    docker(&["rm", "-f", &id]);
    let after: Vec<u32> = numbers(
        &after
            .into_iter()
            .filter(|e| e.container.as_ref().unwrap().id == id)
            .collect::<Vec<_>>(),
    );

    assert!(
        before.windows(2).all(|w| w[1] == w[0] + 1),
        "first run in order"
    );
    assert!(
        after.windows(2).all(|w| w[1] == w[0] + 1),
        "second run in order"
    );
    let (last_before, first_after) = (*before.last().unwrap(), after[0]);
    assert!(
        first_after <= last_before + 1,
        "nothing lost across the restart: first run ended at {last_before}, second began at {first_after} (checkpoint {saved:?})"
    );
    assert_eq!(*after.last().unwrap(), 6000);
    eprintln!(
        "restart: first run 1..={last_before}, second {first_after}..=6000, {} line(s) again; checkpoint was in {} at {}",
        last_before + 1 - first_after,
        saved.file,
        saved.offset
    );
}

/// True when the testbed's dockerd answers. Missing in CI (`CI=true`) is a failure; elsewhere
/// the test skips with a loud message.
fn docker_available() -> bool {
    let image = std::env::var("LOGWHARF_TEST_IMAGE").unwrap_or("logwharf-busybox".into());
    let ok = std::process::Command::new("docker")
        .args(["image", "inspect", &image])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1")) {
            panic!("dockerd or the {image} image is missing (CI=true): run scripts/testbed");
        }
        eprintln!("\n*** SKIPPED: no dockerd with image {image}; run scripts/testbed ***\n");
    }
    ok
}

fn run_sinks(
    config: DockerJsonFileConfig,
    store: Arc<CheckpointStore>,
    sinks: &[(&str, u32)],
    once: bool,
) -> (
    Vec<SinkInput>,
    Shutdown,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let src = Box::new(DockerJsonFile::new(config).unwrap());
    testing::run_sinks("src", src, store, sinks, once)
}

/// Docker's rotation with `max-file=2`: `.1` deleted, the live file becomes `.1`.
fn rotate(r: &Root, id: &str) {
    let dir = r.root.join(id);
    let live = dir.join(format!("{id}-json.log"));
    let one = dir.join(format!("{id}-json.log.1"));
    let _ = fs::remove_file(&one);
    fs::rename(&live, &one).unwrap();
    fs::write(&live, b"").unwrap();
}

#[tokio::test]
async fn a_stalled_sink_slows_no_other_and_catches_up_through_deleted_files() {
    let r = Root::new();
    let store = r.store();
    // Sink "slow" takes 100 events, then nobody reads it; sink "fast" is read all along.
    let (mut inputs, shutdown, task) = run_sinks(
        r.config(),
        store.clone(),
        &[("slow", 100), ("fast", 1 << 20)],
        false,
    );
    let mut fast = inputs.remove(1);
    let mut slow = inputs.remove(0);
    let mut got_fast = Vec::new();
    for round in 0..4 {
        r.lines("ccc", round * 300..(round + 1) * 300);
        let b = receive(&mut fast, 300, Duration::from_secs(10)).await;
        got_fast.extend(texts(&events_of(&b)));
        deliver(b);
        // Let the hold see the file before the next rotation deletes it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        rotate(&r, "ccc");
    }
    let want: Vec<String> = (0..1200).map(|i| format!("ccc {i}")).collect();
    assert_eq!(got_fast, want, "the fast sink has everything, in order");
    // Docker has deleted the first two files by now; the slow sink still gets every line.
    let mut got_slow = Vec::new();
    while got_slow.len() < want.len() {
        let b = receive(&mut slow, 1, Duration::from_secs(10)).await;
        got_slow.extend(texts(&events_of(&b)));
        deliver(b); // frees the space in its buffer
    }
    assert_eq!(got_slow, want, "the slow sink catches up, in order");
    let keys: Vec<String> = store
        .with_prefix("src/")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        ["src/ccc/fast", "src/ccc/slow"],
        "one checkpoint per sink"
    );
    shutdown.trigger();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_checkpoint_of_the_previous_format_becomes_every_sinks_position() {
    let r = Root::new();
    r.lines("ddd", 0..10);
    let store = r.store();
    deliver(once_batches(&r, store.clone()).await);
    // What the previous version wrote: one position per container.
    let v = store
        .get(&sink_checkpoint_key("src", "ddd", "test"))
        .unwrap();
    store.remove(&sink_checkpoint_key("src", "ddd", "test"));
    store.set(&checkpoint_key("src", "ddd"), v);
    r.lines("ddd", 10..13);
    let (inputs, _shutdown, task) = run_sinks(
        r.config(),
        store.clone(),
        &[("a", 1 << 20), ("b", 1 << 20)],
        true,
    );
    for mut input in inputs {
        let mut events = Vec::new();
        while let Some(b) = input.recv().await {
            events.extend(b.batch.events.iter().cloned());
            b.into_parts().1.delivered();
        }
        assert_eq!(
            texts(&events),
            ["ddd 10", "ddd 11", "ddd 12"],
            "nothing twice, nothing skipped"
        );
    }
    task.await.unwrap().unwrap();
    assert_eq!(
        store.get(&checkpoint_key("src", "ddd")),
        None,
        "the old entry is gone"
    );
    assert_eq!(
        saved_offset_of(&store, "ddd", "a"),
        Some(file_len(&r, "ddd"))
    );
    assert_eq!(
        saved_offset_of(&store, "ddd", "b"),
        Some(file_len(&r, "ddd"))
    );
}

fn saved_offset_of(store: &CheckpointStore, id: &str, sink: &str) -> Option<u64> {
    store
        .get(&sink_checkpoint_key("src", id, sink))
        .and_then(|v| SavedPosition::from_json(&v))
        .map(|p| p.offset)
}

/// `--once` with the single test sink; the batches, not yet delivered.
async fn once_batches(r: &Root, store: Arc<CheckpointStore>) -> Vec<SinkBatch> {
    let mut run = run(r.config(), store, true);
    let mut got = Vec::new();
    while let Some(b) = run.input.recv().await {
        got.push(b);
    }
    run.task.await.unwrap().unwrap();
    got
}
