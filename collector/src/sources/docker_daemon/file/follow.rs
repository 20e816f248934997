//! The blocking half of the file mode: a [`Follower`] owns the open log file and the bytes
//! read from it but not shipped yet, and each [`Follower::step`] — one job on the shared
//! blocking pool — reads on, follows rotation and truncation, and returns the next lines with
//! the checkpoint that holds once they are delivered.
//!
//! Which file: the live path's file is held open ([`OpenFile`]), so a rename (logrotate's
//! `create`) does not lose its rest: at its end, after one more read for what the writer added
//! before the rename, the follower goes on with the sibling just newer than it (`.N` naming,
//! [`list_siblings`]), which is the new live file unless several rotations passed meanwhile.
//! A file shorter than what was read, or whose first line changed, was truncated in place
//! (`copytruncate`): the rest of the old content is read from its copy when a sibling with
//! the old first line has it, then the file from its start, with a warning.

use super::checkpoint::DaemonCheckpoint;
use crate::event::Event;
use crate::metrics as m;
use crate::sources::docker_daemon::line_event;
use crate::tail::file::OpenFile;
use crate::tail::siblings::{list_siblings, Sibling};
use logwharf_config::StartPosition;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How much one read takes.
const READ_BYTES: usize = 256 << 10;
/// A line longer than this is shipped in pieces of this size.
pub const MAX_LINE: usize = 1 << 20;
/// The most events one batch carries.
pub const MAX_BATCH: usize = 1024;

pub enum Step {
    /// Lines (maybe none: a new position only), and the checkpoint once they are delivered.
    Lines(Vec<Event>, DaemonCheckpoint),
    /// At the end of the live file: nothing new now.
    Idle,
    /// The log file cannot be opened (not there yet, or not readable).
    Missing(io::Error),
}

/// What to do at the end of the current file.
enum AtEnd {
    Idle,
    ReadOn,
    Ship(Step),
}

pub struct Follower {
    dir: PathBuf,
    live_name: String,
    /// The checkpoint to start from, until the first open.
    saved: Option<DaemonCheckpoint>,
    read_from: StartPosition,
    cur: Option<OpenFile>,
    /// Bytes read from `cur` and not shipped yet; `buf[0]` is at offset `buf_at` of it.
    buf: Vec<u8>,
    buf_at: u64,
    /// The live path names another file: `cur` gets one more read, then is left.
    rotated: bool,
    /// The last step ended at the end of the live file.
    idle: bool,
    max_line: usize,
    /// Files held open (`logwharf_files_watched{source}`).
    gauge: metrics::Gauge,
    /// Truncations seen (`logwharf_files_rewritten_total{source}`).
    rewritten: metrics::Counter,
}

