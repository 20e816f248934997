//! A batch as a record's payload: compact, and complete — every field of every [`Event`] and of
//! its container, so that what a sink reads back after a restart is the event that was
//! written. Integers are LEB128 varints, strings and bytes are length-prefixed, containers and
//! attrs shared by `Arc` are written once per record and referenced by index (and shared
//! again when read), `fields` (JSON values) are written as typed values, so numbers come
//! back bit for bit.
//!
//! Layout after the frame's payload head: source name, containers, attrs lists, events
//! (time, stream, flags, message, container index + 1 or 0, attrs index + 1 or 0, fields).

use crate::event::{Attrs, Batch, ContainerMeta, Event, EventFlags, Stream};
use bytes::Bytes;
use serde_json::{Map, Number, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A record holds at most this many message bytes (a larger batch becomes several records).
pub const RECORD_BYTES: usize = 4 << 20;

/// JSON nesting deeper than this in a record is damage.
const MAX_DEPTH: usize = 128;

/// Frames for `batch` (unsealed: [`super::frame::seal`] fills in the sequence numbers), each
/// with its event count; at most [`RECORD_BYTES`] of messages each, one event at least.
pub fn encode(batch: &Batch) -> Vec<(Vec<u8>, u32)> {
    let mut out = Vec::new();
    let mut rest = &batch.events[..];
    while !rest.is_empty() {
        let mut bytes = 0;
        let n = rest
            .iter()
            .position(|e| {
                bytes += e.message.len();
                bytes > RECORD_BYTES
            })
            .unwrap_or(rest.len())
            .max(1);
        let (part, tail) = rest.split_at(n);
        out.push((encode_part(&batch.source, part), n as u32));
        rest = tail;
    }
    out
}

fn encode_part(source: &str, events: &[Event]) -> Vec<u8> {
    let size: usize = events.iter().map(|e| e.message.len() + 24).sum();
    let mut f = super::frame::start(size + 64);
    put_bytes(&mut f, source.as_bytes());
    let containers = Table::build(events.iter().map(|e| e.container.as_ref()));
    let attrs = Table::build(events.iter().map(|e| e.attrs.as_ref()));
    put_varint(&mut f, containers.items.len() as u64);
    for c in &containers.items {
        put_container(&mut f, c);
    }
    put_varint(&mut f, attrs.items.len() as u64);
    for a in &attrs.items {
        put_attrs(&mut f, a);
    }
    let (mut ci, mut ai) = (containers.cursor(), attrs.cursor());
    for e in events {
        put_varint(&mut f, zigzag(e.time_ns));
        f.push(match e.stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
            Stream::Unknown => 2,
        });
        f.push(e.flags.0);
        put_bytes(&mut f, &e.message);
        put_varint(&mut f, ci.index(e.container.as_ref()));
        put_varint(&mut f, ai.index(e.attrs.as_ref()));
        match &e.fields {
            None => f.push(0),
            Some(m) => {
                f.push(1);
                put_map(&mut f, m);
            }
        }
    }
    f
}

/// The distinct `Arc`s of a record, by pointer.
struct Table<'a, T> {
    items: Vec<&'a Arc<T>>,
}

impl<'a, T> Table<'a, T> {
    fn build(all: impl Iterator<Item = Option<&'a Arc<T>>>) -> Self {
        let mut items: Vec<&Arc<T>> = Vec::new();
        for a in all.flatten() {
            // Consecutive events share their container: checking the last one first is enough
            // almost always; a record has few distinct ones.
            if !items.iter().rev().any(|b| Arc::ptr_eq(a, b)) {
                items.push(a);
            }
        }
        Table { items }
    }

    fn cursor(&self) -> TableCursor<'_, 'a, T> {
        TableCursor {
            items: &self.items,
            last: 0,
        }
    }
}

struct TableCursor<'t, 'a, T> {
    items: &'t [&'a Arc<T>],
    last: usize,
}

impl<T> TableCursor<'_, '_, T> {
    /// 0 for none, else the index + 1.
    fn index(&mut self, a: Option<&Arc<T>>) -> u64 {
        let Some(a) = a else { return 0 };
        if !self.items.is_empty() && Arc::ptr_eq(self.items[self.last], a) {
            return self.last as u64 + 1;
        }
        let i = self
            .items
            .iter()
            .position(|b| Arc::ptr_eq(a, b))
            .expect("the table holds every event's Arc");
        self.last = i;
        i as u64 + 1
    }
}

