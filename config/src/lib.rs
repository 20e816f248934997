//! logwharf's configuration: the TOML schema, defaults and validation, plus the values that
//! appear in it (byte sizes, durations, Docker tag templates).
//!
//! [`load`] reads a file, interpolates `${ENV}` variables, decodes every `[sources.NAME]` and
//! `[sinks.NAME]` table by its `type`, and reports *every* problem at once, each naming the key
//! path and the line it is on (see [`ConfigErrors`]). Nothing here starts anything: the
//! collector and the sinks turn these structs into running components.

mod common;
mod error;
mod load;
mod units;

pub mod sink;
pub mod source;
pub mod template;

pub use common::{BatchConfig, TlsConfig};
pub use error::{ConfigError, ConfigErrors};
pub use load::{load, load_str};
pub use sink::{BufferConfig, Encoding, SinkConfig, SinkKind, WhenFull};
pub use source::SourceConfig;
pub use template::{Template, TemplateContext, TemplateField};
pub use units::{ByteSize, DurationValue};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole configuration of one logwharf process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where checkpoints (and later disk buffers) live; created 0700.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    /// How often acknowledged read positions are written to disk.
    pub checkpoint_interval: DurationValue,
    /// How long shutdown waits for sinks to drain before giving up on what is still queued.
    pub shutdown_timeout: DurationValue,
    pub sources: BTreeMap<String, SourceConfig>,
    pub sinks: BTreeMap<String, SinkConfig>,
}

/// The global keys (everything outside `[sources]` and `[sinks]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct GlobalConfig {
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub checkpoint_interval: DurationValue,
    pub shutdown_timeout: DurationValue,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/logwharf"),
            api: ApiConfig::default(),
            checkpoint_interval: DurationValue::from_millis(1000),
            shutdown_timeout: DurationValue::from_millis(10_000),
        }
    }
}

/// `[api]`: the Prometheus metrics endpoint and `/health`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ApiConfig {
    pub enabled: bool,
    pub address: SocketAddr,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: SocketAddr::from(([127, 0, 0, 1], 9598)),
        }
    }
}

impl Config {
    /// The configuration used when no file exists: every container's json-file log, enriched,
    /// to the console as JSON lines.
    pub fn builtin_default() -> Config {
        let text = r#"
[sources.containers]
type = "docker_json_file"

[sinks.console]
type = "console"
inputs = ["containers"]
encoding = "json"
"#;
        load_str(text, "<built-in default>").expect("the built-in default config is valid")
    }
}
