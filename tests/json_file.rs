//! End-to-end: the real `logwharf` binary tailing real json-file logs written by the real
//! Docker daemon (scripts/testbed), through rotation, SIGKILL restarts, 16 KiB partial lines
//! and malformed input, into the file sink.

mod common;

use common::docker::{self, Container};
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

fn file_sink_config(id: &str) -> String {
    format!(
        r#"
checkpoint_interval = "1s"
[sources.containers]
type = "docker_json_file"
include = ["{id}*"]
[sinks.out]
type = "file"
inputs = ["containers"]
path = "{{dir}}/out/{{{{.ID}}}}.log"
encoding = "json"
"#
    )
}

/// Lines of the file sink's output; a torn last line (SIGKILL mid-write) is skipped and counted.
fn read_output(path: &Path) -> (Vec<Value>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut torn = 0;
    let v = text
        .lines()
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(v) => Some(v),
            Err(_) => {
                torn += 1;
                None
            }
        })
        .collect();
    (v, torn)
}

fn numbers(events: &[Value], stream: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["stream"] == stream)
        .map(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {e}"))
        })
        .collect()
}

#[test]
fn rotation_with_compression_200k_lines_exactly_once_in_order() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("rotation");
    let c = Container::create(
        "lw-e2e-rotation",
        // 200,000 lines are ~15 MB: 20 files keep all of it, so that Docker deleting a file
        // logwharf has not read yet (a race a loaded machine can lose) cannot happen here.
        &[
            "--log-opt",
            "max-size=1m",
            "--log-opt",
            "max-file=20",
            "--log-opt",
            "compress=true",
        ],
        "seq 1 200000; seq 1 500 >&2",
    );
    let cfg = t.config(&file_sink_config(&c.id));
    let out = t.path().join("out").join(format!("{}.log", &c.id[..12]));
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    assert_eq!(c.wait(), 0);
    // Docker really rotated and compressed while we were reading.
    let gz = std::fs::read_dir(c.dir())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".gz")
        })
        .count();
    assert!(gz >= 1, "Docker did not rotate with compression");
    let done = wait_until(Duration::from_secs(120), || count_lines(&out) >= 200_500);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(
        done,
        "only {} lines arrived; log:\n{}",
        count_lines(&out),
        lw.log()
    );
    let (events, torn) = read_output(&out);
    assert_eq!(torn, 0);
    assert_eq!(
        numbers(&events, "stdout"),
        (1..=200_000).collect::<Vec<_>>()
    );
    assert_eq!(numbers(&events, "stderr"), (1..=500).collect::<Vec<_>>());
    assert!(events.iter().all(|e| e["container_id"] == c.id.as_str()));
}

#[test]
fn sigkill_three_times_loses_nothing() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("sigkill");
    // 60,000 numbered lines over ~6 s, rotating every 1 MB.
    let c = Container::create(
        "lw-e2e-sigkill",
        &["--log-opt", "max-size=1m", "--log-opt", "max-file=5"],
        "i=0; while [ $i -lt 60000 ]; do seq $((i+1)) $((i+2000)); i=$((i+2000)); sleep 0.2; done",
    );
    let cfg = t.config(&file_sink_config(&c.id));
    let out = t.path().join("out").join(format!("{}.log", &c.id[..12]));
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        lw.kill9();
        lw = Logwharf::start(&cfg, &[]);
    }
    assert_eq!(c.wait(), 0);
    let complete = || {
        let (ev, _) = read_output(&out);
        let got: std::collections::HashSet<u64> = numbers(&ev, "stdout").into_iter().collect();
        got.len() == 60_000
    };
    let done = wait_until(Duration::from_secs(120), complete);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let (events, torn) = read_output(&out);
    let nums = numbers(&events, "stdout");
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for n in &nums {
        *seen.entry(*n).or_default() += 1;
    }
    let missing: Vec<u64> = (1..=60_000).filter(|n| !seen.contains_key(n)).collect();
    let duplicates = nums.len() - seen.len();
    eprintln!(
        "sigkill x3: {} lines delivered, {} distinct, {duplicates} duplicates, {torn} torn output lines",
        nums.len(),
        seen.len()
    );
    assert!(
        done && missing.is_empty(),
        "lost {} lines, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // At-least-once with a 1 s checkpoint interval: each kill may re-send at most what was
    // delivered since the last checkpoint write (~1 s of this container's ~10k lines/s).
    assert!(duplicates <= 3 * 15_000, "{duplicates} duplicates");
    // Per container, the first delivery of every line is in order.
    let mut first = Vec::new();
    let mut shown = std::collections::HashSet::new();
    for n in nums {
        if shown.insert(n) {
            first.push(n);
        }
    }
    assert!(
        first.windows(2).all(|w| w[0] < w[1]),
        "first deliveries out of order"
    );
}

