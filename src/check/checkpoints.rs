//! The checkpoint store's checker: reads `<data_dir>/checkpoints.json` (without the daemon's
//! side effects: a corrupt file is reported, not moved) and verifies every position.
//!
//! Per key `<source>/…`: the source must exist in the config. For a `docker_json_file` source
//! (`<source>/<container>` or `<source>/<container>/<sink>`): the sink must exist, the
//! container's directory must exist, the value must be a position this version reads, a log
//! file of the container must have the position's fingerprint, and the offset must be a line
//! start inside it. `--repair` removes the keys of removed sources, sinks and containers and
//! unreadable values, and moves an offset past the end or inside a line back to the start of
//! its line (shipping at most one line again, never skipping one). A position whose file
//! Docker rotated away while logwharf was stopped is reported and left alone: the daemon
//! counts exactly that loss when it starts (`logwharf_lost_bytes_total`). The positions of
//! other sources (Docker API cursors) are checked for their sink only: whether a container
//! still exists there is the Docker daemon's to say.

use super::Findings;
use anyhow::Context;
use logwharf_collector::sources::docker_json_file::position::SavedPosition;
use logwharf_collector::sources::docker_json_file::DockerJsonFileConfig;
use logwharf_collector::tail::file::OpenFile;
use logwharf_collector::tail::siblings::{list_siblings, Sibling};
use logwharf_collector::{CheckpointStore, Config};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const FILE_NAME: &str = "checkpoints.json";

/// What `--repair` does to one key.
#[derive(Debug, Clone, PartialEq)]
enum Fix {
    Remove,
    Set(Value),
}

/// One problem: what `--repair` does about it (`None`: nothing is safe), where, what.
struct Finding {
    fix: Option<Fix>,
    place: String,
    what: String,
}

/// Checks (and with `repair` fixes) the checkpoint store of `config.data_dir`.
pub fn check(config: &Config, repair: bool, out: &mut Findings) -> anyhow::Result<()> {
    let path = config.data_dir.join(FILE_NAME);
    let place = path.display().to_string();
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {place}")),
    };
    let entries = match parse(&bytes) {
        Ok(e) => e,
        Err(why) => {
            // The daemon would move it aside and start without checkpoints; so does repair.
            if repair {
                CheckpointStore::open(&config.data_dir)
                    .with_context(|| format!("moving {place} aside"))?;
            }
            out.report(
                &format!("{place}:0"),
                &format!("not a checkpoint file ({why}); every position in it is lost"),
                repair.then_some("moved aside to checkpoints.json.corrupt"),
            );
            return Ok(());
        }
    };
    let findings: Vec<(&String, Finding)> = entries
        .iter()
        .filter_map(|(key, value)| Some((key, check_key(config, &place, key, value)?)))
        .collect();
    if repair && findings.iter().any(|(_, f)| f.fix.is_some()) {
        let store = CheckpointStore::open(&config.data_dir)
            .with_context(|| format!("opening {place} to repair it"))?;
        for (key, f) in &findings {
            match &f.fix {
                Some(Fix::Remove) => store.remove(key),
                Some(Fix::Set(v)) => store.set(key, v.clone()),
                None => {}
            }
        }
        store
            .flush()
            .with_context(|| format!("writing the repaired {place}"))?;
    }
    for (_, f) in &findings {
        let done = match (&f.fix, repair) {
            (Some(Fix::Remove), true) => Some("checkpoint removed".to_string()),
            (Some(Fix::Set(v)), true) => Some(format!("offset set to {}", v["offset"])),
            _ => None,
        };
        out.report(&f.place, &f.what, done.as_deref());
    }
    Ok(())
}

/// The entries of a checkpoint file as the store writes it.
fn parse(bytes: &[u8]) -> Result<BTreeMap<String, Value>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    match v.get("checkpoints") {
        Some(Value::Object(m)) => Ok(m.clone().into_iter().collect()),
        _ => Err("no \"checkpoints\" object".into()),
    }
}

