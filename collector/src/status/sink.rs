//! One sink's live state for `/status`: what it delivered (counted where its batches settle,
//! [`crate::inflight`]), its last error and retries (told by the sink where it retries), its
//! buffer fill (read from the router's budget when asked), and from these its state: `down`
//! while the supervisor restarts it, `retrying` while its newest news is an error, else `up`.

use super::meter::Meter;
use crate::time::now_nanos;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Reads a sink's buffer fill: (events, message bytes) held now, and the capacities.
pub type BufferProbe = Box<dyn Fn() -> BufferFill + Send + Sync>;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BufferFill {
    pub events: u64,
    pub bytes: u64,
    pub max_events: u64,
    pub max_bytes: u64,
}

#[derive(Default)]
pub struct SinkStats {
    /// The sink's `type`, once the topology registered it.
    pub(super) kind: OnceLock<&'static str>,
    pub(super) events: Meter,
    pub(super) bytes: Meter,
    pub(super) retries: AtomicU64,
    pub(super) dropped: AtomicU64,
    /// When it last delivered (or reconnected), and when it last failed (ns since the epoch; 0:
    /// never).
    pub(super) last_ok: AtomicI64,
    pub(super) last_error_at: AtomicI64,
    pub(super) last_error: Mutex<Option<String>>,
    pub(super) buffer: Mutex<Option<BufferProbe>>,
}

impl SinkStats {
    /// A batch of `events` events, `bytes` message bytes, was delivered.
    pub fn delivered(&self, events: u64, bytes: u64) {
        self.events.add(events);
        self.bytes.add(bytes);
        self.ok();
    }

    /// The sink reached its peer again (a reconnect), before delivering anything.
    pub fn ok(&self) {
        self.last_ok.store(now_nanos(), Ordering::Relaxed);
    }

    /// An attempt failed with `error` and will be retried.
    pub fn retrying(&self, error: &str) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.failed(error);
    }

    /// An error, retried or not (counted without a retry).
    pub fn failed(&self, error: &str) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
        self.last_error_at.store(now_nanos(), Ordering::Relaxed);
    }

    pub fn dropped(&self, events: u64) {
        self.dropped.fetch_add(events, Ordering::Relaxed);
    }

    /// Where `/status` reads the buffer fill from (the router's budget; a reload that
    /// rebuilds the sink gives the new one).
    pub fn watch_buffer(&self, probe: BufferProbe) {
        *self.buffer.lock().unwrap_or_else(|p| p.into_inner()) = Some(probe);
    }

    /// Whether its newest news is an error.
    pub fn is_retrying(&self) -> bool {
        let err = self.last_error_at.load(Ordering::Relaxed);
        err != 0 && err >= self.last_ok.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<(String, i64)> {
        let e = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some((e, self.last_error_at.load(Ordering::Relaxed)))
    }

    pub fn buffer_fill(&self) -> Option<BufferFill> {
        self.buffer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|p| p())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrying_until_it_delivers_again() {
        let s = SinkStats::default();
        assert!(!s.is_retrying());
        s.retrying("connect: connection refused");
        assert!(s.is_retrying());
        assert_eq!(s.retries.load(Ordering::Relaxed), 1);
        std::thread::sleep(std::time::Duration::from_millis(2));
        s.delivered(3, 30);
        assert!(!s.is_retrying());
        assert_eq!(s.last_error().unwrap().0, "connect: connection refused");
    }
}
