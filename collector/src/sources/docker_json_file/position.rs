//! Read positions: which file ([`FileIdentity`]) and where in it ([`ResumePoint`]), and the form
//! they take in the checkpoint store ([`SavedPosition`]).
//!
//! A resume point is where a restart must start reading so that nothing emitted after it is
//! lost. Offsets count decompressed bytes for `.gz` files, so a position taken while a file
//! was the live `-json.log` stays valid after Docker compressed it into `.1.gz`.

use crate::tail::file::FileIdentity;
use crate::tail::fingerprint::Fingerprint;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A position in one of a reader's files.
#[derive(Debug, Clone)]
pub struct ResumePoint {
    pub file: Arc<FileIdentity>,
    pub offset: u64,
    /// Time of the last line shipped before this point, when known: where a gap found after
    /// a restart begins.
    pub time_ns: Option<i64>,
}

impl ResumePoint {
    pub fn at(file: Arc<FileIdentity>, offset: u64) -> ResumePoint {
        ResumePoint {
            file,
            offset,
            time_ns: None,
        }
    }

    /// Orders positions of one reader: by file, then by offset.
    pub fn order_key(&self) -> (u64, u64) {
        (self.file.seq, self.offset)
    }

    pub fn to_saved(&self) -> SavedPosition {
        SavedPosition {
            file: self.file.name.clone(),
            dev: self.file.dev,
            ino: self.file.ino,
            fp: self.file.fp.crc,
            fp_len: self.file.fp.len,
            offset: self.offset,
            time_ns: self.time_ns,
            ..SavedPosition::default()
        }
    }
}

#[cfg(test)]
impl ResumePoint {
    /// Offset `offset` of file number `seq` of one reader, in a made-up file (unit tests).
    pub fn for_test(seq: u64, offset: u64) -> ResumePoint {
        use crate::tail::fingerprint::Fingerprint;
        ResumePoint::at(
            Arc::new(FileIdentity {
                seq,
                name: "c-json.log".into(),
                dev: 1,
                ino: 2,
                fp: Fingerprint { crc: 3, len: 4 },
            }),
            offset,
        )
    }
}

impl PartialEq for ResumePoint {
    fn eq(&self, other: &ResumePoint) -> bool {
        self.order_key() == other.order_key() && self.file == other.file
    }
}

/// A sink's checkpoint of a container as stored under `"<source>/<container id>/<sink>"`:
/// `{"file":"<id>-json.log","dev":2049,"ino":1234,"fp":3735928559,"fp_len":83,"offset":4096,
/// "size":10036,"final":true,"time_ns":1764633600000000000,"later":[{"fp":…,"fp_len":…,
/// "size":10020,"final":true}]}`. `fp`/`fp_len` are the CRC32 and length of the file's first
/// line (decompressed); `dev`/`ino` only break ties between files with the same first line.
///
/// The rest says what is lost if Docker deletes these files while logwharf is not running
/// ([`super::loss`]): the file's `size` as last seen (`final` once it had been rotated), the
/// time of the last line delivered, and the files after it that logwharf knew of. Entries
/// written before these fields existed lack them and read as "unknown".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPosition {
    pub file: String,
    pub dev: u64,
    pub ino: u64,
    pub fp: u32,
    pub fp_len: u32,
    pub offset: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, rename = "final", skip_serializing_if = "is_false")]
    pub complete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub later: Vec<LaterFile>,
}

/// A file after the checkpointed one, as logwharf last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaterFile {
    pub fp: u32,
    pub fp_len: u32,
    /// Content bytes (decompressed) when last seen.
    pub size: u64,
    /// `size` is final: the file had been rotated.
    #[serde(default, rename = "final", skip_serializing_if = "is_false")]
    pub complete: bool,
}

impl LaterFile {
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            crc: self.fp,
            len: self.fp_len,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl SavedPosition {
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            crc: self.fp,
            len: self.fp_len,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a saved position serialises")
    }

    /// `None` for an entry this version cannot read (it is then ignored, as if absent).
    pub fn from_json(v: &serde_json::Value) -> Option<SavedPosition> {
        serde_json::from_value(v.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_position_round_trips_through_json() {
        let p = ResumePoint {
            file: Arc::new(FileIdentity {
                seq: 3,
                name: "abc-json.log".into(),
                dev: 2049,
                ino: 77,
                fp: Fingerprint {
                    crc: 0xdead_beef,
                    len: 83,
                },
            }),
            offset: 4096,
            time_ns: None,
        };
        let j = p.to_saved().to_json();
        assert_eq!(
            j,
            serde_json::json!({"file":"abc-json.log","dev":2049,"ino":77,"fp":3735928559u32,"fp_len":83,"offset":4096}),
            "without loss facts: the format of earlier versions"
        );
        assert_eq!(SavedPosition::from_json(&j), Some(p.to_saved()));
        assert_eq!(
            SavedPosition::from_json(&serde_json::json!({"offset": 1})),
            None
        );
        let mut full = p.to_saved();
        full.size = Some(10_036);
        full.complete = true;
        full.time_ns = Some(1_764_633_600_000_000_001);
        full.later = vec![LaterFile {
            fp: 7,
            fp_len: 70,
            size: 10_020,
            complete: false,
        }];
        let j = full.to_json();
        assert_eq!(
            j,
            serde_json::json!({"file":"abc-json.log","dev":2049,"ino":77,"fp":3735928559u32,"fp_len":83,"offset":4096,
                "size":10036,"final":true,"time_ns":1764633600000000001i64,"later":[{"fp":7,"fp_len":70,"size":10020}]})
        );
        assert_eq!(SavedPosition::from_json(&j), Some(full));
    }
}
