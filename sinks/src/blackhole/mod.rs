//! `type = "blackhole"`: accepts every batch, counts it, acknowledges it. For benchmarks: it
//! measures everything but the sink.

pub mod config;

pub use config::BlackholeConfig;

use logwharf_collector::metrics as m;
use logwharf_collector::{Sink, SinkInput};

pub struct Blackhole {
    name: String,
}

impl Blackhole {
    pub fn new(name: &str) -> Blackhole {
        Blackhole {
            name: name.to_string(),
        }
    }
}

#[async_trait::async_trait]
impl Sink for Blackhole {
    async fn run(self: Box<Self>, mut input: SinkInput) -> anyhow::Result<()> {
        let events = metrics::counter!(m::SINK_EVENTS, "sink" => self.name.clone());
        let bytes = metrics::counter!(m::SINK_BYTES, "sink" => self.name.clone());
        let (mut n, mut b) = (0u64, 0u64);
        while let Some(sb) = input.recv().await {
            n += sb.batch.len() as u64;
            b += sb.batch.byte_size() as u64;
            events.increment(sb.batch.len() as u64);
            bytes.increment(sb.batch.byte_size() as u64);
            sb.ack.delivered();
        }
        tracing::info!(sink = %self.name, events = n, bytes = b, "blackhole totals");
        Ok(())
    }
}
