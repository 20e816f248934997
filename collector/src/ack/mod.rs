//! Acknowledgements: how a source learns that every sink delivered a batch.
//!
//! The router gives each sink an [`AckToken`] for the batch. A sink calls
//! [`AckToken::delivered`] (written, sent, acknowledged by the peer) or
//! [`AckToken::rejected`] (permanently refused and counted: retrying cannot help). A token
//! dropped without either — a sink that failed, or was stopped at the shutdown deadline —
//! counts as *not delivered*. When the last token of a batch is gone, the source's
//! [`OnDelivered`] callback runs once with the outcome; only `true` may advance a checkpoint.
//! [`ordered::OrderedAcks`] turns those outcomes into checkpoints, in batch order.

pub mod ordered;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Called once per batch with `true` when every sink delivered (or permanently rejected) it.
pub type OnDelivered = Box<dyn FnOnce(bool) + Send>;

struct Shared {
    failed: AtomicBool,
    on_done: Mutex<Option<OnDelivered>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        let ok = !self.failed.load(Ordering::Acquire);
        if let Some(f) = self.on_done.get_mut().ok().and_then(Option::take) {
            f(ok);
        }
    }
}

/// One sink's share of a batch's acknowledgement.
pub struct AckToken {
    shared: Arc<Shared>,
    settled: bool,
}

impl AckToken {
    /// A token for a new batch; clone it (with [`AckToken::share`]) for every further sink.
    pub fn new(on_done: Option<OnDelivered>) -> AckToken {
        AckToken {
            shared: Arc::new(Shared {
                failed: AtomicBool::new(false),
                on_done: Mutex::new(on_done),
            }),
            settled: false,
        }
    }

    /// Another token for the same batch (for another sink).
    pub fn share(&self) -> AckToken {
        AckToken {
            shared: self.shared.clone(),
            settled: false,
        }
    }

    /// The sink delivered its copy of the batch.
    pub fn delivered(mut self) {
        self.settled = true;
    }

    /// The sink refused the batch for good and counted it; the source may move past it.
    pub fn rejected(mut self) {
        self.settled = true;
    }
}

impl Drop for AckToken {
    fn drop(&mut self) {
        if !self.settled {
            self.shared.failed.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn token() -> (AckToken, mpsc::Receiver<bool>) {
        let (tx, rx) = mpsc::channel();
        (
            AckToken::new(Some(Box::new(move |ok| tx.send(ok).unwrap()))),
            rx,
        )
    }

    #[test]
    fn delivered_by_every_sink() {
        let (t, rx) = token();
        let t2 = t.share();
        t.delivered();
        assert!(rx.try_recv().is_err(), "one sink still holds the batch");
        t2.delivered();
        assert_eq!(rx.try_recv(), Ok(true));
    }

    #[test]
    fn one_sink_failing_fails_the_batch() {
        let (t, rx) = token();
        let t2 = t.share();
        t.delivered();
        drop(t2);
        assert_eq!(rx.try_recv(), Ok(false));
    }

    #[test]
    fn rejected_counts_as_settled() {
        let (t, rx) = token();
        t.rejected();
        assert_eq!(rx.try_recv(), Ok(true));
    }
}
