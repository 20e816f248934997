//! The librdkafka producer behind a kafka sink: its configuration, the delivery-report
//! callback that turns each report into an [`Outcome`] for the [`InFlight`] table, the
//! classification of errors (refused for good, worth retrying, fatal), and its orderly
//! destruction when a fatal error makes the sink replace it.
//!
//! librdkafka's own `message.timeout.ms` is 0 (no limit) unless configured: a message leaves
//! its queue delivered, refused for good, or purged — never dropped on a timer. The queue is
//! bounded by `queue.buffering.max.messages` and `.kbytes`; a full queue is reported to the
//! caller as [`SendError::QueueFull`] so the sink can wait (backpressure).

use super::config::KafkaSinkConfig;
use super::inflight::{InFlight, MsgId, Outcome};
use super::throttle::Throttled;
use anyhow::Context as _;
use logwharf_collector::kafka;
use logwharf_collector::metrics as m;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The librdkafka configuration for `config`: the sink's keys first, then
/// `librdkafka_options`, which override them.
pub(super) fn client_config(config: &KafkaSinkConfig) -> ClientConfig {
    let mut c = kafka::base_config(&config.brokers, config.tls.as_ref());
    c.set("compression.codec", config.compression.as_str())
        .set("acks", config.acks.as_str())
        .set("enable.idempotence", config.enable_idempotence.to_string())
        .set(
            "queue.buffering.max.messages",
            config.queue_max_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            (config.queue_max_bytes.0 / 1024).max(1).to_string(),
        )
        .set("message.max.bytes", config.message_max_bytes.0.to_string())
        .set(
            "message.timeout.ms",
            config.message_timeout.0.as_millis().to_string(),
        )
        // Kafka's Java clients hash keys with murmur2: a container's lines land in the
        // partition a Java producer would pick for that key, and murmur2 costs a fraction of
        // librdkafka's default CRC32 per message (measured in the kafka benchmark).
        .set("partitioner", "murmur2_random")
        // For the epoch-bump watch (see `EpochWatch`); parsed without logging.
        .set("statistics.interval.ms", "1000");
    kafka::apply_options(&mut c, &config.librdkafka_options);
    c
}

/// Checks every property with librdkafka, without creating a client (see
/// [`kafka::check`]).
pub(super) use kafka::check;

/// What happened to one message, as far as the sink is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Retrying cannot help; count it under this kind.
    Permanent(&'static str),
    /// Send it again (after a backoff).
    Retry,
}

/// Classifies a delivery or `produce` error code.
pub(super) fn classify(code: RDKafkaErrorCode) -> Class {
    use RDKafkaErrorCode as C;
    match code {
        C::MessageSizeTooLarge | C::MessageBatchTooLarge => Class::Permanent("message_too_large"),
        C::InvalidTopic => Class::Permanent("invalid_topic"),
        C::InvalidRecord | C::UnsupportedForMessageFormat | C::BadMessage | C::PolicyViolation => {
            Class::Permanent("invalid_message")
        }
        // Timeouts, broker outages, unknown topics (yet), purges and fatal errors.
        _ => Class::Retry,
    }
}

