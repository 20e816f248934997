//! `type = "docker_daemon"`: the Docker daemon's own log. From journald
//! (`journalctl -u docker.service --follow -o json`, checkpoint = the journal cursor) when it
//! runs, else from the file dockerd's output is redirected to (checkpoint = device, inode and
//! byte offset). Lines are dockerd's logfmt (`time=… level=… msg=…`): the line is the message,
//! and its keys become fields (`level`, `msg`, …); `time` becomes the event's time.

pub mod config;
mod file;
mod journald;
pub mod logfmt;

use super::{Source, SourceContext};
use crate::event::{Event, Stream};
use bytes::Bytes;
pub use config::{DaemonLogMode, DockerDaemonConfig};
use std::path::Path;

pub struct DockerDaemon {
    config: DockerDaemonConfig,
}

impl DockerDaemon {
    pub fn new(config: DockerDaemonConfig) -> anyhow::Result<Self> {
        Ok(Self { config })
    }
}

/// journald runs: its socket exists and `journalctl` starts.
fn journald_available(journalctl: &Path) -> bool {
    Path::new("/run/systemd/journal/socket").exists()
        && std::process::Command::new(journalctl)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// One daemon log line as an event: logfmt keys as fields, `time=` as the time.
pub(crate) fn line_event(line: &[u8], fallback_ns: i64) -> Event {
    let pairs = logfmt::parse(line);
    let mut time = fallback_ns;
    let mut fields = serde_json::Map::new();
    for (k, v) in pairs {
        if k == "time" {
            if let Some(t) = crate::time::parse_rfc3339_nanos(v.as_bytes()) {
                time = t;
            }
        }
        fields.insert(k, serde_json::Value::String(v));
    }
    let mut e = Event::new(time, Stream::Unknown, Bytes::copy_from_slice(line));
    if !fields.is_empty() {
        e.fields = Some(Box::new(fields));
    }
    e
}

#[async_trait::async_trait]
impl Source for DockerDaemon {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        let journald = match self.config.mode {
            DaemonLogMode::Journald => true,
            DaemonLogMode::File => false,
            DaemonLogMode::Auto => journald_available(&self.config.journalctl),
        };
        if journald {
            tracing::info!(source = %ctx.name, unit = %self.config.unit, "reading the Docker daemon's log from journald");
            journald::run(&self.config, &ctx).await
        } else {
            tracing::info!(source = %ctx.name, path = %self.config.path.display(), "reading the Docker daemon's log from a file");
            file::run(&self.config, &ctx).await
        }
    }
}
