//! Confinement: what a rendered template value may contain where a sink puts it. The values
//! (a container's name, id, labels, …) may come from a network peer, so each sink states the
//! character set of its destination ([`Charset`]) and every action's output is held to it
//! before it joins the operator's own template text: a character outside the set becomes `_`,
//! a value longer than the destination allows is cut (on a character boundary). A value that
//! had to be changed is counted in `logwharf_sink_confined_values_total{sink}` and logged
//! with its container; renders are cached per container ([`super::render`]), so that is once
//! per container.
//!
//! The file sink's paths get more ([`confine_path`]): no component after the template's
//! static prefix may be `..`, so nothing is created outside the directory the operator named.

use logwharf_collector::metrics as m;
use logwharf_collector::ContainerMeta;
use logwharf_config::Template;
use std::path::{Component, Path, PathBuf};

/// The characters a destination accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// One path segment of the file sink: no `/`, NUL or control characters, and no `..`
    /// (the second dot of a pair becomes `_`).
    PathSegment,
    /// RFC 5424's PRINTUSASCII, `%d33-126` (syslog HOSTNAME, APP-NAME, PROCID, MSGID; Forward
    /// tags, which Fluentd matches as dot-separated words).
    PrintUsAscii,
    /// Kafka topic names: `[a-zA-Z0-9._-]`.
    KafkaTopic,
    /// CloudWatch Logs group names: `[\.\-_/#A-Za-z0-9]`.
    LogGroup,
    /// CloudWatch Logs stream names: anything but `:`, `*` and control characters.
    LogStream,
    /// Anything but control characters (Kafka keys).
    NoControl,
}

impl Charset {
    fn allows(self, c: char) -> bool {
        match self {
            Charset::PathSegment => c != '/' && !c.is_control(),
            Charset::PrintUsAscii => matches!(c, '!'..='~'),
            Charset::KafkaTopic => c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
            Charset::LogGroup => {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#')
            }
            Charset::LogStream => !matches!(c, ':' | '*') && !c.is_control(),
            Charset::NoControl => !c.is_control(),
        }
    }
}

/// Appends `value` to `out` with every character `charset` does not allow replaced by `_`;
/// returns how many were replaced.
pub fn confine_into(value: &str, charset: Charset, out: &mut String) -> usize {
    let mut replaced = 0;
    let mut prev_dot = false;
    for c in value.chars() {
        let dot_pair = charset == Charset::PathSegment && c == '.' && prev_dot;
        if charset.allows(c) && !dot_pair {
            out.push(c);
        } else {
            out.push('_');
            replaced += 1;
        }
        prev_dot = c == '.' && !dot_pair;
    }
    replaced
}

/// `s` cut to at most `max` bytes on a character boundary; true when it was cut.
pub fn cap_len(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    s.truncate(s.floor_char_boundary(max));
    true
}

/// The longest a file name may be on the file systems logwharf writes to.
pub const MAX_PATH_COMPONENT: usize = 255;