impl Follower {
    pub fn new(
        source: &str,
        path: &Path,
        saved: Option<DaemonCheckpoint>,
        read_from: StartPosition,
        max_line: usize,
    ) -> anyhow::Result<Follower> {
        let live_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow::anyhow!("path {}: names no file", path.display()))?
            .to_string();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Follower {
            dir,
            live_name,
            saved,
            read_from,
            cur: None,
            buf: Vec::new(),
            buf_at: 0,
            rotated: false,
            idle: false,
            max_line: max_line.max(1),
            gauge: metrics::gauge!(m::FILES_WATCHED, "source" => source.to_string()),
            rewritten: metrics::counter!(m::FILES_REWRITTEN, "source" => source.to_string()),
        })
    }

    /// Reads on until there are lines to ship or nothing is left to read now.
    pub fn step(&mut self) -> io::Result<Step> {
        if self.cur.is_none() {
            let (mut f, offset, record) = match self.first_file() {
                Ok(found) => found,
                Err(e) => return Ok(Step::Missing(e)),
            };
            f.seek_to(offset)?;
            self.buf_at = f.read_pos;
            self.saved = None;
            let cp = DaemonCheckpoint::of(&f, self.buf_at);
            self.cur = Some(f);
            if record {
                return Ok(Step::Lines(Vec::new(), cp));
            }
        }
        if std::mem::take(&mut self.idle) {
            // Polling at the end: a truncation since must be seen before reading on at the
            // old offset, where the new content's middle would be.
            if let AtEnd::Ship(step) = self.at_end()? {
                return Ok(step);
            }
        }
        loop {
            if let Some(step) = self.take_lines() {
                return Ok(step);
            }
            if self.read_more()? > 0 {
                continue;
            }
            match self.at_end()? {
                AtEnd::Idle => {
                    self.idle = true;
                    return Ok(Step::Idle);
                }
                AtEnd::ReadOn => {}
                AtEnd::Ship(step) => return Ok(step),
            }
        }
    }

    fn cur(&mut self) -> &mut OpenFile {
        self.cur.as_mut().expect("opened by the first step")
    }

    /// Where to start: the checkpointed file at its offset — the live file, or a sibling when
    /// the log was rotated while logwharf was not running; a live file that is not the
    /// checkpointed one from its start (it is newer than the checkpoint); without a
    /// checkpoint, as `read_from` says. The flag: record that position at once (a start at
    /// the end, so that a restart before the first line does not skip what came meanwhile).
    fn first_file(&mut self) -> io::Result<(OpenFile, u64, bool)> {
        let live = self.open(&self.live_sibling());
        let Some(saved) = self.saved.clone() else {
            let f = live?;
            return Ok(match self.read_from {
                StartPosition::End => {
                    let end = f.size()?;
                    (f, end, true)
                }
                StartPosition::Beginning => (f, 0, false),
            });
        };
        if let Ok(f) = &live {
            if saved.names(f) && saved.offset <= f.size()? {
                return Ok((live?, saved.offset, false));
            }
        }
        if let Some(f) = self.newest_sibling(|f| saved.names(f))? {
            tracing::info!(path = %self.dir.join(&f.name).display(), offset = saved.offset, "the Docker daemon's log was rotated since the checkpoint; resuming in the rotated file");
            return Ok((f, saved.offset, false));
        }
        let f = live?;
        tracing::info!(path = %self.live_path().display(), "the checkpointed Docker daemon log file is gone; reading the log file from its start");
        Ok((f, 0, false))
    }

    /// The complete lines in `buf` (at most [`MAX_BATCH`]; a line over `max_line` in
    /// pieces) as the next step, with the checkpoint after them.
    fn take_lines(&mut self) -> Option<Step> {
        let now = crate::time::now_nanos();
        let mut events = Vec::new();
        let mut pos = 0;
        while events.len() < MAX_BATCH {
            let rest = &self.buf[pos..];
            match memchr::memchr(b'\n', rest) {
                Some(nl) if nl <= self.max_line => {
                    if nl > 0 {
                        events.push(line_event(&rest[..nl], now));
                    }
                    pos += nl + 1;
                }
                _ if rest.len() > self.max_line => {
                    events.push(line_event(&rest[..self.max_line], now));
                    pos += self.max_line;
                }
                _ => break,
            }
        }
        self.buf.drain(..pos);
        self.buf_at += pos as u64;
        if events.is_empty() {
            return None;
        }
        let at = self.buf_at;
        Some(Step::Lines(events, self.checkpoint_at(at)))
    }

    /// The checkpoint at `offset` of the current file, whose fingerprint is taken now if its
    /// first line was not complete when it was opened.
    fn checkpoint_at(&mut self, offset: u64) -> DaemonCheckpoint {
        let cur = self.cur();
        if cur.fp.is_none() {
            cur.fp = cur.current_fingerprint().ok().flatten();
        }
        DaemonCheckpoint::of(cur, offset)
    }

    /// Appends what the current file has after `buf`; 0 at its end.
    fn read_more(&mut self) -> io::Result<usize> {
        let old = self.buf.len();
        self.buf.resize(old + READ_BYTES, 0);
        let cur = self.cur.as_mut().expect("opened by the first step");
        let n = cur.read(&mut self.buf[old..]);
        self.buf.truncate(old + *n.as_ref().unwrap_or(&0));
        n
    }

    /// At the end of the current file: was it rotated away, or truncated?
    fn at_end(&mut self) -> io::Result<AtEnd> {
        let (dev, ino) = (self.cur().dev, self.cur().ino);
        match fs::metadata(self.live_path()) {
            Ok(md) if (md.dev(), md.ino()) == (dev, ino) => {
                self.rotated = false;
                if self.truncated()? {
                    return self.after_truncation();
                }
                Ok(AtEnd::Idle)
            }
            Ok(_) if !self.rotated => {
                // The writer may have added to it between our last read and the rename.
                self.rotated = true;
                Ok(AtEnd::ReadOn)
            }
            Ok(_) => match self.next_file()? {
                Some(next) => Ok(AtEnd::Ship(self.switch_to(next))),
                None => Ok(AtEnd::Idle),
            },
            // Between a rename and the new file's creation: stay with this one.
            Err(_) => Ok(AtEnd::Idle),
        }
    }

    /// The live file is shorter than what was read from it, or its first line changed.
    fn truncated(&mut self) -> io::Result<bool> {
        let cur = self.cur();
        if cur.size()? < cur.read_pos {
            return Ok(true);
        }
        Ok(match (cur.fp, cur.current_fingerprint()?) {
            (Some(old), Some(now)) => old != now,
            _ => false,
        })
    }

    /// Truncated in place: read the rest of the old content from its copy when a sibling
    /// has it (logrotate's `copytruncate` copies first), then the file from its start.
    fn after_truncation(&mut self) -> io::Result<AtEnd> {
        let (dev, ino, fp, at) = {
            let cur = self.cur();
            (cur.dev, cur.ino, cur.fp, cur.read_pos)
        };
        self.rewritten.increment(1);
        let copy = match fp {
            Some(fp) => {
                self.newest_sibling(|f| f.fp == Some(fp) && (f.dev, f.ino) != (dev, ino))?
            }
            None => None,
        };
        if let Some(mut copy) = copy {
            if copy.seek_to(at)? {
                tracing::warn!(path = %self.live_path().display(), copy = %copy.name, "the Docker daemon's log file was truncated (copytruncate); reading the rest of it from its copy, then the file from its start");
                // `buf` stays: the copy has the same bytes up to `at`.
                self.cur = Some(copy);
                self.rotated = true;
                return Ok(AtEnd::ReadOn);
            }
        }
        tracing::warn!(path = %self.live_path().display(), offset = at, "the Docker daemon's log file was truncated; reading it from its start");
        self.cur().restart_as_new(0);
        self.buf.clear();
        self.buf_at = 0;
        Ok(AtEnd::ReadOn)
    }

    /// The file to read after the current one, which the live path no longer names: the
    /// sibling just newer than it; when it is not among the siblings (deleted), the live file.
    /// `None` while that file is not there.
    fn next_file(&mut self) -> io::Result<Option<OpenFile>> {
        let listed = list_siblings(&self.dir, &self.live_name)?;
        let mut next: Option<&Sibling> = listed.last().filter(|s| s.rank == 0);
        for (i, s) in listed.iter().enumerate().rev() {
            if s.rank == 0 {
                continue;
            }
            let Ok(f) = self.open(s) else {
                continue; // gone since it was listed
            };
            if self.cur().same_file(&f) {
                next = listed.get(i + 1);
                break;
            }
        }
        match next {
            Some(s) => match self.open(s) {
                Ok(f) => Ok(Some(f)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    /// Leaves the finished current file for `next`, read from its start. Its last line may
    /// lack a newline: it is shipped as it is.
    fn switch_to(&mut self, next: OpenFile) -> Step {
        let mut events = Vec::new();
        if !self.buf.is_empty() {
            events.push(line_event(&self.buf, crate::time::now_nanos()));
        }
        tracing::debug!(from = %self.cur().name, to = %next.name, "the Docker daemon's log was rotated; reading the next file");
        self.buf.clear();
        self.buf_at = 0;
        self.rotated = false;
        let cp = DaemonCheckpoint::of(&next, 0);
        self.cur = Some(next);
        Step::Lines(events, cp)
    }

    /// The newest rotated sibling for which `want` holds.
    fn newest_sibling(&self, want: impl Fn(&OpenFile) -> bool) -> io::Result<Option<OpenFile>> {
        let listed = match list_siblings(&self.dir, &self.live_name) {
            Ok(l) => l,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(listed
            .iter()
            .rev()
            .filter(|s| s.rank > 0)
            .filter_map(|s| self.open(s).ok())
            .find(|f| want(f)))
    }

    fn open(&self, s: &Sibling) -> io::Result<OpenFile> {
        OpenFile::open(&self.dir, s, &self.gauge)
    }

    /// The live file as a listing entry (its size and inode are not used for opening).
    fn live_sibling(&self) -> Sibling {
        Sibling {
            name: self.live_name.clone(),
            rank: 0,
            gz: false,
            size: 0,
            ino: 0,
        }
    }

    fn live_path(&self) -> PathBuf {
        self.dir.join(&self.live_name)
    }
}
