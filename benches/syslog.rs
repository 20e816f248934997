//! Criterion benchmark of the syslog sink's formatter (Docker's formats, per event) and the
//! syslog source's receive path (framing + `syslog_loose` parsing into events, per message).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logwharf_collector::sources::syslog::framing::Framer;
use logwharf_collector::sources::syslog::parse::parse_frame;
use logwharf_collector::{ContainerMeta, Event, Stream};
use logwharf_config::Template;
use logwharf_sinks::syslog::config::{Framing, Newlines, SyslogFormat};
use logwharf_sinks::syslog::format::{EncodeStats, Formatter, Zone};
use logwharf_sinks::syslog::TagCache;
use std::sync::Arc;

const MSG: &[u8] = b"192.168.1.20 - - [25/Nov/2026:13:04:22 +0000] \"GET /api/v1/items?id=42 HTTP/1.1\" 200 512 \"-\" \"curl/8.0\"";

fn formatter(c: &mut Criterion) {
    let meta = Arc::new(ContainerMeta {
        id: "d2ae8d3a9846e1ba1cc4b1b14b3d2f1c7d9e5d8f1a2b3c4d5e6f708192a3b4c5".into(),
        name: Some("web".into()),
        ..Default::default()
    });
    let msg = Bytes::from_static(MSG);
    let events: Vec<Event> = (0..1000)
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
    let mut g = c.benchmark_group("syslog_format_1000_events");
    g.throughput(Throughput::Bytes((MSG.len() * events.len()) as u64));
    for (name, format, framing) in [
        ("rfc5424micro", SyslogFormat::Rfc5424Micro, Framing::Newline),
        (
            "rfc5424_octet",
            SyslogFormat::Rfc5424,
            Framing::OctetCounting,
        ),
        ("rfc3164", SyslogFormat::Rfc3164, Framing::Newline),
    ] {
        let mut f = Formatter::new(
            format,
            2,
            "vm".into(),
            "3024".into(),
            Some(framing),
            Newlines::Escape,
            2048,
        )
        .with_zone(Zone::Local);
        let mut tags = TagCache::new(Template::parse("{{.Name}}/{{.ID}}").unwrap());
        let mut out = Vec::with_capacity(1 << 20);
        let mut ends = Vec::new();
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let mut st = EncodeStats::default();
                for e in &events {
                    let tag = tags.get(e);
                    f.encode(&mut out, &mut ends, e, &tag, &mut st);
                }
                out.len()
            })
        });
    }
    g.finish();
}

fn receiver(c: &mut Criterion) {
    let mut g = c.benchmark_group("syslog_receive_1000_messages");
    g.throughput(Throughput::Elements(1000));
    let msg = std::str::from_utf8(MSG).unwrap();
    for (name, line) in [
        ("docker_rfc5424micro", format!("<22>1 2026-11-25T13:04:34.665154Z vm web/d2ae8d3a9846 3024 web/d2ae8d3a9846 - {msg}\n")),
        ("docker_rfc3164", format!("<22>Nov 25 13:04:34 vm web/d2ae8d3a9846[3024]: {msg}\n")),
    ] {
        let stream: Vec<u8> = line.as_bytes().repeat(1000);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(&stream[..]);
                let mut framer = Framer::new(64 << 10);
                let mut events = Vec::with_capacity(1000);
                framer.decode(&mut buf, &mut |r| {
                    if let Ok(f) = r {
                        events.push(parse_frame(&f.data, "127.0.0.1:5000", 0).0);
                    }
                });
                events.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, formatter, receiver);
criterion_main!(benches, p);
/// One message: syslog_loose alone (either variant / RFC 5424 only) beside our whole
/// frame → event path (fast path + fields).
fn one_message(c: &mut Criterion) {
    let msg = std::str::from_utf8(MSG).unwrap();
    let line = format!(
        "<22>1 2026-11-25T13:04:34.665154Z vm web/d2ae8d3a9846 3024 web/d2ae8d3a9846 - {msg}"
    );
    let mut g = c.benchmark_group("syslog_parse_one_message");
    g.throughput(Throughput::Elements(1));
    g.bench_function("loose_only", |b| {
        b.iter(|| {
            syslog_loose::parse_message_with_year(&line, |_| 2026, syslog_loose::Variant::Either)
                .msg
                .len()
        })
    });
    g.bench_function("loose_5424", |b| {
        b.iter(|| {
            syslog_loose::parse_message_with_year(&line, |_| 2026, syslog_loose::Variant::RFC5424)
                .msg
                .len()
        })
    });
    let fr = Bytes::from(line.clone());
    g.bench_function("parse_frame", |b| {
        b.iter(|| parse_frame(&fr, "127.0.0.1:5000", 0).0.message.len())
    });
    g.finish();
}
criterion_group!(p, one_message);
