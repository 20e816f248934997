//! The file sink against real files in a temporary directory, with rotation checked against a
//! model of Docker's rotation (size checked before every line).

use super::*;
use bytes::Bytes;
use logwharf_collector::{AckToken, Event, Stream};
use logwharf_config::{ByteSize, Encoding};
use std::collections::VecDeque;
use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc;

const ID_A: &str = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111";
const ID_B: &str = "bbbbbbbbbbbb2222222222222222222222222222222222222222222222222222";

fn meta(id: &str, name: &str) -> Arc<ContainerMeta> {
    Arc::new(ContainerMeta {
        id: id.into(),
        name: Some(name.into()),
        ..Default::default()
    })
}

fn event(i: usize, c: Option<&Arc<ContainerMeta>>) -> Event {
    let mut e = Event::new(
        1_795_611_862_000_000_000 + i as i64 * 1_000_000_007,
        Stream::Stdout,
        Bytes::from(format!("line {i:04} <x>")),
    );
    e.container = c.cloned();
    e
}

fn token() -> (AckToken, mpsc::Receiver<bool>) {
    let (tx, rx) = mpsc::channel();
    (
        AckToken::new(Some(Box::new(move |ok| tx.send(ok).unwrap()))),
        rx,
    )
}

fn config(path: &Path) -> FileSinkConfig {
    FileSinkConfig::new(Template::parse(path.to_str().unwrap()).unwrap())
}

/// Runs a sink over `batches`; the acknowledgement outcome of each.
async fn run(cfg: &FileSinkConfig, batches: Vec<Vec<Event>>) -> Vec<bool> {
    let (result, acks) = try_run(cfg, batches).await;
    result.unwrap();
    acks
}

/// As [`run`], also when the sink fails: its result and the outcome of each batch.
async fn try_run(
    cfg: &FileSinkConfig,
    batches: Vec<Vec<Event>>,
) -> (anyhow::Result<()>, Vec<bool>) {
    let sink = FileSink::new("f", cfg).with_retry(RetryPolicy {
        retries: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
    });
    let (tx, input) = SinkInput::for_test("f");
    let mut rxs = Vec::new();
    for events in batches {
        let (t, rx) = token();
        let batch = Batch {
            source: "containers".into(),
            events,
        };
        tx.send(SinkBatch::detached(batch, t)).unwrap();
        rxs.push(rx);
    }
    drop(tx);
    let result = Box::new(sink).run(input).await;
    let acks = rxs
        .into_iter()
        .map(|rx| rx.try_recv().expect("every batch settled"))
        .collect();
    (result, acks)
}

/// Docker's rotation applied line by line: `[live, .1, .2, …]`.
fn model(lines: &[Vec<u8>], max_size: u64, max_file: u32) -> Vec<Vec<u8>> {
    let mut files: VecDeque<Vec<u8>> = VecDeque::from([Vec::new()]);
    for l in lines {
        if files[0].len() as u64 >= max_size {
            if max_file < 2 {
                files[0].clear();
            } else {
                files.push_front(Vec::new());
                files.truncate(max_file as usize);
            }
        }
        files[0].extend_from_slice(l);
    }
    files.into()
}

fn encoded(encoding: Encoding, events: &[Event]) -> Vec<Vec<u8>> {
    events
        .iter()
        .map(|e| {
            let mut v = Vec::new();
            Encoder::new(encoding).encode_line("containers", e, &mut v);
            v
        })
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// 40 events in batches of uneven sizes.
fn batches_of(events: &[Event]) -> Vec<Vec<Event>> {
    let mut out = Vec::new();
    let mut i = 0;
    for n in [1, 7, 3, 12, 2, 9, 6].iter().cycle() {
        if i >= events.len() {
            break;
        }
        let end = (i + n).min(events.len());
        out.push(events[i..end].to_vec());
        i = end;
    }
    out
}

#[tokio::test]
async fn docker_encoding_in_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.log");
    let mut cfg = config(&p);
    cfg.encoding = Encoding::Docker;
    let mut e = event(1, None);
    e.time_ns = 1_795_611_862_901_652_423;
    assert_eq!(run(&cfg, vec![vec![e]]).await, [true]);
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        "{\"log\":\"line 0001 \\u003cx\\u003e\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T13:04:22.901652423Z\"}\n"
    );
}

