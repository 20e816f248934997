//! One Kafka message → one [`Event`], by the source's `decoding`:
//!
//! - `json`: logwharf's JSON event as the `kafka` sink's `encoding = "json"` writes it
//!   (sinks/src/encoding.rs): time, stream, message, the container's id, name, image, labels,
//!   env, compose fields and tag, Docker's attrs, the source's fields and the flags all come
//!   back, so an aggregator renders `{{.Name}}` and re-encodes the same event;
//! - `docker`: a json-file line (`encoding = "docker"`), through the json-file source's
//!   parser;
//! - `raw`: the value is the message.
//!
//! For `docker` and `raw`, the container comes from the message's headers (the sink's
//! `headers` option: `container_id`, `container_name`, …) and the time from the message's
//! timestamp. A value that does not decode is passed on as it is, flagged malformed (the
//! caller counts it): never dropped, never a stall. Metadata from the topic crosses the same
//! trust boundary as any peer's ([`crate::untrusted`]).

use super::config::Decoding;
use crate::event::{ContainerMeta, Event, EventFlags, Stream};
use crate::sources::docker_json_file::parser::{AttrsInOrder, LineParser};
use crate::time::{now_nanos, parse_rfc3339_nanos};
use crate::untrusted::{clean_str, PeerContainer};
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a message carries besides its value.
#[derive(Debug, Default, Clone, Copy)]
pub struct MessageMeta<'a> {
    /// The message's timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// Its headers, `(name, value)`.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// A decoded message; `error` says why it was passed on raw.
#[derive(Debug)]
pub struct Decoded {
    pub event: Event,
    pub error: Option<&'static str>,
}

/// Containers seen, so that the events of one container share one [`ContainerMeta`].
const MAX_CACHED: usize = 4096;

/// Decodes messages of one `decoding`; keeps the containers it saw.
pub struct MessageDecoder {
    decoding: Decoding,
    parser: LineParser,
    buf: BytesMut,
    containers: HashMap<String, Arc<ContainerMeta>>,
}

impl MessageDecoder {
    pub fn new(decoding: Decoding) -> MessageDecoder {
        MessageDecoder {
            decoding,
            parser: LineParser::new(),
            buf: BytesMut::new(),
            containers: HashMap::new(),
        }
    }

    /// Decodes one message value (`None`: a message without a value, an empty message).
    pub fn decode(&mut self, value: Option<&[u8]>, meta: MessageMeta<'_>) -> Decoded {
        let value = value.unwrap_or_default();
        let decoded = match self.decoding {
            Decoding::Json => self.json(value),
            Decoding::Docker => self.docker(value, meta),
            Decoding::Raw => Ok(self.event_from_headers(Bytes::copy_from_slice(value), meta)),
        };
        match decoded {
            Ok(event) => Decoded { event, error: None },
            Err(why) => {
                let mut event = self.event_from_headers(Bytes::copy_from_slice(value), meta);
                event.flags.insert(EventFlags::MALFORMED);
                Decoded {
                    event,
                    error: Some(why),
                }
            }
        }
    }

