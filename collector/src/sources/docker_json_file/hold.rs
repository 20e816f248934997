//! Holds what Docker rotates away until every sink has it.
//!
//! Every sink reads a container's files with its own reader ([`super::reader`]), so a sink
//! that is down stops only its own reader — which then no longer looks at the directory, while
//! Docker goes on rotating and deleting. A container's [`Hold`] is the one thing that keeps
//! looking: it opens each log file as soon as it appears and keeps the descriptor until every
//! sink's checkpoint is past it. Linux keeps an unlinked file's data readable while it is
//! open, so a reader that comes back finds the files Docker deleted meanwhile here
//! ([`Hold::after`]) and reads them as if nothing happened.
//!
//! What this costs in disk is bounded by the source's `hold_max_bytes` ([`HoldBudget`]: bytes of
//! files Docker has deleted that are still held, over all containers of the source). Past it,
//! the container whose files push the total over releases its own oldest held file; a reader
//! that then needs it counts what it never read as lost (`reason = "rotated_away"`).

use super::listing::{open_siblings, Slot};
use super::position::{LaterFile, ResumePoint};
use crate::metrics as m;
use crate::tail::file::OpenFile;
use crate::tail::fingerprint::{read_full_at, Fingerprint};
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the hold lists the directory in full even when the live file did not change.
pub const FULL_LOOK: Duration = Duration::from_secs(1);

/// The source-wide budget of held deleted bytes, and its gauge `logwharf_held_bytes{source}`.
pub struct HoldBudget {
    max: u64,
    held: Mutex<u64>,
    gauge: metrics::Gauge,
}

impl HoldBudget {
    pub fn new(source: &str, max: u64) -> Arc<HoldBudget> {
        Arc::new(HoldBudget {
            max,
            held: Mutex::new(0),
            gauge: metrics::gauge!(m::HELD_BYTES, "source" => source.to_string()),
        })
    }

    /// Moves this source's total from `old` to `new` bytes held by one container; returns how
    /// far the total is over the budget.
    fn update(&self, old: u64, new: u64) -> u64 {
        let mut h = self.held.lock().unwrap_or_else(|p| p.into_inner());
        *h = (*h + new).saturating_sub(old);
        self.gauge.set(*h as f64);
        h.saturating_sub(self.max)
    }

