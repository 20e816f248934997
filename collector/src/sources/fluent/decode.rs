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

    /// Counts records whose `container_id` is not Docker's form in `counter`.
    pub fn count_invalid_ids(mut self, counter: metrics::Counter) -> ForwardDecoder {
        self.mapper.invalid_ids = counter;
        self
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

#[cfg(test)]
mod tests {
    //! The fixtures in tests/fixtures/fluent (captured from Docker's driver and fluent-logger,
    //! and built with msgpack-python; see the README there) decode to exactly the events
    //! msgpack-python sees in them.
    use super::*;
    use crate::event::{EventFlags, Stream};
    use serde_json::Value;
    use std::path::PathBuf;
    use std::time::Duration;

    fn fixture(name: &str) -> (Bytes, Vec<Value>) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fluent");
        let raw = std::fs::read(dir.join(format!("{name}.msgpack"))).unwrap();
        let exp: Value = serde_json::from_slice(
            &std::fs::read(dir.join(format!("{name}.expected.json"))).unwrap(),
        )
        .unwrap();
        (Bytes::from(raw), exp["events"].as_array().unwrap().clone())
    }

    fn decode_stream(raw: &Bytes) -> (Vec<Event>, Vec<Option<String>>) {
        let mut d = ForwardDecoder::new(
            Limits {
                max_message: 1 << 20,
                max_decompressed: 1 << 20,
            },
            Partials::new("t".into(), 1 << 20, Duration::from_secs(60)),
        );
        let mut out = Vec::new();
        let mut chunks = Vec::new();
        let mut rest = raw.clone();
        while !rest.is_empty() {
            let n = super::super::msgpack::value_len(&rest, 1 << 20).unwrap();
            let frame = rest.split_to(n);
            chunks.push(d.decode(&frame, &mut out).unwrap().chunk);
        }
        d.partials.flush_all(&mut out);
        (out, chunks)
    }

    /// What logwharf should make of msgpack-python's view: partial pieces joined, mapped keys
    /// taken out of the record.
    fn expected(events: &[Value]) -> Vec<(String, i64, Value, bool)> {
        let mut out = Vec::new();
        let mut open: Option<(String, i64, serde_json::Map<String, Value>, String)> = None;
        for e in events {
            let mut rec = e["record"].as_object().unwrap().clone();
            let partial = rec.get("partial_message") == Some(&Value::from("true"));
            let last = rec.get("partial_last") == Some(&Value::from("true"));
            for k in [
                "partial_message",
                "partial_id",
                "partial_ordinal",
                "partial_last",
            ] {
                rec.remove(k);
            }
            let log = rec
                .get("log")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let tag = e["tag"].as_str().unwrap().to_string();
            let t = e["time_ns"].as_i64().unwrap();
            match open.take() {
                Some((tg, t0, r0, mut acc)) => {
                    acc.push_str(&log);
                    if last {
                        out.push((tg, t0, with_log(r0, acc), false));
                    } else {
                        open = Some((tg, t0, r0, acc));
                    }
                }
                None if partial && !last => open = Some((tag, t, rec, log)),
                None => out.push((tag, t, Value::Object(rec), false)),
            }
        }
        if let Some((tg, t0, r0, acc)) = open {
            out.push((tg, t0, with_log(r0, acc), true));
        }
        out
    }

    fn with_log(mut r: serde_json::Map<String, Value>, log: String) -> Value {
        r.insert("log".into(), Value::from(log));
        Value::Object(r)
    }

    fn check(name: &str) -> Vec<Event> {
        let (raw, exp) = fixture(name);
        let (got, _) = decode_stream(&raw);
        let want = expected(&exp);
        assert_eq!(got.len(), want.len(), "{name}: event count");
        for (g, (tag, t, rec, partial)) in got.iter().zip(&want) {
            let rec = rec.as_object().unwrap();
            assert_eq!(g.time_ns, *t, "{name}: time");
            assert_eq!(g.attrs.as_ref().unwrap()[0].1, *tag, "{name}: tag");
            let msg = rec
                .get("log")
                .or(rec.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("");
            assert_eq!(g.message, Bytes::from(msg.to_string()), "{name}: message");
            let stream = match rec.get("source").and_then(Value::as_str) {
                Some("stdout") => Stream::Stdout,
                Some("stderr") => Stream::Stderr,
                _ => Stream::Unknown,
            };
            assert_eq!(g.stream, stream, "{name}: stream");
            match rec.get("container_id") {
                Some(id) => {
                    let c = g.container.as_ref().unwrap();
                    assert_eq!(c.id, id.as_str().unwrap());
                    let n = rec["container_name"].as_str().unwrap();
                    assert_eq!(Some(&n[1..]), c.name.as_deref());
                }
                None => assert!(g.container.is_none()),
            }
            let mut extra = rec.clone();
            for k in ["log", "source", "container_id", "container_name"] {
                extra.remove(k);
            }
            if !rec.contains_key("log") {
                extra.remove("message");
            }
            let got_fields = g.fields.as_deref().cloned().unwrap_or_default();
            assert_eq!(got_fields, extra, "{name}: other keys → fields");
            assert_eq!(
                g.flags.contains(EventFlags::PARTIAL),
                *partial,
                "{name}: partial flag"
            );
        }
        got
    }

    #[test]
    fn docker_driver_message_mode_with_event_time() {
        let got = check("docker-message");
        assert_eq!(got.len(), 3);
        // One Arc for every line of the container.
        assert!(Arc::ptr_eq(
            got[0].container.as_ref().unwrap(),
            got[2].container.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            got[0].attrs.as_ref().unwrap(),
            got[1].attrs.as_ref().unwrap()
        ));
        // Docker's last output without a newline stays open until the connection ends.
        assert!(got[2].flags.contains(EventFlags::PARTIAL));
    }

    #[test]
    fn docker_driver_integer_time_and_default_tag() {
        let got = check("docker-message-int-time");
        assert_eq!(got[0].attrs.as_ref().unwrap()[0].1.len(), 12);
    }

    #[test]
    fn docker_driver_partial_records_are_joined() {
        let got = check("docker-partial");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].message.len(), 20_000);
        assert!(got[0].flags.is_empty());
    }

    #[test]
    fn fluent_logger_message_mode() {
        check("fluent-logger-message");
    }

    #[test]
    fn forward_mode() {
        check("forward");
    }

    #[test]
    fn packed_forward_mode() {
        check("packed-forward");
    }

    #[test]
    fn compressed_packed_forward_mode_and_its_chunk() {
        check("compressed-packed-forward");
        let (raw, _) = fixture("compressed-packed-forward");
        assert_eq!(
            decode_stream(&raw).1,
            vec![Some("Y2h1bmstMQ==".to_string())]
        );
    }

    #[test]
    fn a_gzip_bomb_is_capped() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).unwrap();
        }
        let z = gz.finish().unwrap();
        let e = gunzip(&z, 1 << 20).unwrap_err();
        assert_eq!(e.kind, "decompressed_too_large");
    }
}