#[tokio::test]
async fn json_encoding_is_the_default_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.log");
    fs::write(&p, "earlier\n").unwrap();
    let cfg = config(&p);
    let a = meta(ID_A, "web");
    assert_eq!(run(&cfg, vec![vec![event(0, Some(&a))]]).await, [true]);
    assert_eq!(
        fs::read_to_string(&p).unwrap(),
        format!(
            "earlier\n{{\"time\":\"2026-11-25T13:04:22.000000000Z\",\"stream\":\"stdout\",\"message\":\"line 0000 <x>\",\"container_id\":\"{ID_A}\",\"source\":\"containers\",\"container_name\":\"web\"}}\n"
        )
    );
}

#[tokio::test]
async fn a_torn_last_line_is_left_alone_and_the_next_starts_on_a_new_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.log");
    // What a SIGKILL in the middle of a write leaves.
    fs::write(&p, "{\"whole\":1}\n{\"torn\":").unwrap();
    let cfg = config(&p);
    let a = meta(ID_A, "web");
    assert_eq!(run(&cfg, vec![vec![event(0, Some(&a))]]).await, [true]);
    let text = fs::read_to_string(&p).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["{\"whole\":1}", "{\"torn\":"]);
    assert_eq!(lines.len(), 3);
    let v: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(v["message"], "line 0000 <x>");
}

#[tokio::test]
async fn path_template_per_container() {
    let dir = tempfile::tempdir().unwrap();
    let template = format!("{}/{{{{.Name}}}}/{{{{.ID}}}}.log", dir.path().display());
    let mut cfg = FileSinkConfig::new(Template::parse(&template).unwrap());
    cfg.encoding = Encoding::Docker;
    let (a, b) = (meta(ID_A, "web"), meta(ID_B, "db"));
    let events = vec![
        event(0, Some(&a)),
        event(1, Some(&b)),
        event(2, Some(&a)),
        event(3, None),
        event(4, Some(&a)),
    ];
    let lines = encoded(Encoding::Docker, &events);
    // A renamed container (new metadata, same id) gets its new path.
    let a2 = meta(ID_A, "web2");
    let later = vec![event(5, Some(&a2))];
    let later_lines = encoded(Encoding::Docker, &later);
    assert_eq!(run(&cfg, vec![events, later]).await, [true, true]);
    let read = |rel: &str| fs::read(dir.path().join(rel)).unwrap();
    assert_eq!(
        read("web/aaaaaaaaaaaa.log"),
        [&lines[0][..], &lines[2], &lines[4]].concat()
    );
    assert_eq!(read("db/bbbbbbbbbbbb.log"), lines[1]);
    // No container: every field renders empty.
    assert_eq!(read(".log"), lines[3]);
    assert_eq!(read("web2/aaaaaaaaaaaa.log"), later_lines[0]);
}

#[tokio::test]
async fn max_file_1_truncates_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.log");
    let mut cfg = config(&p);
    cfg.encoding = Encoding::Docker;
    cfg.max_size = Some(ByteSize(300));
    cfg.max_file = 1;
    let events: Vec<Event> = (0..40).map(|i| event(i, None)).collect();
    let expected = model(&encoded(Encoding::Docker, &events), 300, 1);
    let acks = run(&cfg, batches_of(&events)).await;
    assert!(acks.iter().all(|&a| a));
    assert_eq!(names(dir.path()), ["c.log"]);
    assert_eq!(fs::read(&p).unwrap(), expected[0]);
    assert!(expected[0].len() < 300 + 100 && !expected[0].is_empty());
}

