//! `type = "cloudwatch"`: ships events to CloudWatch Logs (or a service with its API) with
//! PutLogEvents, as Docker's `awslogs` driver does, without its weak points.
//!
//! Layout:
//! - this file: the sink task. A dispatcher renders each container's `group`/`stream` once
//!   (the shared render cache; values confined to the service's character sets), fits messages to the service's size limit, and hands each
//!   (group, stream) its events; one worker per (group, stream) batches them ([`batch`]) and
//!   keeps at most one PutLogEvents in flight; workers of different streams send concurrently
//!   (up to `concurrency`), so one failing stream never holds up the others.
//! - [`batch`]: the batcher that keeps every service limit.
//! - [`request`]: the JSON protocol, SigV4 signing (aws-sigv4), error classification.
//! - [`client`]: HTTP/1.1 over hyper + the collector's rustls setup.
//! - [`credentials`]: config keys, then aws-config's standard chain.
//! - [`ack`]: acknowledging source batches that span several streams and requests.

pub mod ack;
pub mod batch;
pub mod client;
pub mod config;
pub mod credentials;
pub mod request;

use self::ack::{Delivery, Piece};
use self::batch::{
    fit_message, split_request, CwEvent, Origin, RequestBatch, RequestLimits, StreamQueue,
};
use self::client::{Endpoint, Transport, TransportError};
use self::credentials::CredentialSource;
use self::request::{Action, ErrorKind, ServiceError, Signer};
use crate::util::confine::{Charset, Confinement};
use crate::util::dead_letter::DeadLetters;
use crate::util::render::{NameTemplate, RenderCache};
use anyhow::Context;
use bytes::Bytes;
pub use config::CloudWatchConfig;
use config::{limits, Oversize};
use logwharf_collector::backoff::Backoff;
use logwharf_collector::metrics as m;
use logwharf_collector::{Batch, ContainerMeta, Event, Sink, SinkInput};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

/// A worker with nothing queued and nothing received for this long stops (and is started
/// again by the next event for its stream).
const WORKER_IDLE: Duration = Duration::from_secs(600);
/// The service's limit on group and stream names (group: `[\.\-_/#A-Za-z0-9]+`, stream: no
/// `:` or `*`).
const MAX_NAME: usize = 512;

/// One destination: a log group and a log stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub group: String,
    pub stream: String,
}

/// The sink.
pub struct CloudWatch {
    name: Arc<str>,
    shared: Arc<Shared>,
    config: CloudWatchConfig,
}

/// What every worker of the sink uses.
struct Shared {
    sink: Arc<str>,
    transport: Transport,
    signer: Signer,
    url: String,
    credentials: CredentialSource,
    in_flight: Semaphore,
    /// Events waiting in stream queues (not yet in a request). They hold places in the sink's
    /// bounded buffer, so when they reach `pressure_at` every stream sends what it has rather
    /// than wait for its timeout with the sources blocked.
    held: AtomicUsize,
    pressure_at: usize,
    pressure: watch::Sender<u64>,
    limits: RequestLimits,
    batch_timeout: Duration,
    retry_max_wait: Duration,
    create_missing_group: bool,
    create_missing_stream: bool,
    retention_days: Option<u32>,
    /// Where refused events go (rejected by timestamp, invalid, empty).
    dead_letters: DeadLetters,
}

