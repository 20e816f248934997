//! logwharf's collector: the event model, the pipeline runtime that carries batches from
//! sources to sinks with acknowledgements and checkpoints, and the sources themselves.
//!
//! Data flow (see DESIGN.md §3): a source reads, parses and tags lines into [`Event`]s, sends
//! them as one [`Batch`] through its [`SourceOutput`] (the router: one bounded buffer per sink
//! that names the source in `inputs`), and learns through the batch's acknowledgement when every
//! sink has delivered it. Only then does its read position become eligible for the
//! [`CheckpointStore`].

pub mod ack;
pub mod backoff;
pub mod buffer;
pub mod checkpoint;
pub mod docker;
pub mod event;
pub mod filter;
mod flows;
pub mod health;
pub mod host;
mod inflight;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod listen;
pub mod lock;
pub mod memory;
pub mod metrics;
pub mod multiline;
pub mod shutdown;
pub mod sink;
pub mod sources;
pub mod status;
mod supervisor;
pub mod tail;
#[doc(hidden)]
pub mod testing;
pub mod time;
pub mod tls;
pub mod topology;
pub mod untrusted;

pub use ack::{AckToken, OnDelivered};
pub use checkpoint::CheckpointStore;
pub use event::{Batch, ContainerMeta, Event, EventFlags, Stream};
pub use health::Health;
pub use shutdown::Shutdown;
pub use sink::{sink_type, Sink, SinkBatch, SinkConfig, SinkContext, SinkInput, SinkType};
pub use sources::{source_type, SourceConfig, SourceType};
pub use topology::{SourceOutput, Topology};

/// A whole configuration, with the collector's component trait objects.
pub type Config = logwharf_config::Config<dyn SourceConfig, dyn SinkConfig>;

/// The source and sink types a program knows (the collector's sources plus a sinks table).
pub type Registry = logwharf_config::Registry<'static, dyn SourceConfig, dyn SinkConfig>;
