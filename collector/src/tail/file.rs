//! [`OpenFile`]: a log file held open by a reader, and [`FileIdentity`], which file it is to
//! the reader's positions.
//!
//! Holding the descriptor is what makes rotation safe: Docker (or logrotate) may rename,
//! compress and delete a file while we are still behind in it, but the inode stays readable
//! through our descriptor until we have read it to its end and drop it. Reads go through
//! `pread`, so several readers can share one descriptor (the json-file hold does).

use super::fingerprint::{read_full_at, FileAt, Fingerprint, FINGERPRINT_MAX_BYTES};
use super::siblings::Sibling;
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

/// Opens a log file for reading without updating its access time where the kernel allows it
/// (the file's owner, or root): every read of a file Docker keeps writing would otherwise
/// dirty its inode (relatime updates an access time older than the last write).
fn open_noatime(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match File::options()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => File::open(path),
        r => r,
    }
}

static NOWAIT_UNSUPPORTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether [`OpenFile::read_cached`] can work here (false once the kernel said it cannot).
pub fn cached_reads() -> bool {
    !NOWAIT_UNSUPPORTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// `pread` that fails with `EAGAIN` rather than wait for the disk.
#[cfg(target_os = "linux")]
fn read_nowait(file: &File, dst: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let iov = libc::iovec {
        iov_base: dst.as_mut_ptr().cast(),
        iov_len: dst.len(),
    };
    // SAFETY: one iovec over `dst`, which outlives the call; the descriptor is open.
    let n = unsafe {
        libc::preadv2(
            file.as_raw_fd(),
            &iov,
            1,
            offset as libc::off_t,
            libc::RWF_NOWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(not(target_os = "linux"))]
fn read_nowait(_: &File, _: &mut [u8], _: u64) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

/// One file as a reader knows it. `seq` orders the files of one reader (older files have
/// smaller numbers), so positions in different files compare correctly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    pub seq: u64,
    /// File name when it was opened (informational: Docker renames files under us).
    pub name: String,
    pub dev: u64,
    pub ino: u64,
    pub fp: Fingerprint,
}

/// Keeps the "files watched" gauge equal to the number of files held open.
struct Watched(metrics::Gauge);

impl Watched {
    fn new(g: &metrics::Gauge) -> Watched {
        g.increment(1.0);
        Watched(g.clone())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A log file held open. Reads go through `pread` (plain) or a decompressor reading by
/// `pread` (gzip), so positions are ours, not the descriptor's.
pub struct OpenFile {
    /// File name when opened.
    pub name: String,
    /// Rank when opened (0: it was the live file).
    pub rank: u32,
    pub gz: bool,
    pub dev: u64,
    pub ino: u64,
    /// Orders the files of one reader; set when the reader adopts the file.
    pub seq: u64,
    /// Offset of the next byte to read (decompressed bytes for gzip).
    pub read_pos: u64,
    /// The most bytes this reader has seen the file hold (what a truncation in place cut
    /// is counted from).
    pub seen: u64,
    pub fp: Option<Fingerprint>,
    file: Arc<File>,
    decoder: Option<MultiGzDecoder<FileAt<Arc<File>>>>,
    /// The archive failed to decompress (warned once).
    damaged: bool,
    ident: Option<Arc<FileIdentity>>,
    _watched: Watched,
}

impl OpenFile {
    pub fn open(dir: &Path, s: &Sibling, files_gauge: &metrics::Gauge) -> io::Result<OpenFile> {
        let file = open_noatime(&dir.join(&s.name))?;
        let md = file.metadata()?;
        let fp = if s.gz {
            // A damaged archive has no fingerprint; reading it reports the damage.
            Fingerprint::of_gz(&file).unwrap_or(None)
        } else {
            Fingerprint::of_plain(&file, s.rank > 0)?
        };
        Ok(OpenFile {
            name: s.name.clone(),
            rank: s.rank,
            gz: s.gz,
            dev: md.dev(),
            ino: md.ino(),
            seq: 0,
            read_pos: 0,
            seen: 0,
            fp,
            file: Arc::new(file),
            decoder: None,
            damaged: false,
            ident: None,
            _watched: Watched::new(files_gauge),
        })
    }

    /// Another reader's view of a file held open elsewhere (the container's hold): a rotated
    /// file, read from its start with a position of its own.
    pub fn from_shared(
        name: &str,
        gz: bool,
        dev: u64,
        ino: u64,
        fp: Option<Fingerprint>,
        file: Arc<File>,
        files_gauge: &metrics::Gauge,
    ) -> OpenFile {
        OpenFile {
            name: name.to_string(),
            rank: 1,
            gz,
            dev,
            ino,
            seq: 0,
            read_pos: 0,
            seen: 0,
            fp,
            file,
            decoder: None,
            damaged: false,
            ident: None,
            _watched: Watched::new(files_gauge),
        }
    }

    /// The descriptor, to share with another reader of the same file.
    pub fn shared(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Reads at the current position into `dst`; 0 at the (current) end.
    pub fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        let n = if self.gz {
            let file = &self.file;
            let dec = self
                .decoder
                .get_or_insert_with(|| MultiGzDecoder::new(FileAt::new(file.clone(), 0)));
            loop {
                match dec.read(dst) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(n) => break n,
                    Err(e) => {
                        // A damaged or cut archive does not heal: take what was readable as
                        // the whole file rather than retrying forever.
                        if !self.damaged {
                            self.damaged = true;
                            tracing::warn!(file = %self.name, offset = self.read_pos, error = %e, "compressed log file is damaged; the rest of it cannot be read");
                        }
                        break 0;
                    }
                }
            }
        } else {
            loop {
                match self.file.read_at(dst, self.read_pos) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            }
        };
        self.read_pos += n as u64;
        self.seen = self.seen.max(self.read_pos);
        Ok(n)
    }

    /// As [`Self::read`], but only from the page cache, never waiting for the disk: a plain
    /// file's bytes that are cached (`preadv2` with `RWF_NOWAIT`), else
    /// `ErrorKind::WouldBlock` — also for compressed files, and where the kernel or the file
    /// system cannot tell (then [`cached_reads`] turns false for good). So that an async
    /// worker may read what Docker just wrote without the risk of stalling on a disk.
    pub fn read_cached(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        if self.gz || !cached_reads() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = loop {
            match read_nowait(&self.file, dst, self.read_pos) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS)
                    ) =>
                {
                    NOWAIT_UNSUPPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                r => break r?,
            }
        };
        self.read_pos += n as u64;
        self.seen = self.seen.max(self.read_pos);
        Ok(n)
    }

    /// Moves to `offset` (decompressing and discarding up to it for gzip). `false` when the
    /// file is shorter: the position is then at its end.
    pub fn seek_to(&mut self, offset: u64) -> io::Result<bool> {
        if !self.gz {
            self.read_pos = offset;
            return Ok(offset <= self.size()?);
        }
        self.rewind();
        let mut scratch = vec![0u8; 64 << 10];
        while self.read_pos < offset {
            let want = (offset - self.read_pos).min(scratch.len() as u64) as usize;
            if self.read(&mut scratch[..want])? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Back to the start.
    pub fn rewind(&mut self) {
        self.read_pos = 0;
        self.decoder = None;
    }

    /// Size on disk now (compressed size for gzip).
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// The byte at `offset` of a plain file (`None` past the end).
    pub fn byte_at(&self, offset: u64) -> io::Result<Option<u8>> {
        let mut b = [0u8; 1];
        Ok((read_full_at(&self.file, &mut b, offset)? == 1).then_some(b[0]))
    }

    /// Whether the file still starts with the first line `fp` was taken of (plain files;
    /// gzip does not change): reads that line's bytes only, not the whole window. (A new
    /// first line that merely extends the old one would pass; a first line carries its
    /// nanosecond timestamp, so it does not happen.)
    pub fn starts_with(&self, fp: Fingerprint) -> io::Result<bool> {
        if self.gz {
            return Ok(true);
        }
        let len = (fp.len as usize).min(FINGERPRINT_MAX_BYTES);
        // First lines are short: a small buffer, not a zeroed page, for every batch that looks.
        let mut small = [0u8; 512];
        let mut large = Vec::new();
        let head = match small.get_mut(..len) {
            Some(h) => h,
            None => {
                large.resize(len, 0);
                &mut large[..]
            }
        };
        let n = read_full_at(&self.file, head, 0)?;
        // Those bytes, taken as a whole first line, fingerprint as `fp` only if they are it.
        Ok(Fingerprint::of_head(&head[..n], true) == Some(fp))
    }

    /// The fingerprint as the file reads now (plain files only; gzip does not change).
    pub fn current_fingerprint(&self) -> io::Result<Option<Fingerprint>> {
        if self.gz {
            return Ok(self.fp);
        }
        Fingerprint::of_plain(&self.file, false)
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// This file's identity for positions, computing the fingerprint if still unknown.
    /// `head` is the start of the file when the caller has it (it must only be used once
    /// the first line is complete, which is the case once a line has been read).
    pub fn identity(&mut self, head: &[u8]) -> &Arc<FileIdentity> {
        if self.ident.is_none() {
            if self.fp.is_none() && !self.gz {
                self.fp = Fingerprint::of_plain(&self.file, false).unwrap_or(None);
            }
            let fp = self
                .fp
                .or_else(|| Fingerprint::of_head(head, true))
                // Cannot happen for a file with a line in it; an identity that matches
                // nothing later only costs a re-read.
                .unwrap_or(Fingerprint { crc: 0, len: 0 });
            self.fp = Some(fp);
            self.ident = Some(Arc::new(FileIdentity {
                seq: self.seq,
                name: self.name.clone(),
                dev: self.dev,
                ino: self.ino,
                fp,
            }));
        }
        self.ident.as_ref().expect("set above")
    }

    /// The identity if already established.
    pub fn ident(&self) -> Option<&Arc<FileIdentity>> {
        self.ident.as_ref()
    }

    /// The file was truncated or rewritten in place: from now on it is a new file to us.
    pub fn restart_as_new(&mut self, seq: u64) {
        self.rewind();
        self.seen = 0;
        self.fp = None;
        self.ident = None;
        self.seq = seq;
    }

    /// Is `listed` (freshly opened from the directory) the file we hold? Same inode for the
    /// same kind of file; for our plain file against a listed `.gz`, the same content.
    pub fn same_file(&mut self, listed: &OpenFile) -> bool {
        match (self.gz, listed.gz) {
            (false, false) | (true, true) => (self.dev, self.ino) == (listed.dev, listed.ino),
            (false, true) => {
                if self.fp.is_none() {
                    self.fp = Fingerprint::of_plain(&self.file, true).unwrap_or(None);
                }
                self.fp.is_some() && self.fp == listed.fp
            }
            (true, false) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tail::siblings::list_siblings;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::fs;
    use std::io::Write;

    #[test]
    fn a_file_starts_with_its_fingerprinted_first_line_short_or_long() {
        let d = tempfile::tempdir().unwrap();
        let g = metrics::Gauge::noop();
        for first_len in [40, 511, 512, 513, 3000] {
            let first = "x".repeat(first_len);
            fs::write(d.path().join("a-json.log"), format!("{first}\nnext\n")).unwrap();
            let listed = list_siblings(d.path(), "a-json.log").unwrap();
            let f = OpenFile::open(d.path(), &listed[0], &g).unwrap();
            let fp = f.fp.expect("a complete first line");
            assert!(f.starts_with(fp).unwrap(), "{first_len}");
            // Rewritten in place with another first line of the same length: not the same.
            let other = format!("{}y\nnext\n", "x".repeat(first_len - 1));
            fs::write(d.path().join("a-json.log"), other).unwrap();
            assert!(!f.starts_with(fp).unwrap(), "{first_len}");
            // Cut short: not the same either.
            fs::write(d.path().join("a-json.log"), &first[..first_len / 2]).unwrap();
            assert!(!f.starts_with(fp).unwrap(), "{first_len}");
        }
    }

    #[test]
    fn reads_plain_and_gzip_and_seeks_in_decompressed_bytes() {
        let d = tempfile::tempdir().unwrap();
        let content = b"line one\nline two\nline three\n";
        fs::write(d.path().join("a-json.log"), content).unwrap();
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(content).unwrap();
        fs::write(d.path().join("a-json.log.1.gz"), e.finish().unwrap()).unwrap();
        let g = metrics::Gauge::noop();
        let listed = list_siblings(d.path(), "a-json.log").unwrap();
        let mut gz = OpenFile::open(d.path(), &listed[0], &g).unwrap();
        let mut plain = OpenFile::open(d.path(), &listed[1], &g).unwrap();
        assert!(gz.gz && !plain.gz);
        assert_eq!(gz.fp, plain.fp);
        assert!(plain.same_file(&gz), "same content: the compressed copy");
        assert!(gz.seek_to(9).unwrap());
        let mut buf = vec![0u8; 100];
        let n = gz.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"line two\nline three\n");
        assert!(!gz.seek_to(1000).unwrap());
        // A cut archive reads as far as it can, then ends.
        let packed = fs::read(d.path().join("a-json.log.1.gz")).unwrap();
        fs::write(
            d.path().join("a-json.log.2.gz"),
            &packed[..packed.len() - 12],
        )
        .unwrap();
        let cut = &list_siblings(d.path(), "a-json.log").unwrap()[0];
        assert_eq!(cut.name, "a-json.log.2.gz");
        let mut cut = OpenFile::open(d.path(), cut, &g).unwrap();
        let mut all = Vec::new();
        loop {
            let n = cut.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        assert!(content.starts_with(&all));
        // From the page cache only: a plain file just written is there; a compressed one is
        // never read that way.
        if cached_reads() {
            plain.seek_to(9).unwrap();
            let n = plain.read_cached(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"line two\nline three\n");
        }
        gz.rewind();
        let e = gz.read_cached(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        plain.seek_to(18).unwrap();
        let n = plain.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"line three\n");
        assert_eq!(plain.byte_at(8).unwrap(), Some(b'\n'));
        assert_eq!(plain.byte_at(1000).unwrap(), None);
    }
}
