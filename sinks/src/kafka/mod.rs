//! `type = "kafka"`: every event becomes one Kafka message, through librdkafka (the `rdkafka`
//! crate, librdkafka built from source).
//!
//! The sink task takes batches from its buffer into the [`InFlight`] table, then hands their
//! messages to the [`Producer`] in order: topic and key from the per-container cache of
//! [`Records`], value from the shared encoders. librdkafka batches, compresses, retries and
//! reports on every message; the reports settle each logwharf batch's acknowledgement only
//! when all of its messages are delivered (or refused for good, counted and reported).
//!
//! - **Backpressure.** librdkafka's queue is bounded (`queue_max_messages`,
//!   `queue_max_bytes`). When it is full the task waits for reports (a warning, at most every
//!   30 s, and `logwharf_sink_backpressure_total`) and stops taking batches, so the buffer
//!   fills and the sources stop reading. Nothing is dropped.
//! - **Retries.** A message whose delivery failed in a way that retrying can fix is sent
//!   again, before anything newer, after the shared [`Backoff`].
//! - **Refused as too large by the broker.** A broker refuses a whole request when it is over
//!   its (or the topic's) `max.message.bytes`, which happens when `message_max_bytes` is set
//!   above it. Its messages are sent again through a second producer that puts one message in
//!   each request (created on first need): what the broker still refuses alone is counted and
//!   skipped, the rest is delivered (later than its neighbours: order is given up only here).
//!   Every message refused for good (too large, invalid topic or message) is written to the
//!   sink's `dead_letter` file, when set, before its batch settles.
//! - **Fatal errors** (idempotence fencing, sequence desynchronisation): the task lets the
//!   requests in flight finish, destroys the producer (which reports every message it still
//!   held as purged), creates a new one, and sends every message not delivered again, oldest
//!   first. A message is never counted delivered because it sat in a queue. A producer stuck
//!   re-bumping its epoch against a broker that lost its state is replaced the same way.
//! - **Shutdown.** When the input closes, the task waits until every batch is settled; the
//!   runtime's `shutdown_timeout` bounds that wait, and what is left unsettled is read again
//!   on the next start.

pub mod config;
mod inflight;
mod producer;
mod record;
mod throttle;

use crate::util::dead_letter::DeadLetters;
use anyhow::Context as _;
pub use config::KafkaSinkConfig;
use inflight::{msg_id, split, InFlight, MsgId, Outcome};
use logwharf_collector::backoff::Backoff;
use logwharf_collector::metrics as m;
use logwharf_collector::{Batch, Sink, SinkInput};
use producer::{Broken, Producer, SendError};
use rdkafka::producer::BaseRecord;
use rdkafka::ClientConfig;
use record::Records;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use throttle::Throttled;
use tokio::time::Instant;

/// Messages marked sent at once (one lock of the table per chunk, not per message).
const CHUNK: u32 = 512;
/// Messages sent before the task yields to the runtime.
const BUDGET: usize = 8192;
/// How long a fatal error's in-flight requests may take to finish before the producer goes.
const FATAL_DRAIN: Duration = Duration::from_secs(10);

/// A built kafka sink: its producer exists (it connects in the background), so every
/// librdkafka setting — and their combinations, which librdkafka checks only when a client is
/// created — was accepted before anything starts.
pub struct KafkaSink {
    task: Task,
}

impl KafkaSink {
    pub fn new(name: &str, config: &KafkaSinkConfig) -> anyhow::Result<KafkaSink> {
        KafkaSink::with_dead_letters(name, config, DeadLetters::disabled(name))
    }

