//! One sink's API log stream of one container ([`super::per_sink`]), from attach to the
//! container's end: demultiplexing, de-duplication after a re-attach ([`Replay`], which also
//! notices when Docker no longer has the cursor's line), partial-line reassembly, multiline
//! merging, batching, the inactivity watchdog, letting go of the stream while the sink takes
//! nothing, and checkpoints that only move past delivered lines — and never past a line still
//! held in a partial or multiline buffer.

use super::config::StartAt;
use super::cursor::{Cursor, Replay, Seen};
use super::Shared;
use crate::ack::ordered::OrderedAcks;
use crate::backoff::Backoff;
use crate::docker::logs::{self, Demux, Frame, LogStream};
use crate::event::{ContainerMeta, Event, EventFlags, Stream};
use crate::metrics as m;
use crate::multiline::{Merged, Multiline};
use crate::topology::SourceOutput;
use bytes::Bytes;
use futures_util::FutureExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A partial line waits this long for its continuation before it is shipped flagged.
const PARTIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where one consumed frame sits in the stream.
#[derive(Debug, Clone)]
struct Mark {
    seq: u64,
    /// The cursor before this frame (what a checkpoint may say while the frame is held).
    prev: Option<Cursor>,
}

/// The frames a line (or merged event) was built from.
#[derive(Debug, Clone)]
struct Span {
    first: Mark,
}

struct Partial {
    event: Event,
    buf: Vec<u8>,
    first: Mark,
    deadline: Instant,
}

#[derive(Default)]
struct StreamState {
    partial: Option<Partial>,
    multiline: Option<Multiline<Span>>,
}

/// Why the stream is (re)opened, for the metric and the log.
#[derive(Debug, Clone, Copy)]
enum Attach {
    Start,
    Watchdog,
    Error,
    Eof,
    /// The sink took nothing for `inactivity_timeout`: the stream was let go meanwhile.
    Backpressure,
    /// `since` missed the cursor's line: everything Docker has is read again ([`Rewind`]).
    Rewind,
}

/// Docker's `since` is not to be trusted to return every line from that time on: the `local`
/// driver of Docker 20.10 skips whole rotated files for some `since` values. So when a
/// re-attached stream goes past the cursor's time without the cursor's line, the stream is
/// re-read once from the start of what Docker has (`since = 0`, the lines up to the cursor
/// skipped as already read); only if the line is missing from that too is it a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewind {
    No,
    /// This attach missed the cursor's line: stop reading it, read everything.
    Wanted,
    /// This attach reads everything Docker has.
    Reading,
}

impl Attach {
    fn as_str(self) -> &'static str {
        match self {
            Attach::Start => "start",
            Attach::Watchdog => "watchdog",
            Attach::Error => "error",
            Attach::Eof => "eof",
            Attach::Backpressure => "backpressure",
            Attach::Rewind => "rewind",
        }
    }
}

/// One sink's share of the source: its output, and where its position is kept.
pub(super) struct View {
    pub out: SourceOutput,
    pub sink: Arc<str>,
    /// The checkpoint key of this sink's position in the container.
    pub key: String,
    /// Whether this view counts the per-container metrics that do not depend on the sink
    /// (so that they do not grow with the number of sinks).
    pub counts: bool,
}

struct Reader {
    shared: Arc<Shared>,
    out: SourceOutput,
    sink: Arc<str>,
    counts: bool,
    id: String,
    meta: Arc<ContainerMeta>,
    generation: u64,
    chain: Arc<OrderedAcks<serde_json::Value>>,
    /// The last consumed frame (read, not necessarily delivered).
    consumed: Option<Cursor>,
    seq: u64,
    streams: [StreamState; 2],
    rewind: Rewind,
    /// The stream had a malformed frame: what follows in it cannot be trusted (re-attach).
    malformed: bool,
    /// Events ready to send.
    pending: Vec<Event>,
}