/// Why a message did not go into librdkafka's queue.
#[derive(Debug)]
pub(super) enum SendError {
    /// The producer queue is full: wait for delivery reports, then send again.
    QueueFull,
    /// The producer raised a fatal error: replace it.
    Fatal,
    /// This message can never be sent.
    Rejected(&'static str, KafkaError),
    /// Sending again later can work.
    Retry(KafkaError),
}

/// Epoch bumps without a single delivery after which the producer counts as stuck.
const STUCK_BUMPS: i64 = 10;

/// Watches librdkafka's statistics for an idempotent producer stuck in a loop: a broker that
/// lost the producer's state (a restarted broker without durable storage) answers every
/// request with UNKNOWN_PRODUCER_ID, librdkafka bumps the epoch locally and sends again, and
/// nothing is ever delivered nor failed. Replacing the producer gets a new producer id.
#[derive(Default)]
struct EpochWatch {
    /// (producer id, epoch, deliveries) when the current run without deliveries began.
    anchor: Mutex<Option<(i64, i64, u64)>>,
    stuck: AtomicBool,
}

#[derive(serde::Deserialize)]
struct Stats {
    eos: Option<Eos>,
}

#[derive(serde::Deserialize)]
struct Eos {
    producer_id: i64,
    producer_epoch: i64,
}

impl EpochWatch {
    /// Returns true when the producer just became stuck.
    fn sample(&self, stats: &[u8], delivered: u64) -> bool {
        let Ok(Stats { eos: Some(eos) }) = serde_json::from_slice::<Stats>(stats) else {
            return false;
        };
        if eos.producer_id < 0 {
            return false;
        }
        let mut anchor = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        match *anchor {
            Some((pid, epoch, d)) if pid == eos.producer_id && d == delivered => {
                if eos.producer_epoch - epoch >= STUCK_BUMPS
                    && !self.stuck.swap(true, Ordering::AcqRel)
                {
                    return true;
                }
            }
            _ => *anchor = Some((eos.producer_id, eos.producer_epoch, delivered)),
        }
        false
    }
}

/// The producer's context: receives delivery reports, client errors and statistics.
pub(super) struct Reports {
    inflight: Arc<InFlight>,
    /// This producer sends one message per request (see [`Producer::create`]).
    alone: bool,
    batch_refused_log: Throttled,
    brokers: String,
    refused_log: Throttled,
    failed_log: Throttled,
    error_log: Mutex<HashMap<String, Instant>>,
    epochs: EpochWatch,
}

impl Reports {
    fn count_error(&self, kind: &'static str) {
        metrics::counter!(m::SINK_ERRORS, "sink" => self.inflight.sink().to_string(), "kind" => kind)
            .increment(1);
    }
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        // A fatal error arrives here with its underlying code (the event API does not say
        // `_FATAL`); the sink asks librdkafka whether one was raised, so wake it up, and let it
        // log the fatal error when it acts on it.
        self.inflight.wake();
        // rdkafka hands every error event over twice, and an outage repeats the same ones
        // every second: each distinct error at most once per 30 s.
        let now = Instant::now();
        let key = error.to_string();
        {
            let mut seen = self.error_log.lock().unwrap_or_else(|p| p.into_inner());
            if seen
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < Duration::from_secs(30))
            {
                return;
            }
            if seen.len() > 64 {
                seen.clear();
            }
            seen.insert(key, now);
        }
        tracing::warn!(sink = %self.inflight.sink(), brokers = %self.brokers, error = %error, reason, "kafka client error");
    }

    fn stats_raw(&self, statistics: &[u8]) {
        if self
            .epochs
            .sample(statistics, self.inflight.delivered_total())
        {
            self.inflight.wake();
        }
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: MsgId) {
        let outcome = match result {
            Ok(m) => Outcome::Delivered {
                bytes: m.payload_len(),
            },
            Err((e, msg)) => {
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                let too_large = matches!(
                    code,
                    RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge
                );
                if too_large && !self.alone {
                    // The broker refused the whole request (its or the topic's
                    // `max.message.bytes` is below `message_max_bytes`): which of its messages
                    // is too large is found by sending them again one per request.
                    self.count_error("batch_too_large");
                    if let Some(suppressed) = self.batch_refused_log.ready() {
                        tracing::warn!(
                            sink = %self.inflight.sink(), brokers = %self.brokers,
                            topic = msg.topic(), partition = msg.partition(), error = %e, suppressed,
                            "the broker refused a request as too large: its messages are sent again one per request; \
                             set message_max_bytes to the broker's (or topic's) max.message.bytes to avoid this"
                        );
                    }
                    self.inflight.report(id, Outcome::Isolate);
                    return;
                }
                match classify(code) {
                    Class::Permanent(kind) => {
                        self.count_error(kind);
                        if let Some(suppressed) = self.refused_log.ready() {
                            tracing::warn!(
                                sink = %self.inflight.sink(), brokers = %self.brokers,
                                topic = msg.topic(), partition = msg.partition(), bytes = msg.payload_len(),
                                error = %e, suppressed,
                                "kafka refused a message for good; it is counted and skipped"
                            );
                        }
                        Outcome::Rejected { kind }
                    }
                    Class::Retry => {
                        if !matches!(
                            code,
                            RDKafkaErrorCode::PurgeQueue
                                | RDKafkaErrorCode::PurgeInflight
                                | RDKafkaErrorCode::Fatal
                        ) {
                            self.count_error("delivery_failed");
                            if let Some(suppressed) = self.failed_log.ready() {
                                tracing::warn!(
                                    sink = %self.inflight.sink(), brokers = %self.brokers,
                                    topic = msg.topic(), error = %e, suppressed,
                                    "kafka delivery failed; the message will be sent again"
                                );
                            }
                        }
                        Outcome::Retry
                    }
                }
            }
        };
        self.inflight.report(id, outcome);
    }
}

