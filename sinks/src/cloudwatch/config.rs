//! `type = "cloudwatch"`: CloudWatch Logs (or any service with its API) via PutLogEvents.
//!
//! Keys follow Docker's `awslogs` driver, whose option names are accepted as aliases
//! (`awslogs-region`, `awslogs-endpoint`, `awslogs-group`, `awslogs-stream`,
//! `awslogs-create-group`), so a `daemon.json` translates line by line.

use logwharf_config::{ByteSize, ConfigTable, Decoder, DurationValue, Template, TlsConfig};
use serde::Deserialize;

/// The service's hard limits on one PutLogEvents request (the API reference's numbers).
pub mod limits {
    /// Events in one request.
    pub const MAX_EVENTS: usize = 10_000;
    /// Bytes in one request: the sum of every message's UTF-8 length plus
    /// [`EVENT_OVERHEAD`] per event.
    pub const MAX_BYTES: usize = 1_048_576;
    /// Bytes the service counts per event on top of its message.
    pub const EVENT_OVERHEAD: usize = 26;
    /// The largest message one event may carry (256 KiB minus the overhead).
    pub const MAX_MESSAGE_BYTES: usize = 262_144 - EVENT_OVERHEAD;
    /// The widest span of timestamps one request may cover, in milliseconds.
    pub const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;
}

/// What to do with a message longer than [`limits::MAX_MESSAGE_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Cut it into several events (what Docker's awslogs driver does).
    #[default]
    Split,
    /// Keep the first part only.
    Truncate,
}

/// `batch = { … }` for this sink: the service's limits are the upper bounds.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CloudWatchBatchConfig {
    /// Events per request, at most 10,000.
    pub max_events: usize,
    /// Bytes per request counted as the service does (message bytes + 26 per event), at most
    /// 1,048,576.
    pub max_bytes: ByteSize,
    /// Send what a stream has gathered after this long (Docker's
    /// `awslogs-force-flush-interval-seconds`, default 5 s).
    pub timeout: DurationValue,
}

