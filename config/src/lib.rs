//! logwharf's configuration machinery: the loader, the values that appear in configs (byte
//! sizes, durations, Docker tag templates, addresses) and the option groups several components
//! share (`tls`, `batch`, `buffer`, Docker enrichment).
//!
//! Each component's own config struct lives beside its code (`sinks/src/syslog/config.rs`,
//! `collector/src/sources/fluent/config.rs`) and is registered once, in its crate's table of
//! [`ComponentType`]s. [`load`] reads a file, interpolates `${ENV}` variables, decodes every
//! `[sources.NAME]` and `[sinks.NAME]` table by its `type` through that [`Registry`], and
//! reports *every* problem at once, each naming the key path and the line it is on (see
//! [`ConfigErrors`]). Nothing here starts anything.

mod common;
mod error;
mod load;
mod registry;
mod units;

pub mod address;
pub mod docker;
pub mod filter;
pub mod kafka;
pub mod sink;
pub mod source;
pub mod template;

pub use common::{BatchConfig, StartPosition, TlsConfig};
pub use error::{ConfigError, ConfigErrors};
pub use filter::{FilterConfig, StreamName};
pub use load::{decode_component, load, load_str, Decoder};
pub use registry::{ComponentType, ConfigTable, Registry};
pub use sink::{BufferConfig, BufferType, DeadLetterConfig, Encoding, Fsync, SinkOuter, WhenFull};
pub use source::SourceOuter;
pub use template::{Template, TemplateContext, TemplateField};
pub use units::{ByteSize, DurationValue};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole configuration of one logwharf process. `S` and `K` are the source and sink config
/// trait objects of the crates that register them (the collector's `dyn SourceConfig` and
/// `dyn SinkConfig`); this crate only stores them.
#[derive(Debug)]
pub struct Config<S: ?Sized, K: ?Sized> {
    /// Where checkpoints (and later disk buffers) live; created 0700.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    /// How often acknowledged read positions are written to disk.
    pub checkpoint_interval: DurationValue,
    /// How long shutdown waits for sinks to drain before giving up on what is still queued.
    pub shutdown_timeout: DurationValue,
    pub sources: BTreeMap<String, SourceOuter<S>>,
    pub sinks: BTreeMap<String, SinkOuter<K>>,
}

impl<S: ?Sized, K: ?Sized> Clone for Config<S, K> {
    fn clone(&self) -> Self {
        Config {
            data_dir: self.data_dir.clone(),
            api: self.api.clone(),
            checkpoint_interval: self.checkpoint_interval,
            shutdown_timeout: self.shutdown_timeout,
            sources: self.sources.clone(),
            sinks: self.sinks.clone(),
        }
    }
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

/// The configuration used when no file exists: every container's json-file log, enriched, to
/// the console as JSON lines. Load it with the registry like any file.
pub const BUILTIN_DEFAULT: &str = r#"
[sources.containers]
type = "docker_json_file"

[sinks.console]
type = "console"
inputs = ["containers"]
encoding = "json"
"#;
