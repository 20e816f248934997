//! End-to-end (issue 13, "never silent"): what Docker deletes while logwharf is not running is
//! counted and told — the real `logwharf` binary and the real Docker daemon rotating a
//! container's json-file log (`max-size=20k`, `max-file=2`).
//!
//! logwharf delivers the container's first lines to a `file` sink and is stopped cleanly;
//! the container then writes through a dozen rotations, so Docker deletes the checkpointed
//! file and the files after it; logwharf starts again. The rest must be delivered in order
//! from the oldest file left, and the loss counted: the rest of the checkpointed file is
//! known from the checkpoint (offset, size last seen) and Docker's `max-size` (a file is
//! rotated once it reaches it), so `logwharf_lost_bytes_total{reason="deleted_while_stopped"}`
//! must be exactly `max-size − offset`; one gap, one warning naming the window. The files
//! Docker created and deleted unseen meanwhile cannot be counted (nothing records how many
//! there were): the test shows the real loss, from line numbers, beside the figure.

mod common;

use common::docker::{self, Container};
use common::*;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

const FIRST: u64 = 200;
const LAST: u64 = 3_000;
const MAX_SIZE: u64 = 20_000; // Docker's "20k" (decimal)

/// The file sink's Docker-format lines: each number with its time.
fn file_lines(path: &Path) -> Vec<(u64, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let n = v["log"].as_str()?.trim_end().parse().ok()?;
            Some((n, v["time"].as_str()?.to_string()))
        })
        .collect()
}

/// The number and time of a json-file record.
fn record(line: &[u8]) -> (u64, String) {
    let v: serde_json::Value = serde_json::from_slice(line).unwrap();
    let n = v["log"].as_str().unwrap().trim_end().parse().unwrap();
    (n, v["time"].as_str().unwrap().to_string())
}