    /// As [`KafkaSink::new`]; messages refused for good are written to `dead_letters`.
    pub fn with_dead_letters(
        name: &str,
        config: &KafkaSinkConfig,
        dead_letters: DeadLetters,
    ) -> anyhow::Result<KafkaSink> {
        let client = producer::client_config(config);
        producer::check(&client).with_context(|| format!("kafka sink {name:?}"))?;
        let settings = Settings {
            name: name.to_string(),
            brokers: config.brokers.join(","),
            client,
            records: Records::new(name, config),
            dead_letters,
            queue_limits: format!(
                "{} messages / {} bytes",
                config.queue_max_messages, config.queue_max_bytes.0
            ),
        };
        Ok(KafkaSink {
            task: Task::new(settings)?,
        })
    }
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    async fn run(self: Box<Self>, input: SinkInput) -> anyhow::Result<()> {
        self.task.run(input).await
    }
}

/// What the task needs to know about its sink.
struct Settings {
    name: String,
    brokers: String,
    client: ClientConfig,
    records: Records,
    dead_letters: DeadLetters,
    queue_limits: String,
}

/// Messages `start..end` of batch `batch`, to be sent in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    batch: u32,
    start: u32,
    end: u32,
}

/// Why sending stopped.
enum Stop {
    /// Everything queued was handed to librdkafka.
    Empty,
    /// The budget is spent; more to send.
    Budget,
    /// librdkafka's queue is full.
    Full,
    /// Waiting for the retry backoff.
    Backoff,
    /// The producer raised a fatal error.
    Fatal,
}

struct Task {
    sink: Settings,
    inflight: Arc<InFlight>,
    producer: Producer,
    /// Sends one message per request: for messages the broker refused in a larger request.
    alone: Option<Producer>,
    /// Messages to send through `alone`, oldest first.
    isolated: VecDeque<MsgId>,
    /// What to send next, oldest first.
    queue: VecDeque<Span>,
    /// Sending waits until then (after a retryable failure).
    retry_at: Option<Instant>,
    backoff: Backoff,
    buf: Vec<u8>,
    marked: Vec<u32>,
    full_log: Throttled,
    backpressure: metrics::Counter,
    full_waits: u64,
    retries: metrics::Counter,
    restarts: metrics::Counter,
    inflight_gauge: metrics::Gauge,
}

impl Task {
    /// Creates the producer (which connects in the background).
    fn new(sink: Settings) -> anyhow::Result<Task> {
        let inflight = Arc::new(InFlight::with_dead_letters(
            &sink.name,
            sink.dead_letters.clone(),
        ));
        let producer = Producer::create(&sink.client, inflight.clone(), &sink.brokers, false)
            .with_context(|| format!("kafka sink {:?}", sink.name))?;
        let name = sink.name.clone();
        Ok(Task {
            inflight,
            producer,
            alone: None,
            isolated: VecDeque::new(),
            queue: VecDeque::new(),
            retry_at: None,
            backoff: Backoff::network(),
            buf: Vec::with_capacity(4096),
            marked: Vec::with_capacity(CHUNK as usize),
            full_log: Throttled::new(Duration::from_secs(30)),
            backpressure: metrics::counter!(m::SINK_BACKPRESSURE, "sink" => name.clone()),
            full_waits: 0,
            retries: metrics::counter!(m::SINK_RETRIES, "sink" => name.clone()),
            restarts: metrics::counter!(m::SINK_CLIENT_RESTARTS, "sink" => name.clone()),
            inflight_gauge: metrics::gauge!(m::SINK_INFLIGHT_EVENTS, "sink" => name),
            sink,
        })
    }

    async fn run(self, input: SinkInput) -> anyhow::Result<()> {
        self.run_inner(input, None).await
    }

    /// As [`Task::run`], raising a fatal producer error whenever `fault` is set.
    #[cfg(test)]
    async fn run_with_fault(
        self,
        input: SinkInput,
        fault: Arc<std::sync::atomic::AtomicBool>,
    ) -> anyhow::Result<()> {
        self.run_inner(input, Some(&fault)).await
    }

