//! The contract between the runtime and a sink: a [`Sink`] pulls [`SinkBatch`]es from its
//! [`SinkInput`] (its bounded buffer), delivers them, and settles each batch's [`AckToken`].
//! The sinks crate implements one `Sink` per sink `type`.
//!
//! Under the supervisor the input outlives the sink: when a sink's task fails, its
//! `SinkInput` goes back to the supervisor (on drop, even when unwinding from a panic) together
//! with every batch the sink had taken and not settled ([`crate::inflight`]), and the restarted
//! sink receives those batches first.

use crate::ack::AckToken;
use crate::event::Batch;
use crate::inflight::{Ledger, Queue, Slot};
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// A running sink. `run` returns when its input is closed and everything received has been
/// delivered (or given up on, leaving the tokens unsettled). An error (or a panic) makes the
/// supervisor restart the sink with what it had not settled.
#[async_trait::async_trait]
pub trait Sink: Send {
    async fn run(self: Box<Self>, input: SinkInput) -> anyhow::Result<()>;
}

/// One batch as one sink receives it: the shared events, this sink's acknowledgement, and the
/// buffer space it occupies (released when the `SinkBatch` is dropped).
pub struct SinkBatch {
    pub batch: Arc<Batch>,
    pub ack: AckToken,
    pub(crate) _permit: Option<OwnedSemaphorePermit>,
}

impl SinkBatch {
    /// A batch outside any buffer (for sink unit tests and benchmarks).
    pub fn detached(batch: Batch, ack: AckToken) -> SinkBatch {
        SinkBatch {
            batch: Arc::new(batch),
            ack,
            _permit: None,
        }
    }

    /// Splits into the events and the acknowledgement, releasing the buffer space.
    pub fn into_parts(self) -> (Arc<Batch>, AckToken) {
        (self.batch, self.ack)
    }
}

/// The receiving end of a sink's buffer.
pub struct SinkInput {
    pub name: Arc<str>,
    /// Always `Some` until dropped.
    queue: Option<Queue>,
    /// Where the queue goes back to when this input is dropped (supervised sinks).
    home: Option<Arc<Slot>>,
    /// The batches taken and not yet settled (supervised sinks).
    ledger: Option<Arc<Ledger>>,
}

impl SinkInput {
    pub(crate) fn new(
        name: Arc<str>,
        queue: Queue,
        home: Option<Arc<Slot>>,
        ledger: Option<Arc<Ledger>>,
    ) -> SinkInput {
        SinkInput {
            name,
            queue: Some(queue),
            home,
            ledger,
        }
    }

    fn queue(&mut self) -> &mut Queue {
        self.queue
            .as_mut()
            .expect("the queue is present until drop")
    }

    fn track(&self, sb: SinkBatch) -> SinkBatch {
        match &self.ledger {
            Some(l) => l.track(sb),
            None => sb,
        }
    }

    /// The next batch; `None` once every source feeding this sink has stopped and the buffer
    /// is empty.
    pub async fn recv(&mut self) -> Option<SinkBatch> {
        let sb = self.queue().recv().await?;
        Some(self.track(sb))
    }

    /// A batch if one is waiting now (for sinks that gather several batches per write).
    pub fn try_recv(&mut self) -> Option<SinkBatch> {
        let sb = self.queue().try_recv()?;
        Some(self.track(sb))
    }

    /// An input fed by the returned sender, for sink unit tests and benchmarks.
    pub fn for_test(name: &str) -> (mpsc::UnboundedSender<SinkBatch>, SinkInput) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, SinkInput::new(name.into(), Queue::new(rx), None, None))
    }
}

impl Drop for SinkInput {
    fn drop(&mut self) {
        if let (Some(home), Some(q)) = (&self.home, self.queue.take()) {
            home.put(q);
        }
    }
}
