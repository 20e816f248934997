//! What one event becomes in Kafka: its topic and key (rendered from the templates once per
//! container in the shared render cache, never per line; the topic's values confined to
//! Kafka's `[a-zA-Z0-9._-]` and 249 characters), its value (one of the shared encoders) and its
//! optional metadata headers.

use super::config::HeaderField;
use super::config::KafkaSinkConfig;
use crate::encoding::Encoder;
use crate::util::confine::{Charset, Confinement};
use crate::util::render::{NameTemplate, RenderCache};
use logwharf_collector::{ContainerMeta, Event};
use rdkafka::message::{Header, OwnedHeaders};
use std::sync::Arc;

/// Where one container's events go.
#[derive(Debug)]
pub(super) struct Route {
    /// The rendered topic; `Err` holds why it is not a valid Kafka topic name.
    pub topic: Result<String, String>,
    /// `None`: no key (the template rendered empty, or the event has no container).
    pub key: Option<Vec<u8>>,
    /// Per-container header values, in the configured order (per-event ones are added when
    /// the message is built).
    headers: Vec<(&'static str, String)>,
}

/// Renders routes (cached per container in the shared [`RenderCache`]) and encodes values and
/// headers.
pub(super) struct Records {
    topic: NameTemplate,
    key: Option<NameTemplate>,
    headers: Vec<HeaderField>,
    encoder: Encoder,
    routes: RenderCache<Arc<Route>>,
    confinement: Confinement,
}

/// Kafka's limit on a topic name.
const MAX_TOPIC: usize = 249;

impl Records {
    pub(super) fn new(sink: &str, config: &KafkaSinkConfig) -> Records {
        Records {
            topic: NameTemplate::new(
                config.topic.clone(),
                "topic",
                Charset::KafkaTopic,
                MAX_TOPIC,
            ),
            key: config
                .key
                .clone()
                .map(|k| NameTemplate::new(k, "key", Charset::NoControl, usize::MAX)),
            headers: config.headers.clone(),
            encoder: Encoder::new(config.encoding),
            routes: RenderCache::default(),
            confinement: Confinement::new(sink),
        }
    }

    /// The route of `event`'s container: one pointer comparison on the per-line path.
    pub(super) fn route(&mut self, event: &Event) -> Arc<Route> {
        let Records {
            routes,
            topic,
            key,
            headers,
            confinement,
            ..
        } = self;
        routes.get(event.container.as_ref(), |m| {
            Arc::new(render(topic, key.as_ref(), headers, confinement, m))
        })
    }

    /// Appends `event`'s value to `out`.
    pub(super) fn encode(&self, source: &str, event: &Event, out: &mut Vec<u8>) {
        self.encoder.encode(source, event, out);
    }