    async fn run_inner(
        mut self,
        mut input: SinkInput,
        fault: Option<&std::sync::atomic::AtomicBool>,
    ) -> anyhow::Result<()> {
        let mut open = true;
        loop {
            if fault.is_some_and(|f| f.swap(false, std::sync::atomic::Ordering::AcqRel)) {
                #[cfg(test)]
                self.producer.inject_fatal();
            }
            let broken = self.producer.broken();
            if let Some(why) = broken.or_else(|| self.alone.as_ref().and_then(Producer::broken)) {
                self.replace_producer(why).await;
                continue;
            }
            self.collect_retries();
            let stop = match self.send_isolated() {
                Stop::Empty => self.send(),
                other => other,
            };
            self.inflight_gauge.set(self.inflight.sent() as f64);
            match stop {
                Stop::Budget => {
                    tokio::task::yield_now().await;
                    continue;
                }
                Stop::Fatal => {
                    // `produce` said fatal: librdkafka has recorded it for `broken()` above.
                    tokio::task::yield_now().await;
                    continue;
                }
                Stop::Empty | Stop::Full | Stop::Backoff => {}
            }
            if !open && self.queue.is_empty() && self.inflight.is_empty() {
                break;
            }
            let wait = match stop {
                Stop::Full => Duration::from_millis(50),
                Stop::Backoff => self
                    .retry_at
                    .map(|t| t.saturating_duration_since(Instant::now()))
                    .unwrap_or_default(),
                _ => Duration::from_secs(1),
            };
            let take = open && self.queue.is_empty();
            tokio::select! {
                biased;
                b = input.recv(), if take => match b {
                    Some(sb) => {
                        let (batch, ack) = sb.into_parts();
                        let n = batch.len() as u32;
                        if let Some(id) = self.inflight.add(batch, ack) {
                            self.queue.push_back(Span { batch: id, start: 0, end: n });
                        }
                    }
                    None => open = false,
                },
                _ = self.inflight.changed(wait) => {}
            }
        }
        self.inflight_gauge.set(0.0);
        tracing::info!(
            sink = %self.sink.name, delivered = self.inflight.delivered_total(),
            queue_full_waits = self.full_waits, "kafka sink: input closed and everything settled"
        );
        self.producer.close().await;
        if let Some(alone) = self.alone.take() {
            alone.close().await;
        }
        Ok(())
    }

    /// Moves messages whose delivery failed to the front of the queue, oldest first, to be
    /// sent after the backoff.
    fn collect_retries(&mut self) {
        let (ids, delivered) = self.inflight.take_retries();
        if delivered {
            self.backoff.reset();
        }
        if ids.is_empty() {
            return;
        }
        self.retries.increment(ids.len() as u64);
        self.requeue_front(&ids);
        if self.retry_at.is_none() {
            self.retry_at = Some(Instant::now() + self.backoff.next_delay());
        }
    }

    /// Puts `ids` (sorted) in front of the queue as spans of consecutive messages.
    fn requeue_front(&mut self, ids: &[MsgId]) {
        let mut spans: Vec<Span> = Vec::new();
        for &id in ids {
            let (b, i) = split(id);
            match spans.last_mut() {
                Some(s) if s.batch == b && s.end == i => s.end = i + 1,
                _ => spans.push(Span {
                    batch: b,
                    start: i,
                    end: i + 1,
                }),
            }
        }
        for s in spans.into_iter().rev() {
            self.queue.push_front(s);
        }
    }

