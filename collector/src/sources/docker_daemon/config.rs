//! `type = "docker_daemon"`: the Docker daemon's own log, from journald
//! (`journalctl -u docker.service --follow -o json`) when journald runs, else from a file.

use logwharf_config::{ConfigTable, Decoder, DurationValue, StartPosition};
use serde::Deserialize;
use std::path::PathBuf;

/// Where the daemon's log is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DaemonLogMode {
    /// journald when it runs (its socket exists and `journalctl` is found), else `path`.
    #[default]
    Auto,
    Journald,
    File,
}

/// Where to start without a checkpoint.
pub type DaemonReadFrom = StartPosition;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DockerDaemonConfig {
    pub mode: DaemonLogMode,
    /// The systemd unit whose journal is read.
    pub unit: String,
    /// The `journalctl` binary.
    pub journalctl: PathBuf,
    /// The log file dockerd writes when journald does not run (`dockerd … 2>>FILE`).
    pub path: PathBuf,
    pub read_from: DaemonReadFrom,
    /// How often the file is checked for new lines.
    pub poll_interval: DurationValue,
}

impl Default for DockerDaemonConfig {
    fn default() -> Self {
        Self {
            mode: DaemonLogMode::Auto,
            unit: "docker.service".into(),
            journalctl: PathBuf::from("journalctl"),
            path: PathBuf::from("/var/log/docker.log"),
            read_from: StartPosition::Beginning,
            poll_interval: DurationValue::from_millis(250),
        }
    }
}

impl ConfigTable for DockerDaemonConfig {
    fn validate(&self, d: &mut Decoder<'_>) {
        if self.unit.is_empty() {
            d.error(&["unit"], "must not be empty");
        }
        if self.poll_interval.0.is_zero() {
            d.error(&["poll_interval"], "must be greater than 0");
        }
    }
}

impl crate::sources::SourceConfig for DockerDaemonConfig {
    fn build(&self) -> anyhow::Result<Box<dyn crate::sources::Source>> {
        Ok(Box::new(super::DockerDaemon::new(self.clone())?))
    }
}
