//! The per-container read rate limit: the source's `rate_limit` (bytes per second), which a
//! container's label `logwharf.rate_limit` overrides. Over it the reader sleeps before its
//! next read — Docker's file is the buffer, nothing is dropped — and counts the time in
//! `logwharf_rate_limited_seconds_total{source,container,sink}`.
//!
//! A token bucket of bytes read: it holds one second's worth (the burst), every read spends
//! what it read (possibly going into debt by up to one read block), and the reader waits until
//! the debt is paid. A limited reader also reads in slices of a quarter second's worth, so its
//! lines arrive evenly rather than one large block every few seconds.
//!
//! Each reader of a container has its own bucket at the container's rate: the shared reader
//! of the sinks in step, and each detached sink's own reader. One bucket for all would either
//! charge the bytes once per reader (half the rate each) or tie the sinks together again (a
//! lagging sink's catch-up would spend the budget of the sinks that are current). So every
//! sink receives the container's lines at the configured rate, independently of the others.

use crate::event::ContainerMeta;
use crate::metrics::{self as m, LabelValue, LazyCounter};
use logwharf_config::ByteSize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The container label that overrides the source's `rate_limit`.
pub const LABEL: &str = "logwharf.rate_limit";

/// Reads of a limited container ask for at most this fraction of a second's worth of bytes.
const SLICES_PER_SECOND: u64 = 4;
/// The smallest read a limited reader makes (one page-cache-friendly block).
const MIN_READ: usize = 4096;

/// The limit of a container: its label when set, else the source's default. `Ok(None)`: no
/// limit (the label `0`, `off`, `none` or `unlimited` lifts the source's). `Err`: the label
/// does not parse (the caller warns and applies the default).
pub fn container_limit(meta: &ContainerMeta, default: Option<u64>) -> Result<Option<u64>, String> {
    let Some(v) = meta.labels.get(LABEL) else {
        return Ok(default);
    };
    let v = v.trim();
    if ["off", "none", "unlimited"]
        .iter()
        .any(|w| v.eq_ignore_ascii_case(w))
    {
        return Ok(None);
    }
    let n = ByteSize::parse(v)?.0;
    Ok((n > 0).then_some(n))
}

/// Bytes per second, with a burst of one second's worth. Tokens may go negative: a read is
/// charged after it happened, and the debt is what the reader then waits for.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket: the first second's worth is read at once.
    pub fn new(rate: u64, now: Instant) -> TokenBucket {
        let rate = rate.max(1);
        TokenBucket {
            rate,
            tokens: rate as f64,
            last: now,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// A new rate (the container's label changed); tokens and debt carry over.
    pub fn set_rate(&mut self, rate: u64, now: Instant) {
        self.refill(now);
        self.rate = rate.max(1);
        self.tokens = self.tokens.min(self.rate as f64);
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate as f64).min(self.rate as f64);
    }

    /// Charges `bytes` just read.
    pub fn spend(&mut self, bytes: u64, now: Instant) {
        self.refill(now);
        self.tokens -= bytes as f64;
    }

    /// How long to wait before the next read: until the debt is paid (zero when there is none).
    pub fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
        }
    }

    /// Bytes a limited reader asks for per read call.
    pub fn read_block(&self) -> usize {
        ((self.rate / SLICES_PER_SECOND) as usize).max(MIN_READ)
    }
}

fn limited_seconds(source: &str, container: &str, sink: &str) -> LazyCounter {
    let label = |v: &str| LabelValue::Shared(v.into());
    LazyCounter::new(
        m::RATE_LIMITED_SECONDS,
        vec![
            ("source", label(source)),
            ("container", label(container)),
            ("sink", label(sink)),
        ],
    )
}

