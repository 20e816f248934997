//! The `logwharf` program's one table of components: the collector's sources and the sinks
//! crate's sinks, handed to the config loader. `main.rs` is the command line around it.

pub mod import;

use logwharf_collector::{Config, Registry};
use logwharf_config::ConfigErrors;
use std::path::Path;

/// Every source and sink type this program knows.
pub const REGISTRY: Registry = Registry {
    sources: logwharf_collector::sources::TYPES,
    sinks: logwharf_sinks::TYPES,
};

/// Reads and validates a config file (every error reported, with key paths and lines).
pub fn load_config(path: &Path) -> Result<Config, ConfigErrors> {
    logwharf_config::load(path, &REGISTRY)
}

/// As [`load_config`], from text; `origin` names it in messages.
pub fn load_config_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    logwharf_config::load_str(text, origin, &REGISTRY)
}

/// The configuration used when no file exists: every container's json-file log → console.
pub fn builtin_default() -> Config {
    load_config_str(logwharf_config::BUILTIN_DEFAULT, "<built-in default>")
        .expect("the built-in default config is valid")
}