/// Why a producer must be replaced.
#[derive(Debug)]
pub(super) enum Broken {
    /// librdkafka raised a fatal error: its code and reason. Requests in flight may still
    /// be acknowledged, so they are waited for.
    Fatal(RDKafkaErrorCode, String),
    /// The producer makes no progress (see `EpochWatch`); nothing it holds was written.
    Stuck(String),
}

/// One librdkafka producer (with its polling thread). Replaced as a whole after a fatal error.
pub(super) struct Producer {
    inner: Option<ThreadedProducer<Reports>>,
}

impl Producer {
    /// Creates the producer; it connects in the background. With `alone`, every request
    /// holds one message, so a broker's size refusal names that message.
    pub(super) fn create(
        config: &ClientConfig,
        inflight: Arc<InFlight>,
        brokers: &str,
        alone: bool,
    ) -> anyhow::Result<Producer> {
        let mut config = config.clone();
        if alone {
            config.set("batch.num.messages", "1").set("linger.ms", "0");
        }
        let reports = Reports {
            inflight,
            alone,
            batch_refused_log: Throttled::new(Duration::from_secs(30)),
            brokers: brokers.to_string(),
            refused_log: Throttled::new(Duration::from_secs(10)),
            failed_log: Throttled::new(Duration::from_secs(10)),
            error_log: Mutex::new(HashMap::new()),
            epochs: EpochWatch::default(),
        };
        let p: ThreadedProducer<Reports> = config
            .create_with_context(reports)
            .with_context(|| format!("creating the kafka producer for brokers {brokers}"))?;
        Ok(Producer { inner: Some(p) })
    }

    fn get(&self) -> &ThreadedProducer<Reports> {
        self.inner
            .as_ref()
            .expect("the producer is only taken when closing")
    }

    /// Hands one message to librdkafka (which copies it).
    pub(super) fn send(&self, record: BaseRecord<'_, [u8], [u8], usize>) -> Result<(), SendError> {
        match self.get().send(record) {
            Ok(()) => Ok(()),
            Err((e, _)) => Err(match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::QueueFull) => SendError::QueueFull,
                Some(RDKafkaErrorCode::Fatal) => SendError::Fatal,
                Some(code) => match classify(code) {
                    Class::Permanent(kind) => SendError::Rejected(kind, e),
                    Class::Retry => SendError::Retry(e),
                },
                None => SendError::Retry(e),
            }),
        }
    }

    /// Why this producer must be replaced, if it must: librdkafka raised a fatal error (an
    /// atomic read in librdkafka while there is none), or the producer is stuck.
    pub(super) fn broken(&self) -> Option<Broken> {
        let p = self.get();
        if let Some((code, reason)) = p.client().fatal_error() {
            return Some(Broken::Fatal(code, reason));
        }
        if p.context().epochs.stuck.load(Ordering::Acquire) {
            return Some(Broken::Stuck(format!(
                "the idempotent producer bumped its epoch {STUCK_BUMPS} times without a delivery: \
                 the brokers do not know its producer id (broker state lost?)"
            )));
        }
        None
    }

    /// Destroys the producer on a blocking thread and waits for it: its queue is purged and
    /// every message it still held is reported (as purged) before this returns.
    pub(super) async fn close(mut self) {
        if let Some(p) = self.inner.take() {
            let _ = tokio::task::spawn_blocking(move || drop(p)).await;
        }
    }

    /// Raises a fatal error as the broker could (librdkafka's test hook).
    #[cfg(test)]
    pub(super) fn inject_fatal(&self) {
        let reason = std::ffi::CString::new("injected by a test").expect("no NUL");
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                self.get().client().native_ptr(),
                rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
    }
}

