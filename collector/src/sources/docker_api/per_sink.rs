//! How the API source keeps sinks independent. Docker keeps a container's log (the `local`
//! driver's files, journald, json-file), so every sink that reads the source gets its own API
//! log stream of each container ([`follow_container`]: one reader per (container, sink)), its
//! own [`super::Cursor`] and its own checkpoint (`<source>/<container>/<sink>`; the
//! per-container key of earlier versions is carried over to every sink on upgrade). A sink
//! whose buffer is full stops only its own stream, which re-reads from its cursor with
//! `since` when the sink takes lines again. Lifecycle events (`events = true`), which cannot
//! be re-read, go through a bounded queue per sink ([`EventFanout`]), so that a full sink
//! never holds up the source's main task (and with it the start of new containers' streams).

use super::reader::{self, View};
use super::Shared;
use crate::checkpoint::{per_sink, CheckpointStore};
use crate::event::{ContainerMeta, Event};
use crate::metrics as m;
use crate::topology::SourceOutput;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Lifecycle events a sink that takes nothing can owe before more are dropped (and counted).
const EVENT_QUEUE: usize = 4096;

/// The views of the source's output `out`, one per sink (or one to nowhere without sinks),
/// each with its checkpoint key in `container`; an old per-container checkpoint becomes every
/// sink's position first.
fn views(out: &SourceOutput, store: &CheckpointStore, container: &str) -> Vec<View> {
    let source = out.source();
    let sinks = out.sinks();
    if sinks.is_empty() {
        return vec![View {
            out: out.clone(),
            sink: "".into(),
            key: per_sink::input_key(source, container),
            counts: true,
        }];
    }
    per_sink::carry_over(store, source, container, &sinks);
    sinks
        .into_iter()
        .enumerate()
        .map(|(i, sink)| View {
            out: out.only(i),
            key: per_sink::sink_key(source, container, &sink),
            sink,
            counts: i == 0,
        })
        .collect()
}

/// Follows `meta`'s container once per sink until it ends (or `stop`).
pub(super) async fn follow_container(
    shared: Arc<Shared>,
    meta: Arc<ContainerMeta>,
    stop: CancellationToken,
) {
    let mut readers = JoinSet::new();
    for view in views(&shared.out, &shared.checkpoints, &meta.id) {
        // Children of the container's span, as the json-file source's readers are.
        readers.spawn(
            reader::follow(shared.clone(), meta.clone(), stop.clone(), view).in_current_span(),
        );
    }
    while readers.join_next().await.is_some() {}
}

/// Lifecycle events to every sink through a queue of its own.
pub(super) struct EventFanout {
    queues: Vec<(Arc<str>, mpsc::Sender<Event>)>,
    tasks: Vec<JoinHandle<()>>,
}

impl EventFanout {
    /// One forwarding task per sink of `out`; they stop at `stop` (what is queued then is not
    /// sent: lifecycle events have no checkpoint).
    pub fn new(out: &SourceOutput, stop: CancellationToken) -> EventFanout {
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for (i, sink) in out.sinks().into_iter().enumerate() {
            let (tx, mut rx) = mpsc::channel::<Event>(EVENT_QUEUE);
            let (view, stop) = (out.only(i), stop.clone());
            tasks.push(tokio::spawn(
                async move {
                    loop {
                        let e = tokio::select! {
                            e = rx.recv() => match e { Some(e) => e, None => return },
                            _ = stop.cancelled() => return,
                        };
                        tokio::select! {
                            r = view.send(vec![e], None) => if r.is_err() { return },
                            _ = stop.cancelled() => return,
                        }
                    }
                }
                .in_current_span(),
            ));
            queues.push((sink, tx));
        }
        EventFanout { queues, tasks }
    }