impl CloudWatch {
    /// Validates and prepares; no network I/O happens here.
    /// `buffer_events`: the capacity of the sink's buffer (`buffer.max_events`); events the
    /// service refuses go to `dead_letters`.
    pub fn new(
        name: &str,
        config: &CloudWatchConfig,
        buffer_events: usize,
        dead_letters: DeadLetters,
    ) -> anyhow::Result<CloudWatch> {
        let region = config
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .filter(|r| !r.is_empty())
            .context("no region: set `region` (or AWS_REGION)")?;
        let endpoint = match &config.endpoint {
            Some(e) => Endpoint::parse(e)?,
            None => Endpoint::for_region(&region),
        };
        let transport = Transport::new(
            endpoint.clone(),
            &config.tls,
            config.concurrency,
            config.request_timeout.0,
        )
        .with_context(|| format!("setting up the connection to {endpoint}"))?;
        let shared = Shared {
            sink: name.into(),
            url: endpoint.url(),
            transport,
            signer: Signer::new(&region),
            credentials: CredentialSource::from_config(config, &region),
            in_flight: Semaphore::new(config.concurrency),
            held: AtomicUsize::new(0),
            pressure_at: (buffer_events / 2).max(1),
            pressure: watch::Sender::new(0),
            limits: RequestLimits {
                max_events: config.batch.max_events.min(limits::MAX_EVENTS),
                max_bytes: (config.batch.max_bytes.0 as usize).min(limits::MAX_BYTES),
                max_span_ms: limits::MAX_SPAN_MS,
            },
            batch_timeout: config.batch.timeout.0,
            retry_max_wait: config.retry_max_wait.0,
            create_missing_group: config.create_missing_group,
            create_missing_stream: config.create_missing_stream,
            retention_days: config.retention_days,
            dead_letters,
        };
        Ok(CloudWatch {
            name: name.into(),
            shared: Arc::new(shared),
            config: config.clone(),
        })
    }
}

/// Events of one source batch for one stream.
struct Chunk {
    events: Vec<CwEvent>,
    piece: Piece,
}

#[async_trait::async_trait]
impl Sink for CloudWatch {
    async fn run(self: Box<Self>, mut input: SinkInput) -> anyhow::Result<()> {
        let mut dispatcher = Dispatcher::new(&self);
        while let Some(sb) = input.recv().await {
            dispatcher.dispatch(sb);
        }
        dispatcher.finish().await;
        Ok(())
    }
}

/// Routes events to their stream's worker.
struct Dispatcher {
    shared: Arc<Shared>,
    name: Arc<str>,
    group: NameTemplate,
    stream: NameTemplate,
    oversize: Oversize,
    keys: RenderCache<Arc<StreamKey>>,
    confinement: Confinement,
    workers: HashMap<Arc<StreamKey>, mpsc::UnboundedSender<Chunk>>,
    tasks: JoinSet<()>,
    oversize_counter: metrics::Counter,
    empty_counter: metrics::Counter,
}

impl Dispatcher {
    fn new(sink: &CloudWatch) -> Dispatcher {
        let action = match sink.config.oversize {
            Oversize::Split => "split",
            Oversize::Truncate => "truncate",
        };
        Dispatcher {
            shared: sink.shared.clone(),
            name: sink.name.clone(),
            group: NameTemplate::new(
                sink.config.group.clone(),
                "log group",
                Charset::LogGroup,
                MAX_NAME,
            ),
            stream: NameTemplate::new(
                sink.config.stream.clone(),
                "log stream",
                Charset::LogStream,
                MAX_NAME,
            ),
            oversize: sink.config.oversize,
            keys: RenderCache::default(),
            confinement: Confinement::new(&sink.name),
            workers: HashMap::new(),
            tasks: JoinSet::new(),
            oversize_counter: metrics::counter!(m::SINK_OVERSIZE_EVENTS, "sink" => sink.name.to_string(), "action" => action),
            empty_counter: metrics::counter!(m::SINK_REJECTED_EVENTS, "sink" => sink.name.to_string(), "reason" => "empty"),
        }
    }

    /// The (group, stream) of a container, rendered once per container (the shared render
    /// cache and its empty-render rule; values confined to the service's character sets).
    fn key_for(&mut self, container: Option<&Arc<ContainerMeta>>) -> Arc<StreamKey> {
        let (group, stream, conf) = (&self.group, &self.stream, &self.confinement);
        self.keys.get(container, |m| {
            Arc::new(StreamKey {
                group: group.render(m, conf),
                stream: stream.render(m, conf),
            })
        })
    }