    /// Bytes held now, over every container of the source.
    pub fn held(&self) -> u64 {
        *self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A file the hold knows, in rotation order.
struct Entry {
    name: String,
    gz: bool,
    dev: u64,
    ino: u64,
    fp: Option<Fingerprint>,
    /// The descriptor; `None` once released (over budget, or no sink needs it any more).
    file: Option<Arc<File>>,
    /// Its compressed copy (`.N.gz`, another inode, the same content), once seen.
    copy: Option<(u64, u64, Arc<File>)>,
    /// Content bytes (decompressed): what a reader that skips the file loses.
    size: u64,
    /// Bytes on disk only our descriptors keep (Docker deleted every copy of it).
    held: u64,
    released: bool,
}

impl Entry {
    /// Is the file with this inode the one we hold (or its copy)? Only while we hold it: a
    /// released file's inode number is free for Docker's next file.
    fn is(&self, dev: u64, ino: u64) -> bool {
        (self.file.is_some() && (self.dev, self.ino) == (dev, ino))
            || self.copy.as_ref().is_some_and(|c| (c.0, c.1) == (dev, ino))
    }

    /// Is the file a reader identifies by `(dev, ino, fp)` this entry (or its copy)?
    fn matches(&self, dev: u64, ino: u64, fp: Option<Fingerprint>) -> bool {
        self.is(dev, ino) || (fp.is_some() && fp == self.fp)
    }
}

/// What [`Hold::after`] hands a reader: a held file to read, or one released before the
/// reader got to it.
// A handful per rotation, each moved once: not worth boxing (as `listing::Slot`).
#[allow(clippy::large_enum_variant)]
pub enum Held {
    Open(OpenFile),
    Released { name: String, bytes: u64 },
}

/// What the hold saw of the file a checkpoint is in and of the files after it: written into
/// the checkpoint, so that a restart after Docker deleted them knows what was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    /// Content bytes when last measured.
    pub size: u64,
    /// The file had been rotated: `size` is final.
    pub complete: bool,
    pub later: Vec<LaterFile>,
}

/// One container's held files (see the module doc).
pub struct Hold {
    container: String,
    dir: PathBuf,
    live_name: String,
    budget: Arc<HoldBudget>,
    state: Mutex<State>,
}

struct State {
    entries: VecDeque<Entry>,
    /// Per sink: the file its checkpoint is in (`None`: no checkpoint yet, needs everything).
    delivered: Vec<Option<(u64, u64, Option<Fingerprint>)>>,
    /// This container's share of the budget.
    held: u64,
    /// When the directory was last listed in full.
    listed_at: Option<Instant>,
}

impl State {
    /// Changes whenever a file comes or goes, is released, or changes size.
    fn signature(&self) -> (usize, u64, usize) {
        let sizes = self.entries.iter().map(|e| e.size).sum();
        let released = self.entries.iter().filter(|e| e.released).count();
        (self.entries.len(), sizes, released)
    }
}

impl Hold {
    pub fn new(
        container: &str,
        dir: PathBuf,
        live_name: &str,
        sinks: usize,
        budget: Arc<HoldBudget>,
    ) -> Arc<Hold> {
        Arc::new(Hold {
            container: container.to_string(),
            dir,
            live_name: live_name.to_string(),
            budget,
            state: Mutex::new(State {
                entries: VecDeque::new(),
                delivered: vec![None; sinks],
                held: 0,
                listed_at: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks at the directory (blocking): opens files that appeared, notes which ones Docker
    /// deleted, lets go of what every sink has, and keeps to the budget. `true` when what it
    /// knows of the files changed (a file came or went, a size changed).
    pub fn refresh(&self) -> io::Result<bool> {
        self.refresh_listing_every(FULL_LOOK)
    }

    /// [`Hold::refresh`], listing the directory when the live file changed, when told to
    /// ([`Hold::look_again`]), and otherwise at most `every` (where inotify watches, names
    /// changes wake the hold and say so: `Duration::MAX`).
    pub fn refresh_listing_every(&self, every: Duration) -> io::Result<bool> {
        // Docker deletes files only when it rotates, which replaces the live file; between
        // rotations a stat of the live path is enough. Unwatched, a full look now and then
        // catches compression (`.1` → `.1.gz`, then `.1` deleted).
        let before = {
            let mut g = self.lock();
            let live = std::fs::metadata(self.dir.join(&self.live_name)).ok();
            let before = g.signature();
            let same = match (&live, g.entries.back_mut()) {
                (Some(md), Some(e)) if !e.gz && (md.dev(), md.ino()) == (e.dev, e.ino) => {
                    e.size = md.len(); // the live file's size as of now, for the checkpoints
                    if e.fp.is_none() && e.size > 0 {
                        // It was empty at the last full look: without its fingerprint the
                        // checkpoints leave it out, and a restart after Docker deleted the
                        // files before it could no longer say the loss count is exact.
                        if let Some(f) = &e.file {
                            e.fp = Fingerprint::of_plain(f, false)?;
                        }
                    }
                    true
                }
                _ => false,
            };
            if same && g.listed_at.is_some_and(|t| t.elapsed() < every) {
                self.drop_delivered(&mut g);
                return Ok(g.signature() != before);
            }
            g.listed_at = Some(Instant::now());
            before
        };
        let listing = open_siblings(
            &self.dir,
            &self.live_name,
            &metrics::Gauge::noop(),
            &mut |_| false,
            false,
        )?;
        let mut listed = Vec::new();
        let mut g = self.lock();
        let knew_some = !g.entries.is_empty();
        let mut known = false;
        for slot in listing.slots {
            let Slot::Open(f) = slot else { continue };
            listed.push((f.dev, f.ino));
            if g.entries
                .iter()
                .any(|e| e.is(f.dev, f.ino) && (e.gz == f.gz || e.copy.is_some()))
            {
                known = true;
                continue;
            }
            if f.gz {
                if let Some(e) = g
                    .entries
                    .iter_mut()
                    .find(|e| !e.gz && e.copy.is_none() && e.fp.is_some() && e.fp == f.fp)
                {
                    e.copy = Some((f.dev, f.ino, f.shared()));
                    known = true;
                    continue;
                }
            }
            let size = if f.gz {
                gz_content_size(f.file()).unwrap_or(0)
            } else {
                0
            };
            g.entries.push_back(Entry {
                name: f.name.clone(),
                gz: f.gz,
                dev: f.dev,
                ino: f.ino,
                fp: f.fp,
                file: Some(f.shared()),
                copy: None,
                size,
                held: 0,
                released: false,
            });
        }
        if knew_some && !known && !listed.is_empty() {
            // Docker rotated twice between two looks: a file came and went unseen.
            tracing::warn!(
                container = %self.container,
                "a rotated log file was created and deleted between two looks of logwharf; its lines are lost and their number unknown (Docker rotates faster than logwharf looks: raise max-size/max-file)"
            );
        }
        for e in g.entries.iter_mut() {
            measure(e, &listed)?;
        }
        self.drop_delivered(&mut g);
        let now: u64 = g.entries.iter().map(|e| e.held).sum();
        let mut over = self.budget.update(g.held, now);
        g.held = now;
        while over > 0 {
            let Some(e) = g.entries.iter_mut().find(|e| e.held > 0) else {
                break;
            };
            let freed = e.held;
            tracing::info!(
                container = %self.container,
                file = %e.name,
                bytes = freed,
                "hold_max_bytes reached: releasing the oldest rotated file Docker deleted; a sink that has not read it yet counts what it misses as lost"
            );
            e.file = None;
            e.copy = None;
            e.held = 0;
            e.released = true;
            over = self.budget.update(freed, 0);
            g.held -= freed;
        }
        Ok(g.signature() != before)
    }

    /// For `/status`: the newest file's inode and size as last seen.
    /// The next [`Hold::refresh`] lists the directory (names changed: inotify said so).
    pub fn look_again(&self) {
        self.lock().listed_at = None;
    }

    pub fn live(&self) -> Option<(u64, u64)> {
        self.lock().entries.back().map(|e| (e.ino, e.size))
    }

    /// For `/status`: how many files are newer than the one a reader identifies by (`dev`,
    /// `ino`, `fp`) — Docker deletes it at the `max-file - n`-th rotation from now.
    pub fn newer_than(&self, dev: u64, ino: u64, fp: Option<Fingerprint>) -> Option<usize> {
        let g = self.lock();
        let at = g.entries.iter().position(|e| e.matches(dev, ino, fp))?;
        Some(g.entries.len() - 1 - at)
    }

    /// What the hold saw of the file a reader identifies by (`dev`, `ino`, `fp`) and of every
    /// file after it; `None` when it does not know the file.
    pub fn facts(&self, dev: u64, ino: u64, fp: Option<Fingerprint>) -> Option<FileFacts> {
        let g = self.lock();
        let at = g.entries.iter().position(|e| e.matches(dev, ino, fp))?;
        let last = g.entries.len() - 1;
        let later = g
            .entries
            .iter()
            .enumerate()
            .skip(at + 1)
            .filter_map(|(i, e)| {
                // A file without a first line yet holds no line to lose.
                e.fp.map(|fp| LaterFile {
                    fp: fp.crc,
                    fp_len: fp.len,
                    size: e.size,
                    complete: i < last,
                })
            })
            .collect();
        Some(FileFacts {
            size: g.entries[at].size,
            complete: at < last,
            later,
        })
    }

    /// Sink number `sink` has delivered up to `r`: files before it are no longer needed by it.
    /// When that moves it into another file, what every sink is past is let go at once: the
    /// hold's own loop may be backing off on a quiet container, and the disk (and
    /// `logwharf_held_bytes`) should not wait for it.
    pub fn delivered(&self, sink: usize, r: &ResumePoint) {
        let mut g = self.lock();
        let now = Some((r.file.dev, r.file.ino, Some(r.file.fp)));
        let moved = match g.delivered.get_mut(sink) {
            Some(d) if *d != now => {
                *d = now;
                true
            }
            _ => false,
        };
        if moved {
            self.drop_delivered(&mut g);
        }
    }

    /// Forgets entries at the front that every sink's checkpoint is past.
    fn drop_delivered(&self, g: &mut State) {
        let mut done = usize::MAX;
        for d in &g.delivered {
            let at =
                d.and_then(|(dev, ino, fp)| g.entries.iter().position(|e| e.matches(dev, ino, fp)));
            done = done.min(at.unwrap_or(0));
        }
        let done = if g.delivered.is_empty() { 0 } else { done };
        for _ in 0..done {
            if let Some(e) = g.entries.pop_front() {
                g.held -= e.held;
                self.budget.update(e.held, 0);
            }
        }
    }

    /// Whether the hold has (or had) the file with inode `ino` (a file a reader's listing saw
    /// vanish is then not lost: [`Hold::after`] hands it over).
    pub fn knows(&self, ino: u64) -> bool {
        self.lock().entries.iter().any(|e| {
            (e.file.is_some() && e.ino == ino) || e.copy.as_ref().is_some_and(|c| c.1 == ino)
        })
    }

    /// The files after a reader's newest one (`dev`, `ino`, `fp`) that the directory no longer
    /// shows (`listed`: the inodes the reader's listing found), oldest first. `None` when the
    /// hold does not know the reader's file.
    pub fn after(
        &self,
        dev: u64,
        ino: u64,
        fp: Option<Fingerprint>,
        listed: &[(u64, u64)],
        files_gauge: &metrics::Gauge,
    ) -> Option<Vec<Held>> {
        self.files_from(dev, ino, fp, listed, files_gauge, 1)
    }

    /// As [`Hold::after`], the reader's file included (first): a reader that starts in the
    /// middle of a run from another reader's position (a sink detached from the container's
    /// shared reader) finds it here when Docker deleted it meanwhile.
    pub fn at_and_after(
        &self,
        dev: u64,
        ino: u64,
        fp: Option<Fingerprint>,
        listed: &[(u64, u64)],
        files_gauge: &metrics::Gauge,
    ) -> Option<Vec<Held>> {
        self.files_from(dev, ino, fp, listed, files_gauge, 0)
    }

    fn files_from(
        &self,
        dev: u64,
        ino: u64,
        fp: Option<Fingerprint>,
        listed: &[(u64, u64)],
        files_gauge: &metrics::Gauge,
        skip: usize,
    ) -> Option<Vec<Held>> {
        let g = self.lock();
        let at = g.entries.iter().position(|e| e.matches(dev, ino, fp))?;
        let mut out = Vec::new();
        for e in g.entries.iter().skip(at + skip) {
            if listed.iter().any(|&(d, i)| e.is(d, i)) {
                continue;
            }
            let open = match (&e.file, &e.copy) {
                (Some(f), _) => Some((e.gz, e.dev, e.ino, f.clone())),
                (None, Some((d, i, f))) => Some((true, *d, *i, f.clone())),
                (None, None) => None,
            };
            out.push(match open {
                Some((gz, d, i, f)) => Held::Open(OpenFile::from_shared(
                    &e.name,
                    gz,
                    d,
                    i,
                    e.fp,
                    f,
                    files_gauge,
                )),
                None => Held::Released {
                    name: e.name.clone(),
                    bytes: e.size,
                },
            });
        }
        Some(out)
    }

    /// This container's held bytes (Docker deleted them; only we keep them).
    pub fn held_bytes(&self) -> u64 {
        self.lock().held
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let held = self.state.get_mut().map(|s| s.held).unwrap_or(0);
        self.budget.update(held, 0);
    }
}

/// Updates an entry's content size and what only we hold of it, from its descriptors.
fn measure(e: &mut Entry, listed: &[(u64, u64)]) -> io::Result<()> {
    if e.fp.is_none() && !e.gz {
        if let Some(f) = &e.file {
            e.fp = Fingerprint::of_plain(f, false)?;
        }
    }
    let mut held = 0;
    if let Some(f) = &e.file {
        let md = f.metadata()?;
        if !e.gz {
            e.size = md.len();
        }
        // Deleted, and its compressed copy (if any) is not in the directory either.
        let copy_listed = e
            .copy
            .as_ref()
            .is_some_and(|c| listed.contains(&(c.0, c.1)));
        if md.nlink() == 0 {
            if copy_listed {
                e.file = None; // the directory still has the content, compressed
            } else {
                held += md.len();
            }
        }
    }
    if let Some((_, _, f)) = &e.copy {
        let md = f.metadata()?;
        if md.nlink() == 0 && e.file.is_none() {
            held += md.len();
        }
    }
    e.held = held;
    Ok(())
}

/// The decompressed size of a single-member gzip file (its trailer's ISIZE; Docker writes one
/// member, and a log file under 4 GiB).
fn gz_content_size(f: &File) -> io::Result<u64> {
    let len = f.metadata()?.len();
    if len < 4 {
        return Ok(0);
    }
    let mut b = [0u8; 4];
    read_full_at(f, &mut b, len - 4)?;
    Ok(u32::from_le_bytes(b) as u64)
}

#[cfg(test)]
mod tests;
