//! Forward entries: `[time, record]` per event, the record either Docker's fluentd-driver keys
//! (`container_id` = 64 hex, `container_name` with Docker's leading `/`, `source`, `log`
//! without its newline, the label/env extras, and the partial fields for a line shipped
//! partial) or logwharf's whole event. The tag and the container part of each record are
//! rendered once per container in the shared render cache, never per line; a tag is held to
//! PRINTUSASCII (no space or control character reaches Fluentd's routing).

use super::config::RecordFormat;
use crate::util::confine::{confine_into, Charset, Confinement};
use crate::util::render::{NameTemplate, RenderCache};
use logwharf_collector::{ContainerMeta, Event, EventFlags};
use logwharf_config::Template;
use rmp::encode;
use std::sync::Arc;

/// A tag held to PRINTUSASCII (what Fluentd's tag patterns match), `_` for the rest.
fn header_safe(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    confine_into(t, Charset::PrintUsAscii, &mut out);
    out
}

/// What is rendered once per container.
struct PerContainer {
    tag: Arc<str>,
    /// Pre-encoded key/value pairs every record of this container starts with.
    prefix: Vec<u8>,
    prefix_pairs: u32,
}

/// Encodes events into Forward entries; owns the per-container caches.
pub struct RecordEncoder {
    tag: NameTemplate,
    format: RecordFormat,
    sub_second: bool,
    labels: Vec<String>,
    containers: RenderCache<Arc<PerContainer>>,
    /// The rendered tag for events without a container (and without a tag of their own).
    default_tag: Arc<str>,
    confinement: Confinement,
}

fn str_pair(out: &mut Vec<u8>, k: &str, v: &[u8]) {
    let _ = encode::write_str(out, k);
    let _ = encode::write_str_len(out, v.len() as u32);
    out.extend_from_slice(v);
}

fn map_pair(out: &mut Vec<u8>, k: &str, m: &std::collections::BTreeMap<String, String>) {
    let _ = encode::write_str(out, k);
    let _ = encode::write_map_len(out, m.len() as u32);
    for (k, v) in m {
        let _ = encode::write_str(out, k);
        let _ = encode::write_str(out, v);
    }
}

/// Appends the event time: EventTime (ext 0: u32 seconds, u32 nanoseconds) or integer seconds.
pub fn write_time(out: &mut Vec<u8>, ns: i64, sub_second: bool) {
    let secs = ns.div_euclid(1_000_000_000);
    if sub_second {
        let nanos = ns.rem_euclid(1_000_000_000) as u32;
        let _ = encode::write_ext_meta(out, 8, 0);
        out.extend_from_slice(&(secs.clamp(0, u32::MAX as i64) as u32).to_be_bytes());
        out.extend_from_slice(&nanos.to_be_bytes());
    } else {
        let _ = encode::write_sint(out, secs);
    }
}

impl RecordEncoder {
    pub fn new(tag: Template, format: RecordFormat, sub_second: bool, labels: Vec<String>) -> Self {
        RecordEncoder::for_sink("fluentd", tag, format, sub_second, labels)
    }

    /// Counts confined tags under the sink's name.
    pub fn for_sink(
        sink: &str,
        tag: Template,
        format: RecordFormat,
        sub_second: bool,
        labels: Vec<String>,
    ) -> Self {
        let tag = NameTemplate::new(tag, "tag", Charset::PrintUsAscii, usize::MAX);
        let confinement = Confinement::new(sink);
        let default_tag: Arc<str> = tag.render(None, &confinement).into();
        RecordEncoder {
            tag,
            format,
            sub_second,
            labels,
            containers: RenderCache::default(),
            default_tag,
            confinement,
        }
    }

    fn per_container(&mut self, meta: &Arc<ContainerMeta>) -> Arc<PerContainer> {
        let RecordEncoder {
            containers,
            tag,
            format,
            labels,
            confinement,
            ..
        } = self;
        containers.get(Some(meta), |m| {
            let tag = tag.render(m, confinement).into();
            Arc::new(render(*format, labels, meta, tag))
        })
    }

    /// The tag an event is sent under.
    pub fn tag_of(&mut self, ev: &Event) -> Arc<str> {
        match &ev.container {
            Some(meta) => self.per_container(meta).tag.clone(),
            None => match ev
                .attrs
                .as_deref()
                .and_then(|a| a.iter().find(|(k, _)| k == "tag"))
            {
                // The event's own tag (relayed from a fluent source): Forward's characters.
                Some((_, t)) => Arc::from(header_safe(t)),
                None => self.default_tag.clone(),
            },
        }
    }

