//! `type = "file"`: local files from a path template, in Docker's json-file format or as
//! JSON events, with Docker's rotation limits (`max_size`, `max_file`, `compress`).

use crate::load::Decoder;
use crate::{ByteSize, Encoding, Template};
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
    #[serde(default = "default_max_file", alias = "max-file")]
    pub max_file: u32,
    /// Gzip rotated files (`.1.gz` …), as Docker's `compress`.
    #[serde(default)]
    pub compress: bool,
}

fn default_encoding() -> Encoding {
    Encoding::Json
}

fn default_max_file() -> u32 {
    1
}

impl FileSinkConfig {
    pub(crate) fn validate(&self, d: &mut Decoder<'_>) {
        self.encoding.check(&[Encoding::Json, Encoding::Docker], d);
        if self.max_file < 1 {
            d.error(&["max_file"], "max_file cannot be less than 1");
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
