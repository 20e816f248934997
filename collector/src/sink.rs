//! The contract between the runtime and a sink: a sink's config struct ([`SinkConfig`]) builds
//! the running [`Sink`] from a [`SinkContext`]; the sink pulls [`SinkBatch`]es from its
//! [`SinkInput`] (its bounded buffer), delivers them, and settles each batch's [`AckToken`].
//! The sinks crate implements one of each per sink `type` and lists them in its table.
//!
//! Under the supervisor the input outlives the sink: when a sink's task fails, its
//! `SinkInput` goes back to the supervisor (on drop, even when unwinding from a panic) together
//! with every batch the sink had taken and not settled ([`crate::inflight`]), and the restarted
//! sink receives those batches first.

use crate::ack::AckToken;
use crate::event::Batch;
use crate::inflight::{Ledger, Queue, Slot};
use crate::shutdown::Shutdown;
use logwharf_config::{
    decode_component, BufferConfig, ComponentType, ConfigTable, DeadLetterConfig, Decoder,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

/// A sink's config struct: decoded from its `[sinks.NAME]` table (less the shared keys
/// `inputs`, `buffer`, `filter`, `dead_letter`), it builds the running sink. No network or file I/O happens in `build`.
pub trait SinkConfig: std::fmt::Debug + Send + Sync + std::any::Any {
    fn build(&self, cx: SinkContext) -> anyhow::Result<Box<dyn Sink>>;
}

impl dyn SinkConfig {
    /// The concrete config, when it is a `T`.
    pub fn downcast_ref<T: std::any::Any>(&self) -> Option<&T> {
        (self as &dyn std::any::Any).downcast_ref()
    }
}

/// What a sink gets from the runtime when it is built.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// The sink's name (`[sinks.NAME]`), for logs and metric labels.
    pub name: Arc<str>,
    /// Its `buffer` settings (a sink that keeps its own queue sizes it from these).
    pub buffer: BufferConfig,
    /// The process's `data_dir` (checkpoints; a sink's own state goes in a subdirectory).
    pub data_dir: PathBuf,
    /// Its `dead_letter` setting: where the events its peer refuses for good go (the sinks
    /// crate's `util::dead_letter` writes them).
    pub dead_letter: Option<DeadLetterConfig>,
    /// Triggered when the pipeline stops.
    pub shutdown: Shutdown,
}

impl SinkContext {
    /// A context for sink unit tests and benchmarks.
    pub fn for_test(name: &str) -> SinkContext {
        SinkContext {
            name: name.into(),
            buffer: BufferConfig::default(),
            data_dir: std::env::temp_dir(),
            dead_letter: None,
            shutdown: Shutdown::new(),
        }
    }
}

/// One sink `type` in the sinks crate's table.
pub type SinkType = ComponentType<dyn SinkConfig>;

/// The table entry for a sink whose config struct is `T`.
pub const fn sink_type<T>(name: &'static str) -> SinkType
where
    T: SinkConfig + ConfigTable,
{
    ComponentType {
        name,
        decode: decode_sink::<T>,
    }
}

fn decode_sink<T>(d: &mut Decoder<'_>) -> Option<Arc<dyn SinkConfig>>
where
    T: SinkConfig + ConfigTable,
{
    decode_component(d, |c: T| Arc::new(c) as Arc<dyn SinkConfig>)
}

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
    pub(crate) _permit: Option<Permits>,
    /// The sender's flow: the sink takes batches round-robin between flows
    /// ([`crate::flows`]).
    pub(crate) flow: u64,
}

/// The buffer space one batch occupies: its events and its bytes.
pub(crate) struct Permits {
    pub(crate) _events: OwnedSemaphorePermit,
    pub(crate) _bytes: OwnedSemaphorePermit,
    /// The sending reader's share of the buffer, if it has one.
    pub(crate) _share: Option<Box<Permits>>,
}

impl SinkBatch {
    /// A batch outside any buffer (for sink unit tests and benchmarks).
    pub fn detached(batch: Batch, ack: AckToken) -> SinkBatch {
        SinkBatch {
            batch: Arc::new(batch),
            ack,
            _permit: None,
            flow: 0,
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
