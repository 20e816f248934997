//! `[sources.NAME]` tables: one config struct per source `type`.

pub mod docker_api;
pub mod docker_daemon;
pub mod docker_json_file;
pub mod docker_meta;
pub mod fluent;
pub mod syslog;

pub use docker_api::{DockerApiConfig, StartAt, StreamSelection};
pub use docker_daemon::{DaemonLogMode, DaemonReadFrom, DockerDaemonConfig};
pub use docker_json_file::{DockerJsonFileConfig, ReadFrom};
pub use docker_meta::{EnrichOptions, MultilineConfig, NameList, Pattern};
pub use fluent::{FluentSourceConfig, ForwardAddress, ForwardAuth};
pub use syslog::SyslogSourceConfig;

use crate::load::Decoder;

/// The source types logwharf knows, for error messages.
pub const SOURCE_TYPES: &[&str] = &[
    "docker_api",
    "docker_daemon",
    "docker_json_file",
    "fluent",
    "syslog",
];

/// A configured source.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    DockerJsonFile(DockerJsonFileConfig),
    DockerApi(DockerApiConfig),
    DockerDaemon(DockerDaemonConfig),
    Fluent(FluentSourceConfig),
    Syslog(SyslogSourceConfig),
}

impl SourceConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::DockerJsonFile(_) => "docker_json_file",
            SourceConfig::DockerApi(_) => "docker_api",
            SourceConfig::DockerDaemon(_) => "docker_daemon",
            SourceConfig::Fluent(_) => "fluent",
            SourceConfig::Syslog(_) => "syslog",
        }
    }

    /// Decodes the table of one source by its `type`; `None` means errors were recorded.
    pub(crate) fn decode(type_name: &str, d: &mut Decoder<'_>) -> Option<SourceConfig> {
        Some(match type_name {
            "docker_json_file" => {
                let c: DockerJsonFileConfig = d.decode()?;
                c.validate(d);
                SourceConfig::DockerJsonFile(c)
            }
            "docker_api" => {
                let c: DockerApiConfig = d.decode()?;
                c.validate(d);
                SourceConfig::DockerApi(c)
            }
            "docker_daemon" => {
                let c: DockerDaemonConfig = d.decode()?;
                c.validate(d);
                SourceConfig::DockerDaemon(c)
            }
            "fluent" => {
                let c: FluentSourceConfig = d.decode()?;
                c.validate(d);
                SourceConfig::Fluent(c)
            }
            "syslog" => {
                let c: SyslogSourceConfig = d.decode()?;
                c.validate(d);
                SourceConfig::Syslog(c)
            }
            _ => return None,
        })
    }
}
