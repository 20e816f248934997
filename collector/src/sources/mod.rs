//! Sources: one module per source `type`. A source reads, parses and tags, sends batches
//! through its [`SourceOutput`], and records read positions in the [`CheckpointStore`] only from
//! its batches' acknowledgements.

pub mod docker_api;
pub mod docker_daemon;
pub mod docker_json_file;
pub mod fluent;
pub mod kafka;
pub mod syslog;
#[cfg(test)]
pub(crate) mod testing;

use crate::checkpoint::CheckpointStore;
use crate::shutdown::Shutdown;
use crate::topology::SourceOutput;
use logwharf_config::{decode_component, ComponentType, ConfigTable, Decoder};
use std::sync::Arc;

/// Everything a running source gets from the runtime.
pub struct SourceContext {
    pub name: Arc<str>,
    pub out: SourceOutput,
    pub shutdown: Shutdown,
    pub checkpoints: Arc<CheckpointStore>,
    /// `run --once`: read everything present to its end, then return.
    pub once: bool,
}

/// A running source. Returns when shutdown is triggered (or, with `once`, when done).
#[async_trait::async_trait]
pub trait Source: Send {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()>;
}

/// A source's config struct: decoded from its `[sources.NAME]` table, it builds the running
/// source. Implemented in each source's `config.rs`.
pub trait SourceConfig: std::fmt::Debug + Send + Sync + std::any::Any {
    /// Builds the source (validation beyond decoding; no I/O).
    fn build(&self) -> anyhow::Result<Box<dyn Source>>;

    /// The Docker daemon this source needs (`Some(None)`: the default one), for
    /// `validate --connect`.
    fn docker_host(&self) -> Option<Option<String>> {
        None
    }
}

impl dyn SourceConfig {
    /// The concrete config, when it is a `T`.
    pub fn downcast_ref<T: std::any::Any>(&self) -> Option<&T> {
        (self as &dyn std::any::Any).downcast_ref()
    }
}

/// One source `type` in [`TYPES`].
pub type SourceType = ComponentType<dyn SourceConfig>;

/// The table entry for a source whose config struct is `T`.
pub const fn source_type<T>(name: &'static str) -> SourceType
where
    T: SourceConfig + ConfigTable,
{
    ComponentType {
        name,
        decode: decode_source::<T>,
    }
}

fn decode_source<T>(d: &mut Decoder<'_>) -> Option<Arc<dyn SourceConfig>>
where
    T: SourceConfig + ConfigTable,
{
    decode_component(d, |c: T| Arc::new(c) as Arc<dyn SourceConfig>)
}

/// Every source type: one line per source.
pub const TYPES: &[SourceType] = &[
    source_type::<docker_api::DockerApiConfig>("docker_api"),
    source_type::<docker_daemon::DockerDaemonConfig>("docker_daemon"),
    source_type::<docker_json_file::DockerJsonFileConfig>("docker_json_file"),
    source_type::<fluent::FluentSourceConfig>("fluent"),
    source_type::<kafka::KafkaSourceConfig>("kafka"),
    source_type::<syslog::SyslogSourceConfig>("syslog"),
];

/// `validate --connect`: tries the peers the sources depend on (the Docker daemon of
/// `docker_api`, and of `docker_json_file` when it enriches). One entry per source:
/// `sources.NAME` and what answered, or why not.
pub async fn check_connections(config: &crate::Config) -> Vec<(String, Result<String, String>)> {
    let mut out = Vec::new();
    for (name, sc) in &config.sources {
        let Some(host) = sc.docker_host() else {
            continue;
        };
        let r = crate::docker::check(host.as_deref()).await;
        out.push((format!("sources.{name}"), r));
    }
    out
}
