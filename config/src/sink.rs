//! The keys every `[sinks.NAME]` table shares (`inputs`, `buffer`, `filter`, `dead_letter`) and
//! the `encoding` values several sinks accept. Each sink's own keys are its config struct, beside its code in the
//! sinks crate.

use crate::filter::FilterConfig;
use crate::load::Decoder;
use crate::ByteSize;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One configured sink: what it reads, how its buffer behaves, and the sink's own config `K`
/// (the registering crate's trait object).
#[derive(Debug)]
pub struct SinkOuter<K: ?Sized> {
    /// Source names (or globs over them) whose events this sink receives.
    pub inputs: Vec<String>,
    pub buffer: BufferConfig,
    /// Which of its inputs' events the sink takes (`[sinks.NAME.filter]`).
    pub filter: FilterConfig,
    /// Where the events the sink's peer refuses for good are written (`dead_letter`).
    pub dead_letter: Option<DeadLetterConfig>,
    /// The sink's `type`.
    pub type_name: &'static str,
    pub inner: Arc<K>,
}

impl<K: ?Sized> Clone for SinkOuter<K> {
    fn clone(&self) -> Self {
        SinkOuter {
            inputs: self.inputs.clone(),
            buffer: self.buffer.clone(),
            filter: self.filter.clone(),
            dead_letter: self.dead_letter.clone(),
            type_name: self.type_name,
            inner: self.inner.clone(),
        }
    }
}

/// `dead_letter = true` (`<data_dir>/dead-letter/<sink>.log`) or
/// `dead_letter = { path = "…", max_size = "100m" }`: a JSON-lines file of the events the sink
/// refused for good, each with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// The file; default `<data_dir>/dead-letter/<sink>.log`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The file's size limit; past it, refused events are counted, not written.
    #[serde(default = "DeadLetterConfig::default_max_size")]
    pub max_size: ByteSize,
}

impl DeadLetterConfig {
    fn default_max_size() -> ByteSize {
        ByteSize(100 << 20)
    }

    /// The file of sink `sink`: `path`, or `<data_dir>/dead-letter/<sink>.log`.
    pub fn path_for(&self, data_dir: &Path, sink: &str) -> PathBuf {
        match &self.path {
            Some(p) => p.clone(),
            None => data_dir.join("dead-letter").join(format!("{sink}.log")),
        }
    }

    /// Decodes `true`/`false` or a table; `None` (with an error recorded) when it is neither.
    pub(crate) fn decode(d: &mut Decoder<'_>) -> Option<Option<Self>> {
        match d.take_value()? {
            toml::Value::Boolean(on) => Some(on.then(|| DeadLetterConfig {
                path: None,
                max_size: Self::default_max_size(),
            })),
            v @ toml::Value::Table(_) => {
                let c: DeadLetterConfig = d.decode_value(v)?;
                if c.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                    d.error(&["path"], "the dead-letter path is empty");
                    return None;
                }
                if c.max_size.0 == 0 {
                    d.error(&["max_size"], "max_size must be more than 0");
                    return None;
                }
                Some(Some(c))
            }
            _ => {
                d.error(
                    &[],
                    "expected `true`, `false` or a table { path = \"…\", max_size = \"100m\" }",
                );
                None
            }
        }
    }
}

/// What a sink does when its buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait: the sources stop reading (files are their own buffer).
    #[default]
    Block,
    /// Drop the incoming batch and count it.
    DropNewest,
}

/// `[sinks.NAME.buffer]`: the buffer between the sources and the sink — bounded memory
/// (`memory`), or an append-only log on disk (`disk`) that survives restarts and crashes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// `memory` (the default) or `disk`.
    #[serde(rename = "type")]
    pub kind: BufferType,
    /// Events the buffer holds at most (`disk`: events read ahead into memory for the sink).
    pub max_events: usize,
    /// Message bytes the buffer holds at most (one batch larger than this still passes, alone;
    /// `disk`: bytes read ahead into memory, at most 16 MiB).
    pub max_bytes: ByteSize,
    pub when_full: WhenFull,
    /// `disk`: bytes its segment files may take under `<data_dir>/buffers/<sink>/`.
    pub max_size: ByteSize,
    /// `disk`: when what was written reaches stable storage ([`Fsync`]).
    pub fsync: Fsync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    #[default]
    Memory,
    /// An append-only segment log per sink: records written are acknowledged to the sources.
    Disk,
}

