//! The one batching helper: gathers the sink's incoming batches until `max_events`,
//! `max_bytes` or `timeout` (counted from the first batch) is reached, so a sink sends one
//! request or one write for many source batches.

use logwharf_collector::{SinkBatch, SinkInput};
use logwharf_config::BatchConfig;

/// Waits for the next group of batches; `None` when the input is closed and empty.
/// A group always holds at least one batch, even if that batch alone exceeds the limits.
pub async fn next_group(input: &mut SinkInput, cfg: &BatchConfig) -> Option<Vec<SinkBatch>> {
    let first = input.recv().await?;
    let mut events = first.batch.len();
    let mut bytes = first.batch.byte_size();
    let mut group = vec![first];
    let deadline = tokio::time::Instant::now() + cfg.timeout.0;
    while events < cfg.max_events && (bytes as u64) < cfg.max_bytes.0 {
        let next = match input.try_recv() {
            Some(b) => b,
            None => match tokio::time::timeout_at(deadline, input.recv()).await {
                Ok(Some(b)) => b,
                Ok(None) | Err(_) => break,
            },
        };
        events += next.batch.len();
        bytes += next.batch.byte_size();
        group.push(next);
    }
    Some(group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use logwharf_collector::{AckToken, Batch, Event, Stream};
    use logwharf_config::{ByteSize, DurationValue};

    fn batch(n: usize) -> SinkBatch {
        let events = (0..n)
            .map(|_| Event::new(0, Stream::Stdout, Bytes::from_static(b"0123456789")))
            .collect();
        SinkBatch::detached(
            Batch {
                source: "s".into(),
                events,
            },
            AckToken::new(None),
        )
    }

    #[tokio::test]
    async fn groups_by_events_then_by_timeout() {
        let (tx, mut input) = SinkInput::for_test("t");
        for _ in 0..5 {
            tx.send(batch(4)).ok().unwrap();
        }
        let cfg = BatchConfig {
            max_events: 10,
            max_bytes: ByteSize(1 << 20),
            timeout: DurationValue::from_millis(50),
        };
        assert_eq!(next_group(&mut input, &cfg).await.unwrap().len(), 3);
        assert_eq!(next_group(&mut input, &cfg).await.unwrap().len(), 2);
        drop(tx);
        assert!(next_group(&mut input, &cfg).await.is_none());
    }

    #[tokio::test]
    async fn groups_by_bytes() {
        let (tx, mut input) = SinkInput::for_test("t");
        for _ in 0..3 {
            tx.send(batch(2)).ok().unwrap();
        }
        let cfg = BatchConfig {
            max_events: 100,
            max_bytes: ByteSize(20),
            timeout: DurationValue::from_millis(50),
        };
        assert_eq!(next_group(&mut input, &cfg).await.unwrap().len(), 1);
    }
}
