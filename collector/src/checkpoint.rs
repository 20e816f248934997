//! The checkpoint store: acknowledged read positions, kept in memory and written to
//! `<data_dir>/checkpoints.json` atomically (temp file, fsync, rename, fsync of the directory)
//! on an interval and at shutdown. A `kill -9` at any moment leaves either the old or the new
//! file, never a torn one.
//!
//! Values are opaque JSON owned by the source that wrote them; keys are namespaced by the
//! source's name (`<source>/<what>`), so sources never see each other's entries. Each value is
//! kept as its compact JSON text: a position changes with every delivered batch of every
//! container, and a write of 1,000 containers' positions then only joins their texts.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub mod per_sink;

const FILE_NAME: &str = "checkpoints.json";

pub struct CheckpointStore {
    dir: PathBuf,
    entries: Mutex<BTreeMap<String, Box<str>>>,
    dirty: AtomicBool,
    /// Serialises writers (the periodic flusher and the final flush).
    write_lock: Mutex<()>,
}

impl CheckpointStore {
    /// Opens (creating with mode 0700) `data_dir` and loads the last written checkpoints.
    pub fn open(data_dir: &Path) -> io::Result<CheckpointStore> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        let entries = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(mut top)) => match top.remove("checkpoints") {
                    Some(Value::Object(m)) => m
                        .into_iter()
                        .map(|(k, v)| (k, v.to_string().into_boxed_str()))
                        .collect(),
                    _ => BTreeMap::new(),
                },
                _ => {
                    // Cannot come from our own atomic writes: someone edited or truncated it.
                    let aside = data_dir.join(format!("{FILE_NAME}.corrupt"));
                    tracing::error!(
                        path = %path.display(),
                        moved_to = %aside.display(),
                        "checkpoint file is not valid JSON; starting without checkpoints"
                    );
                    fs::rename(&path, &aside)?;
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", path.display()),
                ))
            }
        };
        Ok(CheckpointStore {
            dir: data_dir.to_path_buf(),
            entries: Mutex::new(entries),
            dirty: AtomicBool::new(false),
            write_lock: Mutex::new(()),
        })
    }

    pub fn get(&self, key: &str) -> Option<Value> {
        let m = self.entries.lock().unwrap();
        m.get(key).map(|t| parse(t))
    }

    pub fn set(&self, key: &str, value: Value) {
        self.set_json(key, &value);
    }

    /// Sets `key` to `value` serialised (without building a [`Value`] first).
    pub fn set_json<T: serde::Serialize + ?Sized>(&self, key: &str, value: &T) {
        let text = serde_json::to_string(value).expect("checkpoint values serialise");
        let mut m = self.entries.lock().unwrap();
        match m.get_mut(key) {
            Some(old) if **old == *text => return,
            Some(old) => *old = text.into_boxed_str(),
            None => {
                m.insert(key.to_string(), text.into_boxed_str());
            }
        }
        self.dirty.store(true, Ordering::Release);
    }

    pub fn remove(&self, key: &str) {
        if self.entries.lock().unwrap().remove(key).is_some() {
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// All entries whose key starts with `prefix`.
    pub fn with_prefix(&self, prefix: &str) -> Vec<(String, Value)> {
        self.entries
            .lock()
            .unwrap()
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), parse(v)))
            .collect()
    }

    /// Writes the checkpoints if anything changed since the last write.
    pub fn flush(&self) -> io::Result<()> {
        let _w = self.write_lock.lock().unwrap();
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let snapshot = {
            let m = self.entries.lock().unwrap();
            document(&m)
        };
        let r = self.write_atomically(&snapshot);
        if r.is_err() {
            self.dirty.store(true, Ordering::Release);
            metrics::counter!(crate::metrics::CHECKPOINT_WRITE_ERRORS).increment(1);
        }
        r
    }

    fn write_atomically(&self, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let dst = self.dir.join(FILE_NAME);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &dst)?;
        File::open(&self.dir)?.sync_all()
    }

    /// Flushes every `interval` until `shutdown`; the caller does the final flush.
    pub async fn run_flusher(
        self: std::sync::Arc<Self>,
        interval: Duration,
        shutdown: crate::Shutdown,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            let store = self.clone();
            match tokio::task::spawn_blocking(move || store.flush()).await {
                Ok(Err(e)) => {
                    tracing::error!(dir = %self.dir.display(), error = %e, "writing checkpoints failed; will retry")
                }
                Err(e) => tracing::error!(error = %e, "checkpoint writer panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

/// A value as stored (written by `set_json`, or read from a valid file).
fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("stored checkpoint values are valid JSON")
}

/// The file's content: `{"version":1,"checkpoints":{…}}`, one entry per line.
fn document(entries: &BTreeMap<String, Box<str>>) -> Vec<u8> {
    let size: usize = entries.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
    let mut out = Vec::with_capacity(size + 64);
    out.extend_from_slice(b"{\"version\":1,\"checkpoints\":{");
    for (i, (k, v)) in entries.iter().enumerate() {
        out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
        serde_json::to_writer(&mut out, k).expect("a key serialises");
        out.push(b':');
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(b"\n}}\n");
    out
}

/// Creates `dir` (and parents) with mode 0700 where it does not exist yet.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_and_private_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let s = CheckpointStore::open(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        s.set("c/a", json!({"offset": 10}));
        s.set("c/b", json!({"offset": 20}));
        s.set("d/a", json!(1));
        s.set_json("e/\"quoted\"", &json!({"file": "a\nb"}));
        s.flush().unwrap();
        let text = fs::read(dir.join(FILE_NAME)).unwrap();
        let doc: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(doc["version"], json!(1));
        assert_eq!(doc["checkpoints"]["e/\"quoted\""], json!({"file": "a\nb"}));
        let s2 = CheckpointStore::open(&dir).unwrap();
        assert_eq!(s2.get("c/a"), Some(json!({"offset": 10})));
        assert_eq!(s2.with_prefix("c/").len(), 2);
        s2.remove("c/a");
        s2.flush().unwrap();
        assert_eq!(CheckpointStore::open(&dir).unwrap().get("c/a"), None);
    }

    #[test]
    fn leftover_temp_file_is_ignored_and_corrupt_file_moved_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let s = CheckpointStore::open(tmp.path()).unwrap();
        s.set("k", json!(1));
        s.flush().unwrap();
        // A crash between writing the temp file and renaming it leaves a torn temp file.
        fs::write(tmp.path().join("checkpoints.json.tmp"), b"{\"vers").unwrap();
        assert_eq!(
            CheckpointStore::open(tmp.path()).unwrap().get("k"),
            Some(json!(1))
        );
        fs::write(tmp.path().join(FILE_NAME), b"garbage").unwrap();
        let s = CheckpointStore::open(tmp.path()).unwrap();
        assert_eq!(s.get("k"), None);
        assert!(tmp.path().join("checkpoints.json.corrupt").exists());
    }
}
