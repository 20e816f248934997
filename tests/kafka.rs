//! End-to-end: real containers writing real json-file logs (dockerd, scripts/testbed) → the
//! real `logwharf` binary → the kafka sink → a real Kafka-protocol broker (tansu) → read back
//! with an rdkafka consumer.

mod common;
mod kafka_support;

use common::docker::{self, Container};
use common::*;
use kafka_support::{require_tansu, Collector, Record, Tansu, TlsFront};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Both peers, or `None` (skipped; failing under CI=true).
fn peers() -> Option<std::path::PathBuf> {
    let tansu = require_tansu()?;
    if !docker::require() {
        return None;
    }
    Some(tansu)
}

/// A config reading one container's json-file log into a `[sinks.kafka]` with `extra` keys.
fn config(container_ids: &[&str], brokers: &str, extra: &str) -> String {
    let include: Vec<String> = container_ids
        .iter()
        .map(|id| format!("\"{id}*\""))
        .collect();
    format!(
        r#"
checkpoint_interval = "1s"
shutdown_timeout = "20s"
[sources.containers]
type = "docker_json_file"
include = [{}]
[sinks.kafka]
type = "kafka"
inputs = ["containers"]
brokers = ["{brokers}"]
{extra}
"#,
        include.join(", ")
    )
}

fn message(r: &Record) -> String {
    r.json()["message"].as_str().unwrap().to_string()
}

fn number(r: &Record) -> u64 {
    let m = message(r);
    m.parse().unwrap_or_else(|_| panic!("not a number: {m:?}"))
}

#[test]
fn a_100k_line_container_arrives_complete_in_order_keyed_by_container() {
    let Some(bin) = peers() else { return };
    let t = TestDir::new("kafka-100k");
    let broker = Tansu::start(&bin, t.path());
    broker.create_topic("logs", 3);
    let c = Container::create("lw-e2e-kafka-100k", &[], "seq 1 100000; echo to-stderr >&2");
    let cfg = t.config(&config(
        &[&c.id],
        &broker.address(),
        "topic = \"logs\"\nencoding = \"json\"\nheaders = [\"container_id\", \"stream\"]",
    ));
    let consumer = Collector::start(&broker.address(), &["logs"]);
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    assert_eq!(c.wait(), 0);
    let done = consumer.wait_for(100_001, Duration::from_secs(180));
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let records = consumer.finish();
    assert!(
        done,
        "only {} messages arrived; log:\n{}",
        records.len(),
        lw.log()
    );
    assert_eq!(records.len(), 100_001, "no duplicates");

    // Key = container id, so the whole container is in one partition, in order.
    assert!(records
        .iter()
        .all(|r| r.key.as_deref() == Some(c.id.as_bytes())));
    let partitions: HashSet<i32> = records.iter().map(|r| r.partition).collect();
    assert_eq!(partitions.len(), 1, "one key, one partition");
    let mut in_partition = records.clone();
    in_partition.sort_by_key(|r| r.offset);
    let stdout: Vec<u64> = in_partition
        .iter()
        .filter(|r| r.json()["stream"] == "stdout")
        .map(number)
        .collect();
    assert_eq!(stdout, (1..=100_000).collect::<Vec<_>>());

    // The value is the whole event, as the json encoding writes it.
    let e = records[0].json();
    assert_eq!(e["container_id"], c.id.as_str());
    assert_eq!(e["container_name"], c.name.as_str());
    assert_eq!(e["source"], "containers");
    assert!(e["time"].as_str().unwrap().ends_with('Z'));
    let err = records
        .iter()
        .find(|r| r.json()["stream"] == "stderr")
        .expect("the stderr line");
    assert_eq!(message(err), "to-stderr");
    assert_eq!(
        err.headers,
        vec![
            ("container_id".to_string(), c.id.clone()),
            ("stream".to_string(), "stderr".to_string())
        ]
    );
}

