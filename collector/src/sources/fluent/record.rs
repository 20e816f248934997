//! One Forward record → one [`Event`]: `log` (or `message`) → message, `source` (or `stream`)
//! → stream, `container_id`/`container_name` → a shared [`ContainerMeta`] (through the trust
//! boundary, [`crate::untrusted`]: an id not in Docker's form stays the field `container_id`;
//! names and tags lose their control characters), Docker's partial
//! fields → [`PartialMeta`], every other key → `fields`. The tag travels in `attrs` as `tag`
//! (where Docker's json-file driver puts it), one `Arc` per tag, not per line; container
//! metadata is cached per (id, name), never built per line.

use super::msgpack::{MpError, Reader};
use crate::event::{Attrs, ContainerMeta, Event, Stream};
use crate::untrusted::{clean_str, PeerContainer};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;

/// Docker's partial-message fields (`partial_message`, `partial_id`, `partial_ordinal`,
/// `partial_last`; all strings as Docker sends them, other scalar types accepted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartialMeta {
    pub id: Option<String>,
    pub ordinal: Option<u64>,
    pub last: bool,
}

/// Caches that make record mapping allocation-free on the common path.
pub struct RecordMapper {
    containers: HashMap<(String, String), CachedContainer>,
    last_container: Option<(String, String, CachedContainer)>,
    tags: Option<(String, Arc<Attrs>)>,
    /// Counts records whose `container_id` is not Docker's form (no-op unless set).
    pub invalid_ids: metrics::Counter,
}

/// A peer's container after the trust boundary: its metadata (if any) and the id it sent
/// when that is not Docker's form.
type CachedContainer = (Option<Arc<ContainerMeta>>, Option<serde_json::Value>);

impl Default for RecordMapper {
    fn default() -> Self {
        RecordMapper {
            containers: HashMap::new(),
            last_container: None,
            tags: None,
            invalid_ids: metrics::Counter::noop(),
        }
    }
}

/// Bounds the container cache (one entry per container seen on this connection).
const MAX_CACHED_CONTAINERS: usize = 10_000;

impl RecordMapper {
    /// The shared `attrs` carrying `tag` (without control characters: it comes from the peer).
    pub fn tag_attrs(&mut self, tag: &str) -> Arc<Attrs> {
        match &self.tags {
            Some((t, a)) if t == tag => a.clone(),
            _ => {
                let clean = clean_str(tag).into_owned();
                let a = Arc::new(vec![("tag".to_string(), clean)]);
                self.tags = Some((tag.to_string(), a.clone()));
                a
            }
        }
    }

    /// The shared metadata of (id, name), compared as bytes: the same container's lines cost
    /// no UTF-8 check and no allocation. Both come from the peer: they pass the trust
    /// boundary ([`PeerContainer`]) once per container; an id that is not Docker's form is
    /// returned as the second value (for `fields.container_id`), not used as the id.
    fn container(&mut self, id: &[u8], name: &[u8]) -> CachedContainer {
        if let Some((i, n, c)) = &self.last_container {
            if i.as_bytes() == id && n.as_bytes() == name {
                return c.clone();
            }
        }
        if self.containers.len() >= MAX_CACHED_CONTAINERS {
            self.containers.clear();
        }
        let key = (
            String::from_utf8_lossy(id).into_owned(),
            String::from_utf8_lossy(name).into_owned(),
        );
        let invalid_ids = &self.invalid_ids;
        let c = self
            .containers
            .entry(key.clone())
            .or_insert_with(|| {
                let peer = PeerContainer::new(
                    (!id.is_empty()).then_some(id),
                    (!name.is_empty()).then_some(name),
                );
                if let Some(bad) = &peer.rejected_id {
                    invalid_ids.increment(1);
                    tracing::warn!(container_id = ?bad, container_name = ?String::from_utf8_lossy(name),
                        "a Forward record's container_id is not a Docker container id (64 hex digits); it is kept as the field container_id");
                }
                let meta = peer.meta.map(|m| {
                    Arc::new(ContainerMeta {
                        log_driver: Some("fluentd".into()),
                        ..m
                    })
                });
                (meta, peer.rejected_id.map(serde_json::Value::String))
            })
            .clone();
        self.last_container = Some((key.0, key.1, c.clone()));
        c
    }

