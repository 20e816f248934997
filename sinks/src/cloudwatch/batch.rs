//! The service-limit batcher: one [`StreamQueue`] per (group, stream) gathers events in arrival
//! order and cuts PutLogEvents requests that keep every documented limit exactly — at most
//! 10,000 events, at most 1,048,576 bytes counting each message's UTF-8 length plus 26, a span
//! of at most 24 hours — with the events of each request stably sorted by timestamp. Messages
//! over 262,118 bytes are split or truncated before they enter a queue ([`fit_message`]).
//!
//! Acknowledgements travel with the events: every source batch that put events into a queue
//! holds a [`Piece`] there, and a request takes a share of each piece whose events it carries.
//! A source batch is acknowledged once every share of it has been settled.

use super::ack::Piece;
use super::config::{limits, Oversize};
use bytes::Bytes;
use logwharf_collector::{Batch, Event};
use std::collections::VecDeque;
use std::sync::Arc;

/// One event as the service sees it: a millisecond timestamp and a UTF-8 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CwEvent {
    pub timestamp_ms: i64,
    /// Valid UTF-8 (checked by [`fit_message`]), at most [`limits::MAX_MESSAGE_BYTES`] long.
    pub message: Bytes,
    /// The source event it came from, kept only when the sink has a dead-letter file.
    pub origin: Option<Origin>,
}

/// A source event: its batch and its index there (what a dead letter is written from).
#[derive(Debug, Clone)]
pub struct Origin {
    pub batch: Arc<Batch>,
    pub index: u32,
}

impl Origin {
    pub fn event(&self) -> &Event {
        &self.batch.events[self.index as usize]
    }
}

impl PartialEq for Origin {
    fn eq(&self, other: &Origin) -> bool {
        Arc::ptr_eq(&self.batch, &other.batch) && self.index == other.index
    }
}

impl Eq for Origin {}

impl CwEvent {
    /// Bytes the service counts for this event.
    pub fn cost(&self) -> usize {
        self.message.len() + limits::EVENT_OVERHEAD
    }

    /// The message (valid UTF-8 by construction).
    pub fn text(&self) -> &str {
        // Every CwEvent is built by `fit_message`, which only emits valid UTF-8.
        std::str::from_utf8(&self.message).unwrap_or("")
    }
}

/// What [`fit_message`] did to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FitOutcome {
    /// The message was longer than the service allows and was split into this many events.
    pub split_into: usize,
    /// The message was cut to the limit (bytes dropped).
    pub truncated_bytes: usize,
    /// Invalid UTF-8 was replaced with U+FFFD.
    pub invalid_utf8: bool,
    /// The message was empty, which the service refuses; nothing was emitted.
    pub empty: bool,
}

/// Turns one log message into the events the service accepts: valid UTF-8, non-empty, each at
/// most [`limits::MAX_MESSAGE_BYTES`] bytes, cut only at character boundaries.
pub fn fit_message(
    timestamp_ms: i64,
    message: &Bytes,
    oversize: Oversize,
    max_message: usize,
    out: &mut Vec<CwEvent>,
) -> FitOutcome {
    let mut outcome = FitOutcome::default();
    let message: Bytes = match std::str::from_utf8(message) {
        Ok(_) => message.clone(),
        Err(_) => {
            outcome.invalid_utf8 = true;
            Bytes::from(String::from_utf8_lossy(message).into_owned())
        }
    };
    if message.is_empty() {
        outcome.empty = true;
        return outcome;
    }
    if message.len() <= max_message {
        out.push(CwEvent {
            timestamp_ms,
            message,
            origin: None,
        });
        return outcome;
    }
    let mut start = 0;
    let mut pieces = 0;
    while start < message.len() {
        let end = char_boundary_at_most(&message, start + max_message);
        out.push(CwEvent {
            timestamp_ms,
            message: message.slice(start..end),
            origin: None,
        });
        pieces += 1;
        if oversize == Oversize::Truncate {
            outcome.truncated_bytes = message.len() - end;
            return outcome;
        }
        start = end;
    }
    outcome.split_into = pieces;
    outcome
}

/// The largest index ≤ `at` (and ≤ len) that starts a UTF-8 character.
fn char_boundary_at_most(s: &[u8], at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    let mut i = at;
    // Continuation bytes are 0b10xx_xxxx; a valid string has at most 3 in a row.
    while i > 0 && (s[i] & 0xC0) == 0x80 {
        i -= 1;
    }
    i
}

/// The limits one request must keep; [`RequestLimits::service`] are the documented ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub max_span_ms: i64,
}