/// A disk buffer's durability policy (`fsync = "batch"` or a duration such as `"200ms"`).
/// Either way a batch is acknowledged to its source once it is written to the buffer's
/// files: after a crash of logwharf (SIGKILL) it is there, since the kernel has it.
/// `batch`: each write is also flushed to the device (fdatasync) before it is acknowledged,
/// so it survives a power loss too. A duration: the files are flushed at that interval, and
/// a power loss can lose what was acknowledged within the last interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Batch,
    Every(std::time::Duration),
}

impl Default for Fsync {
    fn default() -> Self {
        Fsync::Every(std::time::Duration::from_millis(200))
    }
}

impl<'de> Deserialize<'de> for Fsync {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "invalid fsync (expected \"batch\" or a duration like \"200ms\")",
            )
        })?;
        if s.trim() == "batch" {
            return Ok(Fsync::Batch);
        }
        match crate::DurationValue::parse(&s) {
            Ok(d) if !d.0.is_zero() => Ok(Fsync::Every(d.0)),
            _ => Err(serde::de::Error::custom(format!(
                "invalid fsync {s:?} (expected \"batch\" or a duration like \"200ms\")"
            ))),
        }
    }
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            kind: BufferType::Memory,
            max_events: 16_384,
            max_bytes: ByteSize(256 << 20),
            when_full: WhenFull::Block,
            max_size: ByteSize(2 << 30),
            fsync: Fsync::default(),
        }
    }
}

/// How a sink turns an event into bytes. Each sink accepts a subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One JSON object per event: `time`, `stream`, `message`, `container_id`, `source`,
    /// metadata and `fields`.
    Json,
    /// Docker's json-file line: `{"log":"…\n","stream":"…","time":"…"}` (+ `attrs`).
    Docker,
    /// `TIME CONTAINER STREAM MESSAGE`, for people.
    Text,
    /// The message bytes only.
    Raw,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Docker => "docker",
            Encoding::Text => "text",
            Encoding::Raw => "raw",
        }
    }

    /// Records an error unless `self` is one of `allowed`.
    pub fn check(self, allowed: &[Encoding], d: &mut Decoder<'_>) {
        if !allowed.contains(&self) {
            let names: Vec<_> = allowed.iter().map(|e| e.name()).collect();
            d.error(
                &["encoding"],
                format!(
                    "encoding {:?} is not supported by this sink (expected one of: {})",
                    self.name(),
                    names.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<Option<DeadLetterConfig>, Vec<(Vec<String>, String)>> {
        let v: toml::Table = toml::from_str(&format!("dead_letter = {text}")).unwrap();
        let mut errors = Vec::new();
        let path = vec!["sinks".into(), "k".into(), "dead_letter".into()];
        let r = DeadLetterConfig::decode(&mut Decoder::new(
            v["dead_letter"].clone(),
            path,
            &mut errors,
        ));
        match r {
            Some(c) if errors.is_empty() => Ok(c),
            _ => Err(errors),
        }
    }

    #[test]
    fn dead_letter_takes_a_bool_or_a_table() {
        let on = decode("true").unwrap().unwrap();
        assert_eq!(on.max_size, ByteSize(100 << 20));
        assert_eq!(
            on.path_for(Path::new("/var/lib/logwharf"), "central"),
            Path::new("/var/lib/logwharf/dead-letter/central.log")
        );
        assert_eq!(decode("false").unwrap(), None);
        let t = decode(r#"{ path = "/tmp/dl.log", max_size = "1m" }"#)
            .unwrap()
            .unwrap();
        assert_eq!(t.path_for(Path::new("/d"), "k"), Path::new("/tmp/dl.log"));
        assert_eq!(t.max_size, ByteSize(1 << 20));
        let e = decode(r#"{ paht = "/x" }"#).unwrap_err();
        assert_eq!(e[0].0.last().unwrap(), "paht");
        let e = decode("3").unwrap_err();
        assert!(e[0].1.contains("expected `true`"), "{e:?}");
        let e = decode(r#"{ max_size = "0" }"#).unwrap_err();
        assert_eq!(e[0].0.last().unwrap(), "max_size");
    }
}
