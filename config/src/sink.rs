//! The keys every `[sinks.NAME]` table shares (`inputs`, `buffer`) and the `encoding` values
//! several sinks accept. Each sink's own keys are its config struct, beside its code in the
//! sinks crate.

use crate::filter::FilterConfig;
use crate::load::Decoder;
use crate::ByteSize;
use serde::Deserialize;
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
            type_name: self.type_name,
            inner: self.inner.clone(),
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

/// `[sinks.NAME.buffer]`: a bounded in-memory buffer between the sources and the sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BufferConfig {
    /// `memory` (the only type so far).
    #[serde(rename = "type")]
    pub kind: BufferType,
    /// Events the buffer holds at most.
    pub max_events: usize,
    /// Message bytes the buffer holds at most (one batch larger than this still passes, alone).
    pub max_bytes: ByteSize,
    pub when_full: WhenFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    #[default]
    Memory,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            kind: BufferType::Memory,
            max_events: 16_384,
            max_bytes: ByteSize(256 << 20),
            when_full: WhenFull::Block,
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