#[test]
fn lines_docker_deleted_while_logwharf_was_stopped_are_counted_and_the_rest_delivered() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("loss-stopped");
    let c = Container::create(
        "lw-e2e-loss-stopped",
        &["--log-opt", "max-size=20k", "--log-opt", "max-file=2"],
        &format!(
            "seq 1 {FIRST}; while [ ! -e /go ]; do sleep 0.05; done; seq {} {LAST}",
            FIRST + 1
        ),
    );
    let cfg = t.config(&format!(
        r#"
checkpoint_interval = "1s"
[sources.containers]
type = "docker_json_file"
include = ["{}*"]
[sinks.file]
type = "file"
inputs = ["containers"]
path = "{{dir}}/out/file.log"
encoding = "docker"
"#,
        c.id
    ));
    let out = t.path().join("out").join("file.log");
    let api = t.api_addr();

    // logwharf delivers the first lines, then is stopped cleanly.
    let mut lw = Logwharf::start(&cfg, &[]);
    c.start();
    assert!(
        wait_until(PATIENCE, || file_lines(&out).len() as u64 >= FIRST),
        "the file sink did not get the first {FIRST} lines; log:\n{}",
        lw.log()
    );
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let live = c.dir().join(format!("{}-json.log", c.id));
    // The checkpointed file, held open by the test to learn its final size after Docker
    // deleted it (what logwharf cannot know).
    let x = File::open(&live).unwrap();
    let offset = x.metadata().unwrap().len();
    let before = std::fs::read(&live).unwrap();
    assert_eq!(
        before.iter().filter(|&&b| b == b'\n').count() as u64,
        FIRST,
        "the container waits after its first lines"
    );
    let (_, last_delivered_time) = record(
        before[..before.len() - 1]
            .rsplit(|&b| b == b'\n')
            .next()
            .unwrap(),
    );

    // While logwharf is stopped the container writes through a dozen rotations.
    let go = Command::new("docker")
        .args(["exec", &c.id, "sh", "-c", ": > /go"])
        .status()
        .unwrap();
    assert!(go.success());
    assert_eq!(c.wait(), 0);
    let xm = x.metadata().unwrap();
    assert_eq!(xm.nlink(), 0, "Docker deleted the checkpointed file");
    let oldest = std::fs::read(c.dir().join(format!("{}-json.log.1", c.id))).unwrap();
    let (first_left, first_left_time) = record(oldest.split(|&b| b == b'\n').next().unwrap());
    assert!(first_left > FIRST + 1, "lines were deleted");

    // logwharf starts again.
    let mut lw = Logwharf::start(&cfg, &[]);
    let m = lw.wait_metric(
        &api,
        "logwharf_lost_gaps_total",
        &["sink=\"file\"", "reason=\"deleted_while_stopped\""],
        1.0,
    );
    let lost = metric(
        &m,
        "logwharf_lost_bytes_total",
        &["sink=\"file\"", "reason=\"deleted_while_stopped\""],
    ) as u64;
    assert!(
        wait_until(PATIENCE, || file_lines(&out).last().map(|l| l.0)
            == Some(LAST)),
        "the file sink never got line {LAST}; log:\n{}",
        lw.log()
    );
    lw.wait_log("lines lost while logwharf was not running", 1);
    let m = http_get(&api, "/metrics").unwrap_or_default();
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());

    let got: Vec<u64> = file_lines(&out).iter().map(|l| l.0).collect();
    let want: Vec<u64> = (1..=FIRST).chain(first_left..=LAST).collect();
    assert_eq!(
        got, want,
        "the first lines, then the rest from the oldest file left, in order, once"
    );

    // The rest of the checkpointed file is counted: Docker rotated it at max-size.
    assert_eq!(
        lost,
        MAX_SIZE - offset,
        "lost bytes: max-size − checkpointed offset"
    );
    assert_eq!(
        metric(&m, "logwharf_lost_gaps_total", &["sink=\"file\""]),
        1.0,
        "one gap"
    );
    // …which is short of the real rest of that file by less than the record Docker's
    // rotation overshot max-size with.
    let x_final = xm.len();
    let mut all = vec![0u8; x_final as usize];
    x.read_exact_at(&mut all, 0).unwrap();
    let last_record = all[..all.len() - 1]
        .rsplit(|&b| b == b'\n')
        .next()
        .unwrap()
        .len() as u64
        + 1;
    assert!(
        x_final - offset >= lost && x_final - offset - lost < last_record,
        "the count ({lost}) is the rest of the file ({}) less Docker's overshoot",
        x_final - offset
    );
    let (x_last, _) = record(&all[all.len() - last_record as usize..all.len() - 1]);

    // One warning, naming the container, the sink, the window and the bytes.
    let log = lw.log();
    let warning = log
        .lines()
        .find(|l| l.contains("lines lost while logwharf was not running"))
        .unwrap();
    assert_eq!(
        log.matches("lines lost while logwharf was not running")
            .count(),
        1
    );
    for part in [
        format!("container={}", c.id),
        "sink=file".to_string(),
        format!("from={last_delivered_time}"),
        format!("to={first_left_time}"),
        format!("bytes={lost}"),
    ] {
        assert!(
            warning.contains(&part),
            "the warning names {part}: {warning}"
        );
    }
    eprintln!(
        "stopped at line {FIRST} (offset {offset}); Docker deleted lines {}..{} meanwhile: the rest of the checkpointed file (lines {}..={x_last}, {} bytes; counted {lost}) and {} lines in files nobody saw",
        FIRST + 1,
        first_left - 1,
        FIRST + 1,
        x_final - offset,
        first_left - 1 - x_last
    );
}

/// The json-file bytes of each line the file sink wrote (its `docker` encoding writes Docker's
/// own bytes).
fn file_line_bytes(path: &Path) -> Vec<(u64, u64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| (record(l.as_bytes()).0, l.len() as u64 + 1))
        .collect()
}

