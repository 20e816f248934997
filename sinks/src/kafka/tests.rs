//! Unit tests of the sink task against librdkafka's built-in mock cluster (the integration
//! tests in tests/kafka.rs run against a real broker). librdkafka runs its own threads on the
//! real clock, so no paused time: the tests wait for conditions ([`wait_until`]) whose
//! deadlines only cap a hang.

use super::*;
use bytes::Bytes;
use logwharf_collector::{AckToken, ContainerMeta, Event, SinkBatch, Stream};
use logwharf_config::{ByteSize, Encoding, Template};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::mpsc;

const TOPIC: &str = "logs";

fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let c = MockCluster::new(1).unwrap();
    c.create_topic(TOPIC, 2, 1).unwrap();
    c
}

fn config(brokers: &str) -> KafkaSinkConfig {
    let mut c = KafkaSinkConfig::new(vec![brokers.to_string()], Template::parse(TOPIC).unwrap());
    c.encoding = Encoding::Raw;
    c
}

fn container(n: u8) -> Arc<ContainerMeta> {
    Arc::new(ContainerMeta::from_id(format!("{n:02}").repeat(32)))
}

/// A batch of `msgs` from container `c`, with a callback channel for its acknowledgement.
fn batch(c: &Arc<ContainerMeta>, msgs: &[String]) -> (SinkBatch, mpsc::Receiver<bool>) {
    let (tx, rx) = mpsc::channel();
    let events = msgs
        .iter()
        .map(|m| {
            let mut e = Event::new(
                1_700_000_000_000_000_000,
                Stream::Stdout,
                Bytes::from(m.clone()),
            );
            e.container = Some(c.clone());
            e
        })
        .collect();
    let b = Batch {
        source: "src".into(),
        events,
    };
    (
        SinkBatch::detached(
            b,
            AckToken::new(Some(Box::new(move |ok| {
                let _ = tx.send(ok);
            }))),
        ),
        rx,
    )
}

fn lines(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("line {i}")).collect()
}

/// Polls `cond` until it holds; panics with `what` after a minute.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads every message of `TOPIC` until `want` are seen (and half a second more, for
/// duplicates) or 60 s pass: (key, value) in partition order.
fn consume(brokers: &str, want: usize) -> Vec<(String, String)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "t")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut end = std::time::Instant::now() + Duration::from_secs(60);
    let mut lingering = false;
    while std::time::Instant::now() < end {
        if out.len() >= want && !lingering {
            // A little longer, so that duplicates would show.
            lingering = true;
            end = std::time::Instant::now() + Duration::from_millis(500);
        }
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    out
}