#[tokio::test]
async fn max_file_3_rotates_like_docker() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.log");
    let mut cfg = config(&p);
    cfg.encoding = Encoding::Docker;
    cfg.max_size = Some(ByteSize(400));
    cfg.max_file = 3;
    let events: Vec<Event> = (0..40).map(|i| event(i, None)).collect();
    let lines = encoded(Encoding::Docker, &events);
    let expected = model(&lines, 400, 3);
    assert_eq!(expected.len(), 3);
    let acks = run(&cfg, batches_of(&events)).await;
    assert!(acks.iter().all(|&a| a));
    assert_eq!(names(dir.path()), ["c.log", "c.log.1", "c.log.2"]);
    let live = fs::read(&p).unwrap();
    let one = fs::read(dir.path().join("c.log.1")).unwrap();
    let two = fs::read(dir.path().join("c.log.2")).unwrap();
    assert_eq!(
        [&live, &one, &two],
        [&expected[0], &expected[1], &expected[2]]
    );
    // Oldest first, the kept files are an unbroken tail of what was sent.
    let kept = [two, one, live].concat();
    assert!(lines.concat().ends_with(&kept));
    assert!(kept.starts_with(b"{\"log\":\"line "));
}

#[tokio::test]
async fn compress_gzips_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.log");
    let mut cfg = config(&p);
    cfg.encoding = Encoding::Docker;
    cfg.max_size = Some(ByteSize(400));
    cfg.max_file = 3;
    cfg.compress = true;
    let events: Vec<Event> = (0..40).map(|i| event(i, None)).collect();
    let lines = encoded(Encoding::Docker, &events);
    let expected = model(&lines, 400, 3);
    let acks = run(&cfg, batches_of(&events)).await;
    assert!(acks.iter().all(|&a| a));
    assert_eq!(names(dir.path()), ["c.log", "c.log.1.gz", "c.log.2.gz"]);
    assert_eq!(fs::read(&p).unwrap(), expected[0]);
    assert_eq!(gunzip(&dir.path().join("c.log.1.gz")), expected[1]);
    assert_eq!(gunzip(&dir.path().join("c.log.2.gz")), expected[2]);
}

#[tokio::test]
async fn restart_continues_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.log");
    let mut cfg = config(&p);
    cfg.encoding = Encoding::Docker;
    cfg.max_size = Some(ByteSize(100));
    cfg.max_file = 2;
    // A previous run left the file just under the limit: one more line, then rotation.
    let earlier = [&[b'x'; 98][..], b"\n"].concat();
    fs::write(&p, &earlier).unwrap();
    let events: Vec<Event> = (0..2).map(|i| event(i, None)).collect();
    let lines = encoded(Encoding::Docker, &events);
    assert_eq!(run(&cfg, vec![events]).await, [true]);
    assert_eq!(names(dir.path()), ["c.log", "c.log.1"]);
    assert_eq!(
        fs::read(dir.path().join("c.log.1")).unwrap(),
        [&earlier[..], &lines[0]].concat()
    );
    assert_eq!(fs::read(&p).unwrap(), lines[1]);
    // Another restart: the live file holds line 1 (94 bytes, under the limit), so line 2 is
    // appended and line 3 rotates — only if the size of what was there is counted.
    let more = vec![event(2, None), event(3, None)];
    let more_lines = encoded(Encoding::Docker, &more);
    assert_eq!(lines[1].len(), 94);
    assert_eq!(run(&cfg, vec![more]).await, [true]);
    assert_eq!(names(dir.path()), ["c.log", "c.log.1"]);
    assert_eq!(
        fs::read(dir.path().join("c.log.1")).unwrap(),
        [&lines[1][..], &more_lines[0]].concat()
    );
    assert_eq!(fs::read(&p).unwrap(), more_lines[1]);
}