impl RequestLimits {
    pub const fn service() -> RequestLimits {
        RequestLimits {
            max_events: limits::MAX_EVENTS,
            max_bytes: limits::MAX_BYTES,
            max_span_ms: limits::MAX_SPAN_MS,
        }
    }
}

/// The events of one PutLogEvents request, sorted by timestamp, and the acknowledgement shares
/// they carry.
#[derive(Debug)]
pub struct RequestBatch {
    pub events: Vec<CwEvent>,
    /// Bytes as the service counts them.
    pub bytes: usize,
    pub pieces: Vec<Piece>,
    /// Events this request took from its queue (before any split).
    pub events_taken: usize,
}

impl RequestBatch {
    /// Settles every share this request carries (after a 2xx that covered all its events, or
    /// after its events were counted as rejected).
    pub fn settle(self) {
        for p in self.pieces {
            p.done();
        }
    }
}

/// Events waiting for one (group, stream), in arrival order, with the source batches they came
/// from.
#[derive(Debug, Default)]
pub struct StreamQueue {
    events: VecDeque<CwEvent>,
    bytes: usize,
    /// (events of the queue's front still belonging to this piece, piece), in arrival order.
    pieces: VecDeque<(usize, Piece)>,
}

impl StreamQueue {
    pub fn new() -> StreamQueue {
        StreamQueue::default()
    }

    /// Adds the events of one source batch for this stream. `piece` settles its share of the
    /// source batch once all of `events` are delivered.
    pub fn push(&mut self, events: Vec<CwEvent>, piece: Piece) {
        if events.is_empty() {
            piece.done();
            return;
        }
        self.bytes += events.iter().map(CwEvent::cost).sum::<usize>();
        self.pieces.push_back((events.len(), piece));
        self.events.extend(events);
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes waiting, counted as the service does.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when the front of the queue already fills a request: sending now loses nothing.
    pub fn has_full_request(&self, lim: &RequestLimits) -> bool {
        if self.events.len() >= lim.max_events || self.bytes >= lim.max_bytes {
            return true;
        }
        match (self.events.front(), self.events.back()) {
            // Cheap approximation for the span: a queue whose ends are a day apart is full.
            (Some(a), Some(b)) => b.timestamp_ms.abs_diff(a.timestamp_ms) > lim.max_span_ms as u64,
            _ => false,
        }
    }

    /// Cuts the next request from the front of the queue: as many events as fit every limit,
    /// in arrival order, then stably sorted by timestamp. `None` when the queue is empty.
    pub fn take_request(&mut self, lim: &RequestLimits) -> Option<RequestBatch> {
        let first = self.events.front()?;
        let (mut lo, mut hi) = (first.timestamp_ms, first.timestamp_ms);
        let mut n = 0;
        let mut bytes = 0;
        for e in &self.events {
            let cost = e.cost();
            let (nlo, nhi) = (lo.min(e.timestamp_ms), hi.max(e.timestamp_ms));
            if n == lim.max_events || bytes + cost > lim.max_bytes || nhi - nlo > lim.max_span_ms {
                break;
            }
            n += 1;
            bytes += cost;
            (lo, hi) = (nlo, nhi);
        }
        // A single event always fits: fit_message caps messages well below max_bytes.
        let n = n.max(1);
        let mut events: Vec<CwEvent> = self.events.drain(..n).collect();
        let bytes: usize = events.iter().map(CwEvent::cost).sum();
        self.bytes = self.bytes.saturating_sub(bytes);
        // Stable: events with equal timestamps keep their arrival order.
        events.sort_by_key(|e| e.timestamp_ms);
        let mut pieces = Vec::new();
        let mut need = n;
        while need > 0 {
            match self.pieces.front_mut() {
                None => break,
                Some((left, p)) if *left > need => {
                    // This source batch continues in the next request: share it.
                    *left -= need;
                    pieces.push(p.share());
                    break;
                }
                Some(_) => {
                    if let Some((left, p)) = self.pieces.pop_front() {
                        need -= left;
                        pieces.push(p);
                    }
                }
            }
        }
        Some(RequestBatch {
            events,
            bytes,
            pieces,
            events_taken: n,
        })
    }
}

/// Splits a request the service refused as invalid into two halves (each keeps its order and a
/// share of every piece); `None` for a single event, which cannot be split further.
pub fn split_request(batch: RequestBatch) -> Result<(RequestBatch, RequestBatch), RequestBatch> {
    if batch.events.len() < 2 {
        return Err(batch);
    }
    let RequestBatch {
        mut events, pieces, ..
    } = batch;
    let right = events.split_off(events.len() / 2);
    let shares: Vec<Piece> = pieces.iter().map(Piece::share).collect();
    let cost = |v: &[CwEvent]| v.iter().map(CwEvent::cost).sum();
    let left = RequestBatch {
        bytes: cost(&events),
        events_taken: 0,
        events,
        pieces,
    };
    let right = RequestBatch {
        bytes: cost(&right),
        events_taken: 0,
        events: right,
        pieces: shares,
    };
    Ok((left, right))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudwatch::ack::Delivery;
    use logwharf_collector::{AckToken, Batch, SinkBatch};
    use std::sync::mpsc;

    fn ev(ts: i64, len: usize) -> CwEvent {
        CwEvent {
            timestamp_ms: ts,
            message: Bytes::from(vec![b'x'; len]),
            origin: None,
        }
    }

    /// A piece whose source batch reports its outcome on the returned channel.
    fn piece() -> (Piece, mpsc::Receiver<bool>) {
        let (tx, rx) = mpsc::channel();
        let sb = SinkBatch::detached(
            Batch {
                source: "s".into(),
                events: Vec::new(),
            },
            AckToken::new(Some(Box::new(move |ok| tx.send(ok).unwrap()))),
        );
        (Delivery::new(sb), rx)
    }

    fn take_all(q: &mut StreamQueue) -> Vec<RequestBatch> {
        let mut v = Vec::new();
        while let Some(r) = q.take_request(&RequestLimits::service()) {
            assert_within_limits(&r);
            v.push(r);
        }
        v
    }

    fn assert_within_limits(r: &RequestBatch) {
        assert!(!r.events.is_empty());
        assert!(r.events.len() <= 10_000, "{} events", r.events.len());
        let bytes: usize = r.events.iter().map(|e| e.message.len() + 26).sum();
        assert_eq!(bytes, r.bytes);
        assert!(bytes <= 1_048_576, "{bytes} bytes");
        assert!(r
            .events
            .windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms));
        let span = r.events.last().unwrap().timestamp_ms - r.events[0].timestamp_ms;
        assert!(span <= 24 * 3600 * 1000, "span {span} ms");
        assert!(r.events.iter().all(|e| e.message.len() <= 262_118));
    }