/// Follows the container for one sink until it ends (or `stop`); everything read is sent to
/// that sink.
pub(super) async fn follow(
    shared: Arc<Shared>,
    meta: Arc<ContainerMeta>,
    stop: CancellationToken,
    view: View,
) {
    let id = meta.id.clone();
    let View {
        out,
        sink,
        key,
        counts,
    } = view;
    let consumed = shared
        .checkpoints
        .get(&key)
        .as_ref()
        .and_then(Cursor::from_json);
    let mut r = Reader {
        chain: OrderedAcks::for_checkpoint(shared.checkpoints.clone(), key),
        out,
        sink,
        counts,
        generation: shared.service.generation(),
        streams: Default::default(),
        pending: Vec::new(),
        rewind: Rewind::No,
        malformed: false,
        seq: 0,
        consumed,
        id,
        meta,
        shared,
    };
    r.setup_multiline();
    if let Err(e) = r.run(&stop).await {
        tracing::debug!(container = %r.id, sink = %r.sink, error = %format!("{e:#}"), "log reader stopped");
    }
}

impl Reader {
    fn setup_multiline(&mut self) {
        let cfg = &self.shared.config.docker.multiline;
        let label = self.meta.multiline_start().map(str::to_string);
        let pattern = label
            .clone()
            .or_else(|| cfg.start.as_ref().map(|p| p.as_str().to_string()));
        let Some(p) = pattern else { return };
        for s in &mut self.streams {
            match Multiline::new(&p, cfg.max_bytes.0 as usize, cfg.timeout.0) {
                Ok(m) => s.multiline = Some(m),
                Err(e) => {
                    tracing::warn!(container = %self.id, pattern = %p, error = %e, "label logwharf.multiline.start is not a valid regular expression; multiline merging is off for this container");
                    return;
                }
            }
        }
    }