    fn dispatch(&mut self, sb: logwharf_collector::SinkBatch) {
        let batch = sb.batch.clone();
        let piece = Delivery::new(sb);
        let mut per_key: Vec<(Arc<StreamKey>, Vec<CwEvent>)> = Vec::new();
        let mut last: Option<(*const ContainerMeta, usize)> = None;
        let mut source_key: Option<usize> = None;
        for (i, ev) in batch.events.iter().enumerate() {
            let idx = match (&ev.container, last, source_key) {
                (Some(c), Some((p, i)), _) if Arc::as_ptr(c) == p => i,
                (None, _, Some(i)) => i,
                _ => {
                    let key = self.key_for(ev.container.as_ref());
                    let i = match per_key.iter().position(|(k, _)| *k == key) {
                        Some(i) => i,
                        None => {
                            per_key.push((key, Vec::new()));
                            per_key.len() - 1
                        }
                    };
                    match &ev.container {
                        Some(c) => last = Some((Arc::as_ptr(c), i)),
                        None => source_key = Some(i),
                    }
                    i
                }
            };
            self.fit(&batch, i, &mut per_key[idx].1);
        }
        let n: usize = per_key.iter().map(|(_, e)| e.len()).sum();
        let held = self.shared.held.fetch_add(n, Ordering::AcqRel) + n;
        if held >= self.shared.pressure_at {
            self.shared.pressure.send_modify(|e| *e += 1);
        }
        for (key, events) in per_key {
            self.send(
                key,
                Chunk {
                    events,
                    piece: piece.share(),
                },
            );
        }
        piece.done();
    }

    /// Adds event `index` of `batch` to `out` as the events the service takes.
    fn fit(&self, batch: &Arc<Batch>, index: usize, out: &mut Vec<CwEvent>) {
        let ev: &Event = &batch.events[index];
        let before = out.len();
        let ts = ev.time_ns.div_euclid(1_000_000);
        let o = fit_message(
            ts,
            &ev.message,
            self.oversize,
            limits::MAX_MESSAGE_BYTES,
            out,
        );
        if o.empty {
            self.empty_counter.increment(1);
            self.shared.dead_letters.write(&batch.source, [ev], "empty");
        }
        if self.shared.dead_letters.is_enabled() {
            for e in &mut out[before..] {
                e.origin = Some(Origin {
                    batch: batch.clone(),
                    index: index as u32,
                });
            }
        }
        if o.split_into > 0 || o.truncated_bytes > 0 {
            self.oversize_counter.increment(1);
            tracing::debug!(sink = %self.name, bytes = ev.message.len(), split_into = o.split_into, truncated_bytes = o.truncated_bytes, "message over the service's 262,118-byte event limit");
        }
    }

