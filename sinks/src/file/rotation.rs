//! Docker's rotation of a log file, step for step (moby 20.10 `loggerutils/logfile.go`):
//! [`RotationPolicy::shift_siblings`] drops the oldest `<path>.<max_file-1>[.gz]`, renames
//! `.i-1` → `.i` down to `.2` and the live file to `<path>.1`; [`spawn_compress`] then gzips
//! `<path>.1` into `<path>.1.gz` on the blocking pool, and the next rotation of the same path
//! waits for it ([`Compression::wait`]) before renaming anything.

use logwharf_collector::time::{write_rfc3339, Fraction};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// `max_size`, `max_file` and `compress`, as Docker's json-file driver takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Rotate before a write once the file holds at least this many bytes; `None`: never.
    pub max_size: Option<u64>,
    /// Files kept, the live one included. Below 2, rotation truncates the live file in place.
    pub max_file: u32,
    /// Gzip `<path>.1` after each rotation (only with `max_file >= 2`).
    pub compress: bool,
}

impl RotationPolicy {
    /// True when rotation keeps rotated siblings (else it truncates in place).
    pub fn keeps_siblings(&self) -> bool {
        self.max_file >= 2
    }

    /// True when a rotated `<path>.1` is to be gzipped.
    pub fn compresses(&self) -> bool {
        self.compress && self.keeps_siblings()
    }

    /// Docker's `rotate()`: makes room for a fresh `path` by shifting its siblings. Missing
    /// files are skipped. A no-op when `max_file < 2`.
    pub fn shift_siblings(&self, path: &Path) -> io::Result<()> {
        if !self.keeps_siblings() {
            return Ok(());
        }
        let ext = if self.compress { ".gz" } else { "" };
        let last = sibling(path, self.max_file - 1, ext);
        ignore_missing(fs::remove_file(&last))
            .map_err(|e| with_path(e, "removing the oldest rotated file", &last))?;
        for i in (2..self.max_file).rev() {
            let from = sibling(path, i - 1, ext);
            let to = sibling(path, i, ext);
            ignore_missing(fs::rename(&from, &to))
                .map_err(|e| with_path(e, "renaming a rotated file", &from))?;
        }
        let first = sibling(path, 1, "");
        ignore_missing(fs::rename(path, &first))
            .map_err(|e| with_path(e, "renaming the live file", path))
    }
}

/// `<path>.<i><ext>`.
pub fn sibling(path: &Path, i: u32, ext: &str) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(format!(".{i}{ext}"));
    PathBuf::from(s)
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// A gzip of `<path>.1` running on the blocking pool.
pub struct Compression {
    done: mpsc::Receiver<io::Result<()>>,
}

impl Compression {
    /// Blocks until the compression has finished; its outcome.
    pub fn wait(self) -> io::Result<()> {
        self.done.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "the compression task ended without reporting (panicked)",
            ))
        })
    }

    /// True once the compression has finished (its outcome is then lost: it was logged).
    pub fn is_finished(&self) -> bool {
        !matches!(self.done.try_recv(), Err(mpsc::TryRecvError::Empty))
    }
}

/// Gzips `<path>.1` into `<path>.1.gz` (then removes `<path>.1`) on `handle`'s blocking pool.
/// `last_time_ns` is the time of the newest line in it, recorded in the gzip header as Docker
/// does (`{"lastTime":"…"}` in the extra field). `on_error` runs on failure (to count and log).
pub fn spawn_compress(
    handle: &tokio::runtime::Handle,
    path: &Path,
    last_time_ns: Option<i64>,
    on_error: impl FnOnce(&io::Error) + Send + 'static,
) -> Compression {
    let (tx, done) = mpsc::sync_channel(1);
    let src = sibling(path, 1, "");
    handle.spawn_blocking(move || {
        let r = compress_file(&src, last_time_ns);
        if let Err(e) = &r {
            on_error(e);
        }
        let _ = tx.send(r);
    });
    Compression { done }
}

