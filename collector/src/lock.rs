//! The `data_dir` lock: `<data_dir>/logwharf.lock`, held with an exclusive `flock` (std's
//! `File::try_lock`) for as long as a pipeline runs, and holding that process's pid. A second
//! `logwharf run` on the same directory (whose checkpoints and buffers it would overwrite)
//! fails at once, naming the directory and the other pid; `logwharf check --repair` takes it
//! too, so it never edits what a daemon is using. The kernel drops the lock when the process
//! ends however it ends (SIGKILL included), so a stale lock file never blocks a restart.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file's name in `data_dir`.
pub const LOCK_FILE: &str = "logwharf.lock";

/// The lock, held until dropped.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("data_dir {} is in use by another logwharf (pid {}; lock file {})", dir.display(), pid.as_deref().unwrap_or("unknown"), file.display())]
    Held {
        dir: PathBuf,
        file: PathBuf,
        /// The holder's pid as it wrote it.
        pid: Option<String>,
    },
    #[error("cannot lock data_dir {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (created 0700 if missing) without waiting, and writes this
    /// process's pid into it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let io_err = |source| LockError::Io {
            dir: data_dir.to_path_buf(),
            source,
        };
        crate::checkpoint::create_private_dir(data_dir).map_err(io_err)?;
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = Some(pid.trim().to_string()).filter(|p| !p.is_empty());
                return Err(LockError::Held {
                    dir: data_dir.to_path_buf(),
                    file: path,
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io_err)?;
        Ok(DataDirLock { _file: file })
    }

    /// Whether some process holds the lock of `data_dir` now, and its pid (for read-only
    /// tools that work beside a daemon). `None` when nobody holds it.
    pub fn holder(data_dir: &Path) -> Option<Option<String>> {
        match DataDirLock::acquire_existing(data_dir) {
            Err(LockError::Held { pid, .. }) => Some(pid),
            _ => None,
        }
    }

    /// As [`DataDirLock::acquire`] but never creates anything (the lock is released at once).
    fn acquire_existing(data_dir: &Path) -> Result<(), LockError> {
        let path = data_dir.join(LOCK_FILE);
        let Ok(mut file) = File::open(&path) else {
            return Ok(());
        };
        match file.try_lock_shared() {
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                Err(LockError::Held {
                    dir: data_dir.to_path_buf(),
                    file: path,
                    pid: Some(pid.trim().to_string()).filter(|p| !p.is_empty()),
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_fails_naming_the_pid() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("data");
        let held = DataDirLock::acquire(&dir).unwrap();
        assert_eq!(
            DataDirLock::holder(&dir),
            Some(Some(std::process::id().to_string()))
        );
        let e = DataDirLock::acquire(&dir).unwrap_err().to_string();
        assert!(e.contains(&dir.display().to_string()), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(held);
        assert_eq!(DataDirLock::holder(&dir), None);
        let _again = DataDirLock::acquire(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(),
            format!("{}\n", std::process::id())
        );
    }

    #[test]
    fn holder_of_a_missing_dir_is_nobody_and_creates_nothing() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(DataDirLock::holder(&d.path().join("none")), None);
        assert!(!d.path().join("none").exists());
    }
}