impl Drop for Producer {
    /// Dropped without [`Producer::close`] (the sink task was aborted at the shutdown
    /// deadline): destroy it on its own thread so the runtime is not blocked. Its messages
    /// stay unacknowledged, so nothing is checkpointed past them.
    fn drop(&mut self) {
        if let Some(p) = self.inner.take() {
            let _ = std::thread::Builder::new()
                .name("kafka-producer-close".into())
                .spawn(move || drop(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logwharf_config::Template;

    #[test]
    fn config_keys_and_overrides() {
        let mut c = KafkaSinkConfig::new(
            vec!["a:1".into(), "b:2".into()],
            Template::parse("t").unwrap(),
        );
        c.librdkafka_options
            .0
            .insert("linger.ms".into(), "20".into());
        c.librdkafka_options
            .0
            .insert("compression.codec".into(), "lz4".into());
        let cc = client_config(&c);
        assert_eq!(cc.get("bootstrap.servers"), Some("a:1,b:2"));
        assert_eq!(cc.get("acks"), Some("all"));
        assert_eq!(cc.get("enable.idempotence"), Some("true"));
        assert_eq!(cc.get("message.timeout.ms"), Some("0"));
        assert_eq!(cc.get("partitioner"), Some("murmur2_random"));
        assert_eq!(cc.get("queue.buffering.max.kbytes"), Some("65536"));
        assert_eq!(cc.get("linger.ms"), Some("20"));
        assert_eq!(cc.get("compression.codec"), Some("lz4"));
        check(&cc).unwrap();
    }

    #[test]
    fn tls_keys_become_librdkafka_ssl_properties_and_openssl_is_built_in() {
        let mut c = KafkaSinkConfig::new(vec!["a:1".into()], Template::parse("t").unwrap());
        c.tls = Some(logwharf_config::TlsConfig {
            ca_file: Some("/etc/ca.pem".into()),
            crt_file: Some("/etc/me.pem".into()),
            key_file: Some("/etc/me.key".into()),
            ..Default::default()
        });
        let cc = client_config(&c);
        assert_eq!(cc.get("security.protocol"), Some("ssl"));
        assert_eq!(cc.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(cc.get("ssl.certificate.location"), Some("/etc/me.pem"));
        assert_eq!(cc.get("ssl.key.location"), Some("/etc/me.key"));
        assert_eq!(cc.get("enable.ssl.certificate.verification"), None);
        c.tls = Some(logwharf_config::TlsConfig {
            verify: false,
            ..Default::default()
        });
        c.librdkafka_options
            .0
            .insert("security.protocol".into(), "sasl_ssl".into());
        c.librdkafka_options
            .0
            .insert("sasl.mechanism".into(), "SCRAM-SHA-512".into());
        let cc = client_config(&c);
        assert_eq!(cc.get("ssl.ca.location"), Some("probe"));
        assert_eq!(cc.get("enable.ssl.certificate.verification"), Some("false"));
        assert_eq!(cc.get("security.protocol"), Some("sasl_ssl"), "options win");
        // librdkafka refuses ssl and SCRAM settings when built without OpenSSL.
        check(&cc).unwrap();
    }

    #[test]
    fn bad_properties_are_named_but_secrets_not_echoed() {
        let mut cc = ClientConfig::new();
        cc.set("no.such.property", "x");
        let e = check(&cc).unwrap_err().to_string();
        assert!(e.contains("no.such.property"), "{e}");
        let mut cc = ClientConfig::new();
        cc.set("ssl.key.password", "hunter2")
            .set("security.protocol", "bogus");
        let e = format!("{:#}", check(&cc).unwrap_err());
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify(RDKafkaErrorCode::MessageSizeTooLarge),
            Class::Permanent("message_too_large")
        );
        assert_eq!(classify(RDKafkaErrorCode::MessageTimedOut), Class::Retry);
        assert_eq!(classify(RDKafkaErrorCode::Fatal), Class::Retry);
        assert_eq!(classify(RDKafkaErrorCode::UnknownTopic), Class::Retry);
    }

    fn stats(pid: i64, epoch: i64) -> Vec<u8> {
        format!("{{\"name\":\"x\",\"brokers\":{{}},\"eos\":{{\"idemp_state\":\"Assigned\",\"producer_id\":{pid},\"producer_epoch\":{epoch},\"epoch_cnt\":1}}}}").into_bytes()
    }

    #[test]
    fn an_epoch_bump_storm_without_deliveries_is_stuck() {
        let w = EpochWatch::default();
        assert!(!w.sample(&stats(1, 0), 0));
        assert!(!w.sample(&stats(1, 5), 0));
        assert!(!w.sample(&stats(1, 9), 5), "a delivery re-anchors");
        assert!(!w.sample(&stats(1, 18), 5));
        assert!(
            w.sample(&stats(1, 19), 5),
            "10 bumps since the last delivery"
        );
        assert!(!w.sample(&stats(1, 30), 5), "reported once");
        let w = EpochWatch::default();
        assert!(!w.sample(&stats(1, 0), 0));
        assert!(!w.sample(&stats(2, 20), 0), "a new producer id re-anchors");
        assert!(!w.sample(b"{\"eos\":null}", 0));
    }
}
