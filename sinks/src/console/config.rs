//! `type = "console"`: events to stdout, one per line.

use logwharf_config::{ConfigTable, Decoder, Encoding};
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

impl ConfigTable for ConsoleConfig {
    fn validate(&self, d: &mut Decoder<'_>) {
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

impl logwharf_collector::SinkConfig for ConsoleConfig {
    fn build(
        &self,
        cx: logwharf_collector::SinkContext,
    ) -> anyhow::Result<Box<dyn logwharf_collector::Sink>> {
        Ok(Box::new(super::ConsoleSink::new(&cx.name, self)))
    }
}