    async fn run(&mut self, stop: &CancellationToken) -> anyhow::Result<()> {
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let inactivity = cfg.inactivity_timeout.0;
        // Off for `once`, and for the last read after the container stopped (see `Attach::Eof`).
        let mut follow = !self.shared.once;
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut reason = Attach::Start;
        let mut since = match (&self.consumed, cfg.start_at) {
            (Some(c), _) => c.time_ns,
            (None, StartAt::Beginning) => 0,
            (None, StartAt::End) => crate::time::now_nanos(),
        };
        loop {
            if stop.is_cancelled() {
                break;
            }
            if let Some(c) = &self.consumed {
                since = c.time_ns;
            }
            self.rewind = match self.rewind {
                Rewind::Wanted => Rewind::Reading,
                _ => Rewind::No,
            };
            if self.rewind == Rewind::Reading {
                since = 0;
            }
            let Some(docker) = self.shared.service.client() else {
                // The daemon is down: wait for the service to reconnect.
                tokio::select! {
                    _ = backoff.wait() => continue,
                    _ = stop.cancelled() => break,
                }
            };
            let version = crate::docker::api_version_of(&docker);
            metrics::counter!(m::DOCKER_STREAM_ATTACHES, "source" => self.shared.source.to_string(), "sink" => self.sink.to_string(), "reason" => reason.as_str()).increment(1);
            tracing::debug!(container = %self.id, sink = %self.sink, reason = reason.as_str(), since, "attaching to the log stream");
            let stream = match logs::open(
                self.shared.service.host(),
                &version,
                &self.id,
                since,
                follow,
            )
            .await
            {
                Ok(s) => s,
                Err(e) => {
                    let msg = format!("{e:#}");
                    let status = logs::daemon_status(&e);
                    if status == Some(404) {
                        tracing::debug!(container = %self.id, "container is gone");
                        break;
                    }
                    // A log driver without read support: 501 (older daemons: 500 with this
                    // message).
                    if status == Some(501)
                        || (status.is_some() && msg.contains("does not support reading"))
                    {
                        tracing::warn!(container = %self.id, error = %msg, "this container's log driver cannot be read through the API");
                        break;
                    }
                    tracing::debug!(container = %self.id, error = %msg, "cannot attach; retrying");
                    reason = Attach::Error;
                    tokio::select! {
                        _ = backoff.wait() => continue,
                        _ = stop.cancelled() => break,
                    }
                }
            };
            // `None` once let go while the sink takes nothing (see `send_holding`).
            let mut stream = Some(stream);
            let mut replay = Replay::new(self.consumed.clone());
            let mut demux = Demux::new(self.meta.tty);
            let mut idle_since = Instant::now();
            let ended: Option<anyhow::Error> = loop {
                let wake = self
                    .next_deadline()
                    .map_or(idle_since + inactivity, |d| d.min(idle_since + inactivity));
                let chunk = tokio::select! {
                    _ = stop.cancelled() => break None,
                    _ = tokio::time::sleep_until(wake) => {
                        let now = Instant::now();
                        self.flush_expired(now);
                        self.send_holding(&mut stream, inactivity, stop).await?;
                        if stream.is_none() {
                            reason = Attach::Backpressure;
                            break None;
                        }
                        if now >= idle_since + inactivity {
                            reason = Attach::Watchdog;
                            break None;
                        }
                        continue;
                    }
                    c = stream.as_mut().expect("open while looping").next_chunk() => c,
                };
                match chunk {
                    Some(Ok(data)) => {
                        backoff.reset();
                        self.feed(&mut demux, &mut replay, &data);
                        // Take whatever else is already here before sending: fewer, larger batches.
                        while self.pending.len() < cfg.batch_max_events
                            && self.rewind != Rewind::Wanted
                            && !self.malformed
                        {
                            match stream.as_mut().and_then(|s| s.next_chunk().now_or_never()) {
                                Some(Some(Ok(more))) => self.feed(&mut demux, &mut replay, &more),
                                _ => break,
                            }
                        }
                        if self.rewind == Rewind::Wanted {
                            break None;
                        }
                        if std::mem::take(&mut self.malformed) {
                            reason = Attach::Error;
                            break Some(anyhow::anyhow!("a malformed frame"));
                        }
                        self.send_holding(&mut stream, inactivity, stop).await?;
                        // Time spent waiting for the sink is not Docker's silence.
                        idle_since = Instant::now();
                        if stream.is_none() {
                            reason = Attach::Backpressure;
                            break None;
                        }
                    }
                    None => {
                        if let Some(f) = demux.finish() {
                            self.frame(f, &mut replay);
                        }
                        reason = Attach::Eof;
                        break None;
                    }
                    Some(Err(e)) => {
                        reason = Attach::Error;
                        break Some(e);
                    }
                }
            };
            drop(stream);
            if stop.is_cancelled() {
                break;
            }
            if self.rewind == Rewind::Wanted {
                reason = Attach::Rewind;
            }
            match reason {
                Attach::Eof => {
                    if !follow {
                        // Read to the end. Started again meanwhile (`docker restart`, or its
                        // first start while this reader looked at it created): follow it.
                        if self.shared.once || !self.still_running().await {
                            break;
                        }
                        follow = true;
                        continue;
                    }
                    if !self.still_running().await {
                        // Docker ends a follower at the container's exit even when it has not
                        // sent everything yet (a follower behind by thousands of lines stops
                        // there): one more read from the cursor, without `follow`, goes to the
                        // real end of the files. (Not for a container that never wrote: one
                        // created, not started yet, whose start event starts new readers.)
                        if self.seq == 0 {
                            break;
                        }
                        follow = false;
                        continue;
                    }
                    // The stream ended but the container runs (a daemon restart): re-attach.
                    tokio::select! {
                        _ = backoff.wait() => {}
                        _ = stop.cancelled() => break,
                    }
                }
                Attach::Error => {
                    tracing::debug!(container = %self.id, error = %format!("{:#}", ended.unwrap_or_else(|| anyhow::anyhow!("?"))), "log stream failed; re-attaching from the cursor");
                    tokio::select! {
                        _ = backoff.wait() => {}
                        _ = stop.cancelled() => break,
                    }
                }
                Attach::Watchdog => {
                    tracing::debug!(container = %self.id, sink = %self.sink, "log stream silent; re-attaching from the cursor");
                }
                Attach::Backpressure => {
                    tracing::debug!(container = %self.id, sink = %self.sink, "the sink takes lines again; re-attaching from its cursor");
                }
                Attach::Rewind => {
                    tracing::info!(container = %self.id, sink = %self.sink, since, "Docker's stream from the cursor's time did not have the cursor's line; reading everything Docker has and skipping up to the cursor");
                }
                Attach::Start => {}
            }
        }
        self.flush_all();
        self.send(stop).await?;
        Ok(())
    }

    async fn still_running(&self) -> bool {
        match self.shared.service.refresh(&self.id).await {
            Some(_) => self.shared.service.is_running(&self.id),
            // Gone, or the daemon is down (then the stream reconnects once it is back).
            None => self.shared.service.client().is_none(),
        }
    }

