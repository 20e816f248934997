//! A bounds-checked msgpack cursor on top of rmp's marker and length readers: what the Forward
//! decoder needs (lengths, strings as byte ranges, integers, EventTime, skipping, conversion of
//! record values to JSON) and nothing that trusts a claimed length. A length is only believed
//! once the bytes it claims are present; element counts are never used to pre-allocate; skipping
//! is iterative, so deep nesting cannot exhaust the stack.

use rmp::decode::{self, NumValueReadError, ValueReadError};
use rmp::Marker;
use std::ops::Range;

/// Why a read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MpError {
    /// The bytes end inside the value; `need` is a lower bound on the total length of the buffer
    /// that would hold it, when known.
    Incomplete { need: Option<usize> },
    /// The value claims more bytes or elements than the configured limit allows.
    TooLarge(String),
    /// Not msgpack, or not the type the protocol requires here.
    Invalid(String),
}

impl std::fmt::Display for MpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MpError::Incomplete { .. } => f.write_str("the message ends early (truncated)"),
            MpError::TooLarge(m) | MpError::Invalid(m) => f.write_str(m),
        }
    }
}

const INCOMPLETE: MpError = MpError::Incomplete { need: None };

fn io_err(e: &std::io::Error) -> MpError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        INCOMPLETE
    } else {
        MpError::Invalid(e.to_string())
    }
}

fn value_err(e: ValueReadError) -> MpError {
    match e {
        ValueReadError::InvalidMarkerRead(e) | ValueReadError::InvalidDataRead(e) => io_err(&e),
        ValueReadError::TypeMismatch(m) => MpError::Invalid(format!("unexpected msgpack {m:?}")),
    }
}

fn num_err(e: NumValueReadError) -> MpError {
    match e {
        NumValueReadError::InvalidMarkerRead(e) | NumValueReadError::InvalidDataRead(e) => {
            io_err(&e)
        }
        NumValueReadError::TypeMismatch(m) => {
            MpError::Invalid(format!("expected an integer, found msgpack {m:?}"))
        }
        NumValueReadError::OutOfRange => MpError::Invalid("integer out of range".into()),
    }
}

/// Maximum nesting converted into JSON values (records from Fluent Bit nest a few levels).
pub const MAX_DEPTH: usize = 64;

/// JSON values one reader may build: a JSON value takes ~50 bytes where msgpack takes 1, so
/// without a budget a 16 MiB message of nils would become ~800 MB of fields.
pub const MAX_JSON_VALUES: usize = 1 << 18;

