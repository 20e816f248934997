//! `type = "docker_json_file"`: tails Docker's json-file logs under `root`.

use logwharf_config::docker::{validate_globs, validate_host, DockerMetaOptions, EnrichOptions};
use logwharf_config::{ByteSize, ConfigTable, Decoder, DurationValue, StartPosition};
use serde::Deserialize;
use std::path::PathBuf;

/// Where to start in a file that has no checkpoint yet.
pub type ReadFrom = StartPosition;

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
    /// After a container's new data wakes its reader, how long the reader lets the writer
    /// add more before it reads: a trickle of small writes becomes one batch (one send, one
    /// acknowledgement) per window instead of one per write. Adds at most this to a line's
    /// latency.
    pub batch_window: DurationValue,
    /// Enrich every line with its container's metadata from the Docker API (name, image,
    /// labels, compose project/service, selected env, tag) whenever the daemon is reachable.
    pub enrich: bool,
    /// The daemon to ask: `unix:///var/run/docker.sock` (default: `DOCKER_HOST`, then that).
    pub docker_host: Option<String>,
    /// How long lines of a container whose metadata is not known yet wait for it before they
    /// are shipped with the id only.
    pub metadata_wait: DurationValue,
    /// The Docker enrichment keys (`env`, `env_regex`, `labels`, `labels_regex`, `tag`,
    /// `multiline`), shared with the other Docker source.
    #[serde(skip)]
    pub docker: DockerMetaOptions,
    /// Bytes of rotated files Docker has deleted that may be held open until every sink has
    /// delivered them (over all containers); past it the oldest is released, counted as lost.
    pub hold_max_bytes: ByteSize,
    /// Bytes per second read from each container (the label `logwharf.rate_limit`
    /// overrides it); over it the container is read more slowly, never dropped. None: no limit.
    pub rate_limit: Option<ByteSize>,
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
            batch_window: DurationValue::from_millis(50),
            enrich: true,
            docker_host: None,
            metadata_wait: DurationValue::from_millis(2000),
            docker: DockerMetaOptions::default(),
            hold_max_bytes: ByteSize(1 << 30),
            rate_limit: None,
        }
    }
}

impl DockerJsonFileConfig {
    /// The metadata service options these settings ask for.
    pub fn enrich_options(&self) -> EnrichOptions {
        self.docker.enrich_options(self.docker_host.clone())
    }
}

impl ConfigTable for DockerJsonFileConfig {
    fn decode(d: &mut Decoder<'_>) -> Option<Self> {
        let (mut c, docker) = d.decode_with_group::<Self, DockerMetaOptions>()?;
        c.docker = docker;
        Some(c)
    }

    fn validate(&self, d: &mut Decoder<'_>) {
        validate_globs(&self.include, &self.exclude, d);
        validate_host(self.docker_host.as_deref(), &["docker_host"], d);
        if self.batch_max_events == 0 {
            d.error(&["batch_max_events"], "must be at least 1");
        }
        if self.read_buffer_bytes.0 < 4096 {
            d.error(&["read_buffer_bytes"], "must be at least 4k");
        }
        if self.rate_limit.is_some_and(|r| r.0 == 0) {
            d.error(
                &["rate_limit"],
                "must be more than 0 (leave it out for no limit)",
            );
        }
    }
}

impl crate::sources::SourceConfig for DockerJsonFileConfig {
    fn build(&self) -> anyhow::Result<Box<dyn crate::sources::Source>> {
        Ok(Box::new(super::DockerJsonFile::new(self.clone())?))
    }

    fn docker_host(&self) -> Option<Option<String>> {
        self.enrich.then(|| self.docker_host.clone())
    }
}