fn put_container(f: &mut Vec<u8>, c: &ContainerMeta) {
    put_bytes(f, c.id.as_bytes());
    for s in [
        &c.name,
        &c.image_name,
        &c.image_id,
        &c.compose_project,
        &c.compose_service,
        &c.log_driver,
        &c.tag,
    ] {
        put_opt_str(f, s.as_deref());
    }
    put_str_map(f, &c.labels);
    put_str_map(f, &c.env);
    match &c.attrs {
        None => f.push(0),
        Some(a) => {
            f.push(1);
            put_attrs(f, a);
        }
    }
    f.push(c.tty as u8);
}

fn put_attrs(f: &mut Vec<u8>, a: &Attrs) {
    put_varint(f, a.len() as u64);
    for (k, v) in a {
        put_bytes(f, k.as_bytes());
        put_bytes(f, v.as_bytes());
    }
}

fn put_str_map(f: &mut Vec<u8>, m: &BTreeMap<String, String>) {
    put_varint(f, m.len() as u64);
    for (k, v) in m {
        put_bytes(f, k.as_bytes());
        put_bytes(f, v.as_bytes());
    }
}

fn put_map(f: &mut Vec<u8>, m: &Map<String, Value>) {
    put_varint(f, m.len() as u64);
    for (k, v) in m {
        put_bytes(f, k.as_bytes());
        put_value(f, v);
    }
}

fn put_value(f: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => f.push(0),
        Value::Bool(false) => f.push(1),
        Value::Bool(true) => f.push(2),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                f.push(3);
                put_varint(f, u);
            } else if let Some(i) = n.as_i64() {
                f.push(4);
                put_varint(f, zigzag(i));
            } else {
                f.push(5);
                f.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_bits().to_le_bytes());
            }
        }
        Value::String(s) => {
            f.push(6);
            put_bytes(f, s.as_bytes());
        }
        Value::Array(a) => {
            f.push(7);
            put_varint(f, a.len() as u64);
            for x in a {
                put_value(f, x);
            }
        }
        Value::Object(m) => {
            f.push(8);
            put_map(f, m);
        }
    }
}

fn put_opt_str(f: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => f.push(0),
        Some(s) => {
            f.push(1);
            put_bytes(f, s.as_bytes());
        }
    }
}

fn put_bytes(f: &mut Vec<u8>, b: &[u8]) {
    put_varint(f, b.len() as u64);
    f.extend_from_slice(b);
}

fn put_varint(f: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        f.push(v as u8 | 0x80);
        v >>= 7;
    }
    f.push(v as u8);
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    (u >> 1) as i64 ^ -((u & 1) as i64)
}