    fn send(&mut self, key: Arc<StreamKey>, chunk: Chunk) {
        let chunk = match self.workers.get(&key) {
            Some(tx) => match tx.send(chunk) {
                Ok(()) => return,
                // The worker stopped after being idle: start a new one.
                Err(mpsc::error::SendError(c)) => c,
            },
            None => chunk,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(chunk);
        self.tasks.spawn(
            Worker::new(self.shared.clone(), key.clone())
                .run(rx)
                .in_current_span(),
        );
        self.workers.insert(key, tx);
        // Reap finished workers so the set does not grow without bound.
        while let Some(r) = self.tasks.try_join_next() {
            if let Err(e) = r {
                tracing::error!(sink = %self.name, error = %e, "a cloudwatch stream worker failed");
            }
        }
        self.workers.retain(|_, tx| !tx.is_closed());
    }

    /// The input is closed: every worker sends what it holds, then stops.
    async fn finish(mut self) {
        self.workers.clear();
        while let Some(r) = self.tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(sink = %self.name, error = %e, "a cloudwatch stream worker failed");
            }
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Credentials(#[from] credentials::NoCredentials),
    #[error("signing the request: {0}")]
    Signing(String),
}

impl SendError {
    fn kind_label(&self) -> &'static str {
        match self {
            SendError::Transport(TransportError::Timeout { .. }) => "timeout",
            SendError::Transport(_) => "connection",
            SendError::Service(e) => e.kind.label(),
            SendError::Credentials(_) => "credentials",
            SendError::Signing(_) => "signing",
        }
    }
}

/// Sends one stream's batches, one request at a time.
struct Worker {
    shared: Arc<Shared>,
    key: Arc<StreamKey>,
    sequence_token: Option<String>,
    backoff: Backoff,
    events: metrics::Counter,
    bytes: metrics::Counter,
}

impl Worker {
    fn new(shared: Arc<Shared>, key: Arc<StreamKey>) -> Worker {
        let sink = shared.sink.to_string();
        Worker {
            backoff: Backoff::new(Duration::from_millis(100), shared.retry_max_wait),
            events: metrics::counter!(m::SINK_EVENTS, "sink" => sink.clone()),
            bytes: metrics::counter!(m::SINK_BYTES, "sink" => sink),
            shared,
            key,
            sequence_token: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Chunk>) {
        let mut queue = StreamQueue::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut closed = false;
        let mut pressure = self.shared.pressure.subscribe();
        let mut pressed = false;
        let mut pressure_open = true;
        loop {
            let flush_all =
                closed || pressed || deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
            pressed = false;
            if flush_all || queue.has_full_request(&self.shared.limits) {
                while flush_all || queue.has_full_request(&self.shared.limits) {
                    let Some(req) = queue.take_request(&self.shared.limits) else {
                        break;
                    };
                    self.shared
                        .held
                        .fetch_sub(req.events_taken, Ordering::AcqRel);
                    self.send(req).await;
                    // Take in what arrived meanwhile, so full batches go out full.
                    while let Ok(c) = rx.try_recv() {
                        queue.push(c.events, c.piece);
                    }
                }
                // Keep the oldest waiting event's deadline; start one for a fresh queue.
                if queue.is_empty() {
                    deadline = None;
                } else if flush_all || deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + self.shared.batch_timeout);
                }
                if closed && queue.is_empty() {
                    return;
                }
                continue;
            }
            let idle_until = deadline.unwrap_or_else(|| tokio::time::Instant::now() + WORKER_IDLE);
            tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => {
                        if queue.is_empty() {
                            deadline = Some(tokio::time::Instant::now() + self.shared.batch_timeout);
                        }
                        queue.push(c.events, c.piece);
                    }
                    None => closed = true,
                },
                r = pressure.changed(), if pressure_open => match r {
                    Ok(()) => pressed = !queue.is_empty(),
                    // The sink is gone: nothing will press again.
                    Err(_) => pressure_open = false,
                },
                _ = tokio::time::sleep_until(idle_until) => {
                    if deadline.is_none() && queue.is_empty() {
                        // Idle: stop taking chunks, then send whatever raced in.
                        rx.close();
                        while let Some(c) = rx.recv().await {
                            queue.push(c.events, c.piece);
                        }
                        closed = true;
                    }
                }
            }
        }
    }

    /// Delivers one request's events: retries transient failures with backoff for as long as
    /// it takes (the events stay buffered), creates a missing group/stream when allowed, and
    /// splits what the service calls invalid until each event is either accepted or counted.
    async fn send(&mut self, req: RequestBatch) {
        let mut work = vec![req];
        while let Some(batch) = work.pop() {
            loop {
                match self.put(&batch).await {
                    Ok(resp) => {
                        self.accepted(&batch, resp);
                        batch.settle();
                        self.backoff.reset();
                        break;
                    }
                    Err(SendError::Service(e)) if e.kind == ErrorKind::InvalidSequenceToken => {
                        self.sequence_token = e.expected_sequence_token;
                        continue;
                    }
                    Err(SendError::Service(e)) if e.kind == ErrorKind::DataAlreadyAccepted => {
                        self.sequence_token = e.expected_sequence_token;
                        self.events.increment(batch.events.len() as u64);
                        batch.settle();
                        break;
                    }
                    Err(SendError::Service(e)) if e.kind == ErrorKind::InvalidParameter => {
                        match split_request(batch) {
                            Ok((a, b)) => {
                                work.push(b);
                                work.push(a);
                            }
                            Err(single) => {
                                tracing::error!(sink = %self.shared.sink, group = %self.key.group, stream = %self.key.stream, endpoint = %self.shared.transport.endpoint(), status = e.status, error = %e, "the service refused an event as invalid; it is counted and skipped");
                                self.rejected("invalid_parameter", &single.events);
                                single.settle();
                            }
                        }
                        break;
                    }
                    Err(SendError::Service(e)) if e.kind == ErrorKind::ResourceNotFound => {
                        match self.create_missing().await {
                            Ok(true) => continue,
                            Ok(false) => {
                                self.failed(&SendError::Service(e), "the group or stream does not exist and creating it is not enabled; retrying");
                            }
                            Err(ce) => {
                                self.failed(&ce, "creating the group or stream failed; retrying")
                            }
                        }
                        self.backoff.wait().await;
                    }
                    Err(e) => {
                        if let SendError::Service(se) = &e {
                            if se.kind == ErrorKind::Auth {
                                self.shared.credentials.invalidate().await;
                            }
                        }
                        self.failed(&e, "request failed; retrying with backoff");
                        self.backoff.wait().await;
                    }
                }
            }
        }
    }

    /// Counts and logs a failed attempt (logged on the 1st, 2nd, 4th, 8th … in a row, so a
    /// long outage does not flood the log).
    fn failed(&self, e: &SendError, what: &str) {
        let kind = e.kind_label();
        let sink = self.shared.sink.to_string();
        metrics::counter!(m::SINK_ERRORS, "sink" => sink.clone(), "kind" => kind).increment(1);
        metrics::counter!(m::SINK_RETRIES, "sink" => sink, "kind" => kind).increment(1);
        logwharf_collector::status::global()
            .sink(&self.shared.sink)
            .retrying(&format!("{what}: {e}"));
        let n = self.backoff.attempts() + 1;
        if n.is_power_of_two() {
            tracing::warn!(sink = %self.shared.sink, group = %self.key.group, stream = %self.key.stream, endpoint = %self.shared.transport.endpoint(), attempt = n, error = %e, "{what}");
        }
    }

    /// Counts `events` as refused for `reason` and writes their source events to the
    /// dead-letter file (the pieces of one split message as one event).
    fn rejected(&self, reason: &'static str, events: &[CwEvent]) {
        if events.is_empty() {
            return;
        }
        metrics::counter!(m::SINK_REJECTED_EVENTS, "sink" => self.shared.sink.to_string(), "reason" => reason)
            .increment(events.len() as u64);
        let mut origins: Vec<&Origin> = events.iter().filter_map(|e| e.origin.as_ref()).collect();
        origins.dedup();
        // One write per run of one source's events (each write is synced).
        for run in origins.chunk_by(|a, b| a.batch.source == b.batch.source) {
            self.shared.dead_letters.write(
                &run[0].batch.source,
                run.iter().map(|o| o.event()),
                reason,
            );
        }
    }

    fn accepted(&mut self, batch: &RequestBatch, resp: request::PutLogEventsResponse) {
        if let Some(t) = resp.next_sequence_token {
            self.sequence_token = Some(t);
        }
        let n = batch.events.len();
        let mut rejected = 0;
        if let Some(info) = resp.rejected {
            let c = info.counts(n);
            // The service's order (sorted by time): expired, then too old, …, then too new.
            let old_end = c.expired + c.too_old;
            self.rejected("expired", &batch.events[..c.expired]);
            self.rejected("too_old", &batch.events[c.expired..old_end]);
            self.rejected("too_new", &batch.events[n - c.too_new..]);
            rejected = c.total();
            if rejected > 0 {
                tracing::warn!(sink = %self.shared.sink, group = %self.key.group, stream = %self.key.stream, too_old = c.too_old, too_new = c.too_new, expired = c.expired, "the service rejected events of an accepted batch (timestamps out of its range); counted");
            }
        }
        self.events.increment((n - rejected.min(n)) as u64);
        self.bytes.increment(batch.bytes as u64);
    }

    async fn put(&self, batch: &RequestBatch) -> Result<request::PutLogEventsResponse, SendError> {
        let body = request::put_log_events_body(
            &self.key.group,
            &self.key.stream,
            self.sequence_token.as_deref(),
            &batch.events,
        );
        let body = self.call(Action::PutLogEvents, body).await?;
        Ok(request::parse_put_response(&body))
    }

    /// Creates the stream (and the group first, when it is missing too) if allowed. `Ok(false)`:
    /// not allowed.
    async fn create_missing(&self) -> Result<bool, SendError> {
        if !self.shared.create_missing_stream && !self.shared.create_missing_group {
            return Ok(false);
        }
        let (g, s) = (&self.key.group, &self.key.stream);
        let stream_body = request::create_log_stream_body(g, s);
        if self.shared.create_missing_stream {
            match self
                .call(Action::CreateLogStream, stream_body.clone())
                .await
            {
                Ok(_) => {
                    tracing::info!(sink = %self.shared.sink, group = %g, stream = %s, "created log stream");
                    return Ok(true);
                }
                Err(SendError::Service(e)) if e.kind == ErrorKind::AlreadyExists => {
                    return Ok(true)
                }
                Err(SendError::Service(e)) if e.kind == ErrorKind::ResourceNotFound => {}
                Err(e) => return Err(e),
            }
        }
        if !self.shared.create_missing_group {
            return Ok(false);
        }
        match self
            .call(Action::CreateLogGroup, request::create_log_group_body(g))
            .await
        {
            Ok(_) => {
                tracing::info!(sink = %self.shared.sink, group = %g, "created log group");
                if let Some(days) = self.shared.retention_days {
                    self.call(
                        Action::PutRetentionPolicy,
                        request::put_retention_policy_body(g, days),
                    )
                    .await?;
                }
            }
            Err(SendError::Service(e)) if e.kind == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if !self.shared.create_missing_stream {
            // The group exists now; the stream must be made by someone else.
            return Ok(true);
        }
        match self.call(Action::CreateLogStream, stream_body).await {
            Ok(_) => {
                tracing::info!(sink = %self.shared.sink, group = %g, stream = %s, "created log stream");
                Ok(true)
            }
            Err(SendError::Service(e)) if e.kind == ErrorKind::AlreadyExists => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// One signed request; `Ok` carries a 2xx body.
    async fn call(&self, action: Action, body: Bytes) -> Result<Bytes, SendError> {
        let creds = self.shared.credentials.get().await?;
        let req = request::build_request(
            &self.shared.signer,
            &creds,
            &self.shared.transport.endpoint().authority,
            &self.shared.url,
            action,
            body,
            SystemTime::now(),
        )
        .map_err(|e| SendError::Signing(e.to_string()))?;
        let result = {
            let _permit = self.shared.in_flight.acquire().await;
            self.shared.transport.send(req).await
        };
        let sink = self.shared.sink.to_string();
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                let outcome = if matches!(e, TransportError::Timeout { .. }) {
                    "timeout"
                } else {
                    "connection"
                };
                metrics::counter!(m::SINK_REQUESTS, "sink" => sink, "outcome" => outcome)
                    .increment(1);
                return Err(e.into());
            }
        };
        if resp.status.is_success() {
            metrics::counter!(m::SINK_REQUESTS, "sink" => sink, "outcome" => "ok").increment(1);
            return Ok(resp.body);
        }
        let e = request::classify_error(resp.status.as_u16(), &resp.headers, &resp.body);
        metrics::counter!(m::SINK_REQUESTS, "sink" => sink, "outcome" => e.kind.label())
            .increment(1);
        Err(SendError::Service(e))
    }
}

#[cfg(test)]
mod tests;
