//! End-to-end: events a sink's peer refuses for good land in that sink's dead-letter file with
//! their reason, and the others arrive. One json-file source (a fake Docker root) feeds a
//! `kafka` sink (a real tansu broker, read back with an rdkafka consumer) and a `cloudwatch`
//! sink (moto behind the strict front, read back with GetLogEvents), both with
//! `dead_letter = true`: Kafka refuses a 150 KB line (over `message_max_bytes`), CloudWatch
//! refuses lines older than its 14 days (moto's `tooOldLogEventEndIndex`) and an empty one.

mod cloudwatch_support;
mod common;
mod kafka_support;

use cloudwatch_support::*;
use common::*;
use kafka_support::{require_tansu, Collector, Tansu};
use logwharf_collector::time::{format_rfc3339, now_nanos, Fraction};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const ID: &str = "d1ad1e77e3000000000000000000000000000000000000000000000000000001";
const NORMAL: u32 = 1000;
const OLD: [u32; 3] = [2001, 2002, 2003];
const BIG: u32 = 3000;
const EMPTY_AFTER: u32 = 500;

/// The container's json-file log: `NORMAL` numbered lines of now; after line 500 an empty
/// line; the lines `OLD` dated 30 days ago; the line `BIG` of 150 KB.
fn write_log(root: &std::path::Path) -> usize {
    let dir = root.join(ID);
    std::fs::create_dir_all(&dir).unwrap();
    let now = now_nanos();
    let line = |text: &mut String, msg: &str, ns: i64| {
        writeln!(
            text,
            "{{\"log\":\"{msg}\\n\",\"stream\":\"stdout\",\"time\":\"{}\"}}",
            format_rfc3339(ns, Fraction::Nanos)
        )
        .unwrap();
    };
    let mut text = String::new();
    for n in 1..=NORMAL {
        line(&mut text, &format!("{n:06} normal"), now + n as i64);
        if n == EMPTY_AFTER {
            line(&mut text, "", now + n as i64);
        }
    }
    let month = 30 * 24 * 3600 * 1_000_000_000i64;
    for n in OLD {
        line(&mut text, &format!("{n:06} old"), now - month + n as i64);
    }
    line(
        &mut text,
        &format!("{BIG:06} {}", "x".repeat(150_000)),
        now + BIG as i64,
    );
    std::fs::write(dir.join(format!("{ID}-json.log")), &text).unwrap();
    text.lines().count()
}