#[test]
fn the_topic_template_fans_two_containers_into_two_topics() {
    let Some(bin) = peers() else { return };
    let t = TestDir::new("kafka-fanout");
    let broker = Tansu::start(&bin, t.path());
    let a = Container::create("lw-e2e-kafka-fan-a", &[], "seq 1 2000 | busybox sed s/^/a/");
    let b = Container::create("lw-e2e-kafka-fan-b", &[], "seq 1 3000 | busybox sed s/^/b/");
    // The issue's example: one topic per container name (names from the Docker API).
    let (ta, tb) = (format!("logs.{}", a.name), format!("logs.{}", b.name));
    broker.create_topic(&ta, 2);
    broker.create_topic(&tb, 2);
    let cfg = t.config(&config(
        &[&a.id, &b.id],
        &broker.address(),
        "topic = \"logs.{{.Name}}\"\nencoding = \"json\"",
    ));
    a.start();
    b.start();
    assert_eq!(a.wait(), 0);
    assert_eq!(b.wait(), 0);
    let log = run_once(&cfg);
    let consumer = Collector::start(&broker.address(), &[&ta, &tb]);
    let complete = consumer.wait_for(5000, Duration::from_secs(60));
    consumer.wait_quiet(Duration::from_millis(500), Duration::from_secs(5));
    let records = consumer.finish();
    assert!(complete, "{} of 5000; log:\n{log}", records.len());
    let mut by_topic: HashMap<&str, Vec<serde_json::Value>> = HashMap::new();
    for r in &records {
        by_topic.entry(r.topic.as_str()).or_default().push(r.json());
    }
    for (topic, c, n) in [(&ta, &a, 2000), (&tb, &b, 3000)] {
        let events = &by_topic[topic.as_str()];
        assert_eq!(events.len(), n, "{topic}");
        assert!(
            events
                .iter()
                .all(|e| e["container_name"] == c.name.as_str()
                    && e["container_id"] == c.id.as_str()),
            "only {} in {topic}",
            c.name
        );
    }
}

#[test]
fn each_compression_codec_round_trips() {
    let Some(bin) = peers() else { return };
    let t = TestDir::new("kafka-codecs");
    let broker = Tansu::start(&bin, t.path());
    let c = Container::create(
        "lw-e2e-kafka-codecs",
        &[],
        "i=0; while [ $i -lt 3000 ]; do echo \"line $i lorem ipsum dolor sit amet\"; i=$((i+1)); done",
    );
    c.start();
    assert_eq!(c.wait(), 0);
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let mut text = config(
        &[&c.id],
        &broker.address(),
        "topic = \"codec-none\"\ncompression = \"none\"",
    );
    for codec in &codecs[1..] {
        text.push_str(&format!(
            "[sinks.kafka_{codec}]\ntype = \"kafka\"\ninputs = [\"containers\"]\nbrokers = [\"{}\"]\n\
             topic = \"codec-{codec}\"\ncompression = \"{codec}\"\nencoding = \"docker\"\n",
            broker.address()
        ));
    }
    for codec in codecs {
        broker.create_topic(&format!("codec-{codec}"), 1);
    }
    let cfg = t.config(&text);
    let log = run_once(&cfg);
    for codec in codecs {
        let topic = format!("codec-{codec}");
        let consumer = Collector::start(&broker.address(), &[&topic]);
        let ok = consumer.wait_for(3000, Duration::from_secs(60));
        consumer.wait_quiet(Duration::from_millis(300), Duration::from_secs(5));
        let records = consumer.finish();
        assert!(ok, "{codec}: {} of 3000; log:\n{log}", records.len());
        assert_eq!(records.len(), 3000, "{codec}");
        let msgs: Vec<String> = records.iter().map(message_of_any).collect();
        let want: Vec<String> = (0..3000)
            .map(|i| format!("line {i} lorem ipsum dolor sit amet"))
            .collect();
        assert_eq!(msgs, want, "{codec}");
    }
}

/// The message of a `json` (`message`) or `docker` (`log`, with its `\n`) value.
fn message_of_any(r: &Record) -> String {
    let v = r.json();
    match (v.get("message"), v.get("log")) {
        (Some(m), _) => m.as_str().unwrap().to_string(),
        (None, Some(l)) => l.as_str().unwrap().trim_end_matches('\n').to_string(),
        _ => panic!("neither message nor log: {v}"),
    }
}

