//! What one event becomes in Kafka: its topic and key (rendered from the templates once per
//! container and cached, never per line), its value (one of the shared encoders) and its
//! optional metadata headers.

use super::config::HeaderField;
use super::config::KafkaSinkConfig;
use crate::encoding::Encoder;
use logwharf_collector::{ContainerMeta, Event};
use logwharf_config::Template;
use rdkafka::message::{Header, OwnedHeaders};
use std::collections::HashMap;
use std::sync::Arc;

/// Containers whose routes are cached at most; beyond it the cache starts over (a host has
/// hundreds of containers, not thousands).
const MAX_CACHED: usize = 4096;

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

/// Renders routes (cached per container) and encodes values and headers.
pub(super) struct Records {
    topic: Template,
    key: Option<Template>,
    headers: Vec<HeaderField>,
    encoder: Encoder,
    by_id: HashMap<String, (Arc<ContainerMeta>, Arc<Route>)>,
    last: Option<(Arc<ContainerMeta>, Arc<Route>)>,
    no_container: Option<Arc<Route>>,
}

impl Records {
    pub(super) fn new(config: &KafkaSinkConfig) -> Records {
        Records {
            topic: config.topic.clone(),
            key: config.key.clone(),
            headers: config.headers.clone(),
            encoder: Encoder::new(config.encoding),
            by_id: HashMap::new(),
            last: None,
            no_container: None,
        }
    }

    /// The route of `event`'s container: one pointer comparison on the per-line path.
    pub(super) fn route(&mut self, event: &Event) -> Arc<Route> {
        let Some(meta) = &event.container else {
            if self.no_container.is_none() {
                self.no_container = Some(Arc::new(self.render(None)));
            }
            return self.no_container.clone().expect("set above");
        };
        if let Some((m, r)) = &self.last {
            if Arc::ptr_eq(m, meta) {
                return r.clone();
            }
        }
        let route = match self.by_id.get(&meta.id) {
            // Same container; a new Arc with the same metadata renders the same.
            Some((m, r)) if Arc::ptr_eq(m, meta) || **m == **meta => r.clone(),
            _ => {
                if self.by_id.len() >= MAX_CACHED {
                    self.by_id.clear();
                }
                let r = Arc::new(self.render(Some(meta)));
                self.by_id
                    .insert(meta.id.clone(), (meta.clone(), r.clone()));
                r
            }
        };
        self.last = Some((meta.clone(), route.clone()));
        route
    }

    fn render(&self, meta: Option<&ContainerMeta>) -> Route {
        let empty = ContainerMeta::default();
        let ctx = meta.unwrap_or(&empty);
        let topic = self.topic.render(ctx);
        let topic = match check_topic(&topic) {
            Ok(()) => Ok(topic),
            Err(why) => Err(format!(
                "topic template {:?} renders {topic:?}{}: {why}",
                self.topic.as_str(),
                meta.map(|m| format!(" for container {}", m.short_id()))
                    .unwrap_or_default()
            )),
        };
        let key = match (&self.key, meta) {
            (Some(t), _) => Some(t.render(ctx).into_bytes()),
            (None, Some(m)) => Some(m.id.clone().into_bytes()),
            (None, None) => None,
        }
        .filter(|k| !k.is_empty());
        let mut headers = Vec::new();
        if let Some(m) = meta {
            for h in &self.headers {
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
        let mut r = Records::new(&config(""));
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
        let mut bad = Records::new(&KafkaSinkConfig::new(
            vec!["127.0.0.1:9092".into()],
            Template::parse("{{.Name}}").unwrap(),
        ));
        let err = bad.route(&event(None)).topic.clone().unwrap_err();
        assert!(err.contains("cannot be empty"), "{err}");
    }

    #[test]
    fn key_template_and_headers() {
        let mut r = Records::new(&config("key"));
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