    #[test]
    fn exactly_10000_events_fit_and_the_10001st_goes_next() {
        let mut q = StreamQueue::new();
        let (p, rx) = piece();
        q.push((0..10_001).map(|i| ev(1_000 + i, 1)).collect(), p);
        let reqs = take_all(&mut q);
        assert_eq!(
            reqs.iter().map(|r| r.events.len()).collect::<Vec<_>>(),
            [10_000, 1]
        );
        assert_eq!(reqs[0].bytes, 10_000 * 27);
        let mut reqs = reqs.into_iter();
        reqs.next().unwrap().settle();
        assert!(rx.try_recv().is_err(), "half delivered is not delivered");
        reqs.next().unwrap().settle();
        assert_eq!(rx.try_recv(), Ok(true));
    }

    #[test]
    fn exactly_1048576_bytes_fit_and_one_more_byte_does_not() {
        // 4 events of 262,118 bytes + 26 = 262,144 each: exactly 1,048,576 bytes.
        let mut q = StreamQueue::new();
        let (p, _rx) = piece();
        q.push((0..5).map(|i| ev(i, 262_118)).collect(), p);
        let reqs = take_all(&mut q);
        assert_eq!(reqs[0].events.len(), 4);
        assert_eq!(reqs[0].bytes, 1_048_576);
        assert_eq!(reqs[1].events.len(), 1);

        // 8,192 events of 102 bytes + 26 = exactly 1,048,576; with one byte more in the last
        // of them, that event goes to the next request.
        for (extra, first_len) in [(0, 8_192), (1, 8_191)] {
            let mut q = StreamQueue::new();
            let (p, _rx) = piece();
            let mut evs: Vec<_> = (0..8_192).map(|i| ev(i, 102)).collect();
            evs[8_191] = ev(8_191, 102 + extra);
            evs.push(ev(9_000, 1));
            q.push(evs, p);
            let reqs = take_all(&mut q);
            assert_eq!(reqs[0].events.len(), first_len);
            if extra == 0 {
                assert_eq!(reqs[0].bytes, 1_048_576);
            }
        }
    }