#[test]
fn a_message_over_the_size_limit_is_counted_and_the_rest_flow_on() {
    let Some(bin) = peers() else { return };
    let t = TestDir::new("kafka-toolarge");
    let broker = Tansu::start(&bin, t.path());
    broker.create_topic("logs", 1);
    let c = Container::create(
        "lw-e2e-kafka-toolarge",
        &[],
        "seq 1 500; head -c 300000 /dev/zero | tr '\\0' x; echo; seq 501 1000",
    );
    let api = free_port();
    // tansu enforces no message size limit, so the limit is the producer's own
    // `message_max_bytes` (librdkafka's `message.max.bytes`), set below the 300 KB line.
    let cfg = t.config(&format!(
        "{}\n[api]\naddress = \"127.0.0.1:{api}\"\n",
        config(
            &[&c.id],
            &broker.address(),
            "topic = \"logs\"\nencoding = \"json\"\nmessage_max_bytes = \"100k\"",
        )
    ));
    let consumer = Collector::start(&broker.address(), &["logs"]);
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    assert_eq!(c.wait(), 0);
    let done = consumer.wait_for(1000, Duration::from_secs(60));
    let metrics = http_get(&format!("127.0.0.1:{api}"), "/metrics").unwrap_or_default();
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let log = lw.log();
    consumer.wait_quiet(Duration::from_millis(300), Duration::from_secs(5));
    let records = consumer.finish();
    assert!(done, "{} of 1000; log:\n{log}", records.len());
    let nums: Vec<u64> = records.iter().map(number).collect();
    assert_eq!(
        nums,
        (1..=1000).collect::<Vec<_>>(),
        "the rest flowed on, in order"
    );
    assert_eq!(
        metric(
            &metrics,
            "logwharf_sink_errors_total",
            &["sink=\"kafka\"", "kind=\"message_too_large\""]
        ),
        1.0,
        "{metrics}"
    );
    assert!(
        log.contains("kafka message refused") && log.contains("message_too_large"),
        "reported at WARN: {log}"
    );
    // The refused line was settled (counted), so the checkpoint moved past it: a second
    // run ships nothing again.
    let again = Collector::start(&broker.address(), &["logs"]);
    run_once(&cfg);
    again.wait_quiet(Duration::from_secs(1), Duration::from_secs(5));
    assert_eq!(again.finish().len(), 1000, "nothing shipped twice");
}

#[test]
fn over_tls_the_broker_is_verified_and_every_line_arrives() {
    let Some(bin) = peers() else { return };
    let tools = has_openssl() && TlsFront::available();
    if !require("openssl and socat (scripts/testbed)", tools) {
        return;
    }
    let t = TestDir::new("kafka-tls");
    make_certs(t.path());
    // A second CA that did not sign the broker's certificate.
    let other = t.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    make_certs(&other);
    let tls_port = free_port();
    let broker = Tansu::start_advertising(&bin, t.path(), Some(tls_port));
    broker.create_topic("logs", 1);
    let _front = TlsFront::start(tls_port, broker.port, t.path());
    let tls_address = format!("127.0.0.1:{tls_port}");
    let c = Container::create("lw-e2e-kafka-tls", &[], "seq 1 5000");
    c.start();
    assert_eq!(c.wait(), 0);

    // Verification is on by default: against the wrong CA nothing is delivered, the
    // handshake failure is reported naming the broker, and nothing is acknowledged.
    let wrong = t.config(&config(
        &[&c.id],
        &tls_address,
        "topic = \"logs\"\nencoding = \"raw\"\ntls = { ca_file = \"{dir}/other/ca.crt\" }",
    ));
    let mut lw = Logwharf::start(&wrong, &[]);
    lw.wait_log("certificate verify failed", 1);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let log = lw.log();
    assert!(
        log.contains("kafka client error")
            && log.contains(&tls_address)
            && log.contains("certificate verify failed"),
        "the TLS failure is reported: {log}"
    );

    let ca = t.path().join("ca.crt");
    let ca = ca.to_str().unwrap();
    let consumer = Collector::start_with(
        &tls_address,
        &["logs"],
        &[("security.protocol", "ssl"), ("ssl.ca.location", ca)],
    );
    let right = t.config(&config(
        &[&c.id],
        &tls_address,
        "topic = \"logs\"\nencoding = \"raw\"\ntls = { ca_file = \"{dir}/ca.crt\" }",
    ));
    // The same data dir: the refused run checkpointed nothing, so this one ships it all.
    let out = run_once(&right);
    let done = consumer.wait_for(5000, Duration::from_secs(60));
    consumer.wait_quiet(Duration::from_millis(500), Duration::from_secs(5));
    let records = consumer.finish();
    assert!(done, "{} of 5000; log:\n{out}", records.len());
    let values: Vec<u64> = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).parse().unwrap())
        .collect();
    assert_eq!(
        values,
        (1..=5000).collect::<Vec<_>>(),
        "all, once, in order"
    );
}