    /// Reads one record map at `r` (over `buf`) into an event at `time_ns`.
    pub fn record(
        &mut self,
        r: &mut Reader<'_>,
        buf: &Bytes,
        time_ns: i64,
        tag: &Arc<Attrs>,
    ) -> Result<(Event, Option<PartialMeta>), MpError> {
        let n = r.map_len().map_err(|e| match e {
            MpError::Invalid(_) => MpError::Invalid("a record is not a map".into()),
            e => e,
        })?;
        let mut log: Option<Bytes> = None;
        let mut message: Option<Bytes> = None;
        let mut source: Option<Stream> = None;
        let mut stream: Option<Stream> = None;
        let mut id: Option<&[u8]> = None;
        let mut name: Option<&[u8]> = None;
        let mut partial = false;
        let mut pm = PartialMeta::default();
        let mut fields: Option<Box<serde_json::Map<String, serde_json::Value>>> = None;
        for _ in 0..n {
            // Keys compared as bytes; only keys that become fields are checked for UTF-8.
            let key = r.slice()?;
            match key {
                b"log" if log.is_none() => log = Some(text(r, buf)?),
                b"message" if message.is_none() => message = Some(text(r, buf)?),
                b"source" | b"stream" if r.is_bytes() => {
                    let s = match r.slice()? {
                        b"stdout" => Stream::Stdout,
                        b"stderr" => Stream::Stderr,
                        other => {
                            fields.get_or_insert_with(Default::default).insert(
                                String::from_utf8_lossy(key).into_owned(),
                                serde_json::Value::String(
                                    String::from_utf8_lossy(other).into_owned(),
                                ),
                            );
                            continue;
                        }
                    };
                    if key == b"source" {
                        source = Some(s);
                    } else {
                        stream = Some(s);
                    }
                }
                b"container_id" if r.is_bytes() => id = Some(r.slice()?),
                b"container_name" if r.is_bytes() => name = Some(r.slice()?),
                b"partial_message" => partial = truthy(r)?,
                b"partial_id" => pm.id = Some(scalar(r)?),
                b"partial_ordinal" => pm.ordinal = scalar(r)?.parse().ok(),
                b"partial_last" => pm.last = truthy(r)?,
                _ => {
                    let key = std::str::from_utf8(key)
                        .map_err(|_| MpError::Invalid("a record key is not UTF-8".into()))?
                        .to_string();
                    let v = r.json(1)?;
                    fields.get_or_insert_with(Default::default).insert(key, v);
                }
            }
        }
        // `message` is the message only when there is no `log`; otherwise it is a field.
        let msg = match (log, message) {
            (Some(l), Some(m)) => {
                fields.get_or_insert_with(Default::default).insert(
                    "message".into(),
                    serde_json::Value::String(String::from_utf8_lossy(&m).into_owned()),
                );
                l
            }
            (Some(l), None) => l,
            (None, Some(m)) => m,
            (None, None) => Bytes::new(),
        };
        let mut ev = Event::new(time_ns, source.or(stream).unwrap_or(Stream::Unknown), msg);
        if id.is_some() || name.is_some() {
            let (meta, rejected) = self.container(id.unwrap_or(b""), name.unwrap_or(b""));
            ev.container = meta;
            if let Some(bad) = rejected {
                fields
                    .get_or_insert_with(Default::default)
                    .insert("container_id".into(), bad);
            }
        }
        ev.attrs = Some(tag.clone());
        ev.fields = fields;
        Ok((ev, partial.then_some(pm)))
    }
}

/// A string value as a slice of `buf`; any other value as its JSON text.
fn text(r: &mut Reader<'_>, buf: &Bytes) -> Result<Bytes, MpError> {
    if r.is_bytes() {
        let range = r.bytes()?;
        Ok(buf.slice(range))
    } else {
        Ok(Bytes::from(r.json(1)?.to_string()))
    }
}

fn scalar(r: &mut Reader<'_>) -> Result<String, MpError> {
    Ok(match r.json(1)? {
        serde_json::Value::String(s) => s,
        v => v.to_string(),
    })
}

fn truthy(r: &mut Reader<'_>) -> Result<bool, MpError> {
    Ok(match r.json(1)? {
        serde_json::Value::Bool(b) => b,
        serde_json::Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    })
}
