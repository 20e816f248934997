//! `type = "console"`: events to stdout, one per line.

use crate::load::Decoder;
use crate::Encoding;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ConsoleConfig {
    pub encoding: Encoding,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            encoding: Encoding::Json,
        }
    }
}

impl ConsoleConfig {
    pub(crate) fn validate(&self, d: &mut Decoder<'_>) {
        self.encoding.check(
            &[
                Encoding::Json,
                Encoding::Text,
                Encoding::Docker,
                Encoding::Raw,
            ],
            d,
        );
    }
}
