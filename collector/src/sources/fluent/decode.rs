//! One complete Forward message → events, in any of the four modes of the spec:
//!
//! - Message: `[tag, time, record, option?]` (what Docker's driver and fluent-logger send);
//! - Forward: `[tag, [[time, record], …], option?]`;
//! - PackedForward: `[tag, bin|str of concatenated [time, record] entries, option?]`;
//! - CompressedPackedForward: the same with `option.compressed = "gzip"` (concatenated gzip
//!   members), decompressed with a cap so that a small bomb cannot expand without bound.
//!
//! Times are EventTime, integer or float seconds (Fluent Bit's `[[time, metadata], record]`
//! entries are accepted too). Message bytes stay slices of the received (or decompressed)
//! buffer. `option` yields the `chunk` to acknowledge.

use super::msgpack::{MpError, Reader};
use super::partial::Partials;
use super::record::RecordMapper;
use crate::event::{Attrs, Event};
use bytes::Bytes;
use std::io::Read;
use std::sync::Arc;

/// How a message failed; `kind` labels the error metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub kind: &'static str,
    pub message: String,
}

impl DecodeError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> DecodeError {
        DecodeError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind)
    }
}

impl From<MpError> for DecodeError {
    fn from(e: MpError) -> DecodeError {
        match e {
            MpError::Incomplete { .. } => DecodeError::new("truncated", e.to_string()),
            MpError::TooLarge(m) => DecodeError::new("too_large", m),
            MpError::Invalid(m) => DecodeError::new("garbage", m),
        }
    }
}

/// The `option` map of a message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Options {
    pub chunk: Option<String>,
    pub gzip: bool,
}

/// What a decoded message asks of the connection.
#[derive(Debug, Default)]
pub struct MessageInfo {
    pub chunk: Option<String>,
    pub entries: usize,
}

/// Size limits for one connection's messages.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message: usize,
    pub max_decompressed: usize,
}

/// Decodes the messages of one connection (keeping its caches and open partial lines).
pub struct ForwardDecoder {
    limits: Limits,
    mapper: RecordMapper,
    pub partials: Partials,
}

impl ForwardDecoder {
    pub fn new(limits: Limits, partials: Partials) -> ForwardDecoder {
        ForwardDecoder {
            limits,
            mapper: RecordMapper::default(),
            partials,
        }
    }

    /// Decodes the complete message `frame`, appending its events to `out`. On error, `out`
    /// may hold the events of entries before the bad one (they were valid and are kept).
    pub fn decode(
        &mut self,
        frame: &Bytes,
        out: &mut Vec<Event>,
    ) -> Result<MessageInfo, DecodeError> {
        let mut r = Reader::new(frame, self.limits.max_message);
        let n = r.array_len().map_err(|_| {
            DecodeError::new("garbage", "not a Forward message (expected an array)")
        })?;
        if !(2..=4).contains(&n) {
            return Err(DecodeError::new(
                "garbage",
                format!("not a Forward message (an array of {n} elements)"),
            ));
        }
        let tag = r.str().map_err(|e| match e {
            MpError::Invalid(_) => MpError::Invalid("the tag is not a string".into()),
            e => e,
        })?;
        let tag = self.mapper.tag_attrs(tag);
        let mut info = MessageInfo::default();
        if r.is_array() {
            // Forward mode.
            let k = r.array_len()?;
            for _ in 0..k {
                self.entry(&mut r, frame, &tag, out)?;
                info.entries += 1;
            }
            info.chunk = self.options(&mut r, n >= 3)?.chunk;
        } else if r.is_bytes() {
            // PackedForward / CompressedPackedForward.
            let range = r.bytes()?;
            let opts = self.options(&mut r, n >= 3)?;
            let entries = if opts.gzip {
                gunzip(&frame[range], self.limits.max_decompressed)?
            } else {
                frame.slice(range)
            };
            let limit = self.limits.max_message.max(self.limits.max_decompressed);
            let mut er = Reader::new(&entries, limit);
            while !er.at_end() {
                self.entry(&mut er, &entries, &tag, out)?;
                info.entries += 1;
            }
            info.chunk = opts.chunk;
        } else {
            // Message mode.
            if n < 3 {
                return Err(DecodeError::new(
                    "garbage",
                    "a Message-mode message needs a time and a record",
                ));
            }
            let time = r.time()?;
            self.record(&mut r, frame, time, &tag, out)?;
            info.entries = 1;
            info.chunk = self.options(&mut r, n == 4)?.chunk;
        }
        Ok(info)
    }

    fn entry(
        &mut self,
        r: &mut Reader<'_>,
        buf: &Bytes,
        tag: &Arc<Attrs>,
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        let n = r.array_len()?;
        if n != 2 {
            return Err(DecodeError::new(
                "garbage",
                format!("an entry is an array of {n} elements (expected [time, record])"),
            ));
        }
        let time = if r.is_array() {
            // Fluent Bit 2.x: [[time, metadata], record].
            let k = r.array_len()?;
            if k == 0 {
                return Err(DecodeError::new(
                    "garbage",
                    "an empty [time, metadata] pair",
                ));
            }
            let t = r.time()?;
            for _ in 1..k {
                r.skip()?;
            }
            t
        } else {
            r.time()?
        };
        self.record(r, buf, time, tag, out)
    }

    fn record(
        &mut self,
        r: &mut Reader<'_>,
        buf: &Bytes,
        time: i64,
        tag: &Arc<Attrs>,
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        let (ev, partial) = self.mapper.record(r, buf, time, tag)?;
        if partial.is_none() && self.partials.is_empty() {
            out.push(ev);
        } else {
            self.partials.push(ev, partial, out);
        }
        Ok(())
    }

    fn options(&mut self, r: &mut Reader<'_>, present: bool) -> Result<Options, DecodeError> {
        let mut o = Options::default();
        if !present || r.is_nil() {
            if present {
                r.skip()?;
            }
            return Ok(o);
        }
        let n = r.map_len().map_err(|e| match e {
            MpError::Invalid(_) => MpError::Invalid("the option is not a map".into()),
            e => e,
        })?;
        for _ in 0..n {
            match r.str()? {
                "chunk" => o.chunk = Some(r.str()?.to_string()),
                "compressed" => match r.str()? {
                    "gzip" => o.gzip = true,
                    "text" => o.gzip = false,
                    other => {
                        return Err(DecodeError::new(
                            "garbage",
                            format!("unsupported compression {other:?}"),
                        ))
                    }
                },
                _ => r.skip()?,
            }
        }
        Ok(o)
    }
}

/// Decompresses concatenated gzip members, refusing output beyond `cap` bytes.
pub fn gunzip(data: &[u8], cap: usize) -> Result<Bytes, DecodeError> {
    let mut out = Vec::with_capacity((data.len() * 4).min(cap).min(8 << 20));
    let mut d = flate2::read::MultiGzDecoder::new(data).take(cap as u64 + 1);
    d.read_to_end(&mut out)
        .map_err(|e| DecodeError::new("gzip", format!("bad gzip data: {e}")))?;
    if out.len() > cap {
        return Err(DecodeError::new(
            "decompressed_too_large",
            format!("a compressed message expands beyond max_decompressed_bytes ({cap} bytes)"),
        ));
    }
    Ok(Bytes::from(out))
}
