//! Looking at a container's log files as of one moment, although Docker may be rotating,
//! compressing and deleting them while we look: the consistent listing the tailer starts
//! from and follows rotation with, and which wanted files vanished before they could be
//! opened.

use super::position::SavedPosition;
use crate::tail::file::OpenFile;
use crate::tail::siblings::{list_siblings, Sibling};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// An entry of a container's directory at one look: held open, or vanished between the
/// listing and the open. (A handful per listing, each moved once: not worth boxing.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Slot {
    Open(OpenFile),
    Vanished(Sibling),
}

/// A container's files at one look, and the wanted files that vanished before they could be
/// opened (lost).
pub(super) struct Listing {
    pub slots: Vec<Slot>,
    pub lost: Vec<Sibling>,
}

/// Opens every log file of a container, oldest first, as of one moment. Docker renames every
/// file on rotation, and a rotation between two of our opens would hand us a set with a hole
/// or a file twice. Every rotation replaces the live file, so the live path naming the same
/// file before the listing and after the last open proves there was none — provided that
/// file is held open meanwhile: Docker frees inodes constantly (unlinking `.1` once
/// compressed) and a new live file often gets a just-freed inode number. A file that vanished
/// between the listing and its open (deleted, renamed, or `.N` just replaced by `.N.gz`) also
/// makes it list again.
///
/// Files that vanished are lost if they were wanted — listed after the `anchor` (the newest
/// file held, or the checkpointed one), or anywhere when the anchor is not listed and
/// `want_all` — and the final listing does not explain them: renamed (its inode is still
/// there) or compressed (the log is in compress mode, where Docker deletes only `.gz` files).
pub(super) fn open_siblings(
    dir: &Path,
    live_name: &str,
    files_gauge: &metrics::Gauge,
    anchor: &mut dyn FnMut(&OpenFile) -> bool,
    want_all: bool,
) -> io::Result<Listing> {
    let live = dir.join(live_name);
    let live_ino = || fs::metadata(&live).ok().map(|md| (md.dev(), md.ino()));
    let mut vanished_wanted: Vec<Sibling> = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        // Held until the end of this attempt, so its inode number cannot be reused.
        let pinned = fs::File::open(&live).ok();
        let before = match &pinned {
            Some(f) => Some(f.metadata().map(|md| (md.dev(), md.ino()))?),
            None => None,
        };
        let listed = match list_siblings(dir, live_name) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Listing {
                    slots: Vec::new(),
                    lost: Vec::new(),
                })
            }
            Err(e) => return Err(e),
        };
        let mut slots = Vec::with_capacity(listed.len());
        let mut live_opened = None;
        let mut vanished = false;
        for s in listed {
            match OpenFile::open(dir, &s, files_gauge) {
                Ok(f) => {
                    if s.rank == 0 {
                        live_opened = Some((f.dev, f.ino));
                    }
                    slots.push(Slot::Open(f));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    vanished = true;
                    slots.push(Slot::Vanished(s));
                }
                Err(e) => return Err(e),
            }
        }
        let after = live_ino();
        drop(pinned);
        if vanished {
            let at = slots
                .iter()
                .position(|s| matches!(s, Slot::Open(f) if anchor(f)));
            for (i, s) in slots.iter().enumerate() {
                if let Slot::Vanished(v) = s {
                    let wanted = at.map_or(want_all, |a| i > a);
                    if wanted && v.rank > 0 && !vanished_wanted.contains(v) {
                        vanished_wanted.push(v.clone());
                    }
                }
            }
        }
        let unchanged = before == after && live_opened == after;
        if (unchanged && !vanished) || attempt >= 20 {
            let present: Vec<(u64, bool)> = slots
                .iter()
                .filter_map(|s| match s {
                    Slot::Open(f) => Some((f.ino, f.gz)),
                    Slot::Vanished(_) => None,
                })
                .collect();
            let lost = unexplained(vanished_wanted, &present);
            return Ok(Listing { slots, lost });
        }
    }
}

/// Of the wanted files that vanished while listed, those the final listing (`present`: inode
/// and gzip-ness of each file) does not explain: not renamed (inode still there), not
/// compressed (a plain file in a log that has `.gz` siblings is compressed, not deleted:
/// Docker deletes only the oldest file, which is a `.gz` in compress mode).
pub(super) fn unexplained(vanished: Vec<Sibling>, present: &[(u64, bool)]) -> Vec<Sibling> {
    let compress_mode = present.iter().any(|&(_, gz)| gz);
    vanished
        .into_iter()
        .filter(|v| {
            let renamed = present.iter().any(|&(ino, _)| ino == v.ino);
            let compressed = !v.gz && compress_mode;
            !renamed && !compressed
        })
        .collect()
}

/// The `(dev, ino)` of the files a listing opened (what the hold's lookups skip: the
/// directory still shows them).
pub(super) fn listed_inodes(slots: &[Slot]) -> Vec<(u64, u64)> {
    slots
        .iter()
        .filter_map(|s| match s {
            Slot::Open(f) => Some((f.dev, f.ino)),
            Slot::Vanished(_) => None,
        })
        .collect()
}

/// The checkpointed file among those listed: the same first line, the same inode preferred
/// (a compressed copy has another inode; a copy made by copytruncate too).
pub(super) fn find_saved(slots: &[Slot], saved: &SavedPosition) -> Option<usize> {
    let fp = saved.fingerprint();
    let mut best = None;
    for (i, s) in slots.iter().enumerate() {
        if let Slot::Open(f) = s {
            if f.fp == Some(fp) {
                if (f.dev, f.ino) == (saved.dev, saved.ino) {
                    return Some(i);
                }
                best = Some(i);
            }
        }
    }
    best
}