impl Default for CloudWatchBatchConfig {
    fn default() -> Self {
        Self {
            max_events: limits::MAX_EVENTS,
            max_bytes: ByteSize(limits::MAX_BYTES as u64),
            timeout: DurationValue::from_millis(5000),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CloudWatchConfig {
    /// AWS region; default: `AWS_REGION`, then `AWS_DEFAULT_REGION`.
    #[serde(default, alias = "awslogs-region")]
    pub region: Option<String>,
    /// Endpoint override, e.g. `http://127.0.0.1:4566` (compatible services, tests); default:
    /// `https://logs.REGION.amazonaws.com`.
    #[serde(default, alias = "awslogs-endpoint")]
    pub endpoint: Option<String>,
    /// Log group name template, rendered once per container.
    #[serde(alias = "awslogs-group")]
    pub group: Template,
    /// Log stream name template; default: the full container id, as Docker does.
    #[serde(default = "default_stream", alias = "awslogs-stream")]
    pub stream: Template,
    /// Create the group when it does not exist (Docker's `awslogs-create-group`, default false).
    #[serde(default, alias = "awslogs-create-group")]
    pub create_missing_group: bool,
    /// Create the stream on first use when it does not exist (default true).
    #[serde(default = "yes")]
    pub create_missing_stream: bool,
    /// Retention set on groups this sink creates (one of the values the service accepts).
    #[serde(default)]
    pub retention_days: Option<u32>,
    #[serde(default)]
    pub batch: CloudWatchBatchConfig,
    /// Messages over 262,118 bytes: `split` (default) or `truncate`; counted either way.
    #[serde(default)]
    pub oversize: Oversize,
    /// Static credentials; when unset, the standard chain (environment, shared credentials
    /// file and `AWS_PROFILE`, web identity, container and instance metadata) is used.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// Profile of the shared config files to use instead of `AWS_PROFILE`.
    #[serde(default)]
    pub profile: Option<String>,
    /// Streams sending at once (each stream has at most one request in flight).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Time allowed for one request, connection included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: DurationValue,
    /// Longest wait between two retries of a failing request (backoff doubles up to it).
    #[serde(default = "default_retry_max_wait")]
    pub retry_max_wait: DurationValue,
    #[serde(default)]
    pub tls: TlsConfig,
}

/// A secret from the config: never shown by `Debug` (configs get logged).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The value, for the one place that needs it (signing).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"** redacted **\"")
    }
}

/// The retention values CreateLogGroup/PutRetentionPolicy accept.
pub const RETENTION_DAYS: &[u32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

fn default_stream() -> Template {
    Template::parse("{{.FullID}}").expect("static template")
}

fn yes() -> bool {
    true
}

fn default_concurrency() -> usize {
    16
}

fn default_request_timeout() -> DurationValue {
    DurationValue::from_millis(30_000)
}

fn default_retry_max_wait() -> DurationValue {
    DurationValue::from_millis(30_000)
}

impl ConfigTable for CloudWatchConfig {
    fn validate(&self, d: &mut Decoder<'_>) {
        if self.group.as_str().is_empty() {
            d.error(&["group"], "must not be empty");
        }
        if self.stream.as_str().is_empty() {
            d.error(&["stream"], "must not be empty");
        }
        if let Some(r) = &self.region {
            if r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                d.error(&["region"], format!("invalid region {r:?}"));
            }
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                d.error(
                    &["endpoint"],
                    format!("endpoint {e:?} must start with http:// or https://"),
                );
            }
        }
        if let Some(days) = self.retention_days {
            if !RETENTION_DAYS.contains(&days) {
                d.error(
                    &["retention_days"],
                    format!(
                        "{days} is not a retention the service accepts (one of: {})",
                        RETENTION_DAYS
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        if !(1..=limits::MAX_EVENTS).contains(&self.batch.max_events) {
            d.error(
                &["batch", "max_events"],
                format!(
                    "must be between 1 and {} (the service's limit)",
                    limits::MAX_EVENTS
                ),
            );
        }
        let min_bytes = (limits::MAX_MESSAGE_BYTES + limits::EVENT_OVERHEAD) as u64;
        if !(min_bytes..=limits::MAX_BYTES as u64).contains(&self.batch.max_bytes.0) {
            d.error(
                &["batch", "max_bytes"],
                format!(
                    "must be between {min_bytes} (one largest event) and {} (the service's limit)",
                    limits::MAX_BYTES
                ),
            );
        }
        if self.batch.timeout.0.is_zero() {
            d.error(&["batch", "timeout"], "must be greater than 0");
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            d.error(
                &["access_key_id"],
                "access_key_id and secret_access_key must be set together",
            );
        }
        if self.session_token.is_some() && self.access_key_id.is_none() {
            d.error(
                &["session_token"],
                "session_token needs access_key_id and secret_access_key",
            );
        }
        if self.concurrency == 0 {
            d.error(&["concurrency"], "must be at least 1");
        }
        if self.request_timeout.0.is_zero() {
            d.error(&["request_timeout"], "must be greater than 0");
        }
        if self.retry_max_wait.0.is_zero() {
            d.error(&["retry_max_wait"], "must be greater than 0");
        }
    }
}

impl logwharf_collector::SinkConfig for CloudWatchConfig {
    fn build(
        &self,
        cx: logwharf_collector::SinkContext,
    ) -> anyhow::Result<Box<dyn logwharf_collector::Sink>> {
        Ok(Box::new(super::CloudWatch::new(
            &cx.name,
            self,
            cx.buffer.max_events,
            crate::util::dead_letter::DeadLetters::new(&cx),
        )?))
    }
}

#[cfg(test)]
mod tests {
    fn load(sink: &str) -> Result<super::CloudWatchConfig, String> {
        let text = format!(
            "[sources.c]\ntype = \"docker_json_file\"\n[sinks.cw]\ntype = \"cloudwatch\"\ninputs = [\"c\"]\n{sink}"
        );
        match crate::load_test_config(&text) {
            Ok(c) => Ok(c.sinks["cw"]
                .inner
                .downcast_ref::<super::CloudWatchConfig>()
                .unwrap()
                .clone()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn defaults_follow_docker() {
        let c = load("group = \"g\"").unwrap();
        assert_eq!(c.stream.as_str(), "{{.FullID}}");
        assert!(!c.create_missing_group);
        assert!(c.create_missing_stream);
        assert_eq!(c.batch.timeout.0, std::time::Duration::from_secs(5));
        assert_eq!(c.batch.max_events, 10_000);
        assert_eq!(c.batch.max_bytes.0, 1_048_576);
        assert_eq!(c.oversize, super::Oversize::Split);
    }

    #[test]
    fn secrets_are_not_shown_by_debug() {
        let c = load("group = \"g\"\naccess_key_id = \"AKID\"\nsecret_access_key = \"s3cr3t\"")
            .unwrap();
        assert_eq!(c.secret_access_key.as_ref().unwrap().expose(), "s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn docker_option_names_are_aliases() {
        let c = load(
            "\"awslogs-region\" = \"eu-west-1\"\n\"awslogs-group\" = \"g\"\n\"awslogs-stream\" = \"{{.Name}}\"\n\"awslogs-create-group\" = true\n\"awslogs-endpoint\" = \"http://127.0.0.1:1\"",
        )
        .unwrap();
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.stream.as_str(), "{{.Name}}");
        assert!(c.create_missing_group);
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:1"));
    }

    #[test]
    fn limits_and_values_are_checked() {
        let e = load("group = \"g\"\nbatch = { max_events = 10001 }").unwrap_err();
        assert!(e.contains("sinks.cw.batch.max_events"), "{e}");
        let e = load("group = \"g\"\nbatch = { max_bytes = \"2m\" }").unwrap_err();
        assert!(e.contains("sinks.cw.batch.max_bytes"), "{e}");
        let e = load("group = \"g\"\nretention_days = 2").unwrap_err();
        assert!(e.contains("not a retention"), "{e}");
        let e = load("group = \"g\"\naccess_key_id = \"AK\"").unwrap_err();
        assert!(e.contains("set together"), "{e}");
        let e = load("group = \"{{.Nope}}\"").unwrap_err();
        assert!(e.contains("unknown field .Nope"), "{e}");
        let e = load("stream = \"s\"").unwrap_err();
        assert!(e.contains("group"), "{e}");
    }
}