/// A cursor over `buf` that refuses any single string, binary or element count above `limit`.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    limit: usize,
    json_left: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], limit: usize) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            limit,
            json_left: MAX_JSON_VALUES,
        }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn run<T, E>(
        &mut self,
        f: impl FnOnce(&mut &'a [u8]) -> Result<T, E>,
        conv: impl FnOnce(E) -> MpError,
    ) -> Result<T, MpError> {
        let mut rd = &self.buf[self.pos..];
        let v = f(&mut rd).map_err(conv)?;
        self.pos = self.buf.len() - rd.len();
        Ok(v)
    }

    /// The marker of the next value, without consuming it.
    pub fn peek(&self) -> Result<Marker, MpError> {
        self.buf
            .get(self.pos)
            .map(|b| Marker::from_u8(*b))
            .ok_or(INCOMPLETE)
    }

    fn advance(&mut self, n: usize) -> Result<(), MpError> {
        let end = self.pos.checked_add(n).ok_or(INCOMPLETE)?;
        if end > self.buf.len() {
            return Err(MpError::Incomplete { need: Some(end) });
        }
        self.pos = end;
        Ok(())
    }

    fn check_count(&self, n: u64, what: &str) -> Result<(), MpError> {
        // Every element takes at least one byte, so a count above the byte limit is a lie.
        if n > self.limit as u64 {
            return Err(MpError::TooLarge(format!(
                "{what} claims {n} elements, more than the {} bytes allowed",
                self.limit
            )));
        }
        Ok(())
    }

    pub fn array_len(&mut self) -> Result<u32, MpError> {
        let n = self.run(decode::read_array_len, value_err)?;
        self.check_count(n as u64, "an array")?;
        Ok(n)
    }

    pub fn map_len(&mut self) -> Result<u32, MpError> {
        let n = self.run(decode::read_map_len, value_err)?;
        self.check_count(2 * n as u64, "a map")?;
        Ok(n)
    }

    /// A string or binary value as the range of its bytes in the buffer.
    pub fn bytes(&mut self) -> Result<Range<usize>, MpError> {
        let n = match self.peek()? {
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                self.run(decode::read_str_len, value_err)?
            }
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                self.run(decode::read_bin_len, value_err)?
            }
            m => {
                return Err(MpError::Invalid(format!(
                    "expected a string, found msgpack {m:?}"
                )))
            }
        } as usize;
        if n > self.limit {
            return Err(MpError::TooLarge(format!(
                "a string of {n} bytes exceeds the limit of {} bytes",
                self.limit
            )));
        }
        let start = self.pos;
        self.advance(n)?;
        Ok(start..start + n)
    }

    /// A string or binary value as a slice of the buffer (no UTF-8 check).
    pub fn slice(&mut self) -> Result<&'a [u8], MpError> {
        let r = self.bytes()?;
        Ok(&self.buf[r])
    }

    /// A string (or binary) value that must be UTF-8.
    pub fn str(&mut self) -> Result<&'a str, MpError> {
        let r = self.bytes()?;
        std::str::from_utf8(&self.buf[r])
            .map_err(|_| MpError::Invalid("a string is not UTF-8".into()))
    }

    pub fn int(&mut self) -> Result<i64, MpError> {
        self.run(decode::read_int::<i64, _>, num_err)
    }

    pub fn is_nil(&self) -> bool {
        matches!(self.peek(), Ok(Marker::Null))
    }

    pub fn is_array(&self) -> bool {
        matches!(
            self.peek(),
            Ok(Marker::FixArray(_) | Marker::Array16 | Marker::Array32)
        )
    }

    pub fn is_bytes(&self) -> bool {
        matches!(
            self.peek(),
            Ok(Marker::FixStr(_)
                | Marker::Str8
                | Marker::Str16
                | Marker::Str32
                | Marker::Bin8
                | Marker::Bin16
                | Marker::Bin32)
        )
    }

    /// An event time: EventTime (ext type 0: u32 seconds, u32 nanoseconds, big-endian), an
    /// integer of seconds, or a float of seconds. Returns nanoseconds since the epoch.
    pub fn time(&mut self) -> Result<i64, MpError> {
        match self.peek()? {
            Marker::FixExt8 | Marker::Ext8 | Marker::Ext16 | Marker::Ext32 => {
                let meta = self.run(decode::read_ext_meta, value_err)?;
                let start = self.pos;
                self.advance(meta.size as usize)?;
                if meta.typeid != 0 || meta.size != 8 {
                    return Err(MpError::Invalid(format!(
                        "an event time is ext type {} of {} bytes (expected EventTime: type 0, 8 bytes)",
                        meta.typeid, meta.size
                    )));
                }
                let b = &self.buf[start..start + 8];
                let secs = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64;
                let nanos = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as i64;
                if nanos >= 1_000_000_000 {
                    return Err(MpError::Invalid(format!(
                        "EventTime nanoseconds {nanos} out of range"
                    )));
                }
                Ok(secs * 1_000_000_000 + nanos)
            }
            Marker::F32 => {
                let f = self.run(decode::read_f32, value_err)? as f64;
                float_time(f)
            }
            Marker::F64 => float_time(self.run(decode::read_f64, value_err)?),
            _ => {
                let secs = self.int()?;
                secs.checked_mul(1_000_000_000)
                    .ok_or_else(|| MpError::Invalid(format!("event time {secs} out of range")))
            }
        }
    }

    /// Skips one value of any type, iteratively.
    pub fn skip(&mut self) -> Result<(), MpError> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            match self.peek()? {
                Marker::FixPos(_)
                | Marker::FixNeg(_)
                | Marker::Null
                | Marker::True
                | Marker::False => self.advance(1)?,
                Marker::U8 | Marker::I8 => self.advance(2)?,
                Marker::U16 | Marker::I16 => self.advance(3)?,
                Marker::U32 | Marker::I32 | Marker::F32 => self.advance(5)?,
                Marker::U64 | Marker::I64 | Marker::F64 => self.advance(9)?,
                Marker::FixStr(_)
                | Marker::Str8
                | Marker::Str16
                | Marker::Str32
                | Marker::Bin8
                | Marker::Bin16
                | Marker::Bin32 => {
                    self.bytes()?;
                }
                Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                    pending += self.array_len()? as u64;
                }
                Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                    pending += 2 * self.map_len()? as u64;
                }
                Marker::FixExt1
                | Marker::FixExt2
                | Marker::FixExt4
                | Marker::FixExt8
                | Marker::FixExt16
                | Marker::Ext8
                | Marker::Ext16
                | Marker::Ext32 => {
                    let meta = self.run(decode::read_ext_meta, value_err)?;
                    if meta.size as usize > self.limit {
                        return Err(MpError::TooLarge(format!(
                            "an ext value of {} bytes exceeds the limit",
                            meta.size
                        )));
                    }
                    self.advance(meta.size as usize)?;
                }
                Marker::Reserved => {
                    return Err(MpError::Invalid("reserved msgpack marker 0xc1".into()))
                }
            }
            if pending > self.limit as u64 {
                return Err(MpError::TooLarge(format!(
                    "the message claims {pending} more elements than the {} bytes allowed",
                    self.limit
                )));
            }
        }
        Ok(())
    }

    /// Converts the next value to JSON (record fields other than the ones logwharf maps).
    /// Binary becomes a (lossy UTF-8) string, EventTime its RFC 3339 text, other ext types null.
    pub fn json(&mut self, depth: usize) -> Result<serde_json::Value, MpError> {
        use serde_json::Value;
        if depth > MAX_DEPTH {
            return Err(MpError::Invalid(format!(
                "a record nests deeper than {MAX_DEPTH} levels"
            )));
        }
        if self.json_left == 0 {
            return Err(MpError::TooLarge(format!(
                "a message holds more than {MAX_JSON_VALUES} record values"
            )));
        }
        self.json_left -= 1;
        Ok(match self.peek()? {
            Marker::Null => {
                self.advance(1)?;
                Value::Null
            }
            Marker::True | Marker::False => Value::Bool(self.run(decode::read_bool, value_err)?),
            Marker::F32 => float(self.run(decode::read_f32, value_err)? as f64),
            Marker::F64 => float(self.run(decode::read_f64, value_err)?),
            Marker::U64 => Value::from(self.run(decode::read_int::<u64, _>, num_err)?),
            Marker::FixPos(_)
            | Marker::FixNeg(_)
            | Marker::U8
            | Marker::U16
            | Marker::U32
            | Marker::I8
            | Marker::I16
            | Marker::I32
            | Marker::I64 => Value::from(self.int()?),
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let n = self.array_len()?;
                let mut v = Vec::with_capacity((n as usize).min(64));
                for _ in 0..n {
                    v.push(self.json(depth + 1)?);
                }
                Value::Array(v)
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                let n = self.map_len()?;
                let mut m = serde_json::Map::new();
                for _ in 0..n {
                    let k = match self.json(depth + 1)? {
                        Value::String(s) => s,
                        // A map or array as a key would be spelled out as its JSON text, and
                        // such keys nested in keys double in length with every level of
                        // quoting: a few hundred bytes could take gigabytes.
                        Value::Array(_) | Value::Object(_) => {
                            return Err(MpError::Invalid(
                                "a record key is a map or an array".into(),
                            ))
                        }
                        other => other.to_string(),
                    };
                    let v = self.json(depth + 1)?;
                    m.insert(k, v);
                }
                Value::Object(m)
            }
            Marker::FixExt8 if self.buf.get(self.pos + 1) == Some(&0) => {
                let ns = self.time()?;
                Value::String(crate::time::format_rfc3339(
                    ns,
                    crate::time::Fraction::NanosTrimmed,
                ))
            }
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => {
                self.skip()?;
                Value::Null
            }
            Marker::Reserved => {
                return Err(MpError::Invalid("reserved msgpack marker 0xc1".into()))
            }
            _ => {
                let r = self.bytes()?;
                Value::String(String::from_utf8_lossy(&self.buf[r]).into_owned())
            }
        })
    }
}

