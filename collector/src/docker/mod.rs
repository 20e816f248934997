//! The Docker Engine API side of logwharf, on the `bollard` client: where the daemon is
//! ([`DockerHost`]), the per-container metadata records every source enriches with
//! ([`MetadataService`], one shared `Arc<ContainerMeta>` per container, kept current from the
//! `/events` stream and re-listed after every reconnect), and the raw log stream of one
//! container ([`logs`]: the 8-byte multiplexing header, TTY streams without it).

mod client;
mod events;
mod handle;
pub mod logs;
mod record;
mod service;
#[cfg(test)]
mod service_tests;

pub use client::{api_version as api_version_of, check, connect, DockerHost};
pub use events::{parse_event, ContainerEvent, EventKind};
pub use handle::MetaHandle;
pub use record::RecordBuilder;
pub use service::{MetaChange, MetadataService, State};
