//! The librdkafka consumer of a `kafka` source, on a thread of its own: it polls, decodes
//! into batches (one batch may carry several partitions), sends them into the pipeline
//! (waiting there is the backpressure), commits the settled offsets every `commit_interval`
//! (synchronously: one round trip, its outcome known and counted where it is made),
//! and serves the group's rebalance callbacks, which run inside `poll` on this same thread —
//! so a revocation may block to let batches settle without stopping anything else.
//!
//! librdkafka keeps the group membership alive from its own threads; while the pipeline makes
//! a send wait, the partitions are paused and the consumer is still polled, so a rebalance is
//! served at once and `max.poll.interval.ms` is never exceeded by backpressure.

use super::config::{Decoding, KafkaSourceConfig};
use super::decode::{MessageDecoder, MessageMeta};
use super::partitions::{Partitions, Tp};
use crate::ack::OnDelivered;
use crate::metrics as m;
use crate::shutdown::Shutdown;
use crate::topology::SourceOutput;
use crate::Event;
use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the consumer thread needs of the config.
pub struct Settings {
    pub source: Arc<str>,
    pub topics: Vec<String>,
    pub decoding: Decoding,
    pub batch_max_events: usize,
    pub commit_interval: Duration,
    pub revoke_timeout: Duration,
}

impl Settings {
    pub fn new(source: &Arc<str>, c: &KafkaSourceConfig) -> Settings {
        Settings {
            source: source.clone(),
            topics: c.topics.clone(),
            decoding: c.decoding,
            batch_max_events: c.batch_max_events,
            commit_interval: c.commit_interval.0,
            revoke_timeout: c.revoke_timeout.0,
        }
    }
}

/// The consumer's context: the group's rebalance callbacks, commit results, statistics.
pub struct Context {
    source: Arc<str>,
    partitions: Arc<Mutex<Partitions>>,
    revoke_timeout: Duration,
}

impl Context {
    pub fn new(source: Arc<str>, revoke_timeout: Duration) -> Context {
        Context {
            source,
            partitions: Arc::default(),
            revoke_timeout,
        }
    }

    pub fn partitions(&self) -> MutexGuard<'_, Partitions> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count_rebalance(&self, kind: &'static str, n: usize) {
        metrics::counter!(m::KAFKA_REBALANCES, "source" => self.source.to_string(), "kind" => kind)
            .increment(n as u64);
    }

    fn count_commit(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        metrics::counter!(m::KAFKA_COMMITS, "source" => self.source.to_string(), "result" => result)
            .increment(1);
    }

    /// Commits `offsets` and waits for the answer (one round trip to the group coordinator
    /// per `commit_interval`, so every commit's outcome is known where it is made).
    pub fn commit(&self, consumer: &BaseConsumer<Context>, offsets: &[(Tp, i64)]) {
        if offsets.is_empty() {
            return;
        }
        let r = consumer.commit(&list(offsets), CommitMode::Sync);
        self.count_commit(r.is_ok());
        if r.is_err() {
            self.partitions().retry(offsets);
        }
        match r {
            Ok(()) => {
                tracing::debug!(source = %self.source, offsets = %offset_names(offsets), "offsets committed")
            }
            Err(e) => {
                tracing::warn!(source = %self.source, error = %e, "committing offsets failed; retried with the next commit (the partitions' next owner reads from the last committed one)")
            }
        }
    }

    /// Stops reading `tps`: lets their batches settle for `revoke_timeout`, commits what did.
    fn revoke(&self, consumer: &BaseConsumer<Context>, tps: &[Tp]) {
        self.count_rebalance("revoke", tps.len());
        let (offsets, unsettled) = self.partitions().revoke(tps, self.revoke_timeout);
        if unsettled > 0 {
            metrics::counter!(m::KAFKA_UNSETTLED_ON_REVOKE, "source" => self.source.to_string())
                .increment(unsettled as u64);
            tracing::warn!(source = %self.source, batches = unsettled, timeout = ?self.revoke_timeout,
                "partitions revoked with batches not yet delivered; their next owner reads those messages again");
        }
        self.commit(consumer, &offsets);
        for (topic, p) in tps {
            lag_gauge(&self.source, topic, *p).set(0.0);
        }
        tracing::info!(source = %self.source, partitions = %names(tps), committed = %offset_names(&offsets), "partitions revoked");
    }
}