    /// Queues `e` for every sink; a sink whose queue is full misses it (counted, warned).
    pub fn send(&self, e: Event) {
        for (sink, q) in &self.queues {
            if let Err(mpsc::error::TrySendError::Full(e)) = q.try_send(e.clone()) {
                let container = e
                    .container
                    .as_ref()
                    .map(|c| c.id.clone())
                    .unwrap_or_default();
                metrics::counter!(m::BUFFER_DROPPED, "sink" => sink.to_string(), "container" => container.clone()).increment(1);
                tracing::warn!(sink = %sink, container = %container, queued = EVENT_QUEUE, "the sink takes nothing and owes this many container lifecycle events: dropped the newest");
            }
        }
    }

    /// Lets the forwarders send what is queued, then waits for them (they stop early at the
    /// fanout's `stop`).
    pub async fn close(self) {
        drop(self.queues);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Stream;
    use crate::sources::docker_api::Cursor;
    use bytes::Bytes;

    #[tokio::test]
    async fn every_sink_has_its_own_key_and_an_old_cursor_becomes_each_ones_position() {
        let d = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(d.path()).unwrap();
        // What versions before per-sink cursors wrote: one cursor per container.
        let old = Cursor::of(1_700_000_000_000_000_042, Stream::Stdout, b"line 41");
        store.set("api/abc", old.to_json());
        let (out, mut inputs) = SourceOutput::for_test_sinks("api", &[("file", 10), ("sys", 10)]);
        let v = views(&out, &store, "abc");
        let keys: Vec<&str> = v.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(keys, ["api/abc/file", "api/abc/sys"]);
        for k in keys {
            let got = store.get(k).as_ref().and_then(Cursor::from_json);
            assert_eq!(got.as_ref(), Some(&old), "{k} starts where every sink was");
        }
        assert_eq!(
            store.get("api/abc"),
            None,
            "the old key is gone once carried over"
        );
        assert_eq!(
            v.iter().map(|v| v.counts).collect::<Vec<_>>(),
            [true, false]
        );
        // Each view reaches its own sink only.
        v[1].out.send(vec![event(1)], None).await.unwrap();
        assert!(inputs[0].try_recv().is_none());
        assert_eq!(inputs[1].recv().await.unwrap().batch.len(), 1);
        // A second start (the keys exist) changes nothing.
        store.set("api/abc/sys", Cursor::of(5, Stream::Stdout, b"x").to_json());
        let again = views(&out, &store, "abc");
        assert_eq!(again.len(), 2);
        assert_eq!(
            store
                .get("api/abc/sys")
                .as_ref()
                .and_then(Cursor::from_json),
            Some(Cursor::of(5, Stream::Stdout, b"x"))
        );
    }

    #[test]
    fn without_sinks_one_view_keeps_the_per_container_key() {
        let d = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(d.path()).unwrap();
        store.set(
            "api/abc",
            serde_json::json!({"time_ns": 1, "stream": "stdout", "hash": "0"}),
        );
        let (out, _) = SourceOutput::for_test_sinks("api", &[]);
        let v = views(&out, &store, "abc");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].key, "api/abc");
        assert!(store.get("api/abc").is_some());
    }

    fn event(n: u32) -> Event {
        Event::new(n as i64, Stream::Unknown, Bytes::from(format!("event {n}")))
    }

    #[tokio::test]
    async fn a_full_sink_holds_up_neither_the_caller_nor_the_other_sink() {
        const N: usize = EVENT_QUEUE + 10;
        let (out, mut inputs) = SourceOutput::for_test_sinks("api", &[("dead", 1), ("ok", 100)]);
        let (_dead, mut ok) = (inputs.remove(0), inputs.remove(0));
        let consumer = tokio::spawn(async move {
            let mut got = 0;
            while got < N {
                let b = ok.recv().await.expect("the healthy sink gets every event");
                got += b.batch.len();
                b.ack.delivered();
            }
            got
        });
        let stop = CancellationToken::new();
        let fan = EventFanout::new(&out, stop.clone());
        // "dead" never reads: its buffer (1 event) fills, then its queue; `send` never waits.
        for n in 0..N as u32 {
            fan.send(event(n));
            tokio::task::yield_now().await;
        }
        assert_eq!(consumer.await.unwrap(), N);
        stop.cancel();
        fan.close().await;
    }
}
