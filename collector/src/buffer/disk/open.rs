//! Opening a buffer directory after a restart or a crash: every segment is scanned once,
//! front to back, verifying each record (one record in memory at a time). A torn tail is cut
//! back to the last whole record; damage in the middle is left in place for the reader to skip
//! (and count) when it gets there; segments whose records were all delivered are deleted. The
//! writer then starts a new segment: existing ones are only read from now on.

use super::acks;
use super::segment::{self, Item, Scanner};
use std::io;
use std::path::Path;

/// A segment as the writer and the reader know it.
#[derive(Debug, Clone)]
pub struct SegMeta {
    pub id: u64,
    /// One past the last sequence number in it (its first, while empty).
    pub end_seq: u64,
    /// Its size on disk.
    pub bytes: u64,
}

/// What was found.
#[derive(Debug, Default)]
pub struct Opened {
    pub segments: Vec<SegMeta>,
    pub next_seq: u64,
    pub acked: u64,
    /// Events in records not yet delivered.
    pub events: u64,
    pub bytes: u64,
    /// Torn tails cut: (file, offset, bytes).
    pub torn: Vec<(String, u64, u64)>,
    /// Damaged regions left for the reader to skip: (file, offset, bytes).
    pub corrupt: Vec<(String, u64, u64)>,
    /// The ack file was damaged (everything left is sent again).
    pub bad_ack_file: Option<String>,
}

/// Creates `dir` (0700) if needed and scans what it holds.
pub fn open(dir: &Path) -> io::Result<Opened> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let mut o = Opened::default();
    let stored = match acks::load(dir) {
        Ok(a) => a,
        Err(e) => {
            o.bad_ack_file = Some(e.to_string());
            None
        }
    };
    let mut max_seq_end = 0u64;
    let mut first_seq = None;
    for id in segment::list(dir)? {
        let path = segment::path(dir, id);
        let name = segment::file_name(id);
        let mut s = Scanner::open(&path, 0, None)?;
        let (mut end_seq, mut records) = (None, Vec::new());
        let mut cut = None;
        while let Some(item) = s.next_item()? {
            match item {
                Item::Record { seq, events, .. } => {
                    first_seq.get_or_insert(seq);
                    end_seq = Some(seq + 1);
                    records.push((seq, events));
                }
                Item::Corrupt { offset, len } => o.corrupt.push((name.clone(), offset, len)),
                Item::Torn { offset, len } => {
                    o.torn.push((name.clone(), offset, len));
                    cut = Some(offset);
                }
            }
        }
        if let Some(at) = cut {
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(at.max(segment::FILE_HEADER.len() as u64))?;
            f.sync_all()?;
        }
        let Some(end_seq) = end_seq else {
            // Nothing whole in it (a crash right after it was created).
            std::fs::remove_file(&path)?;
            continue;
        };
        max_seq_end = max_seq_end.max(end_seq);
        o.segments.push(SegMeta {
            id,
            end_seq,
            bytes: std::fs::metadata(&path)?.len(),
        });
        // Counted against the stored position below, once it is known.
        o.events += records
            .iter()
            .filter(|(seq, _)| stored.is_none_or(|a| *seq >= a))
            .map(|(_, n)| *n as u64)
            .sum::<u64>();
    }
    // Without a (valid) ack file, everything present is undelivered.
    o.acked = stored.unwrap_or(first_seq.unwrap_or(0));
    o.next_seq = max_seq_end.max(o.acked);
    let acked = o.acked;
    let mut kept = Vec::new();
    for s in std::mem::take(&mut o.segments) {
        if s.end_seq <= acked {
            std::fs::remove_file(segment::path(dir, s.id))?;
        } else {
            kept.push(s);
        }
    }
    o.segments = kept;
    o.bytes = o.segments.iter().map(|s| s.bytes).sum();
    Ok(o)
}
