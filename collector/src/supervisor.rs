//! Supervision: every source and sink runs under a loop that restarts it when its task returns
//! an error or panics — with the shared [`Backoff`] (reset once a run has proven itself, see
//! [`crate::health`]), counted in `logwharf_component_restarts_total{component}`
//! (`component` = `sources.NAME` / `sinks.NAME`) and logged with the cause. A new instance is
//! made for each run by a factory closure, so the loops know nothing about how components are
//! built. A sink keeps its buffer across restarts, including the batches it had taken and not
//! settled ([`crate::inflight`]); a source gets a fresh [`SourceContext`] and resumes from its
//! checkpoints.

use crate::backoff::Backoff;
use crate::health::ComponentHealth;
use crate::inflight::SupervisedInput;
use crate::metrics as m;
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::sources::{Source, SourceContext};
use futures_util::FutureExt;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// Restart waits: 0.5 s doubling to 30 s.
fn restart_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
}

/// Runs one run of a component; `Err` carries the cause of a failure (error chain or panic
/// message).
async fn attempt(run: impl Future<Output = anyhow::Result<()>>) -> Result<(), String> {
    match AssertUnwindSafe(run).catch_unwind().await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(panic) => Err(format!("panicked: {}", panic_message(&*panic))),
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// One component's restart bookkeeping.
struct Restarts {
    health: ComponentHealth,
    backoff: Backoff,
    counter: metrics::Counter,
}

impl Restarts {
    fn new(health: ComponentHealth) -> Restarts {
        let counter =
            metrics::counter!(m::COMPONENT_RESTARTS, "component" => health.component().to_string());
        counter.increment(0); // the series exists (at 0) from the start
        Restarts {
            health,
            backoff: restart_backoff(),
            counter,
        }
    }

    /// Records a failed run and returns how long to wait before the next.
    fn failed(&mut self, cause: &str, requeued: Option<usize>) -> Duration {
        if self.health.failed(cause) {
            self.backoff.reset();
        }
        self.counter.increment(1);
        let delay = self.backoff.next_delay();
        let component = self.health.component();
        match requeued {
            Some(n) => {
                tracing::error!(%component, error = cause, restart_in = ?delay, requeued_batches = n, "sink failed; restarting it with the batches it had not delivered")
            }
            None => {
                tracing::error!(%component, error = cause, restart_in = ?delay, "source failed; restarting it from its checkpoints")
            }
        }
        delay
    }
}

/// Runs a source until it returns normally (shutdown, or `--once` at the end of its input),
/// restarting it after errors and panics. No restart once shutdown has begun.
pub(crate) async fn supervise_source(
    health: ComponentHealth,
    mut build: impl FnMut() -> anyhow::Result<Box<dyn Source>>,
    mut context: impl FnMut() -> SourceContext,
    shutdown: Shutdown,
) {
    let mut restarts = Restarts::new(health.clone());
    loop {
        let result = match build() {
            Ok(source) => {
                health.started();
                attempt(source.run(context())).await
            }
            Err(e) => Err(format!("building it again: {e:#}")),
        };
        let cause = match result {
            Ok(()) => break,
            Err(_) if shutdown.is_triggered() => break,
            Err(cause) => cause,
        };
        let delay = restarts.failed(&cause, None);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait() => break,
        }
    }
    health.finished();
}

