//! Fairness in a sink's buffer: batches waiting for the sink, one FIFO per sender ("flow"),
//! given out round-robin.
//!
//! A sink takes batches in the order [`Flows::pop`] gives them. With one FIFO for everything, a
//! container that writes as fast as it can fills the buffer, and every other container's
//! lines wait behind all of it: their latency becomes the buffer's depth over the sink's rate
//! (issue 13, point 5). Round-robin between flows puts a quiet container's batch next in line
//! instead. A flow is one [`crate::topology::SourceOutput`] view: each (container, sink)
//! reader of the json-file source has its own; every other source sends as one flow, so its
//! batches keep exactly the order they were sent in. Within a flow the order is always kept
//! (a reader's ordered acknowledgements and a container's line order depend on it).

use crate::sink::SinkBatch;
use std::collections::{HashMap, VecDeque};

#[derive(Default)]
pub(crate) struct Flows {
    queues: HashMap<u64, VecDeque<SinkBatch>>,
    /// Flows with a waiting batch, in the order they are served.
    ring: VecDeque<u64>,
}

impl Flows {
    pub(crate) fn push(&mut self, sb: SinkBatch) {
        let q = self.queues.entry(sb.flow).or_default();
        if q.is_empty() {
            self.ring.push_back(sb.flow);
        }
        q.push_back(sb);
    }

    /// The oldest batch of the flow whose turn it is.
    pub(crate) fn pop(&mut self) -> Option<SinkBatch> {
        let flow = self.ring.pop_front()?;
        let q = self.queues.get_mut(&flow)?;
        let sb = q.pop_front();
        if q.is_empty() {
            self.queues.remove(&flow);
        } else {
            self.ring.push_back(flow);
        }
        sb
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::AckToken;
    use crate::event::{Batch, Event, Stream};
    use std::time::Duration;

    fn sb(flow: u64, tag: &str) -> SinkBatch {
        let mut sb = SinkBatch::detached(
            Batch {
                source: tag.into(),
                events: vec![Event::new(0, Stream::Stdout, bytes::Bytes::from("x"))],
            },
            AckToken::new(None),
        );
        sb.flow = flow;
        sb
    }

    #[test]
    fn flows_take_turns_and_each_keeps_its_order() {
        let mut f = Flows::default();
        for t in ["n1", "n2", "n3", "n4"] {
            f.push(sb(1, t)); // the noisy flow's backlog
        }
        f.push(sb(2, "q1"));
        f.push(sb(3, "r1"));
        f.push(sb(2, "q2"));
        let mut order = Vec::new();
        while let Some(b) = f.pop() {
            order.push(b.batch.source.to_string());
            if order.len() == 2 {
                f.push(sb(3, "r2")); // arrives while the others wait
            }
        }
        assert_eq!(
            order,
            ["n1", "q1", "r1", "n2", "q2", "r2", "n3", "n4"],
            "round-robin between flows, FIFO within each"
        );
        assert!(f.is_empty());
    }

    #[tokio::test]
    async fn a_reader_with_a_backlog_does_not_hold_back_another_readers_batch() {
        let (out, mut inputs) =
            crate::topology::SourceOutput::for_test_sinks("s", &[("sink", 1000)]);
        let (noisy, quiet) = (out.only(0), out.only(0));
        let line = |m: &'static str| vec![Event::new(0, Stream::Stdout, bytes::Bytes::from(m))];
        for _ in 0..10 {
            noisy.send(line("noisy"), None).await.unwrap();
        }
        quiet.send(line("quiet"), None).await.unwrap();
        let input = &mut inputs[0];
        let mut got = Vec::new();
        for _ in 0..3 {
            let sb = input.recv().await.unwrap();
            got.push(sb.batch.events[0].message.clone());
        }
        assert_eq!(
            got,
            ["noisy", "quiet", "noisy"],
            "the quiet batch's turn comes second"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_holds_at_most_half_the_buffer_so_another_finds_room_at_once() {
        let (out, mut inputs) = crate::topology::SourceOutput::for_test_sinks("s", &[("sink", 10)]);
        let (noisy, quiet) = (out.only(0), out.only(0));
        let line = || vec![Event::new(0, Stream::Stdout, bytes::Bytes::from("x"))];
        for _ in 0..5 {
            noisy.send(line(), None).await.unwrap();
        }
        // Paused clock: the timeout fires only once nothing else can run.
        let sixth = tokio::time::timeout(Duration::from_secs(1), noisy.send(line(), None));
        assert!(sixth.await.is_err(), "the noisy reader's half is full");
        quiet.send(line(), None).await.unwrap();
        drop(inputs[0].recv().await.unwrap());
        noisy.send(line(), None).await.unwrap();
        assert!(inputs[0].try_recv().is_some());
    }
}
