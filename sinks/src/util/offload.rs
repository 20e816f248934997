//! Encoding a large group on the blocking pool, beside the reading that feeds it.
//!
//! A reader with a backlog and the sink it feeds wake each other, and tokio runs a task that
//! another task woke on the waking worker (its LIFO slot, which the other workers cannot
//! steal): reader and sink then take turns on one core while the other one idles. A group of
//! at least [`POOL_MIN_EVENTS`] events is therefore encoded on a pool thread — one hand-off
//! (≈ 10 µs) against ≈ 100 ns per event — while its reader reads on; the small groups of
//! quiet containers stay on the worker, where they cost nothing extra.

use anyhow::Context;
use logwharf_collector::SinkBatch;

/// Groups of at least this many events are encoded on the blocking pool.
pub const POOL_MIN_EVENTS: usize = 512;

/// A sink's encoder (with its per-container caches) that goes where the group's work runs.
pub struct Offload<E> {
    /// Away only while a group is encoded on the pool.
    encoder: Option<E>,
}

impl<E: Send + 'static> Offload<E> {
    pub fn new(encoder: E) -> Offload<E> {
        Offload {
            encoder: Some(encoder),
        }
    }

    pub fn get_mut(&mut self) -> &mut E {
        self.encoder
            .as_mut()
            .expect("the encoder is back after each group")
    }

    /// `encode(encoder, &work)` for `work` of `events` events: here when they are few, on
    /// the blocking pool when they are many; `work` comes back with the result. An error only
    /// when the encoding panicked there: the encoder and the work are gone with it, and the
    /// sink fails (its supervisor starts it again; the work's batches count as not delivered,
    /// as after a panic here).
    pub async fn encode<W, R, F>(
        &mut self,
        work: W,
        events: usize,
        encode: F,
    ) -> anyhow::Result<(W, R)>
    where
        W: Send + 'static,
        R: Send + 'static,
        F: FnOnce(&mut E, &W) -> R + Send + 'static,
    {
        if events < POOL_MIN_EVENTS {
            let r = encode(self.get_mut(), &work);
            return Ok((work, r));
        }
        let mut encoder = self
            .encoder
            .take()
            .expect("the encoder is back after each group");
        let (encoder, work, r) = tokio::task::spawn_blocking(move || {
            let r = encode(&mut encoder, &work);
            (encoder, work, r)
        })
        .await
        .context("encoding on the blocking pool")?;
        self.encoder = Some(encoder);
        Ok((work, r))
    }
}

/// The events of a group.
pub fn events(group: &[SinkBatch]) -> usize {
    group.iter().map(|sb| sb.batch.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use logwharf_collector::{AckToken, Batch, Event, Stream};

    fn group(events: usize) -> Vec<SinkBatch> {
        let batch = Batch {
            source: "s".into(),
            events: (0..events)
                .map(|_| Event::new(0, Stream::Stdout, Bytes::from_static(b"x")))
                .collect(),
        };
        vec![SinkBatch::detached(batch, AckToken::new(None))]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn small_groups_are_encoded_here_and_large_ones_on_the_pool_with_the_encoder_back() {
        let mut o = Offload::new(0usize);
        let here = std::thread::current().id();
        for (n, on_pool) in [(1, false), (POOL_MIN_EVENTS, true), (3, false)] {
            let g = group(n);
            let m = events(&g);
            let (g, (thread, seen)) = o
                .encode(g, m, |count: &mut usize, g: &Vec<SinkBatch>| {
                    *count += g[0].batch.len();
                    (std::thread::current().id(), g[0].batch.len())
                })
                .await
                .unwrap();
            assert_eq!((g.len(), seen), (1, n));
            assert_eq!(thread != here, on_pool, "{n} events");
        }
        assert_eq!(*o.get_mut(), 1 + POOL_MIN_EVENTS + 3);
    }

    #[tokio::test]
    async fn a_panic_on_the_pool_is_an_error_not_a_crash() {
        let mut o = Offload::new(());
        let r = o
            .encode(
                group(POOL_MIN_EVENTS),
                POOL_MIN_EVENTS,
                |_: &mut (), _: &Vec<SinkBatch>| -> () { panic!("encoder bug") },
            )
            .await;
        assert!(r.is_err());
    }
}