/// A payload that passed its checksum but does not decode: written by another version, or
/// damage the checksum did not catch.
#[derive(Debug, thiserror::Error)]
#[error("undecodable record: {0}")]
pub struct DecodeError(&'static str);

/// What a reader keeps between records so that containers and source names read back are
/// shared by `Arc` again, as they were when written.
#[derive(Default)]
pub struct Interner {
    containers: HashMap<Vec<u8>, Arc<ContainerMeta>>,
    sources: HashMap<Box<str>, Arc<str>>,
}

impl Interner {
    const MAX: usize = 4096;

    fn container(&mut self, raw: &[u8], c: ContainerMeta) -> Arc<ContainerMeta> {
        if self.containers.len() >= Self::MAX {
            self.containers.clear();
        }
        self.containers
            .entry(raw.to_vec())
            .or_insert_with(|| Arc::new(c))
            .clone()
    }

    fn source(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.sources.get(s) {
            return a.clone();
        }
        if self.sources.len() >= Self::MAX {
            self.sources.clear();
        }
        let a: Arc<str> = s.into();
        self.sources.insert(s.into(), a.clone());
        a
    }
}

/// The batch in a verified payload (the whole payload, head included). Messages are slices of
/// `payload`, not copies.
pub fn decode(payload: &Bytes, interner: &mut Interner) -> Result<Batch, DecodeError> {
    let (_, n) = super::frame::payload_head(payload);
    let mut r = Reader {
        b: payload,
        pos: super::frame::PAYLOAD_HEAD,
    };
    let source = interner.source(r.str()?);
    let nc = r.count()?;
    let mut containers = Vec::with_capacity(nc);
    for _ in 0..nc {
        let start = r.pos;
        let c = r.container()?;
        containers.push(interner.container(&payload[start..r.pos], c));
    }
    let na = r.count()?;
    let mut attrs = Vec::with_capacity(na);
    for _ in 0..na {
        attrs.push(Arc::new(r.attrs()?));
    }
    let mut events = Vec::with_capacity((n as usize).min(payload.len()));
    for _ in 0..n {
        let time_ns = unzigzag(r.varint()?);
        let stream = match r.byte()? {
            0 => Stream::Stdout,
            1 => Stream::Stderr,
            2 => Stream::Unknown,
            _ => return Err(DecodeError("stream")),
        };
        let flags = EventFlags(r.byte()?);
        let (start, len) = r.span()?;
        let message = payload.slice(start..start + len);
        let container = r.index(&containers)?;
        let attrs = r.index(&attrs)?;
        let fields = match r.byte()? {
            0 => None,
            1 => Some(Box::new(r.map(0)?)),
            _ => return Err(DecodeError("fields")),
        };
        events.push(Event {
            time_ns,
            stream,
            flags,
            message,
            container,
            attrs,
            fields,
        });
    }
    if r.pos != payload.len() {
        return Err(DecodeError("trailing bytes"));
    }
    Ok(Batch { source, events })
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let v = *self.b.get(self.pos).ok_or(DecodeError("short"))?;
        self.pos += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint"))
    }

    /// A count of items that each take at least one byte (so it cannot exceed what is left).
    fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()? as usize;
        if n > self.b.len() - self.pos {
            return Err(DecodeError("count"));
        }
        Ok(n)
    }

    fn span(&mut self) -> Result<(usize, usize), DecodeError> {
        let len = self.varint()? as usize;
        let start = self.pos;
        if len > self.b.len() - start {
            return Err(DecodeError("length"));
        }
        self.pos += len;
        Ok((start, len))
    }

    fn str(&mut self) -> Result<&'a str, DecodeError> {
        let (s, n) = self.span()?;
        std::str::from_utf8(&self.b[s..s + n]).map_err(|_| DecodeError("utf-8"))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_string)
    }

    fn opt_string(&mut self) -> Result<Option<String>, DecodeError> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            _ => Err(DecodeError("option")),
        }
    }

    fn index<T>(&mut self, table: &[Arc<T>]) -> Result<Option<Arc<T>>, DecodeError> {
        match self.varint()? as usize {
            0 => Ok(None),
            i => table
                .get(i - 1)
                .cloned()
                .map(Some)
                .ok_or(DecodeError("index")),
        }
    }

    fn container(&mut self) -> Result<ContainerMeta, DecodeError> {
        let id = self.string()?;
        let mut opts = [None, None, None, None, None, None, None];
        for o in &mut opts {
            *o = self.opt_string()?;
        }
        let [name, image_name, image_id, compose_project, compose_service, log_driver, tag] = opts;
        let labels = self.str_map()?;
        let env = self.str_map()?;
        let attrs = match self.byte()? {
            0 => None,
            1 => Some(Arc::new(self.attrs()?)),
            _ => return Err(DecodeError("container attrs")),
        };
        let tty = self.byte()? != 0;
        Ok(ContainerMeta {
            id,
            name,
            image_name,
            image_id,
            labels,
            env,
            compose_project,
            compose_service,
            log_driver,
            tag,
            attrs,
            tty,
        })
    }

    fn attrs(&mut self) -> Result<Attrs, DecodeError> {
        let n = self.count()?;
        let mut a = Vec::with_capacity(n);
        for _ in 0..n {
            a.push((self.string()?, self.string()?));
        }
        Ok(a)
    }

    fn str_map(&mut self) -> Result<BTreeMap<String, String>, DecodeError> {
        let n = self.count()?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            m.insert(self.string()?, self.string()?);
        }
        Ok(m)
    }

    fn map(&mut self, depth: usize) -> Result<Map<String, Value>, DecodeError> {
        let n = self.count()?;
        let mut m = Map::new();
        for _ in 0..n {
            let k = self.string()?;
            m.insert(k, self.value(depth + 1)?);
        }
        Ok(m)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError("nesting"));
        }
        Ok(match self.byte()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Number(self.varint()?.into()),
            4 => Value::Number(unzigzag(self.varint()?).into()),
            5 => {
                let end = self.pos + 8;
                let b = self.b.get(self.pos..end).ok_or(DecodeError("short"))?;
                self.pos = end;
                let f = f64::from_bits(u64::from_le_bytes(b.try_into().unwrap()));
                Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
            6 => Value::String(self.string()?),
            7 => {
                let n = self.count()?;
                let mut a = Vec::with_capacity(n);
                for _ in 0..n {
                    a.push(self.value(depth + 1)?);
                }
                Value::Array(a)
            }
            8 => Value::Object(self.map(depth)?),
            _ => return Err(DecodeError("value tag")),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_batch() -> Batch {
        let mut meta = ContainerMeta::from_id("a".repeat(64));
        meta.name = Some("web".into());
        meta.image_name = Some("nginx:1".into());
        meta.image_id = Some("sha256:abc".into());
        meta.labels.insert("app".into(), "x".into());
        meta.env.insert("ENV".into(), "prod".into());
        meta.compose_project = Some("p".into());
        meta.log_driver = Some("syslog".into());
        meta.tag = Some("t".into());
        meta.attrs = Some(Arc::new(vec![("k".into(), "v".into())]));
        meta.tty = true;
        let meta = Arc::new(meta);
        let other = Arc::new(ContainerMeta::from_id("b"));
        let attrs = Arc::new(vec![("label".to_string(), "1".to_string())]);
        let mut fields = Map::new();
        fields.insert("facility".into(), Value::from("local0"));
        fields.insert("n".into(), Value::from(-5));
        fields.insert("big".into(), Value::from(u64::MAX));
        fields.insert("pi".into(), Value::from(std::f64::consts::PI));
        fields.insert(
            "nested".into(),
            serde_json::json!({"a": [1, null, true, "x", {"b": 0.1}]}),
        );
        let mut events = Vec::new();
        for i in 0..5 {
            let mut e = Event::new(
                1_700_000_000_000_000_000 + i,
                if i % 2 == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                },
                Bytes::from(format!("line {i} ünïcode")),
            );
            e.container = Some(if i == 3 { other.clone() } else { meta.clone() });
            if i > 1 {
                e.attrs = Some(attrs.clone());
            }
            if i == 4 {
                e.fields = Some(Box::new(fields.clone()));
                e.flags = EventFlags(EventFlags::PARTIAL.0 | EventFlags::TRUNCATED.0);
                e.time_ns = -3;
            }
            events.push(e);
        }
        events.push(Event::new(0, Stream::Unknown, Bytes::new()));
        Batch {
            source: "syslog_in".into(),
            events,
        }
    }

    pub(crate) fn same(a: &Batch, b: &Batch) {
        assert_eq!(a.source, b.source);
        assert_eq!(a.events.len(), b.events.len());
        for (x, y) in a.events.iter().zip(&b.events) {
            assert_eq!(x.time_ns, y.time_ns);
            assert_eq!(x.stream, y.stream);
            assert_eq!(x.flags, y.flags);
            assert_eq!(x.message, y.message);
            assert_eq!(x.container, y.container);
            assert_eq!(x.attrs, y.attrs);
            assert_eq!(x.fields, y.fields);
        }
    }

    fn roundtrip(b: &Batch) -> Vec<Batch> {
        let mut interner = Interner::default();
        encode(b)
            .into_iter()
            .enumerate()
            .map(|(i, (mut f, n))| {
                super::super::frame::seal(&mut f, i as u64, n);
                let payload = Bytes::from(f).slice(super::super::frame::HEADER..);
                decode(&payload, &mut interner).unwrap()
            })
            .collect()
    }

    #[test]
    fn every_field_comes_back_and_shared_containers_are_shared_again() {
        let b = sample_batch();
        let back = roundtrip(&b);
        assert_eq!(back.len(), 1);
        same(&b, &back[0]);
        let ev = &back[0].events;
        assert!(Arc::ptr_eq(
            ev[0].container.as_ref().unwrap(),
            ev[4].container.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            ev[2].attrs.as_ref().unwrap(),
            ev[3].attrs.as_ref().unwrap()
        ));
        let pi = ev[4].fields.as_ref().unwrap()["pi"].as_f64().unwrap();
        assert_eq!(pi.to_bits(), std::f64::consts::PI.to_bits());
    }

    #[test]
    fn a_large_batch_becomes_several_records_in_order() {
        let events: Vec<Event> = (0..10)
            .map(|i| {
                let mut m = format!("{i}").into_bytes();
                m.resize(RECORD_BYTES / 3, b'x');
                Event::new(i, Stream::Stdout, Bytes::from(m))
            })
            .collect();
        let b = Batch {
            source: "s".into(),
            events,
        };
        let back = roundtrip(&b);
        assert_eq!(back.len(), 4);
        let times: Vec<i64> = back
            .iter()
            .flat_map(|b| b.events.iter().map(|e| e.time_ns))
            .collect();
        assert_eq!(times, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn garbage_payloads_are_errors_never_panics() {
        let b = sample_batch();
        let (mut f, n) = encode(&b).remove(0);
        super::super::frame::seal(&mut f, 0, n);
        let payload = f[super::super::frame::HEADER..].to_vec();
        let mut interner = Interner::default();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let mut p = payload.clone();
            let i = rng.usize(super::super::frame::PAYLOAD_HEAD..p.len());
            p[i] = rng.u8(..);
            if rng.bool() {
                p.truncate(rng.usize(super::super::frame::PAYLOAD_HEAD..p.len()));
            }
            let _ = decode(&Bytes::from(p), &mut interner);
        }
    }
}