    /// Sends from the front of the queue until it is empty, the budget is spent, or
    /// librdkafka pushes back.
    fn send(&mut self) -> Stop {
        if let Some(t) = self.retry_at {
            if Instant::now() < t {
                return Stop::Backoff;
            }
            self.retry_at = None;
        }
        let mut budget = BUDGET;
        while let Some(span) = self.queue.front().copied() {
            let Some(batch) = self.inflight.batch(span.batch) else {
                self.queue.pop_front();
                continue;
            };
            let chunk_end = span.end.min(span.start + CHUNK);
            let mut marked = std::mem::take(&mut self.marked);
            self.inflight
                .mark_sent(span.batch, span.start, chunk_end, &mut marked);
            let mut stop = None;
            let mut sent = 0;
            for (k, &i) in marked.iter().enumerate() {
                let id = msg_id(span.batch, i);
                match self.send_one(&batch, i, id, false) {
                    Ok(()) => sent += 1,
                    Err(s) => {
                        self.inflight.unmark(span.batch, &marked[k..]);
                        // Resume at the message that was not sent.
                        if let Some(front) = self.queue.front_mut() {
                            front.start = i;
                        }
                        stop = Some(s);
                        break;
                    }
                }
            }
            self.marked = marked;
            if let Some(s) = stop {
                return s;
            }
            let front = self.queue.front_mut().expect("the span being sent");
            front.start = chunk_end;
            if front.start >= front.end {
                self.queue.pop_front();
            }
            budget = budget.saturating_sub(sent.max(1));
            if budget == 0 {
                return Stop::Budget;
            }
        }
        Stop::Empty
    }

    /// Sends the messages the broker refused in a larger request, one per request, through
    /// the `alone` producer (created on first need).
    fn send_isolated(&mut self) -> Stop {
        self.isolated.extend(self.inflight.take_isolated());
        if self.isolated.is_empty() {
            return Stop::Empty;
        }
        if self.alone.is_none() {
            let client = &self.sink.client;
            match Producer::create(client, self.inflight.clone(), &self.sink.brokers, true) {
                Ok(p) => self.alone = Some(p),
                Err(e) => {
                    tracing::error!(sink = %self.sink.name, error = %format!("{e:#}"), "cannot create the kafka producer for single-message requests");
                    self.retry_at = Some(Instant::now() + self.backoff.next_delay());
                    return Stop::Backoff;
                }
            }
        }
        while let Some(id) = self.isolated.front().copied() {
            let (b, i) = split(id);
            let Some(batch) = self.inflight.batch(b) else {
                self.isolated.pop_front();
                continue;
            };
            let mut marked = std::mem::take(&mut self.marked);
            self.inflight.mark_sent(b, i, i + 1, &mut marked);
            let was_waiting = !marked.is_empty();
            self.marked = marked;
            if !was_waiting {
                self.isolated.pop_front();
                continue;
            }
            if let Err(stop) = self.send_one(&batch, i, id, true) {
                self.inflight.unmark(b, &[i]);
                return stop;
            }
            self.isolated.pop_front();
        }
        Stop::Empty
    }

