//! A warning that must not flood the log: logged at most once per interval, with how many
//! times it was held back meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A warning that repeats at most once per `every`, with how many times it was suppressed.
pub(super) struct Throttled {
    every: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicUsize,
}

impl Throttled {
    pub(super) fn new(every: Duration) -> Throttled {
        Throttled {
            every,
            last: Mutex::new(None),
            suppressed: AtomicUsize::new(0),
        }
    }

    /// `Some(suppressed since the last time)` when the caller should log now.
    pub(super) fn ready(&self) -> Option<usize> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.every) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_interval_with_the_count_held_back() {
        let t = Throttled::new(Duration::from_secs(3600));
        assert_eq!(t.ready(), Some(0));
        assert_eq!(t.ready(), None);
        assert_eq!(t.ready(), None);
        let t2 = Throttled::new(Duration::ZERO);
        assert_eq!(t2.ready(), Some(0));
        assert_eq!(t2.ready(), Some(0));
    }
}