    /// Appends `[time, record]` for `ev` (read by the source `source`).
    pub fn write_entry(&mut self, out: &mut Vec<u8>, source: &str, ev: &Event) {
        let _ = encode::write_array_len(out, 2);
        write_time(out, ev.time_ns, self.sub_second);
        let format = self.format;
        let pc = ev.container.as_ref().map(|m| self.per_container(m));
        let (prefix, prefix_pairs) = match &pc {
            Some(pc) => (Some(&pc.prefix), pc.prefix_pairs),
            None => (None, 0),
        };
        match format {
            RecordFormat::Docker => {
                let extras = ev
                    .attrs
                    .as_deref()
                    .map(|a| a.iter().filter(|(k, _)| k != "tag").count())
                    .unwrap_or(0) as u32;
                let partial = ev.flags.contains(EventFlags::PARTIAL);
                let n = prefix_pairs + 2 + extras + if partial { 4 } else { 0 };
                let _ = encode::write_map_len(out, n);
                if let Some(p) = prefix {
                    out.extend_from_slice(p);
                }
                str_pair(out, "source", ev.stream.as_str().as_bytes());
                str_pair(out, "log", &ev.message);
                if let Some(a) = ev.attrs.as_deref() {
                    for (k, v) in a.iter().filter(|(k, _)| k != "tag") {
                        str_pair(out, k, v.as_bytes());
                    }
                }
                if partial {
                    // A line shipped without its continuation: Docker's partial form, with an
                    // id of its own, as the first and not last piece.
                    str_pair(out, "partial_message", b"true");
                    let id = format!("{:016x}", ev.time_ns as u64);
                    str_pair(out, "partial_id", id.as_bytes());
                    str_pair(out, "partial_ordinal", b"1");
                    str_pair(out, "partial_last", b"false");
                }
            }
            RecordFormat::Event => {
                let mut n = prefix_pairs + 4;
                n += ev.attrs.is_some() as u32 + ev.fields.is_some() as u32;
                let flags = [
                    (EventFlags::MALFORMED, "malformed"),
                    (EventFlags::PARTIAL, "partial"),
                    (EventFlags::TRUNCATED, "truncated"),
                ];
                n += flags.iter().filter(|(f, _)| ev.flags.contains(*f)).count() as u32;
                let _ = encode::write_map_len(out, n);
                let mut t = Vec::with_capacity(32);
                logwharf_collector::time::write_rfc3339(
                    &mut t,
                    ev.time_ns,
                    logwharf_collector::time::Fraction::Nanos,
                );
                str_pair(out, "time", &t);
                str_pair(out, "stream", ev.stream.as_str().as_bytes());
                str_pair(out, "message", &ev.message);
                str_pair(out, "source", source.as_bytes());
                if let Some(p) = prefix {
                    out.extend_from_slice(p);
                }
                if let Some(a) = ev.attrs.as_deref() {
                    let _ = encode::write_str(out, "attrs");
                    let _ = encode::write_map_len(out, a.len() as u32);
                    for (k, v) in a.iter() {
                        let _ = encode::write_str(out, k);
                        let _ = encode::write_str(out, v);
                    }
                }
                if let Some(f) = &ev.fields {
                    let _ = encode::write_str(out, "fields");
                    if rmp_serde::encode::write_named(out, &**f).is_err() {
                        let _ = encode::write_nil(out);
                    }
                }
                for (f, k) in flags {
                    if ev.flags.contains(f) {
                        let _ = encode::write_str(out, k);
                        let _ = encode::write_bool(out, true);
                    }
                }
            }
        }
    }
}

