//! The file mode's checkpoint, stored under `"<source>/file"`:
//! `{"dev":2049,"ino":1234,"offset":4096,"fp":3735928559,"fp_len":83}` — the file by device
//! and inode, the byte offset after the last line delivered, and the [`Fingerprint`] of the
//! file's first line (`fp`/`fp_len`, as in the json-file source's positions). Checkpoints
//! written before the fingerprint existed lack `fp`/`fp_len`: their file is then recognised
//! by device and inode alone, as it was then.

use crate::tail::file::OpenFile;
use crate::tail::fingerprint::Fingerprint;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonCheckpoint {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp_len: Option<u32>,
}

impl DaemonCheckpoint {
    /// The position `offset` in `f`.
    pub fn of(f: &OpenFile, offset: u64) -> DaemonCheckpoint {
        DaemonCheckpoint {
            dev: f.dev,
            ino: f.ino,
            offset,
            fp: f.fp.map(|fp| fp.crc),
            fp_len: f.fp.map(|fp| fp.len),
        }
    }

    pub fn fingerprint(&self) -> Option<Fingerprint> {
        Some(Fingerprint {
            crc: self.fp?,
            len: self.fp_len?,
        })
    }

    /// Is `f` the checkpointed file? By its first line when the checkpoint has a fingerprint
    /// (so a reused inode with other content, or a file rewritten in place, is not), else
    /// by device and inode.
    pub fn names(&self, f: &OpenFile) -> bool {
        match self.fingerprint() {
            Some(fp) => f.fp == Some(fp),
            None => (f.dev, f.ino) == (self.dev, self.ino),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a checkpoint serialises")
    }

    pub fn from_json(v: &serde_json::Value) -> Option<DaemonCheckpoint> {
        serde_json::from_value(v.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn old_checkpoints_read_without_a_fingerprint_and_new_ones_round_trip() {
        let old = DaemonCheckpoint::from_json(&json!({"dev": 1, "ino": 2, "offset": 3})).unwrap();
        assert_eq!(old.fingerprint(), None);
        assert_eq!(old.to_json(), json!({"dev": 1, "ino": 2, "offset": 3}));
        let new = DaemonCheckpoint {
            fp: Some(7),
            fp_len: Some(8),
            ..old
        };
        assert_eq!(
            new.to_json(),
            json!({"dev": 1, "ino": 2, "offset": 3, "fp": 7, "fp_len": 8})
        );
        assert_eq!(DaemonCheckpoint::from_json(&new.to_json()), Some(new));
        assert_eq!(DaemonCheckpoint::from_json(&json!({"cursor": "x"})), None);
    }
}
