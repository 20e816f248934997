//! `type = "docker_api"`: the Docker Engine API. Streams the logs of containers whose log
//! driver is not json-file (or every container of a remote daemon), and optionally turns
//! container lifecycle events (start/die/oom/kill) into log events.

use logwharf_config::docker::{validate_globs, validate_host, DockerMetaOptions, EnrichOptions};
use logwharf_config::{ByteSize, ConfigTable, Decoder, DurationValue, StartPosition};
use serde::Deserialize;

/// Which containers' logs the source streams through `/containers/{id}/logs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StreamSelection {
    /// Containers whose log driver is not `json-file` (the `docker_json_file` source tails
    /// those), or every container when `host` is a remote daemon.
    #[default]
    Auto,
    /// Every container, json-file ones included (a remote daemon; beware of duplicates when
    /// a `docker_json_file` source also tails this host).
    All,
    /// None: metadata and lifecycle events only.
    None,
}

/// Where to start in a container that has no checkpoint yet: everything the daemon still has
/// for it, or only what is written after logwharf attaches.
pub type StartAt = StartPosition;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DockerApiConfig {
    /// `unix:///var/run/docker.sock` (default: `DOCKER_HOST`, then that), or `tcp://host:port`.
    pub host: Option<String>,
    pub stream: StreamSelection,
    /// Container name globs to stream (empty: all); matched against the name and the id.
    pub include: Vec<String>,
    /// Container name globs not to stream; wins over `include`.
    pub exclude: Vec<String>,
    pub start_at: StartAt,
    /// Emit container start/die/oom/kill as structured log events (with the exit code).
    pub events: bool,
    /// A stream silent this long is re-attached from its cursor (the API stream can stop while
    /// the container still writes, e.g. on json-file rotation: moby/moby#37646).
    pub inactivity_timeout: DurationValue,
    /// Cap on a line joined from Docker's partial messages; the rest is cut and counted.
    pub max_line_bytes: ByteSize,
    /// Upper bound on events per batch.
    pub batch_max_events: usize,
    /// The Docker enrichment keys (`env`, `env_regex`, `labels`, `labels_regex`, `tag`,
    /// `multiline`), shared with the other Docker source.
    #[serde(skip)]
    pub docker: DockerMetaOptions,
}

impl Default for DockerApiConfig {
    fn default() -> Self {
        Self {
            host: None,
            stream: StreamSelection::Auto,
            include: Vec::new(),
            exclude: Vec::new(),
            start_at: StartPosition::Beginning,
            events: false,
            inactivity_timeout: DurationValue::from_millis(30_000),
            max_line_bytes: ByteSize(1 << 20),
            batch_max_events: 1024,
            docker: DockerMetaOptions::default(),
        }
    }
}

impl DockerApiConfig {
    /// The metadata service options these settings ask for.
    pub fn enrich_options(&self) -> EnrichOptions {
        self.docker.enrich_options(self.host.clone())
    }
}

impl ConfigTable for DockerApiConfig {
    fn decode(d: &mut Decoder<'_>) -> Option<Self> {
        let (mut c, docker) = d.decode_with_group::<Self, DockerMetaOptions>()?;
        c.docker = docker;
        Some(c)
    }

    fn validate(&self, d: &mut Decoder<'_>) {
        validate_host(self.host.as_deref(), &["host"], d);
        validate_globs(&self.include, &self.exclude, d);
        if self.batch_max_events == 0 {
            d.error(&["batch_max_events"], "must be at least 1");
        }
        if self.inactivity_timeout.0.is_zero() {
            d.error(&["inactivity_timeout"], "must be greater than 0");
        }
    }
}

impl crate::sources::SourceConfig for DockerApiConfig {
    fn build(&self) -> anyhow::Result<Box<dyn crate::sources::Source>> {
        Ok(Box::new(super::DockerApi::new(self.clone())?))
    }

    fn docker_host(&self) -> Option<Option<String>> {
        Some(self.host.clone())
    }
}