#[tokio::test]
async fn a_write_failing_after_its_retries_fails_the_sink_with_the_batch_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    fs::write(&blocker, "").unwrap();
    // Container A's file cannot be created (its parent is a file); B's can.
    let template = format!("{}/{{{{.Name}}}}/x.log", dir.path().display());
    let cfg = FileSinkConfig::new(Template::parse(&template).unwrap());
    let (a, b) = (meta(ID_A, "not-a-dir"), meta(ID_B, "fine"));
    let (result, acks) = try_run(
        &cfg,
        vec![
            vec![event(0, Some(&b)), event(1, Some(&a))],
            vec![event(2, Some(&b))],
        ],
    )
    .await;
    let e = format!(
        "{:#}",
        result.expect_err("the sink fails (its supervisor restarts it)")
    );
    assert!(e.contains("not-a-dir") && e.contains("3 attempts"), "{e}");
    assert_eq!(acks, [false, false], "nothing undelivered is acknowledged");
    // B's lines (both batches waited, so one job took them together) were written once each,
    // not once per retry.
    let b_file = fs::read_to_string(dir.path().join("fine/x.log")).unwrap();
    assert_eq!(b_file.lines().count(), 2, "{b_file}");
    for line in ["line 0000", "line 0002"] {
        assert_eq!(b_file.matches(line).count(), 1, "{b_file}");
    }
}

#[tokio::test]
async fn open_files_are_capped_and_closed_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let policy = RotationPolicy {
        max_size: None,
        max_file: 1,
        compress: false,
    };
    let mut files = OpenFiles::new("f".into(), policy, 2, tokio::runtime::Handle::current());
    for i in 0..5 {
        let path: Arc<Path> = Arc::from(dir.path().join(format!("{i}.log")));
        let mut p = Pending::new(path, b"x\n".to_vec());
        p.lines.push(LineEnd { end: 2, time_ns: 0 });
        files.write(&mut p).unwrap();
        assert!(p.is_done());
        assert!(files.open_count() <= 2);
    }
    // Writing to a closed file again reopens and appends.
    let path: Arc<Path> = Arc::from(dir.path().join("0.log"));
    let mut p = Pending::new(path.clone(), b"y\n".to_vec());
    p.lines.push(LineEnd { end: 2, time_ns: 0 });
    files.write(&mut p).unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), "x\ny\n");
    files.close_idle(Duration::ZERO);
    assert_eq!(files.open_count(), 0);
}

#[test]
fn chunks_stop_at_the_line_that_crosses_the_limit() {
    let mut p = Pending::new(
        Arc::from(PathBuf::from("x")),
        b"aaaa\nbbbb\ncccc\n".to_vec(),
    );
    for end in [5, 10, 15] {
        p.lines.push(LineEnd { end, time_ns: 0 });
    }
    assert_eq!(p.chunk_end(None), 15);
    assert_eq!(p.chunk_end(Some(1)), 5);
    assert_eq!(p.chunk_end(Some(5)), 5);
    assert_eq!(p.chunk_end(Some(6)), 10);
    assert_eq!(p.chunk_end(Some(100)), 15);
    p.written = 7; // a retry after a torn write continues inside the second line
    assert_eq!(p.chunk_end(Some(1)), 10);
}

#[tokio::test]
async fn a_rotated_file_left_uncompressed_is_compressed_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.log");
    let mut cfg = config(&p);
    cfg.max_size = Some(ByteSize(1 << 20));
    cfg.max_file = 3;
    cfg.compress = true;
    fs::write(dir.path().join("c.log.1"), "left over\n").unwrap();
    assert_eq!(run(&cfg, vec![vec![event(0, None)]]).await, [true]);
    assert_eq!(names(dir.path()), ["c.log", "c.log.1.gz"]);
    assert_eq!(gunzip(&dir.path().join("c.log.1.gz")), b"left over\n");
}
