//! Sources: one module per source `type`. A source reads, parses and tags, sends batches
//! through its [`SourceOutput`], and records read positions in the [`CheckpointStore`] only from
//! its batches' acknowledgements.

pub mod docker_api;
pub mod docker_daemon;
pub mod docker_json_file;
pub mod fluent;
pub mod syslog;

use crate::checkpoint::CheckpointStore;
use crate::shutdown::Shutdown;
use crate::topology::SourceOutput;
use logwharf_config::SourceConfig;
use std::path::Path;
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

/// Builds the source a config describes (validation beyond the config crate's, no I/O).
pub fn build(
    name: &str,
    config: &SourceConfig,
    _data_dir: &Path,
) -> anyhow::Result<Box<dyn Source>> {
    let _ = name;
    match config {
        SourceConfig::DockerJsonFile(c) => {
            Ok(Box::new(docker_json_file::DockerJsonFile::new(c.clone())?))
        }
        SourceConfig::DockerApi(c) => Ok(Box::new(docker_api::DockerApi::new(c.clone())?)),
        SourceConfig::DockerDaemon(c) => Ok(Box::new(docker_daemon::DockerDaemon::new(c.clone())?)),
        SourceConfig::Fluent(c) => Ok(Box::new(fluent::FluentSource::new(c.clone())?)),
        SourceConfig::Syslog(c) => Ok(Box::new(syslog::SyslogSource::new(c.clone())?)),
    }
}

/// `validate --connect`: tries the peers the sources depend on (the Docker daemon of
/// `docker_api`, and of `docker_json_file` when it enriches). One entry per source:
/// `sources.NAME` and what answered, or why not.
pub async fn check_connections(
    config: &logwharf_config::Config,
) -> Vec<(String, Result<String, String>)> {
    let mut out = Vec::new();
    for (name, sc) in &config.sources {
        let host = match sc {
            SourceConfig::DockerApi(c) => c.host.clone(),
            SourceConfig::DockerJsonFile(c) if c.enrich => c.docker_host.clone(),
            _ => continue,
        };
        let r = crate::docker::check(host.as_deref()).await;
        out.push((format!("sources.{name}"), r));
    }
    out
}