    fn feed(&mut self, demux: &mut Demux, replay: &mut Replay, data: &Bytes) {
        demux.push(data);
        loop {
            match demux.next_frame() {
                None => break,
                Some(Ok(f)) => {
                    self.frame(f, replay);
                    if self.rewind == Rewind::Wanted {
                        break; // the rest is read again from the start
                    }
                }
                Some(Err(e)) => {
                    if self.counts {
                        metrics::counter!(m::DOCKER_BAD_FRAMES, "source" => self.shared.source.to_string(), "container" => self.id.clone()).increment(1);
                    }
                    tracing::warn!(container = %self.id, sink = %self.sink, error = %e, "malformed API log stream; its buffered bytes were dropped and the stream is re-read from the cursor");
                    self.malformed = true;
                    break;
                }
            }
        }
    }

    fn frame(&mut self, f: Frame, replay: &mut Replay) {
        let cursor = f.time_ns.map(|t| Cursor::of(t, f.stream, &f.message));
        if let Some(c) = &cursor {
            match replay.admit(c) {
                Seen::Old => {
                    metrics::counter!(m::DOCKER_REPLAY_SKIPPED, "source" => self.shared.source.to_string(), "sink" => self.sink.to_string()).increment(1);
                    return;
                }
                Seen::AfterGap if self.rewind == Rewind::No => {
                    self.rewind = Rewind::Wanted;
                    return;
                }
                Seen::AfterGap => self.gap(c),
                Seen::New => {}
            }
        } else if self.counts {
            metrics::counter!(m::DOCKER_BAD_FRAMES, "source" => self.shared.source.to_string(), "container" => self.id.clone()).increment(1);
        }
        self.seq += 1;
        let mark = Mark {
            seq: self.seq,
            prev: self.consumed.clone(),
        };
        if cursor.is_some() {
            self.consumed = cursor;
        }
        let now = Instant::now();
        let time = f.time_ns.unwrap_or_else(crate::time::now_nanos);
        let max = self.shared.config.max_line_bytes.0 as usize;
        let idx = stream_index(f.stream);
        let st = &mut self.streams[idx];
        let mut event;
        let first;
        if let Some(mut p) = st.partial.take() {
            let room = max.saturating_sub(p.buf.len());
            if f.message.len() > room {
                p.event.flags.insert(EventFlags::TRUNCATED);
            }
            p.buf
                .extend_from_slice(&f.message[..f.message.len().min(room)]);
            if !f.complete {
                p.deadline = now + PARTIAL_TIMEOUT;
                st.partial = Some(p);
                return;
            }
            event = p.event;
            event.message = Bytes::from(p.buf);
            first = p.first;
        } else if !f.complete {
            let mut e = Event::new(time, f.stream, Bytes::new());
            let mut buf = Vec::with_capacity(f.message.len() * 2);
            buf.extend_from_slice(&f.message[..f.message.len().min(max)]);
            if f.message.len() > max {
                e.flags.insert(EventFlags::TRUNCATED);
            }
            st.partial = Some(Partial {
                event: e,
                buf,
                first: mark,
                deadline: now + PARTIAL_TIMEOUT,
            });
            return;
        } else {
            event = Event::new(time, f.stream, f.message);
            if event.message.len() > max {
                event.message.truncate(max);
                event.flags.insert(EventFlags::TRUNCATED);
            }
            first = mark;
        }
        if f.time_ns.is_none() {
            event.flags.insert(EventFlags::MALFORMED);
        }
        self.line(idx, event, Span { first }, now);
    }

    /// The re-attached stream went past the cursor's time without its line: Docker no longer
    /// has it. Said once per occurrence; how much is gone the API cannot tell.
    fn gap(&self, first: &Cursor) {
        metrics::counter!(m::DOCKER_STREAM_GAPS, "source" => self.shared.source.to_string(), "container" => self.id.clone(), "sink" => self.sink.to_string()).increment(1);
        let since = self.consumed.as_ref().map_or(0, |c| c.time_ns);
        tracing::warn!(
            container = %self.id,
            sink = %self.sink,
            cursor_time_ns = since,
            oldest_time_ns = first.time_ns,
            "Docker no longer has this sink's last delivered line (its log was rotated away meanwhile): lines written between these times may be lost, how many the API cannot say"
        );
    }

    /// A whole line: through the multiline merger, if any, into the outgoing batch.
    fn line(&mut self, idx: usize, event: Event, span: Span, now: Instant) {
        if event.flags.contains(EventFlags::TRUNCATED) && self.counts {
            metrics::counter!(m::PARTIAL_TRUNCATED, "source" => self.shared.source.to_string(), "container" => self.id.clone()).increment(1);
        }
        match self.streams[idx].multiline.as_mut() {
            Some(ml) => {
                let mut merged = Vec::new();
                ml.push(event, span, now, &mut merged);
                self.take_merged(merged);
            }
            None => self.pending.push(event),
        }
    }