/// Holds a rendered path under `prefix`'s directory (the template's static text up to its
/// last `/`): a `..` component after it (made of template text and a value, e.g. `.{{.Name}}`
/// with the name `.`) becomes `__`, a component longer than [`MAX_PATH_COMPONENT`] bytes is
/// cut. Returns the path and how many components were changed.
pub fn confine_path(rendered: &str, prefix: &str) -> (PathBuf, usize) {
    let dir = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
    let dir = if rendered.starts_with(dir) { dir } else { "" };
    let rest = &rendered[dir.len()..];
    let mut out = PathBuf::from(dir);
    let mut changed = 0;
    for comp in Path::new(rest).components() {
        match comp {
            Component::Normal(c) => {
                let mut s = c.to_string_lossy().into_owned();
                if cap_len(&mut s, MAX_PATH_COMPONENT) {
                    changed += 1;
                }
                out.push(s);
            }
            Component::CurDir => {}
            Component::ParentDir => {
                changed += 1;
                out.push("__");
            }
            // A rendered part cannot start a new root: its `/` were replaced.
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    (out, changed)
}

/// Counts and logs the values a sink had to confine.
#[derive(Clone)]
pub struct Confinement {
    sink: String,
    counter: metrics::Counter,
}

impl Confinement {
    pub fn new(sink: &str) -> Confinement {
        Confinement {
            sink: sink.to_string(),
            counter: metrics::counter!(m::SINK_CONFINED_VALUES, "sink" => sink.to_string()),
        }
    }

    /// Records that `what` (e.g. `path`, `tag`) rendered for `meta` had `changes` characters
    /// or components changed to fit; nothing when `changes` is 0.
    pub fn report(
        &self,
        what: &str,
        template: &Template,
        meta: Option<&ContainerMeta>,
        changes: usize,
        result: &str,
    ) {
        if changes == 0 {
            return;
        }
        self.counter.increment(1);
        tracing::warn!(
            sink = %self.sink,
            template = %template,
            container_id = meta.map_or("", |m| m.id.as_str()),
            container_name = ?meta.and_then(|m| m.name.as_deref()),
            result = %result,
            changes,
            "a value rendered into the {what} had characters its destination does not allow; they were replaced by `_` (logged once per container)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(v: &str, c: Charset) -> (String, usize) {
        let mut out = String::new();
        let n = confine_into(v, c, &mut out);
        (out, n)
    }

    #[test]
    fn path_segments_lose_slashes_dot_pairs_nul_and_controls() {
        assert_eq!(conf("web_1", Charset::PathSegment), ("web_1".into(), 0));
        assert_eq!(conf("../../x", Charset::PathSegment), (".__.__x".into(), 4));
        assert_eq!(conf("...", Charset::PathSegment).0, "._.");
        assert_eq!(
            conf("a\0b\nc\u{85}é", Charset::PathSegment),
            ("a_b_c_é".into(), 3)
        );
        assert_eq!(conf(".hidden", Charset::PathSegment), (".hidden".into(), 0));
    }

    #[test]
    fn other_charsets() {
        assert_eq!(
            conf("a b\u{7f}é~", Charset::PrintUsAscii),
            ("a_b__~".into(), 3)
        );
        assert_eq!(
            conf("logs.web-1_x/é", Charset::KafkaTopic),
            ("logs.web-1_x__".into(), 2)
        );
        assert_eq!(
            conf("/docker/#web:1", Charset::LogGroup),
            ("/docker/#web_1".into(), 1)
        );
        assert_eq!(
            conf("web:1*é/x", Charset::LogStream),
            ("web_1_é/x".into(), 2)
        );
        assert_eq!(conf("k\ney", Charset::NoControl), ("k_ey".into(), 1));
    }

    #[test]
    fn paths_stay_under_the_static_prefix() {
        let p = |r: &str| confine_path(r, "/var/log/lw/");
        assert_eq!(
            p("/var/log/lw/web/1.log"),
            (PathBuf::from("/var/log/lw/web/1.log"), 0)
        );
        assert_eq!(
            p("/var/log/lw/../x.log"),
            (PathBuf::from("/var/log/lw/__/x.log"), 1)
        );
        assert_eq!(
            p("/var/log/lw/a/./../../b"),
            (PathBuf::from("/var/log/lw/a/__/__/b"), 2)
        );
        assert_eq!(p("/var/log/lw//x"), (PathBuf::from("/var/log/lw/x"), 0));
        let long = format!("/var/log/lw/{}é.log", "a".repeat(254));
        let (path, n) = p(&long);
        assert_eq!(n, 1);
        assert_eq!(path.file_name().unwrap().len(), 254);
        // The prefix's own text is the operator's and kept as written.
        assert_eq!(
            confine_path("/a/../b/x", "/a/../b/").0,
            PathBuf::from("/a/../b/x")
        );
    }

    #[test]
    fn arbitrary_values_never_escape_or_panic() {
        let alphabet = [
            "a", "/", ".", "..", "\0", "\n", "é", "€", "😀", "\u{85}", "%2e",
        ];
        let mut n = 0;
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    for d in alphabet {
                        let value = format!("{a}{b}{c}{d}");
                        let mut rendered = String::from("/srv/out/");
                        confine_into(&value, Charset::PathSegment, &mut rendered);
                        rendered.push_str(".log");
                        let (path, _) = confine_path(&rendered, "/srv/out/");
                        assert!(path.starts_with("/srv/out"), "{value:?} → {path:?}");
                        assert!(
                            path.components().all(|c| c != Component::ParentDir),
                            "{value:?} → {path:?}"
                        );
                        assert_eq!(path.parent(), Some(Path::new("/srv/out")), "{value:?}");
                        for cs in [
                            Charset::PrintUsAscii,
                            Charset::KafkaTopic,
                            Charset::LogGroup,
                            Charset::LogStream,
                        ] {
                            let mut out = String::new();
                            confine_into(&value, cs, &mut out);
                            cap_len(&mut out, 5);
                            assert!(out.chars().all(|ch| cs.allows(ch) || ch == '_'));
                        }
                        n += 1;
                    }
                }
            }
        }
        assert_eq!(n, 11usize.pow(4));
    }
}