/// Gzips `src` into `src.gz` through a temporary file renamed into place (a reader never sees
/// a half-written `.gz`), then removes `src`. On failure `src` stays and no `.gz` is left.
/// A missing `src` is not an error (nothing was rotated).
pub fn compress_file(src: &Path, last_time_ns: Option<i64>) -> io::Result<()> {
    let mut input = match File::open(src) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(with_path(e, "opening", src)),
    };
    let mut dst = src.as_os_str().to_owned();
    dst.push(".gz");
    let dst = PathBuf::from(dst);
    let mut tmp = dst.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let out = create_log_file(&tmp, true)?;
        let mut builder = flate2::GzBuilder::new();
        if let Some(t) = last_time_ns {
            let mut extra = b"{\"lastTime\":\"".to_vec();
            write_rfc3339(&mut extra, t, Fraction::NanosTrimmed);
            extra.extend_from_slice(b"\"}");
            builder = builder.extra(extra);
        }
        let mut gz = builder.write(BufWriter::new(out), flate2::Compression::default());
        io::copy(&mut input, &mut gz)?;
        let out = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
        out.sync_all()?;
        fs::rename(&tmp, &dst)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(with_path(e, "compressing", src));
    }
    fs::remove_file(src).map_err(|e| with_path(e, "removing compressed", src))
}

/// Opens (creating, mode 0640 as Docker) a log file for writing: appending, or truncated.
pub fn create_log_file(path: &Path, truncate: bool) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = fs::OpenOptions::new();
    o.create(true).mode(0o640);
    if truncate {
        o.write(true).truncate(true);
    } else {
        o.append(true);
    }
    o.open(path)
}

/// Writes `buf`, reporting how many bytes made it even when it fails part way (so a retry
/// continues where the file ends instead of repeating a torn line).
pub fn write_counted(w: &mut (impl Write + ?Sized), mut buf: &[u8]) -> (usize, io::Result<()>) {
    let mut n = 0;
    while !buf.is_empty() {
        match w.write(buf) {
            Ok(0) => return (n, Err(io::ErrorKind::WriteZero.into())),
            Ok(k) => {
                n += k;
                buf = &buf[k..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Err(e)),
        }
    }
    (n, Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn shifts_like_docker() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let policy = RotationPolicy {
            max_size: Some(1),
            max_file: 3,
            compress: false,
        };
        for gen in 0..4 {
            fs::write(&p, format!("gen{gen}")).unwrap();
            policy.shift_siblings(&p).unwrap();
        }
        assert_eq!(names(dir.path()), ["c.log.1", "c.log.2"]);
        assert_eq!(fs::read_to_string(sibling(&p, 1, "")).unwrap(), "gen3");
        assert_eq!(fs::read_to_string(sibling(&p, 2, "")).unwrap(), "gen2");
    }

    #[test]
    fn single_file_policy_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        fs::write(&p, "x").unwrap();
        let policy = RotationPolicy {
            max_size: Some(1),
            max_file: 1,
            compress: false,
        };
        policy.shift_siblings(&p).unwrap();
        assert_eq!(names(dir.path()), ["c.log"]);
    }

    #[test]
    fn compresses_with_docker_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log.1");
        fs::write(&p, "hello\n").unwrap();
        compress_file(&p, Some(1_795_611_862_900_000_000)).unwrap();
        assert_eq!(names(dir.path()), ["c.log.1.gz"]);
        let f = File::open(dir.path().join("c.log.1.gz")).unwrap();
        let mut gz = flate2::read::GzDecoder::new(f);
        let mut s = String::new();
        gz.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello\n");
        assert_eq!(
            gz.header().unwrap().extra(),
            Some(&b"{\"lastTime\":\"2026-11-25T13:04:22.9Z\"}"[..])
        );
        // Nothing to compress is fine.
        compress_file(&p, None).unwrap();
    }

    struct Flaky(usize);
    impl Write for Flaky {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk full"));
            }
            let k = buf.len().min(self.0).min(3);
            self.0 -= k;
            Ok(k)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn counts_bytes_written_before_an_error() {
        let (n, r) = write_counted(&mut Flaky(5), b"0123456789");
        assert_eq!(n, 5);
        assert!(r.is_err());
        let (n, r) = write_counted(&mut Flaky(50), b"0123456789");
        assert_eq!((n, r.is_ok()), (10, true));
    }
}