#[cfg(test)]
mod fuzz {
    //! Mutated fixtures and random bytes: the decoder returns errors, never panics, and never
    //! allocates beyond its limits.
    use super::*;
    use std::time::Duration;

    fn run(bytes: &[u8]) {
        let mut d = ForwardDecoder::new(
            Limits {
                max_message: 1 << 16,
                max_decompressed: 1 << 16,
            },
            Partials::new("f".into(), 1 << 12, Duration::from_secs(1)),
        );
        let mut rest = Bytes::copy_from_slice(bytes);
        let mut out = Vec::new();
        while !rest.is_empty() {
            match super::super::msgpack::value_len(&rest, 1 << 16) {
                Ok(n) => {
                    let frame = rest.split_to(n);
                    if d.decode(&frame, &mut out).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        d.partials.flush_all(&mut out);
    }

    #[test]
    fn mutated_fixtures_and_noise_never_panic() {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/fluent");
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                let p = e.ok()?.path();
                (p.extension()? == "msgpack").then(|| std::fs::read(p).ok())?
            })
            .collect();
        seeds.push(Vec::new());
        let mut rng = fastrand::Rng::with_seed(0x1f1u64);
        for i in 0..20_000 {
            let mut b = seeds[i % seeds.len()].clone();
            match rng.u8(0..4) {
                0 => {
                    for _ in 0..rng.usize(1..8) {
                        if !b.is_empty() {
                            let j = rng.usize(..b.len());
                            b[j] = rng.u8(..);
                        }
                    }
                }
                1 => {
                    let cut = rng.usize(..=b.len());
                    b.truncate(cut);
                }
                2 => {
                    let j = rng.usize(..=b.len());
                    let noise: Vec<u8> = (0..rng.usize(1..32)).map(|_| rng.u8(..)).collect();
                    b.splice(j..j, noise);
                }
                _ => b = (0..rng.usize(0..256)).map(|_| rng.u8(..)).collect(),
            }
            run(&b);
        }
    }
}
