//! Turns a container's inspect response into its [`ContainerMeta`] record (id checked, name
//! without `/` and control characters),
//! image, every label, only the selected env, compose project/service, log driver, the tag
//! (rendered here, once) and Docker's extra attributes.

use crate::event::{Attrs, ContainerMeta};
use crate::untrusted::{clean_str, is_container_id};
use bollard::models::ContainerInspectResponse;
use logwharf_config::docker::EnrichOptions;
use logwharf_config::template::{extra_attributes, split_env};
use logwharf_config::Template;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Builds records the way one set of [`EnrichOptions`] asks.
#[derive(Debug, Clone)]
pub struct RecordBuilder {
    opts: EnrichOptions,
}

impl RecordBuilder {
    pub fn new(opts: EnrichOptions) -> RecordBuilder {
        RecordBuilder { opts }
    }

    /// The record for one inspected container; `None` when the response has no id in Docker's
    /// form (a remote daemon is a peer like any other: [`crate::untrusted`]).
    pub fn build(&self, c: &ContainerInspectResponse) -> Option<ContainerMeta> {
        let id = c.id.clone().filter(|s| is_container_id(s.as_bytes()));
        let Some(id) = id else {
            tracing::warn!(id = ?c.id, "Docker answered an inspect with an id that is not 64 hex digits; the container is ignored");
            return None;
        };
        let config = c.config.as_ref();
        let labels: BTreeMap<String, String> = config
            .and_then(|c| c.labels.as_ref())
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let env_list: &[String] = config.and_then(|c| c.env.as_deref()).unwrap_or_default();
        let env = self.select_env(env_list);
        let mut meta = ContainerMeta {
            id,
            name: c
                .name
                .as_deref()
                .map(|n| clean_str(n.trim_start_matches('/')).into_owned()),
            image_name: config.and_then(|c| c.image.clone()),
            image_id: c.image.clone(),
            compose_project: labels.get("com.docker.compose.project").cloned(),
            compose_service: labels.get("com.docker.compose.service").cloned(),
            log_driver: c
                .host_config
                .as_ref()
                .and_then(|h| h.log_config.as_ref())
                .and_then(|l| l.typ.clone()),
            tty: config.and_then(|c| c.tty).unwrap_or(false),
            labels,
            env,
            tag: None,
            attrs: None,
        };
        meta.tag = self.render_tag(&meta);
        let mut attrs = extra_attributes(
            &meta.labels,
            split_env(env_list),
            &self.opts.labels,
            self.opts.labels_regex.as_ref().map(|p| p.regex()),
            &self.opts.env,
            self.opts.env_regex.as_ref().map(|p| p.regex()),
        );
        if let Some(t) = &meta.tag {
            attrs.insert("tag".into(), t.clone());
        }
        if !attrs.is_empty() {
            meta.attrs = Some(Arc::new(attrs.into_iter().collect::<Attrs>()));
        }
        Some(meta)
    }

    /// Only the variables named in `env` or matching `env_regex`.
    fn select_env(&self, entries: &[String]) -> BTreeMap<String, String> {
        let re = self.opts.env_regex.as_ref().map(|p| p.regex());
        if self.opts.env.is_empty() && re.is_none() {
            return BTreeMap::new();
        }
        split_env(entries)
            .filter(|(k, _)| {
                self.opts.env.iter().any(|e| e == k) || re.is_some_and(|r| r.is_match(k))
            })
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The `logwharf.tag` label (itself a template) wins over the configured template.
    fn render_tag(&self, meta: &ContainerMeta) -> Option<String> {
        if let Some(label) = meta.labels.get("logwharf.tag") {
            return Some(match Template::parse(label) {
                Ok(t) => t.render(meta),
                Err(e) => {
                    tracing::warn!(container = %meta.id, error = %e, "label logwharf.tag is not a valid template; using it as plain text");
                    label.clone()
                }
            });
        }
        self.opts.tag.as_ref().map(|t| t.render(meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspect() -> ContainerInspectResponse {
        serde_json::from_str(
            r#"{"Id":"d2ae8d3a9846e1ba1cc4b1b14b3d2f1c7d9e5d8f1a2b3c4d5e6f708192a3b4c5",
                "Name":"/shop_web_1","Image":"sha256:0123456789abcdef0123",
                "Config":{"Image":"logwharf-busybox:latest","Tty":true,
                  "Env":["FOO=bar","SECRET=hunter2","APP_MODE=prod","PATH=/bin"],
                  "Labels":{"com.docker.compose.project":"shop","com.docker.compose.service":"web","team":"a"}},
                "HostConfig":{"LogConfig":{"Type":"local","Config":{}}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn builds_a_record_with_selected_env_only() {
        let opts = EnrichOptions {
            env: vec!["FOO".into()],
            env_regex: Some(serde_json::from_str("\"^APP_\"").unwrap()),
            labels: vec!["team".into()],
            tag: Some(Template::parse("{{.Name}}/{{.ID}}").unwrap()),
            ..Default::default()
        };
        let m = RecordBuilder::new(opts).build(&inspect()).unwrap();
        assert_eq!(m.name.as_deref(), Some("shop_web_1"));
        assert_eq!(m.image_name.as_deref(), Some("logwharf-busybox:latest"));
        assert_eq!(m.compose_project.as_deref(), Some("shop"));
        assert_eq!(m.compose_service.as_deref(), Some("web"));
        assert_eq!(m.log_driver.as_deref(), Some("local"));
        assert!(m.tty);
        assert_eq!(m.labels.len(), 3);
        let env: Vec<_> = m.env.keys().map(String::as_str).collect();
        assert_eq!(env, ["APP_MODE", "FOO"]);
        assert_eq!(m.tag.as_deref(), Some("shop_web_1/d2ae8d3a9846"));
        let attrs = m.attrs.as_ref().unwrap();
        let keys: Vec<_> = attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["APP_MODE", "FOO", "tag", "team"]);
    }

    #[test]
    fn no_env_without_selection_and_label_tag_wins() {
        let mut c = inspect();
        c.config
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("logwharf.tag".into(), "{{upper .Name}}".into());
        let m = RecordBuilder::new(EnrichOptions::default())
            .build(&c)
            .unwrap();
        assert!(m.env.is_empty());
        assert_eq!(m.tag.as_deref(), Some("SHOP_WEB_1"));
    }
}
