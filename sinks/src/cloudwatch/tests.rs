//! Unit tests of the sink task against a scripted local HTTP peer: the answers the emulator
//! cannot be made to give (InvalidParameterException, InvalidSequenceTokenException,
//! DataAlreadyAcceptedException, rejectedLogEventsInfo) and the acknowledgement rules.
//! Real sockets, so no paused clock: the tests wait for what the peer saw ([`wait_until`]).

use super::*;
use logwharf_collector::{AckToken, Batch, SinkBatch, Stream};
use serde_json::Value;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Script = Arc<dyn Fn(&str, &Value) -> (u16, String) + Send + Sync>;

/// A peer that answers each request with `script(target, body)` and records PutLogEvents
/// bodies with the status it answered.
struct Peer {
    port: u16,
    puts: Arc<Mutex<Vec<(u16, Value)>>>,
}

impl Peer {
    async fn start(script: Script) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let puts = Arc::new(Mutex::new(Vec::new()));
        let rec = puts.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let script = script.clone();
                let rec = rec.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let Some(end) = find(&buf, b"\r\n\r\n") else {
                            let mut chunk = [0u8; 65536];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                        let header = |name: &str| {
                            head.lines()
                                .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                                .map(str::to_string)
                        };
                        let len: usize = header("content-length")
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            let mut chunk = [0u8; 65536];
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body: Value =
                            serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap();
                        buf.drain(..end + 4 + len);
                        let target = header("x-amz-target").unwrap_or_default();
                        assert!(header("authorization")
                            .unwrap_or_default()
                            .starts_with("aws4-hmac-sha256 credential=akidtest/"));
                        let (status, resp) = script(&target, &body);
                        if target.ends_with("putlogevents") {
                            rec.lock().unwrap().push((status, body));
                        }
                        let out = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n{resp}",
                            resp.len()
                        );
                        if sock.write_all(out.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Peer { port, puts }
    }

    /// The messages of the PutLogEvents the peer accepted.
    fn messages(&self) -> Vec<String> {
        self.puts
            .lock()
            .unwrap()
            .iter()
            .filter(|(status, _)| *status == 200)
            .flat_map(|(_, b)| b["logEvents"].as_array().unwrap().clone())
            .map(|e| e["message"].as_str().unwrap().to_string())
            .collect()
    }
}

/// Polls `cond` until it holds; panics with `what` after a minute (a cap for a hang only).
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn sink(port: u16, extra: &str) -> CloudWatch {
    let text = format!(
        "[sources.s]\ntype = \"docker_json_file\"\n[sinks.cw]\ntype = \"cloudwatch\"\ninputs = [\"s\"]\nregion = \"us-east-1\"\nendpoint = \"http://127.0.0.1:{port}\"\ngroup = \"g\"\naccess_key_id = \"AKIDTEST\"\nsecret_access_key = \"x\"\nretry_max_wait = \"200ms\"\nbatch = {{ timeout = \"50ms\" }}\n{extra}"
    );
    let c = crate::load_test_config(&text).unwrap();
    let c = c.sinks["cw"]
        .inner
        .downcast_ref::<CloudWatchConfig>()
        .unwrap();
    CloudWatch::new("cw", c, 16_384, DeadLetters::disabled("cw")).unwrap()
}

/// A source batch of `msgs` from container `id`; its outcome arrives on the receiver.
fn batch(id: &str, msgs: &[&str]) -> (SinkBatch, tokio::sync::oneshot::Receiver<bool>) {
    let meta = Arc::new(ContainerMeta::from_id(id));
    let now = logwharf_collector::time::now_nanos();
    let events = msgs
        .iter()
        .map(|m| {
            let mut e = Event::new(now, Stream::Stdout, Bytes::from(m.to_string()));
            e.container = Some(meta.clone());
            e
        })
        .collect();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sb = SinkBatch::detached(
        Batch {
            source: "s".into(),
            events,
        },
        AckToken::new(Some(Box::new(move |ok| {
            let _ = tx.send(ok);
        }))),
    );
    (sb, rx)
}

fn ok() -> (u16, String) {
    (200, "{\"nextSequenceToken\":\"1\"}".into())
}

fn err(status: u16, kind: &str, extra: &str) -> (u16, String) {
    (
        status,
        format!("{{\"__type\":\"{kind}\",\"message\":\"m\"{extra}}}"),
    )
}

fn has(body: &Value, msg: &str) -> bool {
    body["logEvents"]
        .as_array()
        .is_some_and(|a| a.iter().any(|e| e["message"] == msg))
}

