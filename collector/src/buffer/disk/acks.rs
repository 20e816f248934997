//! Which records the sink has settled, and the small file that remembers it across restarts.
//!
//! Records are read in sequence order; a record read and not yet settled is *pending*. Every
//! record before the oldest pending one (or before the next to read, when none is pending) is
//! settled — delivered, or skipped as damage — so the log needs only that one number, the
//! *acked position*, to know what to delete and where to start after a restart. The `ack` file
//! holds it (magic, u64 LE, CRC32C), replaced atomically (write, fsync, rename); a restart
//! sends again what was settled after the last write of it (at-least-once).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"LWBACK1\n";
pub const FILE: &str = "ack";

/// The reader's and the sink's progress through the log.
#[derive(Debug, Default)]
pub struct Acks {
    /// Read and not yet settled: sequence number → events.
    pending: BTreeMap<u64, u32>,
    /// The next sequence number the reader will hand out (every one below is read or skipped).
    read_through: u64,
}

impl Acks {
    pub fn new(acked: u64) -> Acks {
        Acks {
            pending: BTreeMap::new(),
            read_through: acked,
        }
    }

    /// The reader handed record `seq` to the sink.
    pub fn read(&mut self, seq: u64, events: u32) {
        self.pending.insert(seq, events);
        self.read_through = self.read_through.max(seq + 1);
    }

    /// The reader passed `seq` without handing it out (damage, or settled before a restart).
    pub fn skipped(&mut self, seq: u64) {
        self.read_through = self.read_through.max(seq + 1);
    }

    /// The sink settled `seq`; its event count.
    pub fn settle(&mut self, seq: u64) -> Option<u32> {
        self.pending.remove(&seq)
    }

    /// Every record below this is settled.
    pub fn acked(&self) -> u64 {
        self.pending
            .keys()
            .next()
            .copied()
            .unwrap_or(self.read_through)
    }
}

/// The acked position in `dir`'s ack file: `Ok(None)` when there is none, an error when it is
/// damaged (the caller starts from the oldest record: duplicates, never loss).
pub fn load(dir: &Path) -> io::Result<Option<u64>> {
    let b = match std::fs::read(dir.join(FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if b.len() != 20 || &b[..8] != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an ack file (wrong size or magic)",
        ));
    }
    let crc = u32::from_le_bytes(b[16..20].try_into().unwrap());
    if crc32c::crc32c(&b[..16]) != crc {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "ack file checksum mismatch",
        ));
    }
    Ok(Some(u64::from_le_bytes(b[8..16].try_into().unwrap())))
}

/// Replaces `dir`'s ack file with `acked`.
pub fn store(dir: &Path, acked: u64) -> io::Result<()> {
    let mut b = Vec::with_capacity(20);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&acked.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let tmp = dir.join("ack.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&b)?;
    f.sync_data()?;
    std::fs::rename(&tmp, dir.join(FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acked_position_is_the_oldest_pending_record() {
        let mut a = Acks::new(10);
        assert_eq!(a.acked(), 10);
        a.read(10, 1);
        a.read(11, 1);
        a.skipped(12); // damage
        a.read(13, 1);
        assert_eq!(a.acked(), 10);
        a.settle(11);
        assert_eq!(a.acked(), 10, "out of order: 10 still pending");
        a.settle(10);
        assert_eq!(a.acked(), 13);
        a.settle(13);
        assert_eq!(a.acked(), 14);
    }

    #[test]
    fn the_file_round_trips_and_damage_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()).unwrap(), None);
        store(d.path(), 12345).unwrap();
        assert_eq!(load(d.path()).unwrap(), Some(12345));
        let p = d.path().join(FILE);
        let mut b = std::fs::read(&p).unwrap();
        b[9] ^= 1;
        std::fs::write(&p, b).unwrap();
        assert!(load(d.path()).is_err());
    }
}
