//! Option groups shared by the Docker sources (`docker_json_file`, `docker_api`): where the
//! Docker daemon is, which labels and environment variables become metadata and Docker-style
//! extra attributes, the tag template, and multiline merging.
//!
//! Regular expressions are compiled while the config is decoded, so a pattern that does not
//! compile is a config error naming its key (`sources.NAME.labels_regex`).

use crate::{ByteSize, DurationValue, Template};

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A regular expression from the config, compiled at load time.
#[derive(Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn regex(&self) -> &regex::Regex {
        &self.0
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Pattern {}

impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s)
            .map(Pattern)
            .map_err(|e| serde::de::Error::custom(format!("invalid regular expression {s:?}: {e}")))
    }
}

/// A list of names: a TOML array, or one comma-separated string as Docker's log-opts take it
/// (`labels = "a,b"`), so a `daemon.json` translates line by line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct NameList(pub Vec<String>);

impl<'de> Deserialize<'de> for NameList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected an array of names or a comma-separated string")
        })?;
        let v = match raw {
            Raw::One(s) => s.split(',').map(str::to_string).collect(),
            Raw::Many(v) => v,
        };
        Ok(NameList(
            v.into_iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        ))
    }
}

/// `multiline = { start = "…", max_bytes = "1m", timeout = "1s" }`: a line that does not match
/// `start` joins the previous event (stack traces). A container's `logwharf.multiline.start`
/// label overrides `start`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MultilineConfig {
    /// A line matching this starts a new event. Unset: only containers with the label merge.
    pub start: Option<Pattern>,
    /// Cap on a merged event; reaching it ships the event and starts a new one.
    pub max_bytes: ByteSize,
    /// An event waits this long for a continuation line before it is shipped.
    pub timeout: DurationValue,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        Self {
            start: None,
            max_bytes: ByteSize(1 << 20),
            timeout: DurationValue::from_millis(1000),
        }
    }
}

/// The enrichment keys both Docker sources take, declared once: which environment variables
/// and labels become metadata and Docker-style extra attributes, the tag template, multiline
/// merging. A source decodes them with [`crate::Decoder::decode_with_group`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DockerMetaOptions {
    /// Environment variables of the container to attach, by name (never the whole env).
    pub env: NameList,
    /// … and by pattern over the names.
    pub env_regex: Option<Pattern>,
    /// Labels attached as Docker-style extra attributes, by name (every label is in `labels`).
    pub labels: NameList,
    pub labels_regex: Option<Pattern>,
    /// Docker tag template rendered once per container (`logwharf.tag` label overrides).
    pub tag: Option<Template>,
    /// Multiline merging; a container's `logwharf.multiline.start` label turns it on too.
    pub multiline: MultilineConfig,
}

impl DockerMetaOptions {
    /// The metadata service options these settings ask for, from the daemon at `host`.
    pub fn enrich_options(&self, host: Option<String>) -> EnrichOptions {
        EnrichOptions {
            host,
            env: self.env.0.clone(),
            env_regex: self.env_regex.clone(),
            labels: self.labels.0.clone(),
            labels_regex: self.labels_regex.clone(),
            tag: self.tag.clone(),
        }
    }
}

/// What the metadata service must know to build a container's record: the daemon, the env
/// selection, Docker's extra-attribute options and the tag template. Sources with equal
/// options share one service (one connection, one record per container).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct EnrichOptions {
    /// `unix:///path`, `/path`, `tcp://host:port`; `None`: `DOCKER_HOST`, then the local socket.
    pub host: Option<String>,
    /// Environment variables copied into the record (and into extra attributes), by name.
    pub env: Vec<String>,
    /// … and by pattern. The environment is never copied wholesale.
    pub env_regex: Option<Pattern>,
    /// Labels that become extra attributes (every label is in the record's `labels`).
    pub labels: Vec<String>,
    pub labels_regex: Option<Pattern>,
    /// Rendered once per container into the record's `tag` (the `logwharf.tag` label wins).
    pub tag: Option<Template>,
}

impl EnrichOptions {
    /// True when the host is not a local unix socket (its json-file logs are not ours to tail).
    pub fn is_remote(&self) -> bool {
        let from_env = std::env::var("DOCKER_HOST").ok();
        let h = self.host.as_deref().or(from_env.as_deref()).unwrap_or("");
        h.starts_with("tcp://") || h.starts_with("http://") || h.starts_with("https://")
    }
}

/// Records an error for every glob of `include` and `exclude` that does not compile.
pub fn validate_globs(include: &[String], exclude: &[String], d: &mut crate::load::Decoder<'_>) {
    for (key, globs) in [("include", include), ("exclude", exclude)] {
        for g in globs {
            if let Err(e) = globset::Glob::new(g) {
                d.error(&[key], format!("invalid glob {g:?}: {e}"));
            }
        }
    }
}

/// Records an error unless `host` is a form the Docker client understands.
pub fn validate_host(host: Option<&str>, key: &[&str], d: &mut crate::load::Decoder<'_>) {
    let Some(h) = host else { return };
    let ok = h.starts_with("unix://")
        || h.starts_with('/')
        || h.starts_with("tcp://")
        || h.starts_with("http://");
    if !ok || h.ends_with("://") {
        d.error(
            key,
            format!("unsupported Docker host {h:?} (expected unix:///path/docker.sock or tcp://host:port)"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        l: NameList,
        p: Option<Pattern>,
    }

    #[test]
    fn names_from_array_or_commas() {
        let t: T = toml::from_str("l = \"a, b,,c\"").unwrap();
        assert_eq!(t.l.0, ["a", "b", "c"]);
        let t: T = toml::from_str("l = [\"x\"]\np = \"^a.*\"").unwrap();
        assert_eq!(t.l.0, ["x"]);
        assert!(t.p.unwrap().0.is_match("abc"));
        let e = toml::from_str::<T>("l = []\np = \"(\"").err().unwrap();
        assert!(e.to_string().contains("invalid regular expression"), "{e}");
    }
}