    /// Sends event `i` of `batch` as message `id` (already marked sent), through the `alone`
    /// producer when `alone` is set.
    fn send_one(&mut self, batch: &Batch, i: u32, id: MsgId, alone: bool) -> Result<(), Stop> {
        let event = &batch.events[i as usize];
        let route = self.sink.records.route(event);
        let topic = match &route.topic {
            Ok(t) => t.as_str(),
            Err(why) => {
                self.refuse(id, "invalid_topic", why);
                return Ok(());
            }
        };
        self.buf.clear();
        self.sink
            .records
            .encode(&batch.source, event, &mut self.buf);
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, id)
            .payload(&self.buf[..])
            .timestamp(event.time_ns.div_euclid(1_000_000));
        if let Some(k) = &route.key {
            record = record.key(&k[..]);
        }
        if let Some(h) = self.sink.records.headers(&route, &batch.source, event) {
            record = record.headers(h);
        }
        let producer = match &self.alone {
            Some(p) if alone => p,
            _ => &self.producer,
        };
        match producer.send(record) {
            Ok(()) => Ok(()),
            Err(SendError::QueueFull) => {
                self.backpressure.increment(1);
                self.full_waits += 1;
                if let Some(suppressed) = self.full_log.ready() {
                    tracing::warn!(
                        sink = %self.sink.name, brokers = %self.sink.brokers,
                        queue = %self.sink.queue_limits, waits_since_last_warning = suppressed,
                        "kafka producer queue is full: waiting for the brokers to acknowledge (backpressure; nothing is dropped)"
                    );
                }
                Err(Stop::Full)
            }
            Err(SendError::Fatal) => Err(Stop::Fatal),
            Err(SendError::Rejected(kind, e)) => {
                let why = format!(
                    "{e} (topic {topic}, {} bytes, message_max_bytes limits one message)",
                    self.buf.len()
                );
                self.refuse(id, kind, &why);
                Ok(())
            }
            Err(SendError::Retry(e)) => {
                metrics::counter!(m::SINK_ERRORS, "sink" => self.sink.name.clone(), "kind" => "send_failed")
                    .increment(1);
                let delay = self.backoff.next_delay();
                tracing::warn!(sink = %self.sink.name, brokers = %self.sink.brokers, topic, error = %e, retry_in = ?delay, "kafka producer refused a message for now; retrying");
                logwharf_collector::status::global()
                    .sink(&self.sink.name)
                    .retrying(&format!("producing to {topic}: {e}"));
                self.retry_at = Some(Instant::now() + delay);
                Err(Stop::Backoff)
            }
        }
    }

    /// Refuses message `id` for good: counted, reported, and its batch can still settle.
    fn refuse(&self, id: MsgId, kind: &'static str, why: &str) {
        metrics::counter!(m::SINK_ERRORS, "sink" => self.sink.name.clone(), "kind" => kind)
            .increment(1);
        tracing::warn!(sink = %self.sink.name, brokers = %self.sink.brokers, kind, error = why, "kafka message refused; it is counted and skipped");
        self.inflight.report(id, Outcome::Rejected { kind });
    }

    /// After a fatal producer error: let in-flight requests finish, destroy the producer
    /// (its remaining messages are reported purged), create a new one, and queue every
    /// message that was not delivered in front, oldest first.
    async fn replace_producer(&mut self, why: Broken) {
        let held = self.inflight.sent();
        let kind = match &why {
            Broken::Fatal(code, reason) => {
                tracing::error!(
                    sink = %self.sink.name, brokers = %self.sink.brokers, error = %code, reason = %reason, in_flight = held,
                    "fatal kafka producer error: replacing the producer; every message not yet delivered is sent again"
                );
                "fatal"
            }
            Broken::Stuck(reason) => {
                tracing::error!(
                    sink = %self.sink.name, brokers = %self.sink.brokers, reason = %reason, in_flight = held,
                    "kafka producer is stuck: replacing the producer; every message not yet delivered is sent again"
                );
                "stuck"
            }
        };
        metrics::counter!(m::SINK_ERRORS, "sink" => self.sink.name.clone(), "kind" => kind)
            .increment(1);
        self.restarts.increment(1);
        if matches!(why, Broken::Fatal(..)) {
            // librdkafka purged its queue; what is in flight may still be acknowledged.
            let deadline = Instant::now() + FATAL_DRAIN;
            while self.inflight.sent() > 0 && Instant::now() < deadline {
                self.inflight.changed(Duration::from_millis(100)).await;
            }
        }
        let mut backoff = Backoff::network();
        let fresh = loop {
            match Producer::create(
                &self.sink.client,
                self.inflight.clone(),
                &self.sink.brokers,
                false,
            ) {
                Ok(p) => break p,
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::error!(sink = %self.sink.name, error = %format!("{e:#}"), retry_in = ?delay, "cannot create a new kafka producer");
                    tokio::time::sleep(delay).await;
                }
            }
        };
        let old = std::mem::replace(&mut self.producer, fresh);
        old.close().await;
        // The single-message producer goes too (recreated when needed): every report of
        // either old producer has arrived before their messages are marked waiting again.
        if let Some(alone) = self.alone.take() {
            alone.close().await;
        }
        let requeued = self.inflight.requeue_sent();
        let (ids, _) = self.inflight.take_retries();
        self.retries.increment(ids.len() as u64);
        self.requeue_front(&ids);
        self.retry_at = None;
        tracing::info!(sink = %self.sink.name, resend = ids.len(), unreported = requeued, "new kafka producer; sending the undelivered messages again");
    }
}

#[cfg(test)]
mod tests;
