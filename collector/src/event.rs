//! The event model: one log entry ([`Event`]), the container it came from ([`ContainerMeta`],
//! shared by `Arc` across every line of that container) and the unit that crosses channels
//! ([`Batch`]).

use bytes::Bytes;
use logwharf_config::{TemplateContext, TemplateField};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Which output stream of the container a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Not from a container stream (e.g. a syslog message from a host).
    Unknown,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Unknown => "unknown",
        }
    }
}

/// Marks on an event that downstream consumers should see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventFlags(pub u8);

impl EventFlags {
    /// The input line could not be parsed; `message` is the raw line.
    pub const MALFORMED: EventFlags = EventFlags(1);
    /// A partial line shipped without its continuation (timeout, overflow, end of stream).
    pub const PARTIAL: EventFlags = EventFlags(2);
    /// The message was cut at the configured size cap.
    pub const TRUNCATED: EventFlags = EventFlags(4);

    pub fn contains(self, other: EventFlags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    pub fn insert(&mut self, other: EventFlags) {
        self.0 |= other.0;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// What is known about a container. One record per container, shared by every event of that
/// container through an `Arc`; never cloned per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMeta {
    /// Full 64-character id; empty when a peer sent none in Docker's form (see
    /// [`crate::untrusted`]).
    pub id: String,
    /// Name without Docker's leading `/`.
    pub name: Option<String>,
    pub image_name: Option<String>,
    /// Full image id (`sha256:…`).
    pub image_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Only the variables selected by `env`/`env_regex`; never the whole environment.
    pub env: BTreeMap<String, String>,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    pub log_driver: Option<String>,
    /// The rendered tag (the source's `tag` template or the `logwharf.tag` label), rendered
    /// once when the record is built.
    pub tag: Option<String>,
    /// Docker's extra attributes for this container (the `labels`/`env` options, and `tag`),
    /// as Docker's drivers attach them; shared by every event that carries them.
    pub attrs: Option<Arc<Attrs>>,
    /// The container runs with a TTY (its API log stream has no multiplexing header).
    pub tty: bool,
}

impl ContainerMeta {
    /// Metadata that knows nothing but the id (before, or without, the Docker API).
    pub fn from_id(id: impl Into<String>) -> ContainerMeta {
        ContainerMeta {
            id: id.into(),
            ..Default::default()
        }
    }

    /// Docker's 12-character short id: the id's first 12 bytes, cut back to a character
    /// boundary (an id that is not Docker's hex form never makes this panic).
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.floor_char_boundary(12)]
    }

    /// False when the container opts out with the label `logwharf.enable=false`.
    pub fn enabled(&self) -> bool {
        !self
            .labels
            .get("logwharf.enable")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false") || v.trim() == "0")
    }

    /// The container's own multiline start pattern (label `logwharf.multiline.start`).
    pub fn multiline_start(&self) -> Option<&str> {
        self.labels
            .get("logwharf.multiline.start")
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

impl TemplateContext for ContainerMeta {
    fn field(&self, field: TemplateField) -> Cow<'_, str> {
        let image_full = self.image_id.as_deref().unwrap_or("");
        Cow::Borrowed(match field {
            TemplateField::Id => self.short_id(),
            TemplateField::FullId => &self.id,
            TemplateField::Name => self.name.as_deref().unwrap_or(""),
            // As Docker renders it (`ContainerImageID[:12]`, captured through its syslog
            // driver): the first 12 characters of the full id, `sha256:` included.
            TemplateField::ImageId => &image_full[..image_full.floor_char_boundary(12)],
            TemplateField::ImageFullId => image_full,
            TemplateField::ImageName => self.image_name.as_deref().unwrap_or(""),
            TemplateField::DaemonName => "docker",
        })
    }

    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.labels)
    }
}

/// Docker's per-line `attrs` (from `labels`/`env`/`tag` log-opts), in file order. Shared by
/// `Arc` between consecutive lines that carry the same attrs.
pub type Attrs = Vec<(String, String)>;

/// One log entry.
#[derive(Debug, Clone)]
pub struct Event {
    /// Nanoseconds since the Unix epoch, UTC.
    pub time_ns: i64,
    pub stream: Stream,
    pub flags: EventFlags,
    /// The line without its trailing newline. Usually a slice of a buffer shared by the batch.
    pub message: Bytes,
    pub container: Option<Arc<ContainerMeta>>,
    pub attrs: Option<Arc<Attrs>>,
    /// Source-specific extras (syslog facility, forward record keys, …); `None` on the hot path.
    pub fields: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl Event {
    pub fn new(time_ns: i64, stream: Stream, message: Bytes) -> Event {
        Event {
            time_ns,
            stream,
            flags: EventFlags::default(),
            message,
            container: None,
            attrs: None,
            fields: None,
        }
    }

    /// Bytes counted for metrics: the message length.
    pub fn size(&self) -> usize {
        self.message.len()
    }
}

/// Events from one source, crossing channels together. The router wraps it in an `Arc` and
/// hands the same batch to every sink that reads the source.
#[derive(Debug)]
pub struct Batch {
    /// The source's name (the `NAME` of `[sources.NAME]`).
    pub source: Arc<str>,
    pub events: Vec<Event>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn byte_size(&self) -> usize {
        self.events.iter().map(Event::size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logwharf_config::Template;

    #[test]
    fn short_id_and_image_id_cut_on_a_char_boundary_for_any_id() {
        assert_eq!(
            ContainerMeta::from_id("0123456789a€bcdef").short_id(),
            "0123456789a"
        );
        assert_eq!(ContainerMeta::from_id("abc").short_id(), "abc");
        let t = Template::parse("{{.ID}} {{.ImageID}} {{.Name}}").unwrap();
        // Every string of 1..=4 chars from a mix of 1- to 4-byte chars, behind 8..=12 bytes.
        let chars = ['a', '/', '\n', 'é', '€', '😀', '\u{fffd}'];
        let mut n = 0;
        for len in 1..=4u32 {
            for k in 0..chars.len().pow(len) {
                let mut tail = String::new();
                let mut x = k;
                for _ in 0..len {
                    tail.push(chars[x % chars.len()]);
                    x /= chars.len();
                }
                for pad in 8..=12 {
                    let id = format!("{}{tail}", "0".repeat(pad));
                    let mut m = ContainerMeta::from_id(id.clone());
                    m.image_id = Some(id.clone());
                    m.name = Some(id.clone());
                    let s = m.short_id();
                    assert!(id.starts_with(s) && s.len() <= 12 && s.len() >= 9, "{id:?}");
                    let _ = t.render(&m);
                    n += 1;
                }
            }
        }
        assert!(n > 10_000);
    }
}
