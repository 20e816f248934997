//! A group of logwharf batches → Forward messages: one PackedForward message per tag
//! (`[tag, bin(entries), {"size": n, "chunk": id, "compressed": "gzip"}]`), the entries encoded
//! straight into the message buffer (uncompressed) or gzipped into it (CompressedPackedForward),
//! and with `require_ack` a fresh `chunk` id per message, kept across resends.

use super::record::RecordEncoder;
use flate2::write::GzEncoder;
use logwharf_collector::SinkBatch;
use rmp::encode;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

/// One message ready to write.
pub struct Message {
    pub bytes: Vec<u8>,
    pub chunk: Option<String>,
    pub events: usize,
}

struct TagBuf {
    tag: Arc<str>,
    buf: Vec<u8>,
    count: u32,
    /// Offset of the bin32 length to patch (uncompressed layout).
    len_at: usize,
}

/// Builds messages; reuses its tag index between groups.
pub struct ChunkBuilder {
    pub records: RecordEncoder,
    gzip: bool,
    require_ack: bool,
}

/// A random 128-bit id in hex (what the server echoes in its ack).
pub fn chunk_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

impl ChunkBuilder {
    pub fn new(records: RecordEncoder, gzip: bool, require_ack: bool) -> ChunkBuilder {
        ChunkBuilder {
            records,
            gzip,
            require_ack,
        }
    }

    fn open(&self, tag: Arc<str>, capacity: usize) -> TagBuf {
        let mut buf = Vec::with_capacity(capacity);
        let mut len_at = 0;
        if !self.gzip {
            let _ = encode::write_array_len(&mut buf, 3);
            let _ = encode::write_str(&mut buf, &tag);
            len_at = buf.len() + 1;
            // bin32 with a placeholder length, patched once the entries are written.
            let _ = encode::write_bin_len(&mut buf, u32::MAX);
        }
        TagBuf {
            tag,
            buf,
            count: 0,
            len_at,
        }
    }

    /// Encodes every event of `group`.
    pub fn build(&mut self, group: &[SinkBatch]) -> Vec<Message> {
        let mut bufs: Vec<TagBuf> = Vec::new();
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        let mut last: Option<(Arc<str>, usize)> = None;
        // The first tag's buffer is sized for the whole group (one container is the common
        // case) so that it never grows by copying; further tags start small.
        let mut first_capacity = group
            .iter()
            .map(|sb| sb.batch.byte_size() + sb.batch.len() * 160)
            .sum::<usize>()
            + 64;
        for sb in group {
            let source = &*sb.batch.source;
            for ev in &sb.batch.events {
                let tag = self.records.tag_of(ev);
                let i = match &last {
                    Some((t, i)) if Arc::ptr_eq(t, &tag) || **t == *tag => *i,
                    _ => {
                        let i = match index.get(&tag) {
                            Some(i) => *i,
                            None => {
                                let cap = std::mem::replace(&mut first_capacity, 64 << 10);
                                bufs.push(self.open(tag.clone(), cap));
                                index.insert(tag.clone(), bufs.len() - 1);
                                bufs.len() - 1
                            }
                        };
                        last = Some((tag, i));
                        i
                    }
                };
                let tb = &mut bufs[i];
                self.records.write_entry(&mut tb.buf, source, ev);
                tb.count += 1;
            }
        }
        bufs.into_iter().map(|tb| self.finish(tb)).collect()
    }

    fn finish(&self, tb: TagBuf) -> Message {
        let chunk = self.require_ack.then(chunk_id);
        let mut bytes = if self.gzip {
            let mut out = Vec::with_capacity(tb.buf.len() / 4 + 64);
            let _ = encode::write_array_len(&mut out, 3);
            let _ = encode::write_str(&mut out, &tb.tag);
            let z = {
                let mut gz = GzEncoder::new(
                    Vec::with_capacity(tb.buf.len() / 4 + 64),
                    flate2::Compression::fast(),
                );
                // Writing into a Vec cannot fail.
                let _ = gz.write_all(&tb.buf);
                gz.finish().unwrap_or_default()
            };
            let _ = encode::write_bin_len(&mut out, z.len() as u32);
            out.extend_from_slice(&z);
            out
        } else {
            let mut b = tb.buf;
            let n = (b.len() - tb.len_at - 4) as u32;
            b[tb.len_at..tb.len_at + 4].copy_from_slice(&n.to_be_bytes());
            b
        };
        let opts = 1 + chunk.is_some() as u32 + self.gzip as u32;
        let _ = encode::write_map_len(&mut bytes, opts);
        let _ = encode::write_str(&mut bytes, "size");
        let _ = encode::write_uint(&mut bytes, tb.count as u64);
        if let Some(c) = &chunk {
            let _ = encode::write_str(&mut bytes, "chunk");
            let _ = encode::write_str(&mut bytes, c);
        }
        if self.gzip {
            let _ = encode::write_str(&mut bytes, "compressed");
            let _ = encode::write_str(&mut bytes, "gzip");
        }
        Message {
            bytes,
            chunk,
            events: tb.count as usize,
        }
    }
}
