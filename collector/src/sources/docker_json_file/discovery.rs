//! Finding containers: which `<root>/<id>/` directories hold a json-file log, filtered by
//! `include`/`exclude` id prefixes. The inotify watches that tell within milliseconds when one
//! appears, disappears or is written to are [`super::watch`]'s; a periodic rescan backs them
//! up (watch limits, filesystems without inotify, events lost under load).

use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// `include`/`exclude` by container id prefix. A pattern is a glob matched against the start
/// of the id (`3f2a` and `3f2a*` mean the same); `exclude` wins.
pub struct IdFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl IdFilter {
    pub fn new(include: &[String], exclude: &[String]) -> anyhow::Result<IdFilter> {
        fn set(patterns: &[String]) -> anyhow::Result<Option<GlobSet>> {
            if patterns.is_empty() {
                return Ok(None);
            }
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                let prefix = if p.ends_with('*') {
                    p.clone()
                } else {
                    format!("{p}*")
                };
                b.add(Glob::new(&prefix).map_err(|e| anyhow::anyhow!("invalid glob {p:?}: {e}"))?);
            }
            Ok(Some(b.build()?))
        }
        Ok(IdFilter {
            include: set(include)?,
            exclude: set(exclude)?,
        })
    }

    pub fn accepts(&self, id: &str) -> bool {
        !self.exclude.as_ref().is_some_and(|s| s.is_match(id))
            && self.include.as_ref().is_none_or(|s| s.is_match(id))
    }
}

/// A container directory that passes the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub id: String,
    pub dir: PathBuf,
    /// The live log's file name, once the directory has any json-file log.
    pub live_name: Option<String>,
}

/// One look at the root: `None` if it does not exist.
///
/// Container directories in `known` (already being read) are not looked into.
pub fn scan(
    root: &Path,
    filter: &IdFilter,
    known: &HashSet<String>,
) -> io::Result<Option<Vec<Found>>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Ok(id) = entry.file_name().into_string() else {
            continue;
        };
        if !filter.accepts(&id) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = entry.path();
        let live_name = if known.contains(&id) {
            None
        } else {
            live_log_name(&dir, &id)
        };
        found.push(Found { id, dir, live_name });
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Some(found))
}

/// The live log's name in a container directory: `<id>-json.log` when it (or a rotated
/// sibling of it) is there, else any other `*-json.log`.
pub fn live_log_name(dir: &Path, id: &str) -> Option<String> {
    let expected = format!("{id}-json.log");
    let mut other = None;
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name == expected || name.starts_with(&format!("{expected}.")) {
            return Some(expected);
        }
        if let Some(pos) = name.find("-json.log") {
            let base = &name[..pos + "-json.log".len()];
            if other.as_deref().is_none_or(|o: &str| base < o) {
                other = Some(base.to_string());
            }
        }
    }
    other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_by_id_prefix_exclude_wins() {
        let all = IdFilter::new(&[], &[]).unwrap();
        assert!(all.accepts("3f2a00"));
        let f = IdFilter::new(&["3f2a".into(), "ab*".into()], &["3f2a9*".into()]).unwrap();
        assert!(f.accepts("3f2a00"));
        assert!(f.accepts("abcdef"));
        assert!(!f.accepts("3f2a99"), "exclude wins");
        assert!(!f.accepts("ff0000"), "not included");
        let ex = IdFilter::new(&[], &["dead".into()]).unwrap();
        assert!(!ex.accepts("deadbeef"));
        assert!(ex.accepts("beefdead"));
        assert!(IdFilter::new(&["[".into()], &[]).is_err());
    }

    #[test]
    fn scan_finds_container_dirs_and_their_live_log() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        assert_eq!(
            scan(
                &r.join("missing"),
                &IdFilter::new(&[], &[]).unwrap(),
                &HashSet::new()
            )
            .unwrap(),
            None
        );
        fs::create_dir(r.join("aaa")).unwrap();
        fs::write(r.join("aaa/aaa-json.log"), b"").unwrap();
        fs::create_dir(r.join("bbb")).unwrap(); // no log yet
        fs::create_dir(r.join("ccc")).unwrap();
        fs::write(r.join("ccc/ccc-json.log.1.gz"), b"").unwrap(); // only a rotated one
        fs::create_dir(r.join("ddd")).unwrap();
        fs::write(r.join("ddd/weird-json.log"), b"").unwrap();
        fs::write(r.join("not-a-dir"), b"").unwrap();
        let f = IdFilter::new(&[], &["ddd".into()]).unwrap();
        let found = scan(r, &f, &HashSet::new()).unwrap().unwrap();
        let got: Vec<_> = found
            .iter()
            .map(|f| (f.id.as_str(), f.live_name.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("aaa", Some("aaa-json.log")),
                ("bbb", None),
                ("ccc", Some("ccc-json.log"))
            ]
        );
        assert_eq!(
            live_log_name(&r.join("ddd"), "ddd").as_deref(),
            Some("weird-json.log")
        );
        // Known containers are not looked into.
        let known: HashSet<String> = ["aaa".to_string()].into();
        let found = scan(r, &IdFilter::new(&[], &[]).unwrap(), &known)
            .unwrap()
            .unwrap();
        assert_eq!(found[0].live_name, None);
    }
}
