//! `type = "kafka"`: the aggregator tier's input. Agents' `kafka` sinks write a topic; a group
//! of aggregators, each running this source with the same `group_id`, share its partitions
//! through Kafka's own group protocol (no clustering of logwharf's own).
//!
//! Offsets move only after delivery: auto-commit is off, and the offset of a partition is
//! committed only once every sink delivered every message of it up to there, in order
//! ([`partitions`], on the shared ordered-ack tracker). On a rebalance the revoked partitions
//! stop, their batches in flight get `revoke_timeout` to settle, what settled is committed and
//! the rest is left to the next owner: at-least-once, never a gap.
//!
//! Layout: [`config`], [`decode`] (message → event for `json` | `raw` | `docker`),
//! [`partitions`] (ownership and what may be committed), [`consumer`] (the librdkafka
//! consumer on its own thread: polling, batching, rebalance callbacks, commits, lag).

pub mod config;
#[cfg(feature = "kafka")]
pub mod consumer;
pub mod decode;
pub mod partitions;
#[cfg(feature = "kafka")]
mod source;

pub use config::KafkaSourceConfig;
#[cfg(feature = "kafka")]
pub use source::{client_config, KafkaSource};

#[cfg(all(test, feature = "kafka"))]
mod group_tests;
#[cfg(test)]
mod tests;