/// One reader's limit: follows the container's label, holds its bucket, counts the waits.
pub struct RateLimiter {
    /// The source's `rate_limit`.
    default: Option<u64>,
    bucket: Option<TokenBucket>,
    /// The metadata record the limit was taken from (a new record: look at the label again).
    seen: Option<Arc<ContainerMeta>>,
    /// This reader reports a bad label (one reader per container does, not one per sink).
    reports: bool,
    source: Arc<str>,
    /// Per sink read through this reader; a shared reader's sink counts while attached.
    limited_seconds: Vec<(LazyCounter, Option<Arc<AtomicBool>>)>,
    /// Waited time not yet counted: the counter counts whole seconds.
    carry: f64,
}

impl RateLimiter {
    pub fn new(
        default: Option<u64>,
        source: &str,
        container: &str,
        sink: &str,
        reports: bool,
    ) -> RateLimiter {
        let counters = vec![(limited_seconds(source, container, sink), None)];
        RateLimiter::with_counters(default, source, reports, counters)
    }

    /// The limit of the container's reader shared by several sinks (each is charged the
    /// waits while it is attached); it reports bad labels.
    pub fn shared(
        default: Option<u64>,
        source: &str,
        container: &str,
        sinks: &[(Arc<str>, Arc<AtomicBool>)],
    ) -> RateLimiter {
        let counters = sinks
            .iter()
            .map(|(s, a)| (limited_seconds(source, container, s), Some(a.clone())))
            .collect();
        RateLimiter::with_counters(default, source, true, counters)
    }

    fn with_counters(
        default: Option<u64>,
        source: &str,
        reports: bool,
        limited_seconds: Vec<(LazyCounter, Option<Arc<AtomicBool>>)>,
    ) -> RateLimiter {
        RateLimiter {
            default,
            bucket: None,
            seen: None,
            reports,
            source: source.into(),
            limited_seconds,
            carry: 0.0,
        }
    }

    /// Takes the limit from `meta` when it is a record not seen yet. Returns the read block
    /// the reader should use (`None`: the source's own).
    pub fn update(&mut self, meta: &Arc<ContainerMeta>, now: Instant) -> Option<usize> {
        if !self.seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, meta)) {
            self.seen = Some(meta.clone());
            let limit = match container_limit(meta, self.default) {
                Ok(l) => l,
                Err(e) => {
                    if self.reports {
                        tracing::warn!(
                            container = %meta.id,
                            name = meta.name.as_deref().unwrap_or(""),
                            error = %e,
                            "label {LABEL} is not a rate in bytes per second (e.g. 512k, 1m); the source's rate_limit applies to this container"
                        );
                        metrics::counter!(m::SOURCE_ERRORS, "source" => self.source.to_string(), "kind" => "bad_label").increment(1);
                    }
                    self.default
                }
            };
            match (limit, self.bucket.as_mut()) {
                (None, _) => self.bucket = None,
                (Some(r), Some(b)) => b.set_rate(r, now),
                (Some(r), None) => self.bucket = Some(TokenBucket::new(r, now)),
            }
        }
        self.bucket.as_ref().map(TokenBucket::read_block)
    }

    /// Charges bytes just read.
    pub fn spend(&mut self, bytes: u64, now: Instant) {
        if let Some(b) = self.bucket.as_mut() {
            b.spend(bytes, now);
        }
    }

    /// How long to wait before reading again, if at all.
    pub fn delay(&mut self, now: Instant) -> Option<Duration> {
        let d = self.bucket.as_mut()?.wait(now);
        (!d.is_zero()).then_some(d)
    }

    /// Counts time spent waiting for the limit.
    pub fn waited(&mut self, d: Duration) {
        self.carry += d.as_secs_f64();
        let whole = self.carry.floor();
        if whole >= 1.0 {
            for (c, attached) in &self.limited_seconds {
                if attached.as_ref().is_none_or(|a| a.load(Ordering::Acquire)) {
                    c.increment(whole as u64);
                }
            }
            self.carry -= whole;
        }
    }

    /// The bucket's rate (tests).
    pub fn rate(&self) -> Option<u64> {
        self.bucket.as_ref().map(TokenBucket::rate)
    }
}

#[cfg(test)]
mod tests;
