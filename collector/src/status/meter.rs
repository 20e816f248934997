//! A counter with a rate: components add to it at batch granularity (one relaxed atomic add);
//! whoever reads `/status` asks for the rate, computed from samples the readers take — at
//! most one per [`SAMPLE_EVERY`], kept for [`WINDOW`] — so nothing runs while nobody asks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Samples closer together than this are not kept (a poller asking ten times a second gets
/// the same window as one asking once).
const SAMPLE_EVERY: Duration = Duration::from_millis(900);
/// The span a rate averages over, at most.
const WINDOW: Duration = Duration::from_secs(10);

pub struct Meter {
    total: AtomicU64,
    samples: Mutex<VecDeque<(Instant, u64)>>,
    made: Instant,
    /// When the first count came, in ns after `made` (0: not yet): a young meter's rate runs
    /// from there, not from when it was made (a container's log is found before it is
    /// written to).
    first: AtomicU64,
}

impl Default for Meter {
    fn default() -> Self {
        Meter::new()
    }
}

impl Meter {
    pub fn new() -> Meter {
        let made = Instant::now();
        Meter {
            total: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::from([(made, 0)])),
            made,
            first: AtomicU64::new(0),
        }
    }

    pub fn add(&self, n: u64) {
        if self.total.fetch_add(n, Ordering::Relaxed) == 0 && n > 0 {
            let since = self.made.elapsed().as_nanos().max(1) as u64;
            let _ = self
                .first
                .compare_exchange(0, since, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Per second, over the last [`WINDOW`] (or since the meter was made, when younger).
    pub fn rate(&self) -> f64 {
        self.rate_at(Instant::now())
    }

    pub fn rate_at(&self, now: Instant) -> f64 {
        let total = self.total();
        let mut s = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if s.back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= SAMPLE_EVERY)
        {
            s.push_back((now, total));
        }
        // Keep one sample at least WINDOW old, as the window's start.
        while s.len() > 2 && now.saturating_duration_since(s[1].0) >= WINDOW {
            s.pop_front();
        }
        let (mut t0, v0) = s[0];
        if v0 == 0 {
            let first = self.first.load(Ordering::Relaxed);
            if first > 0 {
                t0 = t0.max(self.made + Duration::from_nanos(first));
            }
        }
        let dt = now.saturating_duration_since(t0).as_secs_f64();
        if dt <= 0.0 {
            return 0.0;
        }
        total.saturating_sub(v0) as f64 / dt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_the_window() {
        let m = Meter::new();
        let t0 = m.samples.lock().unwrap()[0].0;
        m.add(100);
        assert!((m.rate_at(t0 + Duration::from_secs(1)) - 100.0).abs() < 0.5);
        m.add(300);
        assert!((m.rate_at(t0 + Duration::from_secs(2)) - 200.0).abs() < 0.5);
        // Nothing for a long while: the window moves on and the rate falls to 0.
        m.rate_at(t0 + Duration::from_secs(30));
        assert_eq!(m.rate_at(t0 + Duration::from_secs(45)), 0.0);
    }
}
