//! The file sink's blocking side: the set of open log files ([`OpenFiles`], capped and closed
//! when idle), and writing one encoded group of lines ([`Pending`]) into its file with Docker's
//! rotation check before every line — in as few `write` calls as rotation allows (one, unless
//! the group crosses `max_size`).

use super::rotation::RotationPolicy;
use super::rotation::{create_log_file, sibling, spawn_compress, write_counted, Compression};
use logwharf_collector::metrics as m;
use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The encoded lines of one batch bound for one file, and how far they are written.
pub struct Pending {
    pub path: Arc<Path>,
    pub buf: Vec<u8>,
    /// Where each line ends in `buf` (exclusive), and its event time.
    pub lines: Vec<LineEnd>,
    /// Bytes of `buf` already in the file (a retry continues from here).
    pub written: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct LineEnd {
    pub end: usize,
    pub time_ns: i64,
}

impl Pending {
    pub fn new(path: Arc<Path>, buf: Vec<u8>) -> Pending {
        Pending {
            path,
            buf,
            lines: Vec::new(),
            written: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.written >= self.buf.len()
    }

    /// End of the next write starting at `written` when `room` bytes fit before the file
    /// reaches `max_size`: Docker checks the size before each line, so every line that starts
    /// below the limit is written, the one that crosses it included.
    pub(crate) fn chunk_end(&self, room: Option<u64>) -> usize {
        let Some(room) = room else {
            return self.buf.len();
        };
        let target = self
            .written
            .saturating_add(room.min(usize::MAX as u64) as usize);
        let i = self.lines.partition_point(|l| l.end < target);
        self.lines.get(i).map_or(self.buf.len(), |l| l.end)
    }

    /// Time of the last line that ends at or before `end`.
    fn time_before(&self, end: usize) -> Option<i64> {
        let i = self.lines.partition_point(|l| l.end <= end);
        i.checked_sub(1).map(|i| self.lines[i].time_ns)
    }
}

/// What went wrong with which file; the `kind` labels `logwharf_sink_errors_total`.
#[derive(Debug)]
pub struct FileError {
    pub kind: &'static str,
    pub path: Arc<Path>,
    pub source: io::Error,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            "open" => "cannot open",
            "rotate" => "cannot rotate",
            _ => "cannot write to",
        };
        write!(f, "{what} {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for FileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// One open log file.
struct LogFile {
    file: File,
    /// Bytes in the file: its size when opened (a restart continues), plus what we wrote.
    size: u64,
    last_used: Instant,
    /// Time of the newest line written since it was opened fresh (for the gzip header).
    last_time_ns: Option<i64>,
}

impl LogFile {
    fn open(path: &Path) -> io::Result<LogFile> {
        let file = match create_log_file(path, false) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs::create_dir_all(dir)?;
                }
                create_log_file(path, false)?
            }
            r => r?,
        };
        let mut size = file.metadata()?.len();
        if size > 0 && !ends_with_newline(path, size)? {
            // A torn last line: a crash while writing it (the event was not acknowledged, so
            // it comes again). The next line starts on a line of its own instead of
            // finishing that one, so one line is damaged, not two.
            tracing::warn!(path = %path.display(), "the file ends in an incomplete line (logwharf stopped while writing it?); appending from a new line");
            use std::io::Write;
            (&file).write_all(b"\n")?;
            size += 1;
        }
        Ok(LogFile {
            file,
            size,
            last_used: Instant::now(),
            last_time_ns: None,
        })
    }
}

/// The last byte of the `size` bytes of `path` is a newline.
fn ends_with_newline(path: &Path, size: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut last = [0u8];
    File::open(path)?.read_exact_at(&mut last, size - 1)?;
    Ok(last[0] == b'\n')
}

/// The log files the sink holds open, keyed by rendered path, with the rotation policy and
/// the compressions still running. Owned by the sink; moved onto the blocking pool per batch.
pub struct OpenFiles {
    sink: Arc<str>,
    policy: RotationPolicy,
    max_open: usize,
    open: HashMap<Arc<Path>, LogFile>,
    compressions: HashMap<Arc<Path>, Compression>,
    runtime: tokio::runtime::Handle,
}

impl OpenFiles {
    pub fn new(
        sink: Arc<str>,
        policy: RotationPolicy,
        max_open: usize,
        runtime: tokio::runtime::Handle,
    ) -> OpenFiles {
        OpenFiles {
            sink,
            policy,
            max_open: max_open.max(1),
            open: HashMap::new(),
            compressions: HashMap::new(),
            runtime,
        }
    }