fn float_time(f: f64) -> Result<i64, MpError> {
    let ns = f * 1e9;
    if !ns.is_finite() || ns.abs() > i64::MAX as f64 {
        return Err(MpError::Invalid(format!("event time {f} out of range")));
    }
    Ok(ns as i64)
}

fn float(f: f64) -> serde_json::Value {
    serde_json::Number::from_f64(f)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

/// The length of the msgpack value at the start of `buf`: `Ok(n)` when complete, an
/// [`MpError::Incomplete`] while more bytes are needed, or an error when it can never be valid
/// or would exceed `limit` bytes.
pub fn value_len(buf: &[u8], limit: usize) -> Result<usize, MpError> {
    let mut r = Reader::new(buf, limit);
    match r.skip() {
        Ok(()) if r.pos() > limit => Err(too_large(limit)),
        Ok(()) => Ok(r.pos()),
        Err(MpError::Incomplete { need }) => {
            let need = need.unwrap_or(buf.len() + 1).max(buf.len() + 1);
            if need > limit {
                Err(too_large(limit))
            } else {
                Err(MpError::Incomplete { need: Some(need) })
            }
        }
        Err(e) => Err(e),
    }
}

fn too_large(limit: usize) -> MpError {
    MpError::TooLarge(format!(
        "a message exceeds max_message_bytes ({limit} bytes)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut v);
        v
    }

    #[test]
    fn value_len_finds_the_end_or_asks_for_more() {
        let v = enc(|b| {
            rmp::encode::write_array_len(b, 2).unwrap();
            rmp::encode::write_str(b, "tag").unwrap();
            rmp::encode::write_bin(b, &[7u8; 300]).unwrap();
        });
        assert_eq!(value_len(&v, 1 << 20), Ok(v.len()));
        let mut longer = v.clone();
        longer.extend_from_slice(&[0x90]);
        assert_eq!(value_len(&longer, 1 << 20), Ok(v.len()));
        // Cut inside the binary: the exact total is known.
        assert_eq!(
            value_len(&v[..20], 1 << 20),
            Err(MpError::Incomplete {
                need: Some(v.len())
            })
        );
        assert!(matches!(value_len(&v, 100), Err(MpError::TooLarge(_))));
        assert!(matches!(value_len(&[0xc1], 100), Err(MpError::Invalid(_))));
    }

    #[test]
    fn a_claimed_count_of_2_pow_32_is_refused_without_allocating() {
        let v = [0xdd, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(matches!(value_len(&v, 16 << 20), Err(MpError::TooLarge(_))));
        let m = [0xdf, 0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(value_len(&m, 16 << 20), Err(MpError::TooLarge(_))));
    }

    #[test]
    fn record_values_have_a_budget() {
        let mut v = vec![0xdd, 0x00, 0x10, 0x00, 0x00]; // array of 1 Mi elements
        v.extend(std::iter::repeat_n(0xc0u8, 1 << 20));
        let mut r = Reader::new(&v, 16 << 20);
        assert!(matches!(r.json(0), Err(MpError::TooLarge(_))));
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let v = vec![0x91u8; 1_000_000];
        assert!(matches!(
            value_len(&v, 16 << 20),
            Err(MpError::Incomplete { .. })
        ));
        let mut r = Reader::new(&v, 16 << 20);
        assert!(matches!(r.json(0), Err(MpError::Invalid(_))));
    }

    /// Found by fuzzing (fuzz/fuzz_targets/forward.rs): maps used as keys of maps, 40 levels
    /// deep in 82 bytes, each key spelled out as the JSON text of the one inside it; the
    /// quoting doubled the text at every level (a timeout at 17 levels, terabytes at 40).
    #[test]
    fn a_map_or_array_key_is_refused() {
        // {{{…{"k": 1}: 1}…: 1}: 1}
        let mut v = vec![0x81u8; 40];
        v.extend_from_slice(&[0xa1, b'k', 0x01]);
        v.extend(std::iter::repeat_n(0x01u8, 39));
        assert_eq!(value_len(&v, 1 << 20), Ok(v.len()));
        let mut r = Reader::new(&v, 1 << 20);
        assert!(matches!(r.json(0), Err(MpError::Invalid(_))));
        let arr = [0x81, 0x91, 0x01, 0x01];
        assert!(matches!(
            Reader::new(&arr, 100).json(0),
            Err(MpError::Invalid(_))
        ));
        let scalar = [0x81, 0x07, 0x01, 0x81, 0xc0, 0x01];
        assert_eq!(
            Reader::new(&scalar, 100).json(0).unwrap().to_string(),
            r#"{"7":1}"#
        );
    }

    #[test]
    fn times_in_all_three_forms() {
        let et = [0xd7, 0x00, 0x6a, 0x25, 0xb1, 0x56, 0x35, 0xbc, 0x27, 0x07];
        let mut r = Reader::new(&et, 100);
        assert_eq!(r.time(), Ok(0x6a25b156 * 1_000_000_000 + 0x35bc2707));
        let i = enc(|b| {
            rmp::encode::write_uint(b, 1_795_611_862).unwrap();
        });
        assert_eq!(Reader::new(&i, 100).time(), Ok(1_795_611_862_000_000_000));
        let f = enc(|b| rmp::encode::write_f64(b, 1.5).unwrap());
        assert_eq!(Reader::new(&f, 100).time(), Ok(1_500_000_000));
        let bad = [0xd7, 0x05, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            Reader::new(&bad, 100).time(),
            Err(MpError::Invalid(_))
        ));
    }
}