/// The dead-letter lines of `sink`: (number at the start of the message, or 0, reason).
fn dead_letters(t: &TestDir, sink: &str) -> Vec<(u32, String, Value)> {
    json_lines(&t.path().join(format!("data/dead-letter/{sink}.log")))
        .into_iter()
        .map(|v| {
            let n = v["message"]
                .as_str()
                .unwrap()
                .get(..6)
                .map_or(0, |h| h.parse().unwrap());
            (n, v["dead_letter_reason"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

#[test]
fn kafka_and_cloudwatch_refusals_land_in_each_sinks_dead_letter_file_with_their_reasons() {
    let Some(tansu) = require_tansu() else { return };
    if !require_moto() {
        return;
    }
    let t = TestDir::new("dead-letter");
    let broker = Tansu::start(&tansu, t.path());
    broker.create_topic("logs", 1);
    let emu = Emulator::start(&t);
    let lines = write_log(&t.path().join("root"));
    let cfg = t.config(&format!(
        r#"
checkpoint_interval = "1s"
[sources.files]
type = "docker_json_file"
root = "{{dir}}/root"
enrich = false
[sinks.kafka]
type = "kafka"
inputs = ["files"]
brokers = ["{brokers}"]
topic = "logs"
encoding = "json"
message_max_bytes = "100k"
dead_letter = true
[sinks.cw]
type = "cloudwatch"
inputs = ["files"]
region = "us-east-1"
endpoint = "{endpoint}"
group = "dl"
create_missing_group = true
access_key_id = "AKIDTEST"
secret_access_key = "{SECRET}"
retry_max_wait = "2s"
dead_letter = true
"#,
        brokers = broker.address(),
        endpoint = emu.endpoint(),
    ));
    let consumer = Collector::start(&broker.address(), &["logs"]);
    let mut lw = start_logwharf(&cfg, &[]);
    // Kafka takes every line but the big one; CloudWatch every line but the 3 old and the
    // empty one.
    let kafka_wanted = lines - 1;
    assert!(
        consumer.wait_for(kafka_wanted, PATIENCE),
        "kafka got {} of {kafka_wanted}; log:\n{}",
        consumer.len(),
        lw.log()
    );
    lw.wait_metric(
        &t.api_addr(),
        "logwharf_dead_letter_events_total",
        &["sink=\"cw\""],
        4.0,
    );
    let metrics = lw.wait_metric(
        &t.api_addr(),
        "logwharf_dead_letter_events_total",
        &["sink=\"kafka\""],
        1.0,
    );
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());

    // Kafka: the big line, refused as too large; everything else arrived.
    let got: Vec<String> = consumer
        .finish()
        .iter()
        .map(|r| r.json()["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got.len(), kafka_wanted);
    assert!(
        got.iter().all(|m| m.len() < 1000),
        "the big line was not sent"
    );
    let kafka = dead_letters(&t, "kafka");
    assert_eq!(kafka.len(), 1, "{kafka:?}");
    let (n, reason, v) = &kafka[0];
    assert_eq!((*n, reason.as_str()), (BIG, "message_too_large"));
    assert_eq!(v["message"].as_str().unwrap().len(), 7 + 150_000);
    assert_eq!(v["container_id"], ID);
    assert_eq!(v["source"], "files");
    assert_eq!(v["dead_letter_sink"], "kafka");
    assert!(v["dead_letter_time"].as_str().unwrap().ends_with('Z'));

    // CloudWatch: the old lines (too_old) and the empty one; the others arrived.
    let mut cw: BTreeMap<u32, String> = BTreeMap::new();
    for (n, reason, v) in dead_letters(&t, "cw") {
        assert_eq!(v["dead_letter_sink"], "cw");
        assert!(cw.insert(n, reason).is_none(), "written once");
    }
    let expected: BTreeMap<u32, String> = OLD
        .iter()
        .map(|&n| (n, "too_old".to_string()))
        .chain([(0, "empty".to_string())])
        .collect();
    assert_eq!(cw, expected);
    let stored = emu.dump("dl");
    let mut numbers: Vec<u32> = stored
        .iter()
        .map(|e| e["head"].as_str().unwrap()[..6].parse().unwrap())
        .collect();
    numbers.sort();
    let mut want: Vec<u32> = (1..=NORMAL).collect();
    want.push(BIG);
    assert_eq!(numbers, want, "every other line arrived once");
    emu.assert_no_violations();
    assert!(
        metric(
            &metrics,
            "logwharf_sink_rejected_events_total",
            &["sink=\"cw\"", "reason=\"too_old\""]
        ) >= 3.0,
        "still counted as refused: {metrics}"
    );

    // Settled: the checkpoints moved past the refused lines, so a second run sends nothing
    // and writes no dead letter again.
    let again = Collector::start(&broker.address(), &["logs"]);
    run_once(&cfg);
    again.wait_quiet(Duration::from_secs(1), Duration::from_secs(5));
    assert_eq!(again.finish().len(), kafka_wanted, "nothing shipped twice");
    assert_eq!(dead_letters(&t, "kafka").len(), 1);
    assert_eq!(dead_letters(&t, "cw").len(), 4);

    // Sent again (README "Dead letters"): the file back into a json-file root, read by a
    // `--once` run with a data_dir of its own into the kafka sink, its limit raised.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/dead-letters-to-json-file");
    let out = Command::new(script)
        .arg(t.path().join("data/dead-letter/kafka.log"))
        .arg(t.path().join("resend"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resend = t.path().join("resend.toml");
    std::fs::write(
        &resend,
        format!(
            r#"data_dir = "{dir}/resend-data"
[api]
enabled = false
[sources.dead]
type = "docker_json_file"
root = "{dir}/resend"
enrich = false
[sinks.kafka]
type = "kafka"
inputs = ["dead"]
brokers = ["{brokers}"]
topic = "resent"
encoding = "json"
message_max_bytes = "1m"
"#,
            dir = t.path().display(),
            brokers = broker.address()
        ),
    )
    .unwrap();
    broker.create_topic("resent", 1);
    let resent = Collector::start(&broker.address(), &["resent"]);
    run_once(&resend);
    assert!(
        resent.wait_for(1, PATIENCE),
        "the dead letter was sent again"
    );
    resent.wait_quiet(Duration::from_secs(1), Duration::from_secs(5));
    let records = resent.finish();
    assert_eq!(records.len(), 1);
    let back = records[0].json();
    assert_eq!(back["message"], v["message"], "the same message");
    assert_eq!(back["container_id"], ID);
    assert_eq!(back["time"], v["time"]);
}
