//! Docker's rotation rules for one container, as its `hostconfig.json` records them
//! (`LogConfig.Config["max-size"]`, `["max-file"]`, with the daemon's defaults already merged
//! in at creation): what they prove about files Docker rotated and deleted unseen.
//!
//! Docker's json-file logger checks the size *before* each write and rotates once it is at
//! or past `max-size`, so every file it rotated holds at least `max-size` bytes (and less than
//! one record more). That lower bound is what makes "the rest of a deleted file" a number
//! rather than a shrug when logwharf was not running while it happened ([`super::loss`]).
//! Read from the container's directory, next to the logs, so it needs neither the Docker API
//! nor enrichment.

use std::path::Path;

/// The container's rotation limits; `None` where Docker does not rotate by that rule (or the
/// config could not be read: then nothing is assumed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationLimits {
    /// Bytes at which Docker rotates the live file.
    pub max_size: Option<u64>,
    /// Files Docker keeps (live one included).
    pub max_file: Option<u32>,
}

impl RotationLimits {
    /// Reads `<dir>/hostconfig.json`. A missing or unreadable file, another log driver or a
    /// value Docker would not accept all give "unknown" (no bound is then assumed).
    pub fn read(dir: &Path) -> RotationLimits {
        std::fs::read(dir.join("hostconfig.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|v| RotationLimits::from_hostconfig(&v))
            .unwrap_or_default()
    }

    pub fn from_hostconfig(v: &serde_json::Value) -> RotationLimits {
        let log = &v["LogConfig"];
        if log["Type"].as_str() != Some("json-file") {
            return RotationLimits::default();
        }
        let opt = |k: &str| log["Config"][k].as_str();
        RotationLimits {
            max_size: opt("max-size").and_then(docker_size),
            max_file: opt("max-file")
                .and_then(|s| s.trim().parse().ok())
                .filter(|&n| n > 0),
        }
    }
}

/// A size as Docker parses `max-size` (go-units `FromHumanSize`: decimal multiples, so
/// `"10k"` is 10,000 bytes; `"1.5m"`, `"20 MB"`, `"3kib"` are accepted too).
pub fn docker_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult = match unit {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "p" => 1e15,
        _ => return None,
    };
    let bytes = num * mult;
    (bytes >= 1.0 && bytes.is_finite()).then_some(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_parse_as_docker_parses_them() {
        assert_eq!(docker_size("10k"), Some(10_000));
        assert_eq!(docker_size("1m"), Some(1_000_000));
        assert_eq!(docker_size("1.5M"), Some(1_500_000));
        assert_eq!(docker_size("20 MB"), Some(20_000_000));
        assert_eq!(docker_size("3kib"), Some(3_000));
        assert_eq!(docker_size("512"), Some(512));
        assert_eq!(docker_size("0"), None);
        assert_eq!(docker_size("ten"), None);
        assert_eq!(docker_size("5x"), None);
    }

    #[test]
    fn limits_come_from_the_json_file_log_config_only() {
        let hc = |t: &str| json!({"LogConfig": {"Type": t, "Config": {"max-size": "20k", "max-file": "2"}}});
        assert_eq!(
            RotationLimits::from_hostconfig(&hc("json-file")),
            RotationLimits {
                max_size: Some(20_000),
                max_file: Some(2)
            }
        );
        assert_eq!(
            RotationLimits::from_hostconfig(&hc("local")),
            RotationLimits::default()
        );
        let none = json!({"LogConfig": {"Type": "json-file", "Config": {}}});
        assert_eq!(
            RotationLimits::from_hostconfig(&none),
            RotationLimits::default()
        );
        let d = tempfile::tempdir().unwrap();
        assert_eq!(RotationLimits::read(d.path()), RotationLimits::default());
        std::fs::write(
            d.path().join("hostconfig.json"),
            hc("json-file").to_string(),
        )
        .unwrap();
        assert_eq!(RotationLimits::read(d.path()).max_size, Some(20_000));
    }
}
