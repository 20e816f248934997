//! `logwharf check` for disk buffers: verifies every record of every segment (checksum, and
//! that it decodes) and the ack file, and names each problem with its file and offset. With
//! `repair`, a torn tail is cut, a segment with damaged records is rewritten without them
//! (valid records copied to a temporary file, flushed, renamed over it), and a damaged ack
//! file is removed (everything left is then sent again). Streams: one record in memory at a
//! time. Must not run while a daemon uses the buffer (the caller holds the data_dir lock).

use super::acks;
use super::codec::{self, Interner};
use super::segment::{self, Item, Scanner};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub offset: u64,
    pub what: String,
    /// `repair` fixed it.
    pub repaired: bool,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: offset {}: {}{}",
            self.file.display(),
            self.offset,
            self.what,
            if self.repaired { " (repaired)" } else { "" }
        )
    }
}

/// Every disk buffer under `<data_dir>/buffers/`.
pub fn check_all(data_dir: &Path, repair: bool) -> Vec<Problem> {
    let root = data_dir.join("buffers");
    let mut dirs: Vec<PathBuf> = match std::fs::read_dir(&root) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![problem(&root, 0, format!("cannot list: {e}"))],
    };
    dirs.sort();
    dirs.iter().flat_map(|d| check(d, repair)).collect()
}

/// One sink's disk buffer directory (`<data_dir>/buffers/<sink>`).
pub fn check(dir: &Path, repair: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    let ack = dir.join(acks::FILE);
    if let Err(e) = acks::load(dir) {
        let mut p = problem(
            &ack,
            0,
            format!("damaged ack file ({e}): every record left would be sent again"),
        );
        if repair {
            p.repaired = std::fs::remove_file(&ack).is_ok();
        }
        out.push(p);
    }
    let ids = match segment::list(dir) {
        Ok(ids) => ids,
        Err(e) => {
            out.push(problem(dir, 0, format!("cannot list: {e}")));
            return out;
        }
    };
    for id in ids {
        let path = segment::path(dir, id);
        match check_segment(&path, repair) {
            Ok(mut p) => out.append(&mut p),
            Err(e) => out.push(problem(&path, 0, format!("cannot read: {e}"))),
        }
    }
    out
}

fn problem(file: &Path, offset: u64, what: String) -> Problem {
    Problem {
        file: file.to_path_buf(),
        offset,
        what,
        repaired: false,
    }
}

fn check_segment(path: &Path, repair: bool) -> io::Result<Vec<Problem>> {
    let mut s = Scanner::open(path, 0, None)?;
    let mut found = Vec::new();
    let mut interner = Interner::default();
    let mut torn_at = None;
    let mut damaged = false;
    while let Some(item) = s.next_item()? {
        match item {
            Item::Record {
                offset, payload, ..
            } => {
                if let Err(e) = codec::decode(&payload, &mut interner) {
                    damaged = true;
                    found.push(problem(
                        path,
                        offset,
                        format!("record does not decode ({e})"),
                    ));
                }
            }
            Item::Corrupt { offset, len } => {
                damaged = true;
                found.push(problem(
                    path,
                    offset,
                    format!("damaged record: {len} bytes that are no whole record (checksum or framing), before the next valid one"),
                ));
            }
            Item::Torn { offset, len } => {
                torn_at = Some(offset);
                found.push(problem(
                    path,
                    offset,
                    format!("torn tail: {len} bytes after the last whole record"),
                ));
            }
        }
    }
    if repair && !found.is_empty() {
        if damaged {
            rewrite(path)?;
        } else if let Some(at) = torn_at {
            let f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.set_len(at.max(segment::FILE_HEADER.len() as u64))?;
            f.sync_all()?;
        }
        for p in &mut found {
            p.repaired = true;
        }
    }
    Ok(found)
}

/// Rewrites a segment with only its whole, decodable records.
fn rewrite(path: &Path) -> io::Result<()> {
    let tmp = path.with_extension("seg.tmp");
    let mut out = io::BufWriter::new(std::fs::File::create(&tmp)?);
    out.write_all(segment::FILE_HEADER)?;
    let mut s = Scanner::open(path, 0, None)?;
    let mut interner = Interner::default();
    while let Some(item) = s.next_item()? {
        if let Item::Record { payload, .. } = item {
            if codec::decode(&payload, &mut interner).is_ok() {
                let len = (payload.len() as u32).to_le_bytes();
                out.write_all(&super::frame::MAGIC)?;
                out.write_all(&len)?;
                out.write_all(&super::frame::checksum(len, &payload).to_le_bytes())?;
                out.write_all(&payload)?;
            }
        }
    }
    let f = out.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
