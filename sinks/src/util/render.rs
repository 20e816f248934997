//! The one per-container render cache every sink uses for its templates (file `path`, syslog
//! `tag`, Kafka `topic`/`key`, CloudWatch `group`/`stream`, Forward `tag`): [`RenderCache`]
//! keeps what a sink renders from a container's metadata, rendered once per container and again
//! when the metadata changes (a rename), with one bound for every sink; [`NameTemplate`]
//! renders one template with the sink's confinement ([`super::confine`]) and the one rule for
//! empty renders:
//!
//! **A template that renders empty becomes the container's short id (Docker's default tag,
//! `{{.ID}}`); without a container (or a container id) it becomes `logwharf`.** The same
//! holds for the file name at the end of a file sink's path. Nothing is ever sent or created
//! under an empty name.

use super::confine::{cap_len, confine_into, confine_path, Charset, Confinement};
use logwharf_collector::ContainerMeta;
use logwharf_config::Template;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What an empty render becomes when there is no container id either.
pub const EMPTY_FALLBACK: &str = "logwharf";

/// Values rendered per container. `V` is cheap to clone (an `Arc`).
pub struct RenderCache<V> {
    by_container: HashMap<String, (Arc<ContainerMeta>, V)>,
    /// The previous event's container: consecutive lines of one container skip the map.
    last: Option<(Arc<ContainerMeta>, V)>,
    no_container: Option<V>,
}

impl<V> Default for RenderCache<V> {
    fn default() -> Self {
        RenderCache {
            by_container: HashMap::new(),
            last: None,
            no_container: None,
        }
    }
}

impl<V: Clone> RenderCache<V> {
    /// Containers kept before the cache starts over (a host has hundreds, not thousands).
    pub const MAX_ENTRIES: usize = 8192;

    /// The value for `container` (`None`: an event without one), from `render` on a miss.
    pub fn get(
        &mut self,
        container: Option<&Arc<ContainerMeta>>,
        render: impl FnOnce(Option<&ContainerMeta>) -> V,
    ) -> V {
        let Some(c) = container else {
            return self
                .no_container
                .get_or_insert_with(|| render(None))
                .clone();
        };
        if let Some((m, v)) = &self.last {
            if Arc::ptr_eq(m, c) {
                return v.clone();
            }
        }
        let key = cache_key(c);
        let v = match self.by_container.get(key.as_ref()) {
            // A new Arc with the same metadata renders the same.
            Some((m, v)) if Arc::ptr_eq(m, c) || **m == **c => v.clone(),
            _ => {
                if self.by_container.len() >= Self::MAX_ENTRIES {
                    self.by_container.clear();
                }
                let v = render(Some(c));
                self.by_container
                    .insert(key.into_owned(), (c.clone(), v.clone()));
                v
            }
        };
        self.last = Some((c.clone(), v.clone()));
        v
    }
}

/// The id; for a container a peer sent without a valid id, its name (NUL cannot be in either).
fn cache_key(c: &ContainerMeta) -> Cow<'_, str> {
    if c.id.is_empty() {
        Cow::Owned(format!("\0{}", c.name.as_deref().unwrap_or("")))
    } else {
        Cow::Borrowed(&c.id)
    }
}

/// The empty-render rule's value for `meta`.
pub fn empty_render(meta: Option<&ContainerMeta>) -> &str {
    match meta.map(ContainerMeta::short_id) {
        Some(id) if !id.is_empty() => id,
        _ => EMPTY_FALLBACK,
    }
}

/// A template for a name (tag, topic, group, …): rendered with its values confined to
/// `charset`, cut to `max_len` bytes, never empty.
#[derive(Debug, Clone)]
pub struct NameTemplate {
    pub template: Template,
    charset: Charset,
    max_len: usize,
    /// For the log line: `tag`, `topic`, …
    what: &'static str,
}

impl NameTemplate {
    pub fn new(template: Template, what: &'static str, charset: Charset, max_len: usize) -> Self {
        NameTemplate {
            template,
            charset,
            max_len,
            what,
        }
    }

    /// Renders for `meta` (`None`: no container), counting and logging what was confined.
    pub fn render(&self, meta: Option<&ContainerMeta>, confinement: &Confinement) -> String {
        let empty = ContainerMeta::default();
        let ctx = meta.unwrap_or(&empty);
        let mut changes = 0;
        let mut s = self.template.render_with(ctx, &mut |v, out| {
            changes += confine_into(v, self.charset, out);
        });
        if s.is_empty() {
            confine_into(empty_render(meta), self.charset, &mut s);
        }
        changes += usize::from(cap_len(&mut s, self.max_len));
        confinement.report(self.what, &self.template, meta, changes, &s);
        s
    }
}