#[test]
fn a_100_kib_line_split_by_docker_arrives_as_one_event() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("partial");
    let c = Container::create(
        "lw-e2e-partial",
        &[],
        "head -c 102400 /dev/zero | tr '\\0' x; echo; echo after",
    );
    c.start();
    assert_eq!(c.wait(), 0);
    // Docker really split it into 16 KiB records.
    let raw = std::fs::read_to_string(c.dir().join(format!("{}-json.log", c.id))).unwrap();
    assert!(
        raw.lines().count() >= 7,
        "expected Docker's partial records"
    );
    let cfg = t.config(&file_sink_config(&c.id));
    run_once(&cfg);
    let out = t.path().join("out").join(format!("{}.log", &c.id[..12]));
    let events = json_lines(&out);
    assert_eq!(
        events.len(),
        2,
        "{:?}",
        events
            .iter()
            .map(|e| e["message"].as_str().map(str::len))
            .collect::<Vec<_>>()
    );
    assert_eq!(events[0]["message"].as_str().unwrap(), "x".repeat(102_400));
    assert!(events[0].get("partial").is_none() && events[0].get("truncated").is_none());
    assert_eq!(events[1]["message"], "after");
}

const FAKE_ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn fake_root(t: &TestDir, content: &[u8]) -> std::path::PathBuf {
    let dir = t.path().join("containers").join(FAKE_ID);
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join(format!("{FAKE_ID}-json.log"));
    std::fs::write(&f, content).unwrap();
    f
}

fn fake_root_config(api_port: u16) -> String {
    format!(
        r#"
[api]
address = "127.0.0.1:{api_port}"
[sources.c]
type = "docker_json_file"
root = "{{dir}}/containers"
[sinks.out]
type = "file"
inputs = ["c"]
path = "{{dir}}/out.log"
"#
    )
}

#[test]
fn malformed_lines_are_counted_passed_raw_and_the_file_keeps_flowing() {
    let t = TestDir::new("malformed");
    let good = |n: u32| {
        format!("{{\"log\":\"good {n}\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T13:04:22.90165242{n}Z\"}}\n")
    };
    let mut content = good(1).into_bytes();
    content.extend_from_slice(b"this is not json\n");
    content.extend_from_slice(&good(2).into_bytes());
    content.extend_from_slice(b"{\"log\":\"torn li\n");
    content.extend_from_slice(&[0u8; 64]); // a crash left a NUL run
    content.extend_from_slice(&good(3).into_bytes());
    let file = fake_root(&t, &content);
    let port = free_port();
    let cfg = t.config(&fake_root_config(port));
    let mut lw = Logwharf::start(&cfg, &[]);
    let out = t.path().join("out.log");
    assert!(
        wait_until(PATIENCE, || count_lines(&out) >= 5),
        "{}",
        lw.log()
    );
    // Appended after start: keeps flowing.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut f, good(4).as_bytes()).unwrap();
    assert!(
        wait_until(PATIENCE, || count_lines(&out) >= 6),
        "{}",
        lw.log()
    );
    let metrics = http_get(&format!("127.0.0.1:{port}"), "/metrics").unwrap();
    let health = http_get(&format!("127.0.0.1:{port}"), "/health").unwrap();
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["ok"], true, "{health}");
    assert_eq!(lw.terminate(), Some(0));
    let events = json_lines(&out);
    let msgs: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        msgs,
        vec![
            "good 1",
            "this is not json",
            "good 2",
            "{\"log\":\"torn li",
            "good 3",
            "good 4"
        ]
    );
    assert_eq!(events[1]["malformed"], true);
    assert_eq!(events[3]["malformed"], true);
    assert!(events[0].get("malformed").is_none());
    assert_eq!(
        metric(&metrics, "logwharf_malformed_lines_total", &[FAKE_ID]),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "logwharf_skipped_bytes_total", &[]),
        64.0,
        "{metrics}"
    );
}

#[test]
fn a_second_once_run_ships_nothing_new() {
    let t = TestDir::new("once");
    let mut content = Vec::new();
    for n in 0..1000 {
        content.extend_from_slice(
            format!("{{\"log\":\"line {n}\\n\",\"stream\":\"stderr\",\"time\":\"2026-11-25T13:04:22Z\"}}\n").as_bytes(),
        );
    }
    fake_root(&t, &content);
    let cfg = t.config(&fake_root_config(free_port()));
    run_once(&cfg);
    let out = t.path().join("out.log");
    assert_eq!(count_lines(&out), 1000);
    run_once(&cfg);
    assert_eq!(
        count_lines(&out),
        1000,
        "the second --once run re-shipped lines"
    );
    let e = json_lines(&out);
    assert_eq!(e[999]["message"], "line 999");
    assert_eq!(e[999]["stream"], "stderr");
    assert_eq!(e[999]["source"], "c");
    assert_eq!(e[999]["time"], "2026-11-25T13:04:22.000000000Z");
}