impl ClientContext for Context {
    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(s) = serde_json::from_slice::<Stats>(statistics) else {
            return;
        };
        let owned = self.partitions().owned();
        for (topic, t) in s.topics {
            for p in t.partitions.into_values() {
                let owns = owned
                    .iter()
                    .any(|(n, q)| **n == *topic && *q == p.partition);
                if p.partition >= 0 && owns && p.consumer_lag >= 0 {
                    lag_gauge(&self.source, &topic, p.partition).set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.revoke(consumer, &tps(tpl));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                // librdkafka keeps a partition's pause across assignments: a partition paused
                // by a waiting send and assigned again would never be fetched. A send still
                // waiting pauses it again at its next tick.
                let _ = consumer.resume(tpl);
                let tps = tps(tpl);
                self.count_rebalance("assign", tps.len());
                let mut p = self.partitions();
                for tp in &tps {
                    p.assign(tp.clone());
                }
                tracing::info!(source = %self.source, partitions = %names(&tps), "partitions assigned");
            }
            Rebalance::Error(e) => {
                self.count_rebalance("error", 1);
                tracing::warn!(source = %self.source, error = %e, "group rebalance failed");
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

fn lag_gauge(source: &str, topic: &str, partition: i32) -> metrics::Gauge {
    metrics::gauge!(m::KAFKA_CONSUMER_LAG, "source" => source.to_string(), "topic" => topic.to_string(), "partition" => partition.to_string())
}

/// The parts of librdkafka's statistics the lag gauges need.
#[derive(serde::Deserialize)]
struct Stats {
    #[serde(default)]
    topics: HashMap<String, TopicStats>,
}

#[derive(serde::Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: HashMap<String, PartitionStats>,
}

#[derive(serde::Deserialize)]
struct PartitionStats {
    partition: i32,
    consumer_lag: i64,
}

fn tps(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
        .collect()
}

fn names(tps: &[Tp]) -> String {
    let v: Vec<String> = tps.iter().map(|(t, p)| format!("{t}[{p}]")).collect();
    v.join(" ")
}

/// `logs[2]@4834 …`: each partition with its offset, for the logs.
fn offset_names(offsets: &[(Tp, i64)]) -> String {
    let v: Vec<String> = offsets
        .iter()
        .map(|((t, p), o)| format!("{t}[{p}]@{o}"))
        .collect();
    v.join(" ")
}

fn list(offsets: &[(Tp, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for ((topic, p), o) in offsets {
        // A partition and offset from this consumer's own assignment: always valid.
        let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*o));
    }
    tpl
}

/// Events read and not yet sent, with the partitions they came from.
#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    /// Index into `parts` of each event's partition.
    part_of: Vec<usize>,
    /// (partition, generation it was read under, offset after its last message here).
    parts: Vec<(Tp, u64, i64)>,
}

impl Pending {
    fn push(&mut self, event: Event, tp: &Tp, generation: u64, next_offset: i64) {
        let i = match self
            .parts
            .iter()
            .position(|(t, g, _)| t == tp && *g == generation)
        {
            Some(i) => i,
            None => {
                self.parts.push((tp.clone(), generation, next_offset));
                self.parts.len() - 1
            }
        };
        self.parts[i].2 = next_offset;
        self.events.push(event);
        self.part_of.push(i);
    }

    /// The events still owned, and the callback settling every partition they carry.
    fn take(&mut self, partitions: &Partitions) -> (Vec<Event>, Option<OnDelivered>) {
        let parts = std::mem::take(&mut self.parts);
        let part_of = std::mem::take(&mut self.part_of);
        let mut events = std::mem::take(&mut self.events);
        let mut live = Vec::with_capacity(parts.len());
        let mut callbacks = Vec::with_capacity(parts.len());
        for (tp, generation, next) in &parts {
            let cb = partitions.track(tp, *generation, *next);
            live.push(cb.is_some());
            callbacks.extend(cb);
        }
        if live.iter().any(|l| !l) {
            // Read under an assignment that is over: the partition's next owner reads them.
            let mut i = 0;
            events.retain(|_| {
                i += 1;
                live[part_of[i - 1]]
            });
        }
        let on_done: OnDelivered = Box::new(move |ok| {
            for cb in callbacks {
                cb(ok);
            }
        });
        (events, Some(on_done))
    }

    fn len(&self) -> usize {
        self.events.len()
    }
}

/// Turns polled messages into the pending batch.
struct Reader<'a> {
    s: &'a Settings,
    decoder: MessageDecoder,
    pending: Pending,
    topic_names: HashMap<String, Arc<str>>,
    headers: Vec<(String, Vec<u8>)>,
    last_error: Option<Instant>,
    last_commit: Instant,
    /// Per partition: the assignment (generation) and offset of the last message read, to log
    /// where each assignment starts reading and any jump in the offsets.
    positions: HashMap<Tp, (u64, i64)>,
    /// Value bytes read since the last batch was sent (`logwharf_source_read_bytes_total`).
    read_bytes: u64,
}

impl Reader<'_> {
    /// Every `commit_interval`: commits the offsets that settled since the last commit.
    fn commit_due(&mut self, consumer: &BaseConsumer<Context>) {
        if self.last_commit.elapsed() < self.s.commit_interval {
            return;
        }
        self.last_commit = Instant::now();
        let due = consumer.context().partitions().due();
        consumer.context().commit(consumer, &due);
    }