/// The container part of every record of `meta`'s events.
fn render(
    format: RecordFormat,
    labels: &[String],
    meta: &ContainerMeta,
    tag: Arc<str>,
) -> PerContainer {
    let mut prefix = Vec::new();
    let mut pairs = 0;
    match format {
        RecordFormat::Docker => {
            str_pair(&mut prefix, "container_id", meta.id.as_bytes());
            let name = format!("/{}", meta.name.as_deref().unwrap_or(""));
            str_pair(&mut prefix, "container_name", name.as_bytes());
            pairs += 2;
            for l in labels {
                if let Some(v) = meta.labels.get(l) {
                    str_pair(&mut prefix, l, v.as_bytes());
                    pairs += 1;
                }
            }
            for (k, v) in &meta.env {
                str_pair(&mut prefix, k, v.as_bytes());
                pairs += 1;
            }
        }
        RecordFormat::Event => {
            str_pair(&mut prefix, "container_id", meta.id.as_bytes());
            pairs += 1;
            let opt = [
                ("container_name", &meta.name),
                ("image_name", &meta.image_name),
                ("image_id", &meta.image_id),
                ("compose_project", &meta.compose_project),
                ("compose_service", &meta.compose_service),
            ];
            for (k, v) in opt {
                if let Some(v) = v {
                    str_pair(&mut prefix, k, v.as_bytes());
                    pairs += 1;
                }
            }
            if !meta.labels.is_empty() {
                map_pair(&mut prefix, "labels", &meta.labels);
                pairs += 1;
            }
            if !meta.env.is_empty() {
                map_pair(&mut prefix, "env", &meta.env);
                pairs += 1;
            }
        }
    }
    PerContainer {
        tag,
        prefix,
        prefix_pairs: pairs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use logwharf_collector::sources::fluent::msgpack::Reader;
    use logwharf_collector::Stream;
    use serde_json::json;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn decode(entry: &[u8]) -> (i64, serde_json::Value) {
        let mut r = Reader::new(entry, entry.len());
        assert_eq!(r.array_len().unwrap(), 2);
        let t = r.time().unwrap();
        let rec = r.json(0).unwrap();
        assert!(r.at_end());
        (t, rec)
    }

    fn event(flags: EventFlags) -> Event {
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("com.example.team".to_string(), "shop".to_string());
        labels.insert("other".to_string(), "x".to_string());
        let mut env = std::collections::BTreeMap::new();
        env.insert("REGION".to_string(), "eu".to_string());
        let mut e = Event::new(
            1_795_611_862_901_652_423,
            Stream::Stderr,
            Bytes::from("hello-err"),
        );
        e.flags = flags;
        e.container = Some(Arc::new(ContainerMeta {
            id: ID.into(),
            name: Some("web".into()),
            labels,
            env,
            ..Default::default()
        }));
        e.attrs = Some(Arc::new(vec![
            ("tag".into(), "ignored".into()),
            ("FOO".into(), "bar".into()),
        ]));
        e
    }

    #[test]
    fn docker_records_have_the_drivers_keys_and_extras() {
        let mut enc = RecordEncoder::new(
            Template::parse("docker.{{.Name}}").unwrap(),
            RecordFormat::Docker,
            true,
            vec!["com.example.team".into()],
        );
        let ev = event(EventFlags::default());
        assert_eq!(&*enc.tag_of(&ev), "docker.web");
        let mut out = Vec::new();
        enc.write_entry(&mut out, "src", &ev);
        let (t, rec) = decode(&out);
        assert_eq!(t, 1_795_611_862_901_652_423);
        assert_eq!(
            rec,
            json!({
                "container_id": ID,
                "container_name": "/web",
                "source": "stderr",
                "log": "hello-err",
                "com.example.team": "shop",
                "REGION": "eu",
                "FOO": "bar",
            })
        );
    }

    #[test]
    fn partial_events_carry_dockers_partial_fields_and_integer_time_works() {
        let mut enc = RecordEncoder::new(
            Template::parse("{{.ID}}").unwrap(),
            RecordFormat::Docker,
            false,
            vec![],
        );
        let ev = event(EventFlags::PARTIAL);
        assert_eq!(&*enc.tag_of(&ev), &ID[..12]);
        let mut out = Vec::new();
        enc.write_entry(&mut out, "src", &ev);
        let (t, rec) = decode(&out);
        assert_eq!(t, 1_795_611_862_000_000_000);
        assert_eq!(rec["partial_message"], "true");
        assert_eq!(rec["partial_ordinal"], "1");
        assert_eq!(rec["partial_last"], "false");
        assert_eq!(rec["partial_id"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn event_records_carry_the_whole_event() {
        let mut enc = RecordEncoder::new(
            Template::parse("{{.ID}}").unwrap(),
            RecordFormat::Event,
            true,
            vec![],
        );
        let mut ev = event(EventFlags::TRUNCATED);
        let mut f = serde_json::Map::new();
        f.insert("n".into(), json!(42));
        ev.fields = Some(Box::new(f));
        let mut out = Vec::new();
        enc.write_entry(&mut out, "src", &ev);
        let (_, rec) = decode(&out);
        assert_eq!(rec["message"], "hello-err");
        assert_eq!(rec["stream"], "stderr");
        assert_eq!(rec["time"], "2026-11-25T13:04:22.901652423Z");
        assert_eq!(rec["source"], "src");
        assert_eq!(rec["container_name"], "web");
        assert_eq!(rec["labels"]["other"], "x");
        assert_eq!(rec["env"]["REGION"], "eu");
        assert_eq!(rec["attrs"]["FOO"], "bar");
        assert_eq!(rec["fields"]["n"], 42);
        assert_eq!(rec["truncated"], true);
    }

    #[test]
    fn events_without_a_container_keep_their_tag() {
        let mut enc = RecordEncoder::new(
            Template::parse("{{.ID}}").unwrap(),
            RecordFormat::Docker,
            true,
            vec![],
        );
        let mut ev = Event::new(0, Stream::Stdout, Bytes::from("x"));
        ev.attrs = Some(Arc::new(vec![("tag".into(), "app.web".into())]));
        assert_eq!(&*enc.tag_of(&ev), "app.web");
        let mut out = Vec::new();
        enc.write_entry(&mut out, "src", &ev);
        assert_eq!(decode(&out).1, json!({"source": "stdout", "log": "x"}));
    }
}
