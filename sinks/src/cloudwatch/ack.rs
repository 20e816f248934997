//! Acknowledging a source batch whose events went to several streams and several requests.
//!
//! A [`Delivery`] holds the [`SinkBatch`] (its acknowledgement and its place in the sink's
//! bounded buffer, so memory stays bounded until delivery). Every part of it that travels on
//! its own holds a [`Piece`]. A piece is settled with [`Piece::done`] after a 2xx response that
//! covered its events (or after they were counted as permanently rejected); a piece dropped
//! unsettled (shutdown deadline, task aborted) marks the whole batch as not delivered, so its
//! source re-reads it. When the last piece is gone, the batch is acknowledged — once.

use logwharf_collector::SinkBatch;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The shared state of one source batch inside this sink.
pub struct Delivery {
    batch: Mutex<Option<SinkBatch>>,
    failed: AtomicBool,
}

impl Delivery {
    /// Takes charge of `batch`; the returned piece is its first share.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(batch: SinkBatch) -> Piece {
        Piece {
            shared: Arc::new(Delivery {
                batch: Mutex::new(Some(batch)),
                failed: AtomicBool::new(false),
            }),
            settled: false,
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        let batch = self.batch.get_mut().ok().and_then(Option::take);
        if let Some(b) = batch {
            if !self.failed.load(Ordering::Acquire) {
                b.into_parts().1.delivered();
            }
            // Otherwise the token is dropped unsettled: not delivered.
        }
    }
}

/// One share of a [`Delivery`].
pub struct Piece {
    shared: Arc<Delivery>,
    settled: bool,
}

impl Piece {
    /// Another share of the same source batch.
    pub fn share(&self) -> Piece {
        Piece {
            shared: self.shared.clone(),
            settled: false,
        }
    }

    /// This share was delivered (or permanently rejected and counted).
    pub fn done(mut self) {
        self.settled = true;
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.failed.store(true, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Piece")
            .field("settled", &self.settled)
            .finish()
    }
}
