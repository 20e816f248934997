//! `type = "blackhole"`: accepts and counts, for benchmarks.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BlackholeConfig {}

impl logwharf_config::ConfigTable for BlackholeConfig {}

impl logwharf_collector::SinkConfig for BlackholeConfig {
    fn build(
        &self,
        cx: logwharf_collector::SinkContext,
    ) -> anyhow::Result<Box<dyn logwharf_collector::Sink>> {
        Ok(Box::new(super::Blackhole::new(&cx.name)))
    }
}