    /// Handles one poll result; false when there was nothing.
    fn take(
        &mut self,
        consumer: &BaseConsumer<Context>,
        polled: Option<KafkaResult<BorrowedMessage<'_>>>,
    ) -> bool {
        match polled {
            Some(Ok(msg)) => {
                self.message(consumer, &msg);
                true
            }
            Some(Err(e)) => {
                metrics::counter!(m::SOURCE_ERRORS, "source" => self.s.source.to_string(), "kind" => "consume")
                    .increment(1);
                if self
                    .last_error
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(30))
                {
                    self.last_error = Some(Instant::now());
                    tracing::warn!(source = %self.s.source, error = %e, "kafka consumer error");
                }
                true
            }
            None => false,
        }
    }

    fn message(&mut self, consumer: &BaseConsumer<Context>, msg: &BorrowedMessage<'_>) {
        let topic = match self.topic_names.get(msg.topic()) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = msg.topic().into();
                self.topic_names.insert(msg.topic().to_string(), t.clone());
                t
            }
        };
        let tp = (topic, msg.partition());
        let Some(generation) = consumer.context().partitions().generation(&tp) else {
            // From an assignment that is over: not committed, so its next owner reads it.
            return;
        };
        self.note_position(consumer, &tp, generation, msg.offset());
        self.headers.clear();
        if let Some(h) = msg.headers() {
            for h in h.iter() {
                self.headers
                    .push((h.key.to_string(), h.value.unwrap_or_default().to_vec()));
            }
        }
        self.read_bytes += msg.payload_len() as u64;
        let hs: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let d = self.decoder.decode(
            msg.payload(),
            MessageMeta {
                timestamp_ms: msg.timestamp().to_millis(),
                headers: &hs,
            },
        );
        if let Some(kind) = d.error {
            metrics::counter!(m::KAFKA_DECODE_ERRORS, "source" => self.s.source.to_string(), "topic" => tp.0.to_string(), "kind" => kind)
                .increment(1);
        }
        self.pending
            .push(d.event, &tp, generation, msg.offset() + 1);
    }
}

impl Reader<'_> {
    /// Logs where an assignment starts reading a partition, and offsets that do not follow
    /// the previous one (compaction and transaction markers leave such gaps in a topic; a
    /// fetch that skipped messages would too, so it is on record).
    fn note_position(
        &mut self,
        consumer: &BaseConsumer<Context>,
        tp: &Tp,
        generation: u64,
        offset: i64,
    ) {
        // Named only where a line is logged: this runs for every message.
        let name = || names(std::slice::from_ref(tp));
        match self.positions.insert(tp.clone(), (generation, offset)) {
            Some((g, last)) if g == generation => {
                if offset != last + 1 {
                    tracing::debug!(source = %self.s.source, partition = %name(), offset, previous = last, "offset does not follow the previous message's");
                }
            }
            _ => {
                let committed = committed_offset(consumer, tp);
                tracing::info!(source = %self.s.source, partition = %name(), offset, committed, "reading the partition from this offset (its first message in this assignment)");
                if let Some(c) = committed.filter(|&c| offset > c) {
                    // Once per assignment, so a compacted topic does not flood the log.
                    tracing::warn!(source = %self.s.source, partition = %name(), committed = c, first_read = offset, skipped = offset - c, "the partition's first message is past the group's committed offset: the offsets between were deleted by retention, compacted away, transaction markers, or not returned by the broker; counted in logwharf_kafka_skipped_offsets_total");
                    metrics::counter!(m::KAFKA_SKIPPED_OFFSETS, "source" => self.s.source.to_string(), "topic" => tp.0.to_string(), "partition" => tp.1.to_string())
                        .increment((offset - c) as u64);
                }
            }
        }
    }
}

