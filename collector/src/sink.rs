//! The contract between the runtime and a sink: a [`Sink`] pulls [`SinkBatch`]es from its
//! [`SinkInput`] (its bounded buffer), delivers them, and settles each batch's [`AckToken`].
//! The sinks crate implements one `Sink` per sink `type`.

use crate::ack::AckToken;
use crate::event::Batch;
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// A running sink. `run` returns when its input is closed and everything received has been
/// delivered (or given up on, leaving the tokens unsettled).
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
    pub(crate) rx: mpsc::UnboundedReceiver<SinkBatch>,
}

impl SinkInput {
    /// The next batch; `None` once every source feeding this sink has stopped and the buffer
    /// is empty.
    pub async fn recv(&mut self) -> Option<SinkBatch> {
        self.rx.recv().await
    }

    /// A batch if one is waiting now (for sinks that gather several batches per write).
    pub fn try_recv(&mut self) -> Option<SinkBatch> {
        self.rx.try_recv().ok()
    }

    /// An input fed by the returned sender, for sink unit tests and benchmarks.
    pub fn for_test(name: &str) -> (mpsc::UnboundedSender<SinkBatch>, SinkInput) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            tx,
            SinkInput {
                name: name.into(),
                rx,
            },
        )
    }
}