    /// Files open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Writes what is left of `p`, rotating before any line that would start at or beyond
    /// `max_size`. On error the file is closed (the retry reopens it) and `p.written` tells
    /// how far it got.
    pub fn write(&mut self, p: &mut Pending) -> Result<(), FileError> {
        if p.is_done() {
            return Ok(());
        }
        let mut lf = match self.open.remove(&p.path) {
            Some(lf) => lf,
            None => {
                self.make_room();
                let lf = LogFile::open(&p.path).map_err(|source| FileError {
                    kind: "open",
                    path: p.path.clone(),
                    source,
                })?;
                self.resume_compression(&p.path);
                lf
            }
        };
        while !p.is_done() {
            if self.policy.max_size.is_some_and(|max| lf.size >= max) {
                lf = self.rotate(lf, &p.path).map_err(|source| FileError {
                    kind: "rotate",
                    path: p.path.clone(),
                    source,
                })?;
            }
            let room = self.policy.max_size.map(|max| max - lf.size);
            let end = p.chunk_end(room);
            let (n, r) = write_counted(&mut lf.file, &p.buf[p.written..end]);
            p.written += n;
            lf.size += n as u64;
            if let Some(t) = p.time_before(p.written) {
                lf.last_time_ns = Some(t);
            }
            r.map_err(|source| FileError {
                kind: "write",
                path: p.path.clone(),
                source,
            })?;
        }
        lf.last_used = Instant::now();
        self.open.insert(p.path.clone(), lf);
        Ok(())
    }

    /// A `<path>.1` left uncompressed (the previous run stopped while gzipping it) is gzipped
    /// now, before a rotation could overwrite it.
    fn resume_compression(&mut self, path: &Arc<Path>) {
        if self.policy.compresses()
            && !self.compressions.contains_key(path)
            && sibling(path, 1, "").exists()
        {
            self.start_compression(path, None);
        }
    }

    fn start_compression(&mut self, path: &Arc<Path>, last_time_ns: Option<i64>) {
        let sink = self.sink.clone();
        let c = spawn_compress(&self.runtime, path, last_time_ns, move |e| {
            metrics::counter!(m::SINK_ERRORS, "sink" => sink.to_string(), "kind" => "compress")
                .increment(1);
            tracing::error!(sink = %sink, error = %e, "cannot compress a rotated file; it stays uncompressed");
        });
        self.compressions.insert(path.clone(), c);
    }

    /// Docker's `checkCapacityAndRotate`: close, shift the siblings (or, with `max_file < 2`,
    /// nothing), reopen `path` truncated, start gzipping `.1`. Waits first for the previous
    /// compression of the same path, so its renames never race it.
    fn rotate(&mut self, lf: LogFile, path: &Arc<Path>) -> io::Result<LogFile> {
        if let Some(c) = self.compressions.remove(path) {
            let _ = c.wait(); // failures were counted and logged by the task
        }
        let last_time_ns = lf.last_time_ns;
        drop(lf);
        self.policy.shift_siblings(path)?;
        let file = create_log_file(path, true)?;
        if self.policy.compresses() {
            self.start_compression(path, last_time_ns);
        }
        tracing::debug!(sink = %self.sink, path = %path.display(), rotated_to = %sibling(path, 1, "").display(), "rotated");
        Ok(LogFile {
            file,
            size: 0,
            last_used: Instant::now(),
            last_time_ns: None,
        })
    }

    /// Closes the least recently written file when the cap is reached.
    fn make_room(&mut self) {
        while self.open.len() >= self.max_open {
            let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, f)| f.last_used)
                .map(|(p, _)| p.clone())
            else {
                return;
            };
            self.open.remove(&oldest);
        }
    }

    /// Closes files not written for `idle`, and forgets finished compressions.
    pub fn close_idle(&mut self, idle: Duration) {
        let now = Instant::now();
        self.open
            .retain(|_, f| now.saturating_duration_since(f.last_used) < idle);
        self.compressions.retain(|_, c| !c.is_finished());
    }

    /// Closes every file and waits for the compressions still running (at shutdown).
    pub fn finish(&mut self) {
        self.open.clear();
        for (_, c) in self.compressions.drain() {
            let _ = c.wait();
        }
    }
}