/// The group's committed offset of `tp` as the broker has it now (`None`: none committed,
/// or the broker did not answer within 5 s; the check is skipped then).
fn committed_offset(consumer: &BaseConsumer<Context>, (t, p): &Tp) -> Option<i64> {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition(t, *p);
    let tpl = consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .ok()?;
    match tpl.find_partition(t, *p)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// Runs the consumer until `shutdown`: subscribes, reads, sends, commits; at the end lets
/// what is in flight settle for `revoke_timeout`, commits it and leaves the group.
pub fn run(
    client: &ClientConfig,
    s: &Settings,
    out: &SourceOutput,
    shutdown: &Shutdown,
    handle: &tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer<Context> = client
        .create_with_context(Context::new(s.source.clone(), s.revoke_timeout))
        .context("creating the kafka consumer")?;
    let topics: Vec<&str> = s.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("subscribing to {topics:?}"))?;
    tracing::info!(source = %s.source, topics = ?topics, "kafka source subscribed");
    let mut r = Reader {
        s,
        decoder: MessageDecoder::new(s.decoding),
        pending: Pending::default(),
        topic_names: HashMap::new(),
        headers: Vec::new(),
        last_error: None,
        last_commit: Instant::now(),
        positions: HashMap::new(),
        read_bytes: 0,
    };
    while !shutdown.is_triggered() {
        let wait = if r.pending.len() == 0 { 100 } else { 0 };
        let got = r.take(&consumer, consumer.poll(Duration::from_millis(wait)));
        let full = r.pending.len() >= s.batch_max_events;
        if (full || !got) && r.pending.len() > 0 && !flush(&consumer, &mut r, out, shutdown, handle)
        {
            break;
        }
        r.commit_due(&consumer);
    }
    // What was read and not sent is left to the next reader (uncommitted). What is in flight
    // gets `revoke_timeout` to settle; then what settled is committed and the group left.
    let owned = consumer.context().partitions().owned();
    let (offsets, unsettled) = consumer
        .context()
        .partitions()
        .revoke(&owned, s.revoke_timeout);
    consumer.context().commit(&consumer, &offsets);
    tracing::info!(source = %s.source, committed = %offset_names(&offsets), unsettled, "kafka source stopped");
    consumer.unsubscribe();
    Ok(())
}

/// How often a send waiting on a full pipeline lets the consumer serve its group.
const SERVE_EVERY: Duration = Duration::from_millis(100);

/// Sends the pending batch; false when the pipeline is closed or shutting down. While the
/// pipeline makes it wait (backpressure), the assigned partitions are paused and the consumer
/// is polled every [`SERVE_EVERY`], so a rebalance is served at once instead of stalling the
/// group for `max.poll.interval.ms`; what such a poll returns joins the next batch.
fn flush(
    consumer: &BaseConsumer<Context>,
    r: &mut Reader<'_>,
    out: &SourceOutput,
    shutdown: &Shutdown,
    handle: &tokio::runtime::Handle,
) -> bool {
    let (events, on_done) = r.pending.take(&consumer.context().partitions());
    metrics::counter!(m::SOURCE_READ_BYTES, "source" => r.s.source.to_string())
        .increment(std::mem::take(&mut r.read_bytes));
    let mut paused: Vec<Tp> = Vec::new();
    let sent = handle.block_on(async {
        let send = out.send(events, on_done);
        tokio::pin!(send);
        loop {
            tokio::select! {
                res = &mut send => return res.is_ok(),
                _ = shutdown.wait() => return false,
                _ = tokio::time::sleep(SERVE_EVERY) => {
                    // Pause each time: a rebalance served here may have assigned more.
                    if let Ok(a) = consumer.assignment() {
                        if consumer.pause(&a).is_ok() {
                            paused.extend(tps(&a));
                        }
                    }
                    while r.take(consumer, consumer.poll(Duration::ZERO)) {}
                    r.commit_due(consumer);
                }
            }
        }
    });
    if !paused.is_empty() {
        // Everything paused, also partitions revoked meanwhile (their pause outlives the
        // assignment), and whatever is assigned now.
        if let Ok(a) = consumer.assignment() {
            paused.extend(tps(&a));
        }
        paused.sort();
        paused.dedup();
        let mut tpl = TopicPartitionList::with_capacity(paused.len());
        for (topic, p) in &paused {
            tpl.add_partition(topic, *p);
        }
        let _ = consumer.resume(&tpl);
    }
    sent
}