    #[test]
    fn a_batch_never_spans_more_than_24_hours() {
        let day = 24 * 3600 * 1000;
        let mut q = StreamQueue::new();
        let (p, _rx) = piece();
        // Exactly 24 h apart is allowed; one ms more is not.
        q.push(
            vec![ev(0, 1), ev(day, 1), ev(day + 1, 1), ev(2 * day, 1)],
            p,
        );
        let reqs = take_all(&mut q);
        let ts: Vec<Vec<i64>> = reqs
            .iter()
            .map(|r| r.events.iter().map(|e| e.timestamp_ms).collect())
            .collect();
        assert_eq!(ts, vec![vec![0, day], vec![day + 1, 2 * day]]);
        // Out of order by more than a day: the early event starts a new request.
        let mut q = StreamQueue::new();
        let (p, _rx) = piece();
        q.push(vec![ev(2 * day, 1), ev(day + 5, 1), ev(0, 1)], p);
        let reqs = take_all(&mut q);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].events[0].timestamp_ms, 0);
    }

    #[test]
    fn out_of_order_input_is_stably_sorted() {
        let mut q = StreamQueue::new();
        let (p, _rx) = piece();
        let evs = vec![
            CwEvent {
                timestamp_ms: 30,
                message: Bytes::from_static(b"c"),
                origin: None,
            },
            CwEvent {
                timestamp_ms: 10,
                message: Bytes::from_static(b"a1"),
                origin: None,
            },
            CwEvent {
                timestamp_ms: 20,
                message: Bytes::from_static(b"b"),
                origin: None,
            },
            CwEvent {
                timestamp_ms: 10,
                message: Bytes::from_static(b"a2"),
                origin: None,
            },
        ];
        q.push(evs, p);
        let r = q.take_request(&RequestLimits::service()).unwrap();
        let msgs: Vec<&str> = r.events.iter().map(CwEvent::text).collect();
        assert_eq!(msgs, ["a1", "a2", "b", "c"]);
    }

    #[test]
    fn a_source_batch_split_over_requests_is_acked_once_all_are_settled() {
        let mut q = StreamQueue::new();
        let (p1, rx1) = piece();
        let (p2, rx2) = piece();
        q.push((0..6_000).map(|i| ev(i, 1)).collect(), p1);
        q.push((0..6_000).map(|i| ev(i, 1)).collect(), p2);
        let mut reqs = take_all(&mut q).into_iter();
        let (a, b) = (reqs.next().unwrap(), reqs.next().unwrap());
        assert_eq!((a.events.len(), b.events.len()), (10_000, 2_000));
        a.settle();
        assert_eq!(rx1.try_recv(), Ok(true));
        assert!(rx2.try_recv().is_err());
        drop(b); // never sent (e.g. shutdown): the source must re-read it
        assert_eq!(rx2.try_recv(), Ok(false));
    }

    #[test]
    fn oversize_messages_split_or_truncate_at_char_boundaries() {
        let max = limits::MAX_MESSAGE_BYTES;
        // 300 KiB of 3-byte characters.
        let msg = Bytes::from("€".repeat(300 * 1024 / 3));
        let mut out = Vec::new();
        let o = fit_message(1, &msg, Oversize::Split, max, &mut out);
        assert_eq!(o.split_into, 2);
        assert!(out
            .iter()
            .all(|e| e.message.len() <= max && !e.text().is_empty()));
        let joined: Vec<u8> = out.iter().flat_map(|e| e.message.to_vec()).collect();
        assert_eq!(joined, msg.to_vec());

        let mut out = Vec::new();
        let o = fit_message(1, &msg, Oversize::Truncate, max, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(o.truncated_bytes, msg.len() - out[0].message.len());
        assert!(out[0].message.len() > max - 3 && out[0].message.len() <= max);

        let mut out = Vec::new();
        assert!(fit_message(1, &Bytes::new(), Oversize::Split, max, &mut out).empty);
        assert!(out.is_empty());
        let o = fit_message(
            1,
            &Bytes::from_static(b"a\xffb"),
            Oversize::Split,
            max,
            &mut out,
        );
        assert!(o.invalid_utf8);
        assert_eq!(out[0].text(), "a\u{fffd}b");
    }

    #[test]
    fn split_request_halves_and_keeps_shares() {
        let mut q = StreamQueue::new();
        let (p, rx) = piece();
        q.push((0..5).map(|i| ev(i, 1)).collect(), p);
        let r = q.take_request(&RequestLimits::service()).unwrap();
        let (a, b) = split_request(r).unwrap();
        assert_eq!((a.events.len(), b.events.len()), (2, 3));
        a.settle();
        assert!(rx.try_recv().is_err());
        let (c, d) = split_request(b).unwrap();
        c.settle();
        let (e, f) = split_request(d).unwrap();
        e.settle();
        let single = split_request(f).unwrap_err();
        assert_eq!(single.events.len(), 1);
        single.settle();
        assert_eq!(rx.try_recv(), Ok(true));
    }
}