/// Runs a sink until its input is closed and drained, restarting it after errors, panics, or
/// a return while its sources still run — each time with the batches it had not settled.
/// Stopped only by its input draining or by being dropped (the shutdown deadline).
pub(crate) async fn supervise_sink(
    health: ComponentHealth,
    mut build: impl FnMut() -> anyhow::Result<Box<dyn Sink>>,
    input: SupervisedInput,
) {
    let mut restarts = Restarts::new(health.clone());
    loop {
        let result = match (build(), input.take()) {
            (Ok(sink), Some(run_input)) => {
                health.started();
                attempt(sink.run(run_input)).await
            }
            (Err(e), _) => Err(format!("building it again: {e:#}")),
            (_, None) => Err("its previous run still holds its input".to_string()),
        };
        let cause = match result {
            Ok(()) if input.drained() => break,
            Ok(()) => "it stopped while its sources still run".to_string(),
            Err(cause) => cause,
        };
        let requeued = input.requeue();
        tokio::time::sleep(restarts.failed(&cause, Some(requeued))).await;
    }
    let left = input.unsettled();
    if left > 0 {
        tracing::warn!(component = %health.component(), batches = left, "sink finished with batches it did not deliver; they are not checkpointed and will be read again");
    }
    health.finished();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::AckToken;
    use crate::event::{Batch, Event, Stream};
    use crate::health::Health;
    use crate::sink::{SinkBatch, SinkInput};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::sync::mpsc;

    /// Delivers every batch, but panics on the `fail_at`-th batch it takes (while holding the
    /// one before, unsettled).
    struct Flaky {
        taken: Arc<AtomicUsize>,
        fail_at: usize,
        delivered: mpsc::UnboundedSender<String>,
    }

    #[async_trait::async_trait]
    impl Sink for Flaky {
        async fn run(self: Box<Self>, mut input: SinkInput) -> anyhow::Result<()> {
            let mut held: Option<SinkBatch> = None;
            while let Some(sb) = input.recv().await {
                if self.taken.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
                    panic!("injected fault");
                }
                if let Some(h) = held.take() {
                    self.delivered.send(h.batch.source.to_string()).unwrap();
                    h.ack.delivered();
                }
                held = Some(sb);
            }
            if let Some(h) = held.take() {
                self.delivered.send(h.batch.source.to_string()).unwrap();
                h.ack.delivered();
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_panicking_sink_is_restarted_with_what_it_had_not_delivered() {
        let health = Health::new();
        let h = health.register("sinks.flaky");
        let (tx, rx) = mpsc::unbounded_channel();
        let (dtx, mut delivered) = mpsc::unbounded_channel();
        let taken = Arc::new(AtomicUsize::new(0));
        let (acks_tx, mut acks) = mpsc::unbounded_channel();
        for i in 0..5 {
            let acks_tx = acks_tx.clone();
            tx.send(SinkBatch {
                batch: Arc::new(Batch {
                    source: format!("b{i}").into(),
                    events: vec![Event::new(0, Stream::Stdout, bytes::Bytes::from("x"))],
                }),
                ack: AckToken::new(Some(Box::new(move |ok| acks_tx.send((i, ok)).unwrap()))),
                _permit: None,
                flow: 0,
            })
            .unwrap();
        }
        drop(tx);
        let t = taken.clone();
        let input = SupervisedInput::new("flaky".into(), rx, h.clone());
        let sup = tokio::spawn(supervise_sink(
            h,
            move || {
                Ok(Box::new(Flaky {
                    taken: t.clone(),
                    fail_at: 3,
                    delivered: dtx.clone(),
                }) as Box<dyn Sink>)
            },
            input,
        ));
        sup.await.unwrap();
        let mut got = Vec::new();
        while let Ok(b) = delivered.try_recv() {
            got.push(b);
        }
        assert_eq!(
            got,
            ["b0", "b1", "b2", "b3", "b4"],
            "b1 (held) and b2 (taken) re-sent"
        );
        drop(acks_tx);
        let mut settled = Vec::new();
        while let Some(a) = acks.recv().await {
            settled.push(a);
        }
        settled.sort();
        assert_eq!(settled, (0..5).map(|i| (i, true)).collect::<Vec<_>>());
        let (_, doc) = health.report();
        assert_eq!(doc["components"]["sinks.flaky"]["restarts"], 1);
        assert!(doc["components"]["sinks.flaky"]["last_error"]
            .as_str()
            .unwrap()
            .contains("injected fault"));
    }
}