/// The problem with one entry, if any.
fn check_key(config: &Config, store_path: &str, key: &str, value: &Value) -> Option<Finding> {
    let stale = |what: String| Finding {
        fix: Some(Fix::Remove),
        place: format!("{store_path}: key {key}"),
        what,
    };
    let (source, rest) = key.split_once('/').unwrap_or((key, ""));
    let Some(sc) = config.sources.get(source) else {
        return Some(stale(format!(
            "position of source {source:?}, which is not in the config"
        )));
    };
    let (input, sink) = match rest.split_once('/') {
        Some((i, s)) => (i, Some(s)),
        None => (rest, None),
    };
    if let Some(sink) = sink {
        if !config.sinks.contains_key(sink) {
            return Some(stale(format!(
                "position of sink {sink:?}, which is not in the config"
            )));
        }
    }
    let json_file = sc.inner.downcast_ref::<DockerJsonFileConfig>()?;
    let root = &json_file.root;
    if !root.is_dir() {
        // The daemon does not prune then either: more likely a mount problem.
        return None;
    }
    let dir = root.join(input);
    if input.is_empty() || input.contains('/') || !dir.is_dir() {
        return Some(stale(format!(
            "container {input} is gone ({} does not exist)",
            dir.display()
        )));
    }
    let Some(saved) = SavedPosition::from_json(value) else {
        return Some(stale(
            "not a position this version reads (logwharf ignores it)".into(),
        ));
    };
    let mut f = check_position(&dir, input, &saved)?;
    f.what = format!("{} (checkpoint {key})", f.what);
    Some(f)
}

/// A json-file position against the container's files in `dir`.
fn check_position(dir: &Path, container: &str, saved: &SavedPosition) -> Option<Finding> {
    let at = |name: &str| format!("{}:{}", dir.join(name).display(), saved.offset);
    let report = |place: String, what: String| {
        Some(Finding {
            fix: None,
            place,
            what,
        })
    };
    let siblings = match list_siblings(dir, &format!("{container}-json.log")) {
        Ok(s) => s,
        Err(e) => return report(at(&saved.file), format!("cannot list the log files: {e}")),
    };
    let Some((mut file, name)) = find_file(dir, &siblings, saved) else {
        return report(
            at(&saved.file),
            format!(
                "no log file of the container has the checkpointed file's fingerprint ({:08x}, {} bytes): \
                 Docker rotated it away while logwharf was stopped; logwharf counts what is lost when it starts",
                saved.fp, saved.fp_len
            ),
        );
    };
    let (size, line_start) = match scan(&mut file, saved.offset) {
        Ok(r) => r,
        Err(e) => return report(at(&name), format!("cannot read the file: {e}")),
    };
    if line_start == saved.offset {
        return None;
    }
    let what = if saved.offset > size {
        format!(
            "offset {} is past the end of the file ({size} bytes)",
            saved.offset
        )
    } else {
        format!(
            "offset {} is inside a line (which starts at {line_start})",
            saved.offset
        )
    };
    let mut fixed = saved.clone();
    fixed.offset = line_start;
    Some(Finding {
        fix: Some(Fix::Set(fixed.to_json())),
        place: at(&name),
        what,
    })
}

/// The container's log file with the position's fingerprint (the same inode first, when
/// several have it), and its name.
fn find_file(
    dir: &Path,
    siblings: &[Sibling],
    saved: &SavedPosition,
) -> Option<(OpenFile, String)> {
    let gauge = metrics::Gauge::noop();
    let mut found: Option<(OpenFile, String)> = None;
    for s in siblings {
        let Ok(f) = OpenFile::open(dir, s, &gauge) else {
            continue;
        };
        if f.fp != Some(saved.fingerprint()) {
            continue;
        }
        let same_inode = f.ino == saved.ino;
        if found.is_none() || same_inode {
            found = Some((f, s.name.clone()));
        }
        if same_inode {
            break;
        }
    }
    found
}

/// Reads the whole file (decompressed): its size, and the start of the line holding
/// `offset` (of the last line in the file when `offset` is past its end).
fn scan(file: &mut OpenFile, offset: u64) -> std::io::Result<(u64, u64)> {
    let mut buf = vec![0u8; 256 << 10];
    let mut pos = 0u64;
    let mut line_start = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        // Only newlines before `offset` count: the byte at offset-1 ending a line makes
        // `offset` a line start.
        let limit = offset.saturating_sub(pos).min(n as u64) as usize;
        if let Some(i) = buf[..limit].iter().rposition(|&c| c == b'\n') {
            line_start = pos + i as u64 + 1;
        }
        pos += n as u64;
    }
    Ok((pos, line_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_the_line_start_at_or_before_an_offset() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("x-json.log"), b"a\nbb\nccc").unwrap();
        let sib = &list_siblings(d.path(), "x-json.log").unwrap()[0];
        let gauge = metrics::Gauge::noop();
        for (offset, start) in [(0, 0), (2, 2), (3, 2), (5, 5), (7, 5), (8, 5), (100, 5)] {
            let mut f = OpenFile::open(d.path(), sib, &gauge).unwrap();
            assert_eq!(scan(&mut f, offset).unwrap(), (8, start), "offset {offset}");
        }
    }
}