    fn take_merged(&mut self, merged: Vec<Merged<Span>>) {
        for mg in merged {
            if mg.lines > 1 && self.counts {
                metrics::counter!(m::MULTILINE_MERGED, "source" => self.shared.source.to_string())
                    .increment(mg.lines as u64 - 1);
            }
            self.pending.push(mg.event);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.streams
            .iter()
            .flat_map(|s| {
                [
                    s.partial.as_ref().map(|p| p.deadline),
                    s.multiline.as_ref().and_then(|m| m.deadline()),
                ]
            })
            .flatten()
            .min()
    }

    fn flush_expired(&mut self, now: Instant) {
        for idx in 0..2 {
            if self.streams[idx]
                .partial
                .as_ref()
                .is_some_and(|p| p.deadline <= now)
            {
                self.flush_partial(idx, now);
            }
            let mut merged = Vec::new();
            if let Some(ml) = self.streams[idx].multiline.as_mut() {
                ml.flush_expired(now, &mut merged);
            }
            self.take_merged(merged);
        }
    }

    fn flush_partial(&mut self, idx: usize, now: Instant) {
        if let Some(p) = self.streams[idx].partial.take() {
            let mut e = p.event;
            e.message = Bytes::from(p.buf);
            e.flags.insert(EventFlags::PARTIAL);
            self.line(idx, e, Span { first: p.first }, now);
        }
    }

    fn flush_all(&mut self) {
        let now = Instant::now();
        for idx in 0..2 {
            self.flush_partial(idx, now);
            let mut merged = Vec::new();
            if let Some(ml) = self.streams[idx].multiline.as_mut() {
                ml.flush(&mut merged);
            }
            self.take_merged(merged);
        }
    }

    /// The cursor a checkpoint may hold now: before the oldest line still held, else the last
    /// consumed line.
    fn safe_cursor(&self) -> Option<Cursor> {
        let held = self
            .streams
            .iter()
            .flat_map(|s| {
                [
                    s.partial.as_ref().map(|p| &p.first),
                    s.multiline
                        .as_ref()
                        .and_then(|m| m.pending_first())
                        .map(|sp| &sp.first),
                ]
            })
            .flatten()
            .min_by_key(|m| m.seq);
        match held {
            Some(m) => m.prev.clone(),
            None => self.consumed.clone(),
        }
    }

    /// Sends what is ready, holding Docker's stream open for at most `limit` while the sink
    /// has no room: then the stream is let go (`None`), so that Docker neither keeps a stalled
    /// follower nor is trusted to keep its place across rotations; the caller re-attaches
    /// from the cursor, re-reading Docker's files, once the send is through.
    async fn send_holding(
        &mut self,
        stream: &mut Option<LogStream>,
        limit: Duration,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let (id, sink) = (self.id.clone(), self.sink.clone());
        let send = self.send(stop);
        tokio::pin!(send);
        tokio::select! {
            r = &mut send => return r,
            _ = tokio::time::sleep(limit) => {}
        }
        if stream.take().is_some() {
            tracing::debug!(container = %id, sink = %sink, "the sink takes nothing: let go of the log stream until it does");
        }
        send.await
    }

    /// Sends what is ready, enriched with the container's current record. Waits while the
    /// sink has no room, unless `stop`.
    async fn send(&mut self, stop: &CancellationToken) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let g = self.shared.service.generation();
        if g != self.generation {
            self.generation = g;
            if let Some(m) = self.shared.service.get(&self.id) {
                self.meta = m;
            }
        }
        let mut events = std::mem::take(&mut self.pending);
        for e in &mut events {
            e.container = Some(self.meta.clone());
            e.attrs = self.meta.attrs.clone();
        }
        let done = self.chain.track(self.safe_cursor().map(|c| c.to_json()));
        tokio::select! {
            biased;
            r = self.out.send(events, Some(done)) => r.map_err(|e| anyhow::anyhow!(e)),
            // Not delivered: the checkpoint stays before it, so the next run reads it again.
            _ = stop.cancelled() => Err(anyhow::anyhow!("stopped while the sink had no room")),
        }
    }
}

fn stream_index(s: Stream) -> usize {
    usize::from(s == Stream::Stderr)
}