#[tokio::test]
async fn invalid_parameter_splits_until_the_bad_event_is_isolated_and_counted() {
    let peer = Peer::start(Arc::new(|target: &str, body: &Value| {
        if target.ends_with("putlogevents") && has(body, "bad") {
            err(400, "InvalidParameterException", "")
        } else {
            ok()
        }
    }))
    .await;
    let (tx, input) = SinkInput::for_test("cw");
    let task = tokio::spawn(Box::new(sink(peer.port, "")).run(input));
    let (sb, rx) = batch("c1", &["a", "b", "bad", "c", "d"]);
    tx.send(sb).ok().unwrap();
    assert!(
        rx.await.unwrap(),
        "accepted + counted as rejected = settled"
    );
    drop(tx);
    task.await.unwrap().unwrap();
    assert_eq!(peer.messages(), ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn invalid_sequence_token_is_resent_with_the_expected_token() {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let peer = Peer::start(Arc::new(move |target: &str, body: &Value| {
        if !target.ends_with("putlogevents") {
            return ok();
        }
        let mut n = c.lock().unwrap();
        *n += 1;
        match *n {
            1 => err(
                400,
                "InvalidSequenceTokenException",
                ",\"expectedSequenceToken\":\"42\"",
            ),
            _ if body["sequenceToken"] == "42" => ok(),
            _ => err(400, "InvalidSequenceTokenException", ""),
        }
    }))
    .await;
    let (tx, input) = SinkInput::for_test("cw");
    let task = tokio::spawn(Box::new(sink(peer.port, "")).run(input));
    let (sb, rx) = batch("c1", &["x"]);
    tx.send(sb).ok().unwrap();
    assert!(rx.await.unwrap());
    drop(tx);
    task.await.unwrap().unwrap();
    assert_eq!(*calls.lock().unwrap(), 2);
}

#[tokio::test]
async fn data_already_accepted_settles_without_resending() {
    let peer = Peer::start(Arc::new(|target: &str, _: &Value| {
        if target.ends_with("putlogevents") {
            err(
                400,
                "DataAlreadyAcceptedException",
                ",\"expectedSequenceToken\":\"7\"",
            )
        } else {
            ok()
        }
    }))
    .await;
    let (tx, input) = SinkInput::for_test("cw");
    let task = tokio::spawn(Box::new(sink(peer.port, "")).run(input));
    let (sb, rx) = batch("c1", &["x"]);
    tx.send(sb).ok().unwrap();
    assert!(rx.await.unwrap());
    drop(tx);
    task.await.unwrap().unwrap();
    assert_eq!(peer.puts.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn missing_stream_is_created_then_the_batch_resent() {
    let created = Arc::new(Mutex::new(false));
    let c = created.clone();
    let peer = Peer::start(Arc::new(move |target: &str, _: &Value| {
        let mut made = c.lock().unwrap();
        if target.ends_with("createlogstream") {
            *made = true;
            return (200, "{}".into());
        }
        if *made {
            ok()
        } else {
            err(400, "ResourceNotFoundException", "")
        }
    }))
    .await;
    let (tx, input) = SinkInput::for_test("cw");
    let task = tokio::spawn(Box::new(sink(peer.port, "")).run(input));
    let (sb, rx) = batch("c1", &["x"]);
    tx.send(sb).ok().unwrap();
    assert!(rx.await.unwrap());
    drop(tx);
    task.await.unwrap().unwrap();
    assert!(*created.lock().unwrap());
    assert_eq!(peer.messages(), ["x"]);
}

#[tokio::test]
async fn a_source_batch_over_two_streams_is_acked_only_when_both_got_a_2xx() {
    // Stream c2 fails (503) until told otherwise; c1 is accepted at once.
    let open = Arc::new(Mutex::new(false));
    let o = open.clone();
    let peer = Peer::start(Arc::new(move |target: &str, body: &Value| {
        if target.ends_with("putlogevents") && body["logStreamName"] == "c2" && !*o.lock().unwrap()
        {
            err(503, "ServiceUnavailableException", "")
        } else {
            ok()
        }
    }))
    .await;
    let (tx, input) = SinkInput::for_test("cw");
    let task = tokio::spawn(Box::new(sink(peer.port, "")).run(input));
    let (mut sb, mut rx) = batch("c1", &["one"]);
    let (sb2, _) = batch("c2", &["two"]);
    let mut events = sb.batch.events.clone();
    events.extend(sb2.batch.events.iter().cloned());
    sb.batch = Arc::new(Batch {
        source: "s".into(),
        events,
    });
    tx.send(sb).ok().unwrap();
    // c1's part is delivered; the batch is not acknowledged while c2 fails.
    wait_until("c1 delivered and c2 refused", || {
        let puts = peer.puts.lock().unwrap();
        let refused = |(status, b): &(u16, Value)| *status == 503 && b["logStreamName"] == "c2";
        puts.iter().any(refused) && puts.iter().any(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(peer.messages(), ["one"]);
    assert!(
        rx.try_recv().is_err(),
        "acked before every stream got a 2xx"
    );
    *open.lock().unwrap() = true;
    assert!(rx.await.unwrap());
    drop(tx);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn rejected_events_in_an_accepted_batch_settle_it() {
    let peer = Peer::start(Arc::new(|_: &str, _: &Value| {
        (
            200,
            "{\"rejectedLogEventsInfo\":{\"tooOldLogEventEndIndex\":0}}".into(),
        )
    }))
    .await;
    let (tx, input) = SinkInput::for_test("cw");
    let task = tokio::spawn(Box::new(sink(peer.port, "")).run(input));
    let (sb, rx) = batch("c1", &["old", "new"]);
    tx.send(sb).ok().unwrap();
    assert!(rx.await.unwrap());
    drop(tx);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_batch_still_failing_when_the_sink_is_stopped_is_not_acknowledged() {
    let peer = Peer::start(Arc::new(|_: &str, _: &Value| {
        err(500, "InternalFailure", "")
    }))
    .await;
    let (tx, input) = SinkInput::for_test("cw");
    let task = tokio::spawn(Box::new(sink(peer.port, "")).run(input));
    let (sb, rx) = batch("c1", &["x"]);
    tx.send(sb).ok().unwrap();
    wait_until("no PutLogEvents attempt", || {
        !peer.puts.lock().unwrap().is_empty()
    })
    .await;
    task.abort();
    let _ = task.await;
    assert!(
        !rx.await.unwrap(),
        "never delivered: the source must re-read it"
    );
    assert!(!peer.puts.lock().unwrap().is_empty());
}