    /// The headers for `event`, or `None` when none are configured.
    pub(super) fn headers(
        &self,
        route: &Route,
        source: &str,
        event: &Event,
    ) -> Option<OwnedHeaders> {
        if self.headers.is_empty() {
            return None;
        }
        let mut h = OwnedHeaders::new_with_capacity(self.headers.len());
        let mut container = route.headers.iter();
        let mut next_container = container.next();
        for f in &self.headers {
            let value: Option<&str> = match f {
                HeaderField::Stream => Some(event.stream.as_str()),
                HeaderField::Source => Some(source),
                _ => match next_container {
                    Some((name, v)) if *name == f.name() => {
                        next_container = container.next();
                        Some(v.as_str())
                    }
                    _ => None,
                },
            };
            if let Some(v) = value {
                h = h.insert(Header {
                    key: f.name(),
                    value: Some(v),
                });
            }
        }
        Some(h)
    }
}

/// Kafka's rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`.
/// One container's route (`meta`: `None` for events without a container). The topic's values
/// are confined to Kafka's topic characters (the operator's text is checked as written); a
/// key's values lose control characters; events without a container get no key unless the
/// key template is static.
fn render(
    topic_t: &NameTemplate,
    key_t: Option<&NameTemplate>,
    fields: &[HeaderField],
    confinement: &Confinement,
    meta: Option<&ContainerMeta>,
) -> Route {
    let topic = topic_t.render(meta, confinement);
    let topic = match check_topic(&topic) {
        Ok(()) => Ok(topic),
        Err(why) => Err(format!(
            "topic template {:?} renders {topic:?}{}: {why}",
            topic_t.template.as_str(),
            meta.map(|m| format!(" for container {}", m.short_id()))
                .unwrap_or_default()
        )),
    };
    let key = match (key_t, meta) {
        (Some(t), Some(_)) => Some(t.render(meta, confinement).into_bytes()),
        (Some(t), None) if t.template.is_static() => Some(t.render(None, confinement).into_bytes()),
        (Some(_), None) => None,
        (None, Some(m)) => Some(m.id.clone().into_bytes()),
        (None, None) => None,
    }
    .filter(|k| !k.is_empty());
    let mut headers = Vec::new();
    if let Some(m) = meta {
        for h in fields {
            let v = match h {
                HeaderField::ContainerId => Some(m.id.clone()),
                HeaderField::ContainerName => m.name.clone(),
                HeaderField::ImageName => m.image_name.clone(),
                HeaderField::ImageId => m.image_id.clone(),
                HeaderField::ComposeProject => m.compose_project.clone(),
                HeaderField::ComposeService => m.compose_service.clone(),
                HeaderField::Stream | HeaderField::Source => None,
            };
            if let Some(v) = v {
                headers.push((h.name(), v));
            }
        }
    }
    Route {
        topic,
        key,
        headers,
    }
}

fn check_topic(t: &str) -> Result<(), &'static str> {
    if t.is_empty() {
        return Err("a topic name cannot be empty");
    }
    if t.len() > 249 {
        return Err("a topic name is at most 249 characters");
    }
    if t == "." || t == ".." {
        return Err("a topic name cannot be \".\" or \"..\"");
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("a topic name may only contain ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use logwharf_collector::Stream;
    use logwharf_config::Template;
    use rdkafka::message::Headers;

    fn config(extra: &str) -> KafkaSinkConfig {
        let mut c = KafkaSinkConfig::new(
            vec!["127.0.0.1:9092".into()],
            Template::parse("logs.{{.Name}}").unwrap(),
        );
        if extra == "key" {
            c.key = Some(Template::parse("{{.ImageName}}").unwrap());
        }
        c.headers = vec![
            HeaderField::ContainerName,
            HeaderField::Stream,
            HeaderField::ImageName,
            HeaderField::Source,
        ];
        c
    }

    fn meta(id: &str, name: &str) -> Arc<ContainerMeta> {
        Arc::new(ContainerMeta {
            name: Some(name.into()),
            ..ContainerMeta::from_id(id)
        })
    }

    fn event(meta: Option<&Arc<ContainerMeta>>) -> Event {
        let mut e = Event::new(0, Stream::Stderr, Bytes::from_static(b"m"));
        e.container = meta.cloned();
        e
    }

    #[test]
    fn renders_once_per_container_and_defaults_the_key_to_the_id() {
        let mut r = Records::new("k", &config(""));
        let a = meta("aaaa", "web");
        let b = meta("bbbb", "db");
        let ra = r.route(&event(Some(&a)));
        assert_eq!(ra.topic.as_deref(), Ok("logs.web"));
        assert_eq!(ra.key.as_deref(), Some(&b"aaaa"[..]));
        assert!(Arc::ptr_eq(&ra, &r.route(&event(Some(&a)))));
        let rb = r.route(&event(Some(&b)));
        assert_eq!(rb.topic.as_deref(), Ok("logs.db"));
        // Back to a: from the cache, not rendered again.
        assert!(Arc::ptr_eq(&ra, &r.route(&event(Some(&a)))));
        // Same container, renamed: rendered again.
        let a2 = meta("aaaa", "web2");
        assert_eq!(r.route(&event(Some(&a2))).topic.as_deref(), Ok("logs.web2"));
        // No container: fields render empty, and there is no key.
        let none = r.route(&event(None));
        assert!(none.key.is_none());
        assert_eq!(none.topic.as_deref(), Ok("logs."));
        let mut name_only = Records::new(
            "k",
            &KafkaSinkConfig::new(
                vec!["127.0.0.1:9092".into()],
                Template::parse("{{.Name}}").unwrap(),
            ),
        );
        // The one empty-render rule: the short id, or `logwharf` without a container.
        assert_eq!(
            name_only.route(&event(None)).topic.as_deref(),
            Ok("logwharf")
        );
        let anon = meta("0123456789abcdef", "");
        assert_eq!(
            name_only.route(&event(Some(&anon))).topic.as_deref(),
            Ok("0123456789ab")
        );
        // A peer's name is confined to the topic characters, not refused.
        let odd = meta("cccc", "../we b/€");
        assert_eq!(
            name_only.route(&event(Some(&odd))).topic.as_deref(),
            Ok(".._we_b__")
        );
        let mut bad = Records::new(
            "k",
            &KafkaSinkConfig::new(
                vec!["127.0.0.1:9092".into()],
                Template::parse("logs/{{.Name}}").unwrap(),
            ),
        );
        let err = bad.route(&event(Some(&a))).topic.clone().unwrap_err();
        assert!(err.contains("may only contain"), "{err}");
    }

    #[test]
    fn key_template_and_headers() {
        let mut r = Records::new("k", &config("key"));
        let a = Arc::new(ContainerMeta {
            name: Some("web".into()),
            image_name: Some("nginx".into()),
            ..ContainerMeta::from_id("aaaa")
        });
        let e = event(Some(&a));
        let route = r.route(&e);
        assert_eq!(route.key.as_deref(), Some(&b"nginx"[..]));
        let h = r.headers(&route, "src", &e).unwrap();
        let got: Vec<(String, String)> = h
            .iter()
            .map(|h| {
                (
                    h.key.to_string(),
                    String::from_utf8(h.value.unwrap().to_vec()).unwrap(),
                )
            })
            .collect();
        let want = [
            ("container_name", "web"),
            ("stream", "stderr"),
            ("image_name", "nginx"),
            ("source", "src"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn topic_names_are_checked() {
        assert!(check_topic("logs.web-1_x").is_ok());
        assert!(check_topic("").is_err());
        assert!(check_topic("..").is_err());
        assert!(check_topic("a/b").is_err());
        assert!(check_topic(&"a".repeat(250)).is_err());
    }
}
