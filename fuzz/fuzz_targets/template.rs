//! Docker tag templates (config/src/template.rs) and what the sinks make of a render
//! (sinks/src/util/{render,confine}.rs, compiled into this crate): a template parsed, then
//! rendered against container metadata a peer could have sent.
//!
//! Input: NUL-separated parts: the template, then the container's id, name, image name, image
//! id, and `key=value` labels.
//! Invariants: no panic; a name render (tag, topic, group, …) is never empty and never over
//! its length cap; a file sink path stays under the directory of the template's static
//! prefix, with no `..` component after it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logwharf_collector::ContainerMeta;
use logwharf_config::Template;
use logwharf_fuzz::confine::{Charset, Confinement};
use logwharf_fuzz::render::{NameTemplate, PathTemplate};
use std::path::{Component, Path};
use std::sync::OnceLock;

fn text(b: Option<&[u8]>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let Some(t) = parts.next() else { return };
    let Ok(t) = std::str::from_utf8(t) else {
        return;
    };
    let Ok(template) = Template::parse(t) else {
        return;
    };
    let meta = ContainerMeta {
        id: text(parts.next()).unwrap_or_default(),
        name: text(parts.next()),
        image_name: text(parts.next()),
        image_id: text(parts.next()),
        labels: parts
            .filter_map(|l| {
                let l = String::from_utf8_lossy(l);
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect(),
        ..Default::default()
    };
    let _ = template.render(&meta);
    static CONF: OnceLock<Confinement> = OnceLock::new();
    let conf = CONF.get_or_init(|| Confinement::new("fuzz"));
    for (cs, max) in [
        (Charset::PrintUsAscii, 48),
        (Charset::KafkaTopic, 249),
        (Charset::LogGroup, 512),
        (Charset::LogStream, 512),
        (Charset::NoControl, 1024),
    ] {
        let nt = NameTemplate::new(template.clone(), "fuzz", cs, max);
        for m in [Some(&meta), None] {
            let s = nt.render(m, conf);
            assert!(!s.is_empty() && s.len() <= max, "{cs:?} {s:?}");
        }
    }
    let pt = PathTemplate {
        template: template.clone(),
    };
    let prefix = template.static_prefix();
    let dir = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
    for m in [Some(&meta), None] {
        let path = pt.render(m, conf);
        let s = path.to_string_lossy();
        assert!(s.starts_with(dir), "{path:?} is not under {dir:?}");
        let below = Path::new(&s[dir.len()..]);
        assert!(
            below
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "{path:?} leaves {dir:?}"
        );
    }
});
