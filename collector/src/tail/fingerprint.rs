//! Content fingerprints: which file is this, across renames, compression and inode reuse?
//!
//! A log's first line carries a timestamp (a json-file line's nanosecond `time`, dockerd's
//! `time="…"`), so the CRC32 of that line is as good as a name for the file's content.
//! Rotation keeps the inode on rename (`-json.log` → `.1`) but gives the compressed copy
//! (`.1.gz`) a new one, a deleted file's inode may be reused by a new log, and logrotate's
//! `copytruncate` keeps the inode for new content. So the fingerprint is computed over the
//! first line of the *decompressed* content, and device + inode only break ties (see
//! `sources::docker_json_file::position`). A file whose first line is not complete yet has no
//! fingerprint.

use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// How much of the first line takes part in the fingerprint. A first line longer than this
/// (no newline within it) is fingerprinted by its first `FINGERPRINT_MAX_BYTES` bytes.
pub const FINGERPRINT_MAX_BYTES: usize = 4096;

/// CRC32 and length of a file's first line (without its newline, capped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub crc: u32,
    pub len: u32,
}

impl Fingerprint {
    /// The fingerprint of a file starting with `head`. `None` while the first line is
    /// incomplete, unless `complete` says the file will not grow (a rotated or compressed
    /// file), in which case whatever is there is the first line.
    pub fn of_head(head: &[u8], complete: bool) -> Option<Fingerprint> {
        let window = &head[..head.len().min(FINGERPRINT_MAX_BYTES)];
        let line = match memchr::memchr(b'\n', window) {
            Some(i) => &window[..i],
            None if window.len() == FINGERPRINT_MAX_BYTES || (complete && !window.is_empty()) => {
                window
            }
            None => return None,
        };
        Some(Fingerprint {
            crc: crc32fast::hash(line),
            len: line.len() as u32,
        })
    }

    /// The fingerprint of a plain file, read with `pread` (the descriptor's position is not
    /// touched).
    pub fn of_plain(file: &File, complete: bool) -> io::Result<Option<Fingerprint>> {
        let mut head = [0u8; FINGERPRINT_MAX_BYTES];
        let n = read_full_at(file, &mut head, 0)?;
        Ok(Fingerprint::of_head(&head[..n], complete))
    }

    /// The fingerprint of a gzip file's decompressed content. A compressed file is complete
    /// by construction (Docker writes it once, from a closed file).
    pub fn of_gz(file: &File) -> io::Result<Option<Fingerprint>> {
        let mut dec = MultiGzDecoder::new(FileAt::new(file, 0));
        let mut head = Vec::with_capacity(FINGERPRINT_MAX_BYTES);
        (&mut dec)
            .take(FINGERPRINT_MAX_BYTES as u64)
            .read_to_end(&mut head)?;
        Ok(Fingerprint::of_head(&head, true))
    }
}

/// Reads into `buf` from `offset` until it is full or the file ends; returns the bytes read.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A `Read` over a file by `pread`, from a position of its own, so that several readers (the
/// fingerprint, the decompressor) can share one descriptor without disturbing each other.
pub struct FileAt<F> {
    file: F,
    pos: u64,
}

impl<F: std::borrow::Borrow<File>> FileAt<F> {
    pub fn new(file: F, pos: u64) -> FileAt<F> {
        FileAt { file, pos }
    }
}

impl<F: std::borrow::Borrow<File>> Read for FileAt<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.borrow().read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    const LINE1: &[u8] =
        b"{\"log\":\"first\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T13:04:22.901652423Z\"}\n";
    const LINE2: &[u8] =
        b"{\"log\":\"second\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T13:04:23.1Z\"}\n";

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn no_fingerprint_until_the_first_line_is_complete() {
        assert_eq!(Fingerprint::of_head(b"", false), None);
        assert_eq!(Fingerprint::of_head(b"{\"log\":\"hal", false), None);
        let fp = Fingerprint::of_head(LINE1, false).unwrap();
        assert_eq!(fp.len as usize, LINE1.len() - 1);
        // Bytes after the first newline do not matter.
        let mut two = LINE1.to_vec();
        two.extend_from_slice(LINE2);
        assert_eq!(Fingerprint::of_head(&two, false), Some(fp));
        // A finished file without any newline is fingerprinted by what it has.
        assert!(Fingerprint::of_head(b"{\"log\":\"hal", true).is_some());
        // A first line longer than the cap is fingerprinted by its head.
        let long = vec![b'x'; FINGERPRINT_MAX_BYTES + 10];
        let fp = Fingerprint::of_head(&long, false).unwrap();
        assert_eq!(fp.len as usize, FINGERPRINT_MAX_BYTES);
    }

    #[test]
    fn same_content_different_inode_has_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, [LINE1, LINE2].concat()).unwrap();
        std::fs::write(&b, LINE1).unwrap();
        let (fa, fb) = (File::open(&a).unwrap(), File::open(&b).unwrap());
        assert_ne!(fa.metadata().unwrap().ino(), fb.metadata().unwrap().ino());
        assert_eq!(
            Fingerprint::of_plain(&fa, false).unwrap(),
            Fingerprint::of_plain(&fb, false).unwrap()
        );
    }

    #[test]
    fn reused_inode_with_different_content_has_a_different_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, LINE1).unwrap();
        let f = File::open(&p).unwrap();
        let before = Fingerprint::of_plain(&f, false).unwrap();
        let ino = f.metadata().unwrap().ino();
        // Rewrite in place: same inode, new first line.
        std::fs::write(&p, LINE2).unwrap();
        assert_eq!(f.metadata().unwrap().ino(), ino);
        assert_ne!(Fingerprint::of_plain(&f, false).unwrap(), before);
    }

    #[test]
    fn gzip_file_has_the_fingerprint_of_its_decompressed_content() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("x-json.log");
        let packed = dir.path().join("x-json.log.1.gz");
        let content = [LINE1, LINE2].concat();
        std::fs::write(&plain, &content).unwrap();
        std::fs::write(&packed, gz(&content)).unwrap();
        let fp_plain = Fingerprint::of_plain(&File::open(&plain).unwrap(), false).unwrap();
        let fp_gz = Fingerprint::of_gz(&File::open(&packed).unwrap()).unwrap();
        assert_eq!(fp_plain, fp_gz);
    }

    #[test]
    fn file_at_reads_from_its_own_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"0123456789").unwrap();
        let f = File::open(&p).unwrap();
        let mut r = FileAt::new(&f, 4);
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "456789");
        let mut buf = [0u8; 3];
        assert_eq!(read_full_at(&f, &mut buf, 8).unwrap(), 2);
    }
}