async fn run(sink: KafkaSink, input: SinkInput) {
    tokio::time::timeout(Duration::from_secs(60), Box::new(sink).run(input))
        .await
        .expect("the sink finishes once its input closes and everything is settled")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_in_order_per_key_and_acks_each_batch() {
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let sink = KafkaSink::new("k", &config(&brokers)).unwrap();
    let (tx, input) = SinkInput::for_test("k");
    let (a, b) = (container(1), container(2));
    let mut acks = Vec::new();
    for i in 0..10 {
        let (sb, rx) = batch(if i % 2 == 0 { &a } else { &b }, &lines(i * 100, 100));
        tx.send(sb).ok().unwrap();
        acks.push(rx);
    }
    drop(tx);
    run(sink, input).await;
    for rx in acks {
        assert_eq!(rx.try_recv(), Ok(true));
    }
    let got = consume(&brokers, 1000);
    assert_eq!(got.len(), 1000);
    let mut per_key: HashMap<String, Vec<usize>> = HashMap::new();
    for (k, v) in got {
        per_key
            .entry(k)
            .or_default()
            .push(v.strip_prefix("line ").unwrap().parse().unwrap());
    }
    assert_eq!(per_key.len(), 2, "the key is the container id");
    for (k, nums) in per_key {
        assert!(k == a.id || k == b.id);
        assert!(
            nums.windows(2).all(|w| w[0] < w[1]),
            "in order within the key"
        );
        assert_eq!(nums.len(), 500);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_and_the_rest_flow_on() {
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let mut cfg = config(&brokers);
    cfg.message_max_bytes = ByteSize(1000);
    let sink = KafkaSink::new("k", &cfg).unwrap();
    let (tx, input) = SinkInput::for_test("k");
    let mut msgs = lines(0, 10);
    msgs[4] = "x".repeat(5000);
    let (sb, rx) = batch(&container(1), &msgs);
    tx.send(sb).ok().unwrap();
    let (sb2, rx2) = batch(&container(1), &lines(10, 5));
    tx.send(sb2).ok().unwrap();
    drop(tx);
    run(sink, input).await;
    assert_eq!(rx.try_recv(), Ok(true), "settled: the refusal is counted");
    assert_eq!(rx2.try_recv(), Ok(true));
    let got = consume(&brokers, 14);
    assert_eq!(got.len(), 14);
    assert!(got.iter().all(|(_, v)| v.len() < 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_through_a_broker_outage_with_a_tiny_queue() {
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let mut cfg = config(&brokers);
    cfg.queue_max_messages = 20;
    let mut task = KafkaSink::new("k", &cfg).unwrap().task;
    let waits = Arc::new(std::sync::atomic::AtomicU64::new(0));
    task.backpressure = metrics::Counter::from_arc(waits.clone());
    let (tx, input) = SinkInput::for_test("k");
    mock.broker_down(1).unwrap();
    let mut acks = Vec::new();
    for i in 0..10 {
        let (sb, rx) = batch(&container(1), &lines(i * 30, 30));
        tx.send(sb).ok().unwrap();
        acks.push(rx);
    }
    drop(tx);
    let task = tokio::spawn(task.run(input));
    wait_until("the full queue never made the sink wait", || {
        waits.load(std::sync::atomic::Ordering::Relaxed) > 0
    })
    .await;
    assert!(
        acks.iter().all(|rx| rx.try_recv().is_err()),
        "nothing is acknowledged while the broker is down"
    );
    mock.broker_up(1).unwrap();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    for rx in acks {
        assert_eq!(rx.try_recv(), Ok(true));
    }
    let got = consume(&brokers, 300);
    assert_eq!(got.len(), 300, "nothing dropped while the queue was full");
    let nums: Vec<usize> = got
        .iter()
        .map(|(_, v)| v.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(
        nums.windows(2).all(|w| w[0] < w[1]),
        "one key: one partition, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_error_replaces_the_producer_and_resends_what_was_not_delivered() {
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let mut task = KafkaSink::new("k", &config(&brokers)).unwrap().task;
    let restarts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    task.restarts = metrics::Counter::from_arc(restarts.clone());
    // Hold the broker's responses back so that messages are in librdkafka's hands when the
    // fatal error strikes (long enough that the wait below cannot miss that moment).
    mock.broker_round_trip_time(1, Duration::from_secs(2))
        .unwrap();
    let (tx, input) = SinkInput::for_test("k");
    let mut acks = Vec::new();
    for i in 0..20 {
        let (sb, rx) = batch(&container(1), &lines(i * 50, 50));
        tx.send(sb).ok().unwrap();
        acks.push(rx);
    }
    drop(tx);
    let fatal = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let inflight = task.inflight.clone();
    let handle = tokio::spawn(task.run_with_fault(input, fatal.clone()));
    wait_until("nothing was handed to librdkafka", || inflight.sent() > 0).await;
    fatal.store(true, std::sync::atomic::Ordering::Release);
    mock.broker_round_trip_time(1, Duration::from_millis(0))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(restarts.load(std::sync::atomic::Ordering::Relaxed), 1);
    for rx in acks {
        assert_eq!(rx.try_recv(), Ok(true));
    }
    let got = consume(&brokers, 1000);
    assert_eq!(got.len(), 1000, "no duplicates either");
    let mut nums: Vec<usize> = got
        .iter()
        .map(|(_, v)| v.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    nums.sort_unstable();
    nums.dedup();
    assert_eq!(
        nums.len(),
        1000,
        "every message delivered after the replacement"
    );
}

#[test]
fn settings_librdkafka_refuses_in_combination_fail_the_build() {
    let mut cfg = config("127.0.0.1:1");
    cfg.librdkafka_options
        .0
        .insert("queue.buffering.backpressure.threshold".into(), "5".into());
    let err = format!("{:#}", KafkaSink::new("k", &cfg).err().unwrap());
    assert!(err.contains("enable.idempotence"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_at_the_shutdown_deadline_nothing_undelivered_is_acknowledged() {
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let sink = KafkaSink::new("k", &config(&brokers)).unwrap();
    mock.broker_down(1).unwrap();
    let (tx, input) = SinkInput::for_test("k");
    let (sb, rx) = batch(&container(1), &lines(0, 10));
    tx.send(sb).ok().unwrap();
    drop(tx);
    // The input is closed but the broker is down: the sink keeps waiting to flush…
    let waited = tokio::time::timeout(Duration::from_secs(2), Box::new(sink).run(input)).await;
    assert!(waited.is_err(), "the sink waits for the deliveries it owes");
    // …until the runtime gives up on it (here: the timeout dropped the task). The batch is
    // left unacknowledged, so its checkpoint does not move.
    let ok = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(ok, Ok(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_refuses_as_too_large_is_counted_and_the_rest_flow_on() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let mock = cluster();
    let brokers = mock.bootstrap_servers();
    let mut cfg = config(&brokers);
    // All five messages in one request.
    cfg.librdkafka_options
        .0
        .insert("linger.ms".into(), "200".into());
    let sink = KafkaSink::new("k", &cfg).unwrap();
    // The broker (not the producer's own limit) refuses the request holding all five, then,
    // when they come one per request, the first of them again: that one is too large.
    let too_large = RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
    mock.request_errors(RDKafkaApiKey::Produce, &[too_large, too_large]);
    let (tx, input) = SinkInput::for_test("k");
    let (sb, rx) = batch(&container(1), &lines(0, 5));
    tx.send(sb).ok().unwrap();
    let task = tokio::spawn(Box::new(sink).run(input));
    let first = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(
        first,
        Ok(true),
        "settled: one refused for good and counted, four delivered"
    );
    let (sb2, rx2) = batch(&container(1), &lines(5, 3));
    tx.send(sb2).ok().unwrap();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(rx2.try_recv(), Ok(true));
    let got = consume(&brokers, 7);
    let mut values: Vec<&str> = got.iter().map(|(_, v)| v.as_str()).collect();
    values.sort_by_key(|v| v[5..].parse::<u32>().unwrap());
    assert_eq!(
        values,
        ["line 1", "line 2", "line 3", "line 4", "line 5", "line 6", "line 7"],
        "only the message refused alone is missing, nothing twice"
    );
}