#[test]
fn for_a_sink_that_lagged_what_the_hold_saw_makes_the_count_exact() {
    if !docker::require() {
        return;
    }
    const PHASE1: u64 = 600; // ≈2.3 files of 20k: Docker rotates twice while logwharf runs
    const ALL: u64 = 900; // then ≈23 KB more while it is stopped: one rotation
    let t = TestDir::new("loss-lagging");
    let c = Container::create(
        "lw-e2e-loss-lagging",
        &["--log-opt", "max-size=20k", "--log-opt", "max-file=2"],
        &format!(
            "seq 1 {PHASE1}; while [ ! -e /go ]; do sleep 0.05; done; seq {} {ALL}",
            PHASE1 + 1
        ),
    );
    // A syslog sink whose server never answers: it delivers nothing, and the container's
    // hold keeps the files Docker deletes for it (and records their sizes).
    let cfg = t.config(&format!(
        r#"
checkpoint_interval = "1s"
shutdown_timeout = "2s"
[sources.containers]
type = "docker_json_file"
include = ["{}*"]
[sinks.file]
type = "file"
inputs = ["containers"]
path = "{{dir}}/out/file.log"
encoding = "docker"
[sinks.sys]
type = "syslog"
inputs = ["containers"]
address = "tcp://127.0.0.1:{}"
facility = "local0"
format = "rfc5424"
"#,
        c.id,
        free_port()
    ));
    let out = t.path().join("out").join("file.log");
    let api = t.api_addr();
    let mut lw = Logwharf::start(&cfg, &[]);
    c.start();
    assert!(
        wait_until(PATIENCE, || file_lines(&out).len() as u64 >= PHASE1),
        "the file sink did not get the first {PHASE1} lines; log:\n{}",
        lw.log()
    );
    // The hold has the file Docker deleted, for the syslog sink.
    lw.wait_metric(&api, "logwharf_held_bytes", &[], 1.0);
    // Two rotations so far: the live file is the third.
    let live = c.dir().join(format!("{}-json.log", c.id));
    let third_first = record(
        std::fs::read(&live)
            .unwrap()
            .split(|&b| b == b'\n')
            .next()
            .unwrap(),
    )
    .0;
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());

    let go = Command::new("docker")
        .args(["exec", &c.id, "sh", "-c", ": > /go"])
        .status()
        .unwrap();
    assert!(go.success());
    assert_eq!(c.wait(), 0);
    let oldest = std::fs::read(c.dir().join(format!("{}-json.log.1", c.id))).unwrap();
    assert_eq!(
        record(oldest.split(|&b| b == b'\n').next().unwrap()).0,
        third_first,
        "one rotation while stopped: the file that was live is the oldest left"
    );

    let mut lw = Logwharf::start(&cfg, &[]);
    let m = lw.wait_metric(
        &api,
        "logwharf_lost_gaps_total",
        &["sink=\"sys\"", "reason=\"deleted_while_stopped\""],
        1.0,
    );
    assert!(
        wait_until(PATIENCE, || file_lines(&out).last().map(|l| l.0)
            == Some(ALL)),
        "the file sink never got line {ALL}; log:\n{}",
        lw.log()
    );
    lw.wait_log("lines lost while logwharf was not running", 1);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());

    // The syslog sink lost the two files before the one left: lines 1..third_first, whose
    // json-file bytes the file sink wrote.
    let got: Vec<u64> = file_lines(&out).iter().map(|l| l.0).collect();
    assert_eq!(
        got,
        (1..=ALL).collect::<Vec<_>>(),
        "the file sink lost nothing"
    );
    let gone: u64 = file_line_bytes(&out)
        .iter()
        .filter(|(n, _)| *n < third_first)
        .map(|(_, b)| b)
        .sum();
    let lost = metric(
        &m,
        "logwharf_lost_bytes_total",
        &["sink=\"sys\"", "reason=\"deleted_while_stopped\""],
    ) as u64;
    eprintln!(
        "the syslog sink lost lines 1..{third_first} ({gone} json-file bytes) while logwharf was stopped; counted {lost}"
    );
    assert_eq!(lost, gone, "exactly the bytes of the files Docker deleted");
    assert_eq!(
        metric(&m, "logwharf_lost_bytes_total", &["sink=\"file\""]),
        0.0
    );
    let log = lw.log();
    let warning = log
        .lines()
        .find(|l| l.contains("lines lost while logwharf was not running"))
        .unwrap();
    assert!(
        warning.contains("sink=sys") && warning.contains(&format!("exactly {gone} bytes")),
        "{warning}"
    );
}
