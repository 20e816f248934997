//! `type = "file"`: local files from a path template, in Docker's json-file format or as
//! JSON events, with Docker's rotation limits (`max_size`, `max_file`, `compress`).

use logwharf_config::{ByteSize, ConfigTable, Decoder, DurationValue, Encoding, Template};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct FileSinkConfig {
    /// Path template, e.g. `/var/log/logwharf/{{.ID}}.log`.
    pub path: Template,
    #[serde(default = "default_encoding")]
    pub encoding: Encoding,
    /// Rotate when the file reaches this size (Docker's `max-size`); unset: never rotate.
    #[serde(default, alias = "max-size")]
    pub max_size: Option<ByteSize>,
    /// Files kept, the live one included (Docker's `max-file`, default 1).
    /// Also as a string (`"3"`), as Docker's daemon.json writes it.
    #[serde(
        default = "default_max_file",
        alias = "max-file",
        deserialize_with = "number_or_string"
    )]
    pub max_file: u32,
    /// Gzip rotated files (`.1.gz` …), as Docker's `compress`. Also as a string (`"true"`).
    #[serde(default, deserialize_with = "bool_or_string")]
    pub compress: bool,
    /// Files held open at most; the least recently written is closed beyond it (hosts have
    /// hundreds of containers). Default 256.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// A file not written for this long is closed (reopened on its next line). Default 60s.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: DurationValue,
}

/// Docker's daemon.json gives every log-opt as a string; accept both spellings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Lenient<T> {
    Plain(T),
    Text(String),
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match Lenient::<u32>::deserialize(d) {
        Ok(Lenient::Plain(n)) => Ok(n),
        Ok(Lenient::Text(s)) => s.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("invalid number {s:?} (expected e.g. 3 or \"3\")"))
        }),
        Err(_) => Err(serde::de::Error::custom(
            "invalid number (expected e.g. 3 or \"3\")",
        )),
    }
}

fn bool_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Lenient::<bool>::deserialize(d) {
        Ok(Lenient::Plain(b)) => Ok(b),
        Ok(Lenient::Text(s)) => s.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("invalid boolean {s:?} (expected true or false)"))
        }),
        Err(_) => Err(serde::de::Error::custom(
            "invalid boolean (expected true or false)",
        )),
    }
}

fn default_encoding() -> Encoding {
    Encoding::Json
}

fn default_max_file() -> u32 {
    1
}

fn default_max_open_files() -> usize {
    256
}

fn default_idle_timeout() -> DurationValue {
    DurationValue::from_millis(60_000)
}

impl FileSinkConfig {
    /// A config with every key at its default but `path`.
    pub fn new(path: Template) -> FileSinkConfig {
        FileSinkConfig {
            path,
            encoding: default_encoding(),
            max_size: None,
            max_file: default_max_file(),
            compress: false,
            max_open_files: default_max_open_files(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

impl ConfigTable for FileSinkConfig {
    fn validate(&self, d: &mut Decoder<'_>) {
        self.encoding.check(&[Encoding::Json, Encoding::Docker], d);
        if self.max_file < 1 {
            d.error(&["max_file"], "max_file cannot be less than 1");
        }
        if self.max_open_files < 1 {
            d.error(&["max_open_files"], "max_open_files must be at least 1");
        }
        if self.idle_timeout.0.is_zero() {
            d.error(&["idle_timeout"], "idle_timeout must be greater than 0");
        }
        if matches!(self.max_size, Some(ByteSize(0))) {
            d.error(&["max_size"], "max_size must be greater than 0");
        }
        // Docker's json-file driver refuses the same combination with the same words.
        if self.compress && (self.max_file < 2 || self.max_size.is_none()) {
            d.error(
                &["compress"],
                "compress cannot be true when max_file is less than 2 or max_size is not set",
            );
        }
    }
}

impl logwharf_collector::SinkConfig for FileSinkConfig {
    fn build(
        &self,
        cx: logwharf_collector::SinkContext,
    ) -> anyhow::Result<Box<dyn logwharf_collector::Sink>> {
        Ok(Box::new(super::FileSink::new(&cx.name, self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<FileSinkConfig, toml::de::Error> {
        toml::from_str(&format!("path = \"/tmp/x.log\"\n{extra}"))
    }

    #[test]
    fn daemon_json_strings_are_accepted() {
        let c = parse("max-size = \"10m\"\nmax-file = \"3\"\ncompress = \"true\"").unwrap();
        assert_eq!(
            (c.max_size, c.max_file, c.compress),
            (Some(ByteSize(10 << 20)), 3, true)
        );
        let c = parse("max_file = 2\ncompress = false").unwrap();
        assert_eq!((c.max_file, c.compress), (2, false));
        let c = parse("").unwrap();
        assert_eq!((c.max_file, c.compress, c.max_open_files), (1, false, 256));
        assert!(parse("max_file = \"three\"")
            .unwrap_err()
            .to_string()
            .contains("invalid number \"three\""));
        assert!(parse("compress = 1").is_err());
    }
}