    fn json(&mut self, value: &[u8]) -> Result<Event, &'static str> {
        let j: JsonEvent<'_> = serde_json::from_slice(value).map_err(|_| "invalid_json")?;
        let message = j.message.ok_or("no_message")?;
        let time_ns = match j.time.as_deref() {
            Some(t) => parse_rfc3339_nanos(t.as_bytes()).ok_or("invalid_time")?,
            None => now_nanos(),
        };
        let mut flags = EventFlags::default();
        for (set, f) in [
            (j.malformed, EventFlags::MALFORMED),
            (j.partial, EventFlags::PARTIAL),
            (j.truncated, EventFlags::TRUNCATED),
        ] {
            if set {
                flags.insert(f);
            }
        }
        let mut fields = j.fields.map(Box::new);
        let peer = PeerContainer::new(
            j.container_id.as_deref().map(str::as_bytes),
            j.container_name.as_deref().map(str::as_bytes),
        );
        if let Some(bad) = peer.rejected_id {
            fields
                .get_or_insert_default()
                .insert("container_id".into(), serde_json::Value::String(bad));
        }
        let container = peer.meta.map(|m| {
            let clean = |s: Option<Cow<'_, str>>| s.map(|s| clean_str(&s).into_owned());
            self.shared(ContainerMeta {
                image_name: clean(j.image_name),
                image_id: clean(j.image_id),
                labels: j.labels,
                env: j.env,
                compose_project: clean(j.compose_project),
                compose_service: clean(j.compose_service),
                tag: clean(j.tag),
                ..m
            })
        });
        Ok(Event {
            time_ns,
            stream: stream(j.stream.as_deref().map(str::as_bytes)),
            flags,
            message: Bytes::from(message.into_owned()),
            container,
            attrs: j.attrs.map(|a| Arc::new(a.0)),
            fields,
        })
    }

    fn docker(&mut self, value: &[u8], meta: MessageMeta<'_>) -> Result<Event, &'static str> {
        let r = self
            .parser
            .parse(value, &mut self.buf)
            .ok_or("invalid_docker_line")?;
        let message = self.buf.split().freeze();
        let mut event = self.event_from_headers(message, meta);
        event.stream = r.stream;
        if let Some(t) = r.time_ns {
            event.time_ns = t;
        }
        if !r.complete {
            event.flags.insert(EventFlags::PARTIAL);
        }
        event.attrs = r.attrs;
        Ok(event)
    }

    /// An event of `message` with the container, stream and time its headers and timestamp
    /// give.
    fn event_from_headers(&mut self, message: Bytes, meta: MessageMeta<'_>) -> Event {
        let header = |name: &str| {
            meta.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| *v)
        };
        let text =
            |name: &str| header(name).map(|v| clean_str(&String::from_utf8_lossy(v)).into_owned());
        let time_ns = meta
            .timestamp_ms
            .filter(|t| *t > 0)
            .and_then(|t| t.checked_mul(1_000_000))
            .unwrap_or_else(now_nanos);
        let mut event = Event::new(time_ns, stream(header("stream")), message);
        let peer = PeerContainer::new(header("container_id"), header("container_name"));
        if let Some(bad) = peer.rejected_id {
            event
                .fields
                .get_or_insert_default()
                .insert("container_id".into(), serde_json::Value::String(bad));
        }
        event.container = peer.meta.map(|m| {
            self.shared(ContainerMeta {
                image_name: text("image_name"),
                image_id: text("image_id"),
                compose_project: text("compose_project"),
                compose_service: text("compose_service"),
                ..m
            })
        });
        event
    }

    /// The cached record equal to `meta`, or `meta` cached.
    fn shared(&mut self, meta: ContainerMeta) -> Arc<ContainerMeta> {
        let key = if meta.id.is_empty() {
            meta.name.clone().unwrap_or_default()
        } else {
            meta.id.clone()
        };
        if let Some(c) = self.containers.get(&key) {
            if **c == meta {
                return c.clone();
            }
        }
        if self.containers.len() >= MAX_CACHED {
            self.containers.clear();
        }
        let c = Arc::new(meta);
        self.containers.insert(key, c.clone());
        c
    }
}

fn stream(s: Option<&[u8]>) -> Stream {
    match s {
        Some(b"stdout") => Stream::Stdout,
        Some(b"stderr") => Stream::Stderr,
        _ => Stream::Unknown,
    }
}

/// logwharf's JSON event, as sinks/src/encoding.rs writes it (`source` is the agent's source
/// name; the aggregator's events carry its own).
#[derive(Deserialize)]
struct JsonEvent<'a> {
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    container_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    container_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    image_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    image_id: Option<Cow<'a, str>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(borrow)]
    compose_project: Option<Cow<'a, str>>,
    #[serde(borrow)]
    compose_service: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tag: Option<Cow<'a, str>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    attrs: Option<AttrsInOrder>,
    fields: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    malformed: bool,
    #[serde(default)]
    partial: bool,
    #[serde(default)]
    truncated: bool,
}
