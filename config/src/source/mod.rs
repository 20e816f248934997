//! `[sources.NAME]` tables: one config struct per source `type`.

pub mod docker_json_file;
pub mod fluent;

pub use docker_json_file::{DockerJsonFileConfig, ReadFrom};
pub use fluent::{FluentSourceConfig, ForwardAddress, ForwardAuth};

use crate::load::Decoder;

/// The source types logwharf knows, for error messages.
pub const SOURCE_TYPES: &[&str] = &["docker_json_file", "fluent"];

/// A configured source.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    DockerJsonFile(DockerJsonFileConfig),
    Fluent(FluentSourceConfig),
}

impl SourceConfig {
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::DockerJsonFile(_) => "docker_json_file",
            SourceConfig::Fluent(_) => "fluent",
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
            "fluent" => {
                let c: FluentSourceConfig = d.decode()?;
                c.validate(d);
                SourceConfig::Fluent(c)
            }
            _ => return None,
        })
    }
}
