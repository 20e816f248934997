//! A log file and its rotated siblings, named as Docker's json-file driver and logrotate both
//! name them: the live `NAME`, then `NAME.1`, `NAME.2`, … (or `NAME.1.gz`, `NAME.2.gz`, …
//! when compressed), higher numbers older. [`list_siblings`] lists them oldest first; a reader
//! opens them as [`super::file::OpenFile`]s.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One entry of a container's directory that belongs to its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sibling {
    pub name: String,
    /// 0 for the live file, N for `.N` / `.N.gz`: higher is older.
    pub rank: u32,
    pub gz: bool,
    /// Size and inode when listed (to count what is lost if it vanishes before we open it).
    pub size: u64,
    pub ino: u64,
}

/// The log files of a container, oldest first (`.N` … `.1`, then the live file).
pub fn list_siblings(dir: &Path, live_name: &str) -> io::Result<Vec<Sibling>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some((rank, gz)) = sibling_rank(&name, live_name) else {
            continue;
        };
        let Ok(md) = entry.metadata() else {
            continue; // gone since the readdir
        };
        if !md.is_file() {
            continue;
        }
        out.push(Sibling {
            name,
            rank,
            gz,
            size: md.len(),
            ino: md.ino(),
        });
    }
    // While Docker compresses `.1` into `.1.gz` both exist and the `.gz` is still being
    // written: the plain one is complete, so it is the one to read (plain sorts first).
    out.sort_by(|a, b| b.rank.cmp(&a.rank).then(a.gz.cmp(&b.gz)));
    out.dedup_by(|later, kept| later.rank == kept.rank);
    Ok(out)
}

/// `Some((rank, gz))` when `name` is the live file or one of its rotated siblings.
fn sibling_rank(name: &str, live_name: &str) -> Option<(u32, bool)> {
    let rest = name.strip_prefix(live_name)?;
    if rest.is_empty() {
        return Some((0, false));
    }
    let rest = rest.strip_prefix('.')?;
    let (num, gz) = match rest.strip_suffix(".gz") {
        Some(n) => (n, true),
        None => (rest, false),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match num.parse::<u32>() {
        Ok(0) | Err(_) => None,
        Ok(rank) => Some((rank, gz)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path, live: &str) -> Vec<String> {
        list_siblings(dir, live)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect()
    }

    #[test]
    fn lists_oldest_first_and_prefers_plain_while_compressing() {
        let d = tempfile::tempdir().unwrap();
        let live = "abc-json.log";
        for n in [
            "abc-json.log",
            "abc-json.log.1",
            "abc-json.log.1.gz", // being written from .1
            "abc-json.log.2.gz",
            "abc-json.log.10.gz",
            "abc-json.log.x",
            "abc-json.log.0",
            "abc-json.logs",
            "config.v2.json",
            "other-json.log",
        ] {
            fs::write(d.path().join(n), b"").unwrap();
        }
        fs::create_dir(d.path().join("abc-json.log.3")).unwrap();
        assert_eq!(
            names(d.path(), live),
            vec![
                "abc-json.log.10.gz",
                "abc-json.log.2.gz",
                "abc-json.log.1",
                "abc-json.log"
            ]
        );
    }
}
