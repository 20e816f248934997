//! Per-sink routing: which of a source's events one sink takes. Built from the sink's
//! `[sinks.NAME.filter]` (container name, image and label globs, streams) and the container
//! label `logwharf.sinks=a,b` (the container goes only to the sinks it names). The router
//! ([`crate::topology::SourceOutput::send`]) asks once per container record — the events of
//! a batch share it by `Arc` — so an unfiltered pipeline pays one pointer comparison a batch.
//! An event a sink does not take counts as settled for that sink: its checkpoint moves.

use crate::event::{ContainerMeta, Event, Stream};
use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use logwharf_config::{FilterConfig, StreamName};
use std::sync::Arc;

/// The label that limits a container to the sinks it names (comma-separated).
pub const SINKS_LABEL: &str = "logwharf.sinks";

/// One sink's compiled filter.
#[derive(Debug)]
pub struct SinkFilter {
    sink: Arc<str>,
    containers: Option<GlobSet>,
    exclude_containers: Option<GlobSet>,
    images: Option<GlobSet>,
    labels: Vec<(String, GlobMatcher)>,
    streams: Option<Vec<Stream>>,
}

impl SinkFilter {
    /// Compiles `config` for the sink `sink` (globs were checked when the config was loaded).
    pub fn new(sink: Arc<str>, config: &FilterConfig) -> anyhow::Result<SinkFilter> {
        let labels = config
            .labels
            .iter()
            .map(|(k, g)| Ok((k.clone(), Glob::new(g)?.compile_matcher())))
            .collect::<anyhow::Result<_>>()?;
        let streams = (!config.streams.is_empty()).then(|| {
            config
                .streams
                .iter()
                .map(|s| match s {
                    StreamName::Stdout => Stream::Stdout,
                    StreamName::Stderr => Stream::Stderr,
                    StreamName::Unknown => Stream::Unknown,
                })
                .collect()
        });
        Ok(SinkFilter {
            sink,
            containers: glob_set(&config.containers)?,
            exclude_containers: glob_set(&config.exclude_containers)?,
            images: glob_set(&config.images)?,
            labels,
            streams,
        })
    }

    /// Whether the sink takes events of this container (`None`: not from a container). A
    /// container-based condition never takes an event without a container.
    pub fn takes_container(&self, c: Option<&ContainerMeta>) -> bool {
        let Some(c) = c else {
            return self.containers.is_none() && self.images.is_none() && self.labels.is_empty();
        };
        if let Some(list) = c.labels.get(SINKS_LABEL) {
            if !list.split(',').any(|s| s.trim() == &*self.sink) {
                return false;
            }
        }
        let name = c.name.as_deref().unwrap_or("");
        if let Some(set) = &self.containers {
            if !set.is_match(name) {
                return false;
            }
        }
        if let Some(set) = &self.exclude_containers {
            if set.is_match(name) {
                return false;
            }
        }
        if let Some(set) = &self.images {
            if !set.is_match(c.image_name.as_deref().unwrap_or("")) {
                return false;
            }
        }
        self.labels
            .iter()
            .all(|(k, m)| c.labels.get(k).is_some_and(|v| m.is_match(v)))
    }

    /// Whether the sink takes events of this stream.
    pub fn takes_stream(&self, s: Stream) -> bool {
        self.streams.as_ref().is_none_or(|l| l.contains(&s))
    }

    /// Whether the filter looks at streams (then every event is asked, not only each record).
    pub fn by_stream(&self) -> bool {
        self.streams.is_some()
    }
}

/// One set of name globs (`None` when there are none: the condition is not asked).
pub fn glob_set(globs: &[String]) -> anyhow::Result<Option<GlobSet>> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g)?);
    }
    Ok(Some(b.build()?))
}

/// The events of `events` that `filter` takes, or `None` when it takes all of them (the
/// common case: no copy). Asks once per container record.
pub fn select(filter: &SinkFilter, events: &[Event]) -> Option<Vec<Event>> {
    let mut last: Option<(*const ContainerMeta, bool)> = None;
    let mut takes = |e: &Event| {
        let ptr = e.container.as_ref().map_or(std::ptr::null(), Arc::as_ptr);
        let by_container = match last {
            Some((p, t)) if p == ptr => t,
            _ => {
                let t = filter.takes_container(e.container.as_deref());
                last = Some((ptr, t));
                t
            }
        };
        by_container && filter.takes_stream(e.stream)
    };
    let first_refused = events.iter().position(|e| !takes(e))?;
    let mut kept: Vec<Event> = events[..first_refused].to_vec();
    kept.extend(
        events[first_refused + 1..]
            .iter()
            .filter(|e| takes(e))
            .cloned(),
    );
    Some(kept)
}

#[cfg(test)]
mod tests;
