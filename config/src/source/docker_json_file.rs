//! `type = "docker_json_file"`: tails Docker's json-file logs under `root`.

use crate::load::Decoder;
use crate::{ByteSize, DurationValue};
use serde::Deserialize;
use std::path::PathBuf;

/// Where to start in a file that has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DockerJsonFileConfig {
    /// Docker's containers directory: `<root>/<id>/<id>-json.log`.
    pub root: PathBuf,
    /// Container id prefix globs to read (empty: all), e.g. `["3f2a*"]`.
    pub include: Vec<String>,
    /// Container id prefix globs to skip; wins over `include`.
    pub exclude: Vec<String>,
    pub read_from: ReadFrom,
    /// Cap on a line joined from Docker's 16 KiB partial records; the rest is cut and counted.
    pub max_line_bytes: ByteSize,
    /// How long partial records wait for their continuation before they are shipped flagged.
    pub partial_timeout: DurationValue,
    /// Periodic directory rescan, besides inotify.
    pub rescan_interval: DurationValue,
    /// Bytes read from a file per read call.
    pub read_buffer_bytes: ByteSize,
    /// Upper bound on events per batch sent into the pipeline.
    pub batch_max_events: usize,
}

impl Default for DockerJsonFileConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/var/lib/docker/containers"),
            include: Vec::new(),
            exclude: Vec::new(),
            read_from: ReadFrom::Beginning,
            max_line_bytes: ByteSize(1 << 20),
            partial_timeout: DurationValue::from_millis(5000),
            rescan_interval: DurationValue::from_millis(1000),
            read_buffer_bytes: ByteSize(256 << 10),
            batch_max_events: 2048,
        }
    }
}

impl DockerJsonFileConfig {
    pub(crate) fn validate(&self, d: &mut Decoder<'_>) {
        for (key, globs) in [("include", &self.include), ("exclude", &self.exclude)] {
            for g in globs {
                if let Err(e) = globset::Glob::new(g) {
                    d.error(&[key], format!("invalid glob {g:?}: {e}"));
                }
            }
        }
        if self.batch_max_events == 0 {
            d.error(&["batch_max_events"], "must be at least 1");
        }
        if self.read_buffer_bytes.0 < 4096 {
            d.error(&["read_buffer_bytes"], "must be at least 4k");
        }
    }
}