/// The file sink's `path`: each value one confined path segment, the whole held under the
/// template's static prefix ([`confine_path`]), an empty file name filled by the empty-render
/// rule.
#[derive(Debug, Clone)]
pub struct PathTemplate {
    pub template: Template,
}

impl PathTemplate {
    pub fn render(&self, meta: Option<&ContainerMeta>, confinement: &Confinement) -> Arc<Path> {
        let empty = ContainerMeta::default();
        let ctx = meta.unwrap_or(&empty);
        let mut changes = 0;
        let mut s = self.template.render_with(ctx, &mut |v, out| {
            changes += confine_into(v, Charset::PathSegment, out);
        });
        if s.is_empty() || s.ends_with('/') {
            confine_into(empty_render(meta), Charset::PathSegment, &mut s);
        }
        let (path, n): (PathBuf, usize) = confine_path(&s, self.template.static_prefix());
        changes += n;
        confinement.report(
            "path",
            &self.template,
            meta,
            changes,
            &path.to_string_lossy(),
        );
        Arc::from(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "d2ae8d3a9846e1ba1cc4b1b14b3d2f1c7d9e5d8f1a2b3c4d5e6f708192a3b4c5";

    fn meta(id: &str, name: &str) -> Arc<ContainerMeta> {
        Arc::new(ContainerMeta {
            name: (!name.is_empty()).then(|| name.to_string()),
            ..ContainerMeta::from_id(id)
        })
    }

    #[test]
    fn renders_once_per_container_and_again_after_a_rename() {
        let mut cache: RenderCache<Arc<str>> = RenderCache::default();
        let mut renders = 0;
        let mut get = |c: &mut RenderCache<Arc<str>>, m: Option<&Arc<ContainerMeta>>| {
            c.get(m, |m| {
                renders += 1;
                Arc::from(m.and_then(|m| m.name.as_deref()).unwrap_or("-"))
            })
        };
        let a = meta(ID, "web");
        let b = meta("", "peer-only");
        let c = meta("", "other");
        assert_eq!(&*get(&mut cache, Some(&a)), "web");
        assert_eq!(&*get(&mut cache, Some(&a)), "web");
        assert_eq!(&*get(&mut cache, Some(&meta(ID, "web"))), "web");
        assert_eq!(&*get(&mut cache, Some(&b)), "peer-only");
        assert_eq!(&*get(&mut cache, Some(&c)), "other");
        assert_eq!(&*get(&mut cache, Some(&b)), "peer-only");
        assert_eq!(&*get(&mut cache, Some(&meta(ID, "web2"))), "web2");
        assert_eq!(&*get(&mut cache, None), "-");
        assert_eq!(&*get(&mut cache, None), "-");
        assert_eq!(renders, 5);
    }

    #[test]
    fn the_one_empty_render_rule() {
        let conf = Confinement::new("t");
        let t = NameTemplate::new(
            Template::parse("{{.Name}}").unwrap(),
            "tag",
            Charset::PrintUsAscii,
            48,
        );
        assert_eq!(t.render(Some(&meta(ID, "web")), &conf), "web");
        assert_eq!(t.render(Some(&meta(ID, "")), &conf), "d2ae8d3a9846");
        assert_eq!(t.render(Some(&meta("", "")), &conf), "logwharf");
        assert_eq!(t.render(None, &conf), "logwharf");
        assert_eq!(
            t.render(Some(&meta(ID, "a\nb c<14>1 x")), &conf),
            "a_b_c<14>1_x"
        );
        assert_eq!(t.render(Some(&meta(ID, &"x".repeat(60))), &conf).len(), 48);
        let p = PathTemplate {
            template: Template::parse("/srv/out/{{.Name}}/{{.ID}}").unwrap(),
        };
        assert_eq!(
            &*p.render(Some(&meta("", "../../etc")), &conf),
            Path::new("/srv/out/.__.__etc/logwharf")
        );
        assert_eq!(
            &*p.render(Some(&meta(ID, "")), &conf),
            Path::new("/srv/out/d2ae8d3a9846")
        );
        let dots = PathTemplate {
            template: Template::parse("/srv/out/.{{.Name}}/x.log").unwrap(),
        };
        assert_eq!(
            &*dots.render(Some(&meta(ID, ".")), &conf),
            Path::new("/srv/out/__/x.log")
        );
    }
}
