//! The fluentd sink against the collector's fluent source, in process, over loopback TCP.
//! Ports come from the collector's test registry (never one port for two tests); the tests
//! wait for the source to listen and for events, with deadlines that only cap a hang.

use super::*;
use bytes::Bytes;
use logwharf_collector::sources::fluent::FluentSource;
use logwharf_collector::sources::fluent::FluentSourceConfig;
use logwharf_collector::sources::{Source, SourceContext};
use logwharf_collector::{
    AckToken, Batch, CheckpointStore, ContainerMeta, Event, EventFlags, Shutdown, SinkBatch,
    SourceOutput, Stream,
};
use std::sync::Arc;
use std::time::Duration;

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

use logwharf_collector::testing::free_port as port;

/// How long a test waits for what it expects before failing.
const PATIENCE: Duration = Duration::from_secs(60);

/// Starts the source and returns once it accepts connections.
async fn start_source(cfg: FluentSourceConfig) -> (SinkInput, Shutdown, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (out, rx): (SourceOutput, SinkInput) = SourceOutput::for_test("fwd", 100_000);
    let shutdown = Shutdown::new();
    let ctx = SourceContext {
        name: "fwd".into(),
        out,
        shutdown: shutdown.clone(),
        checkpoints: Arc::new(CheckpointStore::open(dir.path()).unwrap()),
        once: false,
    };
    let ForwardAddress::Tcp { host, port } = cfg.address.clone() else {
        panic!("the tests listen on TCP");
    };
    let src = Box::new(FluentSource::new(cfg).unwrap());
    let task = tokio::spawn(async move { src.run(ctx).await.unwrap() });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .is_err()
    {
        assert!(!task.is_finished(), "the fluent source stopped");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fluent source never listened on {host}:{port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (rx, shutdown, dir)
}

fn events(n: usize, meta: &Arc<ContainerMeta>) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut e = Event::new(
                1_795_611_862_901_652_423 + i as i64,
                if i % 2 == 0 {
                    Stream::Stdout
                } else {
                    Stream::Stderr
                },
                Bytes::from(format!("line {i}")),
            );
            e.container = Some(meta.clone());
            e
        })
        .collect()
}

async fn round_trip(gzip: bool, require_ack: bool, auth: bool) {
    let p = port();
    let mut scfg = FluentSourceConfig {
        address: ForwardAddress::Tcp {
            host: "127.0.0.1".into(),
            port: p,
        },
        ..Default::default()
    };
    let key = logwharf_config::address::ForwardAuth {
        shared_key: "k3y".into(),
        self_hostname: None,
    };
    scfg.partial_timeout = logwharf_config::DurationValue::from_millis(300);
    if auth {
        scfg.auth = Some(key.clone());
    }
    let (mut received, shutdown, _dir) = start_source(scfg).await;

    let mut cfg = FluentdSinkConfig {
        address: ForwardAddress::Tcp {
            host: "127.0.0.1".into(),
            port: p,
        },
        ..Default::default()
    };
    cfg.tag = logwharf_config::Template::parse("docker.{{.Name}}").unwrap();
    cfg.require_ack = require_ack;
    cfg.compress = if gzip {
        ForwardCompression::Gzip
    } else {
        ForwardCompression::None
    };
    if auth {
        cfg.auth = Some(key);
    }
    let sink = Box::new(Fluentd::new("fw", cfg).unwrap());
    let (tx, input) = SinkInput::for_test("fw");
    let task = tokio::spawn(sink.run(input));
    let meta = Arc::new(ContainerMeta {
        id: ID.into(),
        name: Some("web".into()),
        ..Default::default()
    });
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for b in 0..3 {
        let d = done_tx.clone();
        let mut evs = events(100, &meta);
        if b == 2 {
            evs[99].flags.insert(EventFlags::PARTIAL);
        }
        tx.send(SinkBatch::detached(
            Batch {
                source: "src".into(),
                events: evs,
            },
            AckToken::new(Some(Box::new(move |ok| d.send(ok).unwrap()))),
        ))
        .ok()
        .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 300 {
        let sb = tokio::time::timeout(PATIENCE, received.recv())
            .await
            .expect("events arrive")
            .unwrap();
        let (b, ack) = sb.into_parts();
        got.extend(b.events.iter().cloned());
        ack.delivered();
    }
    for _ in 0..3 {
        let ok = tokio::time::timeout(PATIENCE, done_rx.recv())
            .await
            .unwrap();
        assert_eq!(ok, Some(true));
    }
    assert_eq!(got[0].message, Bytes::from("line 0"));
    assert_eq!(got[0].time_ns, 1_795_611_862_901_652_423);
    assert_eq!(got[1].stream, Stream::Stderr);
    let c = got[0].container.as_ref().unwrap();
    assert_eq!(c.id, ID);
    assert_eq!(c.name.as_deref(), Some("web"));
    assert!(
        Arc::ptr_eq(c, got[250].container.as_ref().unwrap()),
        "one Arc per container"
    );
    let tag = got[0].attrs.as_ref().unwrap();
    assert_eq!(tag[0], ("tag".to_string(), "docker.web".to_string()));
    assert_eq!(got[298].message, Bytes::from("line 98"));
    // The event shipped partial arrives flagged partial once partial_timeout passes.
    assert_eq!(got[299].message, Bytes::from("line 99"));
    assert!(got[299].flags.contains(EventFlags::PARTIAL));
    assert!(got[..299].iter().all(|e| e.flags.is_empty()));
    drop(tx);
    task.await.unwrap().unwrap();
    shutdown.trigger();
}

#[tokio::test]
async fn round_trip_plain() {
    round_trip(false, false, false).await;
}

#[tokio::test]
async fn round_trip_gzip_ack_and_shared_key() {
    round_trip(true, true, true).await;
}

#[tokio::test]
async fn a_wrong_shared_key_never_delivers() {
    let p = port();
    let mut scfg = FluentSourceConfig {
        address: ForwardAddress::Tcp {
            host: "127.0.0.1".into(),
            port: p,
        },
        ..Default::default()
    };
    scfg.auth = Some(logwharf_config::address::ForwardAuth {
        shared_key: "right".into(),
        self_hostname: None,
    });
    let (mut received, shutdown, _dir) = start_source(scfg).await;
    let mut cfg = FluentdSinkConfig {
        address: ForwardAddress::Tcp {
            host: "127.0.0.1".into(),
            port: p,
        },
        ..Default::default()
    };
    cfg.auth = Some(logwharf_config::address::ForwardAuth {
        shared_key: "wrong".into(),
        self_hostname: None,
    });
    let sink = Box::new(Fluentd::new("fw", cfg).unwrap());
    let (tx, input) = SinkInput::for_test("fw");
    let task = tokio::spawn(sink.run(input));
    let meta = Arc::new(ContainerMeta::from_id(ID));
    tx.send(SinkBatch::detached(
        Batch {
            source: "src".into(),
            events: events(1, &meta),
        },
        AckToken::new(None),
    ))
    .ok()
    .unwrap();
    // A chance to deliver wrongly (a slow machine only weakens this check, never fails it).
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), received.recv())
            .await
            .is_err()
    );
    task.abort();
    shutdown.trigger();
}
