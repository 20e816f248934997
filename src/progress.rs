//! `run --once` on a terminal: one progress line (bytes delivered of the total, lines/s, MB/s,
//! ETA) drawn with indicatif on stderr. Without a terminal nothing changes: the usual log lines.
//!
//! The figures come from the metrics the sources already keep, tapped on their way to the
//! recorder ([`Tap`]), so no component knows about the bar: lines from
//! `logwharf_source_events_total`, and the backlog from `logwharf_checkpoint_lag_bytes` (per
//! container and sink: bytes written to the log and not yet acknowledged). Each lag series
//! that falls adds what it fell by to "delivered"; the total is delivered + what the series
//! still show, so containers discovered later, or written to meanwhile, grow it. With two
//! sinks, each byte counts once per sink. Log lines are written through [`LogWriter`], which
//! lifts the bar while a line is printed so the two do not garble each other.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use logwharf_collector::metrics as m;
use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder};
use metrics::{SharedString, Unit};
use std::io::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The bar, once `run --once` has drawn one: what [`LogWriter`] lifts.
static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// What the bar shows, fed by [`Tap`].
#[derive(Default)]
pub struct Progress {
    lines: AtomicU64,
    delivered: AtomicU64,
    /// Sum of the lag series now (bytes written, not yet acknowledged).
    behind: AtomicI64,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// Draws the bar on stderr until the returned guard is dropped.
    pub fn draw(self: &Arc<Self>) -> Drawing {
        let bar = BAR
            .get_or_init(|| {
                let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {bytes}/{total_bytes} delivered ({percent}%) · {binary_bytes_per_sec} · {msg} · ETA {eta}",
                    )
                    .expect("a valid progress template"),
                );
                bar
            })
            .clone();
        let (me, b) = (self.clone(), bar.clone());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let ticker = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                let started = Instant::now();
                while !s.load(Relaxed) {
                    me.update(&b, started.elapsed());
                    std::thread::sleep(Duration::from_millis(200));
                }
                me.update(&b, started.elapsed());
            })
            .ok();
        Drawing { bar, stop, ticker }
    }

    fn update(&self, bar: &ProgressBar, elapsed: Duration) {
        let delivered = self.delivered.load(Relaxed);
        let behind = self.behind.load(Relaxed).max(0) as u64;
        bar.set_length(delivered + behind);
        bar.set_position(delivered);
        let lines = self.lines.load(Relaxed);
        let per_s = lines as f64 / elapsed.as_secs_f64().max(0.001);
        bar.set_message(format!("{lines} lines, {per_s:.0} lines/s"));
    }

    fn lag_moved(&self, from: f64, to: f64) {
        let (from, to) = (from.max(0.0) as i64, to.max(0.0) as i64);
        self.behind.fetch_add(to - from, Relaxed);
        if to < from {
            self.delivered.fetch_add((from - to) as u64, Relaxed);
        }
    }
}

/// The bar while it is drawn; dropping it clears the bar and leaves a summary line.
pub struct Drawing {
    bar: ProgressBar,
    stop: Arc<std::sync::atomic::AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Drawing {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        let elapsed = self.bar.elapsed();
        let (pos, msg) = (self.bar.position(), self.bar.message());
        self.bar.finish_and_clear();
        eprintln!(
            "delivered {} in {:.1}s ({msg})",
            indicatif::HumanBytes(pos),
            elapsed.as_secs_f64()
        );
    }
}

/// A recorder that hands every series to `inner` and copies the ones [`Progress`] reads.
pub struct Tap<R> {
    pub inner: R,
    pub progress: Arc<Progress>,
}

impl<R: Recorder> Recorder for Tap<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description)
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description)
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description)
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let inner = self.inner.register_counter(key, metadata);
        if key.name() == m::SOURCE_EVENTS {
            Counter::from_arc(Arc::new(LineCounter {
                inner,
                progress: self.progress.clone(),
            }))
        } else {
            inner
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let inner = self.inner.register_gauge(key, metadata);
        if key.name() == m::CHECKPOINT_LAG_BYTES {
            Gauge::from_arc(Arc::new(LagGauge {
                inner,
                last: AtomicU64::new(0f64.to_bits()),
                progress: self.progress.clone(),
            }))
        } else {
            inner
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.inner.register_histogram(key, metadata)
    }
}

struct LineCounter {
    inner: Counter,
    progress: Arc<Progress>,
}

impl CounterFn for LineCounter {
    fn increment(&self, value: u64) {
        self.progress.lines.fetch_add(value, Relaxed);
        self.inner.increment(value);
    }

    fn absolute(&self, value: u64) {
        self.inner.absolute(value);
    }
}

/// One lag series: remembers its last value, so each change moves [`Progress`] by the
/// difference.
struct LagGauge {
    inner: Gauge,
    last: AtomicU64,
    progress: Arc<Progress>,
}

impl LagGauge {
    fn moved(&self, next: impl Fn(f64) -> f64) {
        let mut now = self.last.load(Relaxed);
        loop {
            let to = next(f64::from_bits(now));
            match self
                .last
                .compare_exchange_weak(now, to.to_bits(), Relaxed, Relaxed)
            {
                Ok(_) => return self.progress.lag_moved(f64::from_bits(now), to),
                Err(seen) => now = seen,
            }
        }
    }
}

impl GaugeFn for LagGauge {
    fn increment(&self, value: f64) {
        self.moved(|v| v + value);
        self.inner.increment(value);
    }

    fn decrement(&self, value: f64) {
        self.moved(|v| v - value);
        self.inner.decrement(value);
    }

    fn set(&self, value: f64) {
        self.moved(|_| value);
        self.inner.set(value);
    }
}

/// tracing's writer: stderr, with the bar (if one is drawn) lifted around each line.
#[derive(Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BAR.get() {
            Some(bar) if !bar.is_finished() => bar.suspend(|| std::io::stderr().write_all(buf)),
            _ => std::io::stderr().write_all(buf),
        }?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::NoopRecorder;

    #[test]
    fn lag_falls_count_as_delivered_and_rises_grow_the_total() {
        let p = Progress::new();
        let tap = Tap {
            inner: NoopRecorder,
            progress: p.clone(),
        };
        let meta = Metadata::new("t", metrics::Level::INFO, None);
        let a = tap.register_gauge(&Key::from_name(m::CHECKPOINT_LAG_BYTES), &meta);
        let b = tap.register_gauge(&Key::from_name(m::CHECKPOINT_LAG_BYTES), &meta);
        a.set(1000.0);
        b.set(500.0);
        a.set(400.0);
        b.set(0.0);
        a.set(700.0); // written to meanwhile
        a.set(0.0);
        assert_eq!(p.delivered.load(Relaxed), 600 + 500 + 700);
        assert_eq!(p.behind.load(Relaxed), 0);
        let lines = tap.register_counter(&Key::from_name(m::SOURCE_EVENTS), &meta);
        lines.increment(3);
        tap.register_counter(&Key::from_name(m::SOURCE_BYTES), &meta)
            .increment(9);
        assert_eq!(p.lines.load(Relaxed), 3);
    }
}
