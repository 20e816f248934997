//! One record as it lies in a segment file: `magic` (4 bytes), payload length (u32 LE), CRC32C
//! of the length bytes and the payload (u32 LE), then the payload. The payload starts with the
//! record's sequence number (u64 LE) and its event count (u32 LE), then the encoded batch
//! ([`super::codec`]). The magic lets a reader find the next frame after damage; the checksum
//! tells a whole record from a torn or corrupted one.

/// Marks the start of every frame.
pub const MAGIC: [u8; 4] = *b"LWR1";
/// Magic, length, checksum.
pub const HEADER: usize = 12;
/// Sequence number and event count at the start of every payload.
pub const PAYLOAD_HEAD: usize = 12;
/// No record is larger (a length field above it is damage, not a record).
pub const MAX_PAYLOAD: usize = 1 << 30;

/// The checksum of a frame: its length field, then its payload.
pub fn checksum(len: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), payload)
}

/// A frame around `payload` (whose first 12 bytes are reserved for [`seal`]).
pub fn start(payload_capacity: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + PAYLOAD_HEAD + payload_capacity);
    f.extend_from_slice(&MAGIC);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&[0; PAYLOAD_HEAD]);
    f
}

/// Fills in a frame built on [`start`]: its sequence number, event count, length, checksum.
pub fn seal(frame: &mut [u8], seq: u64, events: u32) {
    frame[HEADER..HEADER + 8].copy_from_slice(&seq.to_le_bytes());
    frame[HEADER + 8..HEADER + 12].copy_from_slice(&events.to_le_bytes());
    let len = ((frame.len() - HEADER) as u32).to_le_bytes();
    frame[4..8].copy_from_slice(&len);
    let crc = checksum(len, &frame[HEADER..]);
    frame[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    pub len: usize,
    pub crc: u32,
    len_bytes: [u8; 4],
}

impl Header {
    /// `None` when these bytes cannot start a frame (wrong magic, impossible length).
    pub fn parse(b: &[u8; HEADER]) -> Option<Header> {
        if b[..4] != MAGIC {
            return None;
        }
        let len_bytes: [u8; 4] = b[4..8].try_into().unwrap();
        let len = u32::from_le_bytes(len_bytes) as usize;
        if !(PAYLOAD_HEAD..=MAX_PAYLOAD).contains(&len) {
            return None;
        }
        Some(Header {
            len,
            crc: u32::from_le_bytes(b[8..12].try_into().unwrap()),
            len_bytes,
        })
    }

    /// Whether `payload` is the one this header was sealed with.
    pub fn verify(&self, payload: &[u8]) -> bool {
        payload.len() == self.len && checksum(self.len_bytes, payload) == self.crc
    }

    /// The whole frame's size on disk.
    pub fn frame_len(&self) -> u64 {
        (HEADER + self.len) as u64
    }
}

/// The sequence number and event count of a verified payload.
pub fn payload_head(payload: &[u8]) -> (u64, u32) {
    (
        u64::from_le_bytes(payload[..8].try_into().unwrap()),
        u32::from_le_bytes(payload[8..12].try_into().unwrap()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_frame_verifies_and_any_flipped_bit_does_not() {
        let mut f = start(5);
        f.extend_from_slice(b"hello");
        seal(&mut f, 7, 1);
        let h = Header::parse(f[..HEADER].try_into().unwrap()).unwrap();
        assert_eq!(h.frame_len(), f.len() as u64);
        assert!(h.verify(&f[HEADER..]));
        assert_eq!(payload_head(&f[HEADER..]), (7, 1));
        for i in HEADER..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x10;
            assert!(!h.verify(&g[HEADER..]), "byte {i}");
        }
        // The known CRC32C check value.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }
}
