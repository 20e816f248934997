//! Byte sizes (`10k`, `20m`, `1g`, as Docker's `max-size` takes them) and durations (`500ms`,
//! `1s`, `5m`) as they appear in the config.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A size in bytes. Accepts an integer, or a number with a unit `b`, `k`/`kb`/`kib`, `m`…,
/// `g`…, case-insensitive, with 1024 multiples (Docker's `max-size` uses binary units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || format!("invalid size {s:?} (expected e.g. 512, 10k, 20m, 1g)");
        if num.is_empty() {
            return Err(bad());
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            _ => return Err(bad()),
        };
        let v = n * mult as f64;
        if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(ByteSize(v as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("invalid size (expected e.g. 512, \"10k\", \"20m\", \"1g\")")
        })? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration: an integer number of seconds, or a string `250ms`, `1s`, `5m`, `1h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl DurationValue {
    pub const fn from_millis(ms: u64) -> Self {
        DurationValue(Duration::from_millis(ms))
    }

    pub fn parse(s: &str) -> Result<DurationValue, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || format!("invalid duration {s:?} (expected e.g. 500ms, 1s, 5m)");
        let n: f64 = num.parse().map_err(|_| bad())?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "" | "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(bad()),
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(bad());
        }
        // Finite yet past Duration's range (`3333…3s`, found by fuzzing): from_secs_f64
        // would panic.
        Duration::try_from_secs_f64(secs)
            .map(DurationValue)
            .map_err(|_| format!("invalid duration {s:?} (too long)"))
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "invalid duration (expected seconds or e.g. \"500ms\", \"1s\")",
            )
        })? {
            Raw::N(n) => Ok(DurationValue(Duration::from_secs(n))),
            Raw::S(s) => DurationValue::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker_max_size() {
        assert_eq!(ByteSize::parse("10k").unwrap().0, 10 * 1024);
        assert_eq!(ByteSize::parse("20m").unwrap().0, 20 * 1024 * 1024);
        assert_eq!(ByteSize::parse("1g").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("1G").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("512").unwrap().0, 512);
        assert_eq!(ByteSize::parse("1.5k").unwrap().0, 1536);
        assert_eq!(ByteSize::parse("10MiB").unwrap().0, 10 << 20);
    }

    #[test]
    fn a_duration_past_durations_range_is_an_error_not_a_panic() {
        let e = DurationValue::parse(&format!("{}s", "3".repeat(90))).unwrap_err();
        assert!(e.contains("too long"), "{e}");
        assert!(DurationValue::parse("1e400s").is_err());
        assert_eq!(
            DurationValue::parse("1.5s").unwrap().0,
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn bad_sizes_are_named() {
        let e = ByteSize::parse("10q").unwrap_err();
        assert_eq!(e, "invalid size \"10q\" (expected e.g. 512, 10k, 20m, 1g)");
        assert!(ByteSize::parse("").is_err());
        assert!(ByteSize::parse("k").is_err());
        assert!(ByteSize::parse("-1k").is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            DurationValue::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            DurationValue::parse("2s").unwrap().0,
            Duration::from_secs(2)
        );
        assert_eq!(
            DurationValue::parse("5m").unwrap().0,
            Duration::from_secs(300)
        );
        assert!(DurationValue::parse("5 fortnights").is_err());
    }
}
