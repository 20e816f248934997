//! Criterion benchmark of what each sink does per event before its transport: the shared
//! encoders (json, docker, text: the file, socket and console sinks), the Kafka sink's json
//! value, the syslog sink's RFC 5424 line and the fluentd sink's Forward entry — beside the
//! blackhole sink's bookkeeping (the baseline every figure is read against). The syslog bench
//! (benches/syslog.rs) has the syslog formats in detail.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logwharf_collector::{Batch, ContainerMeta, Event, Stream};
use logwharf_config::{Encoding, Template};
use logwharf_sinks::encoding::Encoder;
use logwharf_sinks::fluentd::config::RecordFormat;
use logwharf_sinks::fluentd::record::RecordEncoder;
use logwharf_sinks::syslog::config::{Framing, Newlines, SyslogFormat};
use logwharf_sinks::syslog::format::{EncodeStats, Formatter, Zone};
use logwharf_sinks::syslog::TagCache;
use std::sync::Arc;

fn events() -> (Vec<Event>, usize) {
    let meta = Arc::new(ContainerMeta {
        id: "d2ae8d3a9846e1ba1cc4b1b14b3d2f1c7d9e5d8f1a2b3c4d5e6f708192a3b4c5".into(),
        name: Some("web".into()),
        image_name: Some("nginx:1.25".into()),
        ..Default::default()
    });
    let msg = Bytes::from_static(
        b"192.168.1.20 - - [25/Nov/2026:13:04:22 +0000] \"GET /api/v1/items?id=42 HTTP/1.1\" 200 512 \"-\" \"curl/8.0\"",
    );
    let events = (0..1000)
        .map(|i| {
            let s = if i % 10 == 0 {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            let mut e = Event::new(1_795_611_862_901_652_423 + i * 1000, s, msg.clone());
            e.container = Some(meta.clone());
            e
        })
        .collect();
    (events, msg.len())
}

fn encoders(c: &mut Criterion) {
    let (events, msg_len) = events();
    let mut g = c.benchmark_group("encode_1000_events");
    g.throughput(Throughput::Bytes((msg_len * events.len()) as u64));

    // The blackhole sink: counts events and bytes per batch, encodes nothing.
    let batch = Batch {
        source: "containers".into(),
        events: events.clone(),
    };
    g.bench_function("blackhole", |b| b.iter(|| (batch.len(), batch.byte_size())));

    // file / socket / console sinks: one encoded line per event.
    for enc in [Encoding::Json, Encoding::Docker, Encoding::Text] {
        let mut out = Vec::with_capacity(1 << 20);
        g.bench_function(enc.name(), |b| {
            b.iter(|| {
                out.clear();
                for e in &events {
                    Encoder::new(enc).encode_line("containers", e, &mut out);
                }
                out.len()
            })
        });
    }

    // kafka (encoding = "json", the default): one value per event, no newline.
    let kafka = Encoder::new(Encoding::Json);
    let mut value = Vec::with_capacity(1024);
    let mut total = 0usize;
    g.bench_function("kafka_json", |b| {
        b.iter(|| {
            for e in &events {
                value.clear();
                kafka.encode("containers", e, &mut value);
                total += value.len();
            }
            total
        })
    });

    // syslog (Docker's rfc5424micro, newline framing).
    let mut f = Formatter::new(
        SyslogFormat::Rfc5424Micro,
        2,
        "vm".into(),
        "3024".into(),
        Some(Framing::Newline),
        Newlines::Escape,
        2048,
    )
    .with_zone(Zone::Local);
    let mut tags = TagCache::new(Template::parse("{{.Name}}/{{.ID}}").unwrap());
    let (mut out, mut ends) = (Vec::with_capacity(1 << 20), Vec::new());
    g.bench_function("syslog_rfc5424micro", |b| {
        b.iter(|| {
            out.clear();
            ends.clear();
            let mut st = EncodeStats::default();
            for e in &events {
                let tag = tags.get(e);
                f.encode(&mut out, &mut ends, e, &tag, &mut st);
            }
            out.len()
        })
    });

    // fluentd (Forward mode entries, Docker's record keys, sub-second time).
    let mut rec = RecordEncoder::new(
        Template::parse("docker.{{.ID}}").unwrap(),
        RecordFormat::Docker,
        true,
        Vec::new(),
    );
    let mut out = Vec::with_capacity(1 << 20);
    g.bench_function("forward", |b| {
        b.iter(|| {
            out.clear();
            for e in &events {
                rec.write_entry(&mut out, "containers", e);
            }
            out.len()
        })
    });
    g.finish();
}

criterion_group!(benches, encoders);
criterion_main!(benches);
