//! What the sources' unit tests share: a source running into test sinks
//! ([`SourceOutput::for_test_sinks`]), with its shutdown and its task.

use super::{Source, SourceContext};
use crate::checkpoint::CheckpointStore;
use crate::shutdown::Shutdown;
use crate::sink::SinkInput;
use crate::topology::SourceOutput;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A source running into one test sink.
pub struct Running {
    pub input: SinkInput,
    pub shutdown: Shutdown,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Shuts the source down and waits for it, which must succeed.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// Runs `source` as `name` into one test sink buffering `capacity` events.
pub fn run(
    name: &str,
    source: Box<dyn Source>,
    store: Arc<CheckpointStore>,
    capacity: u32,
    once: bool,
) -> Running {
    let (mut inputs, shutdown, task) = run_sinks(name, source, store, &[("test", capacity)], once);
    Running {
        input: inputs.remove(0),
        shutdown,
        task,
    }
}

/// Runs `source` as `name` into test sinks (name, buffer capacity in events).
pub fn run_sinks(
    name: &str,
    source: Box<dyn Source>,
    store: Arc<CheckpointStore>,
    sinks: &[(&str, u32)],
    once: bool,
) -> (Vec<SinkInput>, Shutdown, JoinHandle<anyhow::Result<()>>) {
    let (out, inputs) = SourceOutput::for_test_sinks(name, sinks);
    let shutdown = Shutdown::new();
    let ctx = SourceContext {
        name: name.into(),
        out,
        shutdown: shutdown.clone(),
        checkpoints: store,
        once,
    };
    (inputs, shutdown, tokio::spawn(source.run(ctx)))
}