#[test]
fn the_broker_killed_for_10s_mid_stream_loses_and_duplicates_nothing() {
    let Some(bin) = peers() else { return };
    let t = TestDir::new("kafka-restart");
    let mut broker = Tansu::start(&bin, t.path());
    broker.create_topic("logs", 3);
    // 100,000 numbered lines over ~10 s.
    let c = Container::create(
        "lw-e2e-kafka-restart",
        &[],
        "i=0; while [ $i -lt 100000 ]; do seq $((i+1)) $((i+1000)); i=$((i+1000)); sleep 0.1; done",
    );
    let api = free_port();
    let cfg = t.config(&format!(
        "{}\n[api]\naddress = \"127.0.0.1:{api}\"\n",
        config(
            &[&c.id],
            &broker.address(),
            "topic = \"logs\"\nencoding = \"json\""
        )
    ));
    let before = Collector::start(&broker.address(), &["logs"]);
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    assert!(
        before.wait_for(20_000, Duration::from_secs(60)),
        "the stream did not start; log:\n{}",
        lw.log()
    );
    // tansu keeps its log in memory, so what it stored is gone once it is killed. To count
    // only what logwharf loses, freeze logwharf for a moment, let the consumer read all that
    // the broker has stored (the acknowledgements for it wait in logwharf's socket), then
    // kill the broker with logwharf's queue full of messages not yet sent.
    unsafe { libc::kill(lw.pid(), libc::SIGSTOP) };
    before.wait_quiet(Duration::from_millis(1500), Duration::from_secs(30));
    broker.kill();
    unsafe { libc::kill(lw.pid(), libc::SIGCONT) };
    let stored_before = before.finish();
    std::thread::sleep(Duration::from_secs(10));
    broker.restart();
    broker.create_topic("logs", 3);
    let after = Collector::start(&broker.address(), &["logs"]);
    assert_eq!(c.wait(), 0);
    let n_before = stored_before.len();
    let complete = after.wait_for(100_000 - n_before, Duration::from_secs(90));
    after.wait_quiet(Duration::from_secs(1), Duration::from_secs(10));
    let metrics = http_get(&format!("127.0.0.1:{api}"), "/metrics").unwrap_or_default();
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let stored_after = after.finish();
    let first: Vec<u64> = in_offset_order(&stored_before);
    let second: Vec<u64> = in_offset_order(&stored_after);
    eprintln!(
        "broker restart: {} before the kill, {} after; restarts {}, retries {}",
        first.len(),
        second.len(),
        metric(&metrics, "logwharf_sink_client_restarts_total", &[]),
        metric(&metrics, "logwharf_sink_retries_total", &[]),
    );
    assert!(
        complete,
        "{} + {} of 100000; log:\n{}",
        first.len(),
        second.len(),
        lw.log()
    );
    // Everything, once, in order: what the first broker stored, then the rest.
    let mut all = first.clone();
    all.extend(&second);
    let distinct: HashSet<u64> = all.iter().copied().collect();
    let missing: Vec<u64> = (1..=100_000).filter(|n| !distinct.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "lost {} lines, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        all.len(),
        100_000,
        "{} duplicates",
        all.len() - distinct.len()
    );
    assert_eq!(all, (1..=100_000).collect::<Vec<_>>(), "in order");
}

/// Message numbers of one container (one partition) in offset order.
fn in_offset_order(records: &[Record]) -> Vec<u64> {
    let partitions: HashSet<i32> = records.iter().map(|r| r.partition).collect();
    assert!(partitions.len() <= 1, "one container, one partition");
    let mut r = records.to_vec();
    r.sort_by_key(|r| r.offset);
    r.iter().map(number).collect()
}
