//! Segment files: `<id>.seg` (the id zero-padded to 20 digits, so names sort by id), an 8-byte
//! file header, then frames ([`super::frame`]) back to back. [`Scanner`] reads one segment
//! front to back, verifying every frame, and says what it finds: whole records, damage in the
//! middle (bytes that are no frame, followed by a valid frame: skipped), or a torn tail (bytes
//! after the last whole record: what a crash mid-write leaves). It holds one record and a read
//! buffer in memory, whatever the file's size.

use super::frame::{self, Header, HEADER, MAGIC};
use crate::tail::fingerprint::read_full_at;
use bytes::Bytes;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The first bytes of every segment file.
pub const FILE_HEADER: &[u8; 8] = b"LWBSEG1\n";

pub fn file_name(id: u64) -> String {
    format!("{id:020}.seg")
}

pub fn path(dir: &Path, id: u64) -> PathBuf {
    dir.join(file_name(id))
}

fn parse_name(name: &str) -> Option<u64> {
    let id = name.strip_suffix(".seg")?;
    (id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()))
        .then(|| id.parse().ok())
        .flatten()
}

/// The ids of the segment files in `dir`, oldest first.
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for e in std::fs::read_dir(dir)? {
        if let Some(id) = e?.file_name().to_str().and_then(parse_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// What a [`Scanner`] finds next.
#[derive(Debug)]
pub enum Item {
    /// A whole record at `offset`; `payload` starts with its sequence number and event count.
    Record {
        offset: u64,
        seq: u64,
        events: u32,
        payload: Bytes,
    },
    /// `len` bytes at `offset` that are no whole record, with a valid frame after them.
    Corrupt { offset: u64, len: u64 },
    /// `len` bytes at `offset`, up to the end, that hold no whole record.
    Torn { offset: u64, len: u64 },
}

/// Reads one segment's frames in order, up to `end`.
pub struct Scanner {
    reader: BufReader<File>,
    pos: u64,
    end: u64,
    /// The file header was wrong: the first frame must be searched for.
    bad_header: bool,
}

const READ_BUFFER: usize = 256 << 10;

impl Scanner {
    /// Scans `path` from `start` (0: from the file header) up to `end` (`None`: the file's
    /// current length).
    pub fn open(path: &Path, start: u64, end: Option<u64>) -> io::Result<Scanner> {
        let mut file = File::open(path)?;
        let end = match end {
            Some(e) => e,
            None => file.metadata()?.len(),
        };
        let mut bad_header = false;
        let mut pos = start;
        if start == 0 {
            let mut h = [0u8; 8];
            let n = file.read_at(&mut h, 0).unwrap_or(0);
            if n == 8 && &h == FILE_HEADER {
                pos = 8;
            } else {
                bad_header = end > 0;
            }
        }
        file.seek(SeekFrom::Start(pos))?;
        Ok(Scanner {
            reader: BufReader::with_capacity(READ_BUFFER, file),
            pos,
            end,
            bad_header,
        })
    }

    /// Where the next item starts.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// Reads on up to `end` (the segment grew).
    pub fn set_end(&mut self, end: u64) {
        self.end = end;
    }

    pub fn next_item(&mut self) -> io::Result<Option<Item>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let at = self.pos;
        if std::mem::take(&mut self.bad_header) {
            return self.resync(at);
        }
        if self.end - at < HEADER as u64 {
            return self.resync(at);
        }
        let mut h = [0u8; HEADER];
        self.reader.read_exact(&mut h)?;
        let Some(header) = Header::parse(&h) else {
            return self.resync(at);
        };
        if at + header.frame_len() > self.end {
            return self.resync(at);
        }
        let mut payload = vec![0u8; header.len];
        self.reader.read_exact(&mut payload)?;
        if !header.verify(&payload) {
            return self.resync(at);
        }
        self.pos = at + header.frame_len();
        let (seq, events) = frame::payload_head(&payload);
        Ok(Some(Item::Record {
            offset: at,
            seq,
            events,
            payload: Bytes::from(payload),
        }))
    }

    /// After damage at `bad`: the next valid frame, searched from the byte after it.
    fn resync(&mut self, bad: u64) -> io::Result<Option<Item>> {
        let found = find_frame(self.reader.get_ref(), bad + 1, self.end)?;
        let next = found.unwrap_or(self.end);
        self.reader.seek(SeekFrom::Start(next))?;
        self.pos = next;
        let len = next - bad;
        Ok(Some(match found {
            Some(_) => Item::Corrupt { offset: bad, len },
            None => Item::Torn { offset: bad, len },
        }))
    }
}

/// The offset of the first valid frame in `file` at or after `from` that ends by `end`.
fn find_frame(file: &File, from: u64, end: u64) -> io::Result<Option<u64>> {
    const CHUNK: usize = 64 << 10;
    let mut buf = vec![0u8; CHUNK];
    let mut at = from;
    while at + HEADER as u64 <= end {
        let want = (end - at).min(CHUNK as u64) as usize;
        let n = read_full_at(file, &mut buf[..want], at)?;
        if n < MAGIC.len() {
            break;
        }
        let window = &buf[..n];
        for i in memchr::memmem::find_iter(window, &MAGIC) {
            let q = at + i as u64;
            if valid_at(file, q, end)? {
                return Ok(Some(q));
            }
        }
        // Overlap by the magic's length less one, so a magic across chunks is found.
        at += (n - (MAGIC.len() - 1)) as u64;
    }
    Ok(None)
}

fn valid_at(file: &File, q: u64, end: u64) -> io::Result<bool> {
    if q + HEADER as u64 > end {
        return Ok(false);
    }
    let mut h = [0u8; HEADER];
    if read_full_at(file, &mut h, q)? < HEADER {
        return Ok(false);
    }
    let Some(header) = Header::parse(&h) else {
        return Ok(false);
    };
    if q + header.frame_len() > end {
        return Ok(false);
    }
    let mut payload = vec![0u8; header.len];
    if read_full_at(file, &mut payload, q + HEADER as u64)? < header.len {
        return Ok(false);
    }
    Ok(header.verify(&payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn frame_with(seq: u64, body: &[u8]) -> Vec<u8> {
        let mut f = frame::start(body.len());
        f.extend_from_slice(body);
        frame::seal(&mut f, seq, 1);
        f
    }

    fn write(path: &Path, parts: &[&[u8]]) {
        let mut f = File::create(path).unwrap();
        f.write_all(FILE_HEADER).unwrap();
        for p in parts {
            f.write_all(p).unwrap();
        }
    }

    fn scan(path: &Path) -> Vec<String> {
        let mut s = Scanner::open(path, 0, None).unwrap();
        let mut out = Vec::new();
        while let Some(i) = s.next_item().unwrap() {
            out.push(match i {
                Item::Record { offset, seq, .. } => format!("record {seq} @{offset}"),
                Item::Corrupt { offset, len } => format!("corrupt {len} @{offset}"),
                Item::Torn { offset, len } => format!("torn {len} @{offset}"),
            });
        }
        out
    }

    #[test]
    fn names_sort_by_id() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert_eq!(parse_name("42.seg"), None);
        assert_eq!(parse_name("00000000000000000042.tmp"), None);
    }

    #[test]
    fn whole_records_torn_tail_and_damage_in_the_middle() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(file_name(1));
        let (a, b, c) = (
            frame_with(1, b"first"),
            frame_with(2, &[b'x'; 1000]),
            frame_with(3, b"third"),
        );
        write(&p, &[&a, &b, &c]);
        assert_eq!(scan(&p), ["record 1 @8", "record 2 @37", "record 3 @1061"]);

        // A torn tail: the last frame cut short.
        write(&p, &[&a, &b, &c[..c.len() - 2]]);
        assert_eq!(scan(&p), ["record 1 @8", "record 2 @37", "torn 27 @1061"]);

        // A flipped byte inside the second record: skipped up to the third.
        let mut b2 = b.clone();
        b2[500] ^= 0xff;
        write(&p, &[&a, &b2, &c]);
        assert_eq!(
            scan(&p),
            ["record 1 @8", "corrupt 1024 @37", "record 3 @1061"]
        );

        // A damaged length field, and a damaged magic.
        for at in [1, 5] {
            let mut b3 = b.clone();
            b3[at] ^= 0x55;
            write(&p, &[&a, &b3, &c]);
            assert_eq!(
                scan(&p),
                ["record 1 @8", "corrupt 1024 @37", "record 3 @1061"]
            );
        }

        // Garbage at the end after whole records is a torn tail too.
        write(&p, &[&a, &[0u8; 100]]);
        assert_eq!(scan(&p), ["record 1 @8", "torn 100 @37"]);

        // A wrong file header: the first frame is searched for.
        let mut f = File::create(&p).unwrap();
        f.write_all(b"garbage!").unwrap();
        f.write_all(&a).unwrap();
        assert_eq!(scan(&p), ["corrupt 8 @0", "record 1 @8"]);
    }

    #[test]
    fn a_frame_across_the_search_chunks_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(file_name(1));
        let junk = vec![7u8; (64 << 10) - 10];
        let a = frame_with(1, b"after the junk");
        write(&p, &[&junk, &a]);
        assert_eq!(
            scan(&p),
            [
                format!("corrupt {} @8", junk.len()),
                format!("record 1 @{}", 8 + junk.len())
            ]
        );
    }
}
