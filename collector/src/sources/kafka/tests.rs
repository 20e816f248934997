//! Unit tests of the kafka source: commit ordering with out-of-order deliveries, revocation
//! with batches in flight, and decoding of what is not the sink's JSON. (The round trip of
//! every encoding the `kafka` sink writes is in tests/kafka_source.rs, beside the sink's
//! encoder.)

use super::config::Decoding;
use super::decode::{MessageDecoder, MessageMeta};
use super::partitions::{Partitions, Tp};
use crate::event::{EventFlags, Stream};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn tp(p: i32) -> Tp {
    (Arc::from("logs"), p)
}

#[test]
fn a_partition_commits_only_its_delivered_prefix_whatever_the_delivery_order() {
    let mut parts = Partitions::default();
    let g0 = parts.assign(tp(0));
    let g1 = parts.assign(tp(1));
    // Batches of partition 0 up to offsets 10, 20, 30; one batch of partition 1.
    let a = parts.track(&tp(0), g0, 10).unwrap();
    let b = parts.track(&tp(0), g0, 20).unwrap();
    let c = parts.track(&tp(0), g0, 30).unwrap();
    let d = parts.track(&tp(1), g1, 5).unwrap();
    c(true);
    b(true);
    assert!(parts.due().is_empty(), "batch 1 is still in flight");
    d(true);
    assert_eq!(parts.due(), vec![(tp(1), 5)], "partitions are independent");
    a(true);
    assert_eq!(
        parts.due(),
        vec![(tp(0), 30)],
        "one commit for the whole prefix"
    );
    assert!(parts.due().is_empty(), "nothing new");
}

#[test]
fn a_batch_not_delivered_holds_its_partition_back() {
    let mut parts = Partitions::default();
    let g = parts.assign(tp(0));
    let a = parts.track(&tp(0), g, 10).unwrap();
    let b = parts.track(&tp(0), g, 20).unwrap();
    let c = parts.track(&tp(0), g, 30).unwrap();
    a(true);
    b(false);
    c(true);
    assert_eq!(parts.due(), vec![(tp(0), 10)]);
    parts.track(&tp(0), g, 40).unwrap()(true);
    assert!(parts.due().is_empty(), "never past the batch that failed");
}

#[test]
fn a_revocation_waits_for_batches_in_flight_and_commits_what_settled() {
    let mut parts = Partitions::default();
    let g0 = parts.assign(tp(0));
    let g1 = parts.assign(tp(1));
    let a = parts.track(&tp(0), g0, 10).unwrap();
    let b = parts.track(&tp(0), g0, 20).unwrap();
    let keep = parts.track(&tp(1), g1, 7).unwrap();
    // `a` is delivered while the revocation waits; `b` settles only after its timeout.
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        a(true);
    });
    let t0 = Instant::now();
    let (offsets, unsettled) = parts.revoke(&[tp(0)], Duration::from_millis(400));
    late.join().unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(400),
        "waited for b until the timeout"
    );
    assert_eq!(
        offsets,
        vec![(tp(0), 10)],
        "what settled in time is committed"
    );
    assert_eq!(unsettled, 1);
    b(true);
    assert_eq!(parts.generation(&tp(0)), None);
    keep(true);
    assert_eq!(
        parts.due(),
        vec![(tp(1), 7)],
        "b settling after the revocation commits nothing; partition 1 is untouched"
    );
    // Messages of partition 0 read under the old assignment are refused, also once it is
    // assigned again (its new owner may be this member).
    assert!(parts.track(&tp(0), g0, 30).is_none());
    let g0b = parts.assign(tp(0));
    assert_ne!(g0b, g0);
    assert!(parts.track(&tp(0), g0, 30).is_none());
    assert!(parts.track(&tp(0), g0b, 15).is_some());
}

#[test]
fn a_revocation_with_everything_settled_returns_at_once() {
    let mut parts = Partitions::default();
    let g = parts.assign(tp(3));
    parts.track(&tp(3), g, 99).unwrap()(true);
    let t0 = Instant::now();
    let (offsets, unsettled) = parts.revoke(&[tp(3), tp(9)], Duration::from_secs(30));
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!((offsets, unsettled), (vec![(tp(3), 99)], 0));
}

const ID: &str = "d2ae8d3a9846e1ba1cc4b1b14b3d2f1c7d9e5d8f1a2b3c4d5e6f708192a3b4c5";

#[test]
fn raw_messages_take_their_container_and_time_from_headers_and_timestamp() {
    let mut d = MessageDecoder::new(Decoding::Raw);
    let headers: &[(&str, &[u8])] = &[
        ("container_id", ID.as_bytes()),
        ("container_name", b"web\x1b"),
        ("image_name", b"nginx:1"),
        ("stream", b"stderr"),
    ];
    let meta = MessageMeta {
        timestamp_ms: Some(1_700_000_000_123),
        headers,
    };
    let e = d.decode(Some(b"hello"), meta).event;
    assert_eq!(&e.message[..], b"hello");
    assert_eq!(e.stream, Stream::Stderr);
    assert_eq!(e.time_ns, 1_700_000_000_123_000_000);
    let c = e.container.clone().unwrap();
    assert_eq!(c.id, ID);
    assert_eq!(c.name.as_deref(), Some("web"), "control characters removed");
    assert_eq!(c.image_name.as_deref(), Some("nginx:1"));
    let e2 = d.decode(Some(b"again"), meta).event;
    assert!(
        Arc::ptr_eq(&c, e2.container.as_ref().unwrap()),
        "one record per container"
    );
    let none = d.decode(None, MessageMeta::default()).event;
    assert!(none.message.is_empty() && none.container.is_none());
}

#[test]
fn what_does_not_decode_is_passed_on_raw_flagged_malformed() {
    for (decoding, value, kind) in [
        (Decoding::Json, &b"{not json"[..], "invalid_json"),
        (
            Decoding::Json,
            b"{\"time\":\"2026-01-01T00:00:00Z\"}",
            "no_message",
        ),
        (
            Decoding::Json,
            b"{\"message\":\"x\",\"time\":\"yesterday\"}",
            "invalid_time",
        ),
        (Decoding::Docker, b"{\"log\":\"x\"", "invalid_docker_line"),
    ] {
        let headers: &[(&str, &[u8])] = &[("container_name", b"api")];
        let d = MessageDecoder::new(decoding).decode(
            Some(value),
            MessageMeta {
                timestamp_ms: None,
                headers,
            },
        );
        assert_eq!(d.error, Some(kind), "{value:?}");
        assert_eq!(&d.event.message[..], value);
        assert!(d.event.flags.contains(EventFlags::MALFORMED));
        let name = d.event.container.as_ref().and_then(|c| c.name.clone());
        assert_eq!(
            name.as_deref(),
            Some("api"),
            "headers still name the container"
        );
    }
}

#[test]
fn a_json_event_with_an_id_that_is_not_dockers_keeps_it_as_a_field() {
    let mut d = MessageDecoder::new(Decoding::Json);
    let r = d.decode(
        Some(br#"{"time":"2026-01-01T00:00:00Z","stream":"stdout","message":"m","container_id":"abc","container_name":"/web","source":"agent"}"#),
        MessageMeta::default(),
    );
    assert_eq!(r.error, None);
    let c = r.event.container.unwrap();
    assert_eq!((c.id.as_str(), c.name.as_deref()), ("", Some("web")));
    assert_eq!(r.event.fields.unwrap()["container_id"], "abc");
}
