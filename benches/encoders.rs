//! Criterion benchmark of the shared event encoders (json, docker, text): the per-event cost
//! every sink pays.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logwharf_collector::{ContainerMeta, Event, Stream};
use logwharf_config::Encoding;
use logwharf_sinks::encoding::Encoder;
use std::sync::Arc;

fn encoders(c: &mut Criterion) {
    let meta = Arc::new(ContainerMeta {
        id: "d2ae8d3a9846e1ba1cc4b1b14b3d2f1c7d9e5d8f1a2b3c4d5e6f708192a3b4c5".into(),
        name: Some("web".into()),
        image_name: Some("nginx:1.25".into()),
        ..Default::default()
    });
    let msg = Bytes::from_static(
        b"192.168.1.20 - - [25/Nov/2026:13:04:22 +0000] \"GET /api/v1/items?id=42 HTTP/1.1\" 200 512 \"-\" \"curl/8.0\"",
    );
    let events: Vec<Event> = (0..1000)
        .map(|i| {
            let mut e = Event::new(1_795_611_862_901_652_423 + i, Stream::Stdout, msg.clone());
            e.container = Some(meta.clone());
            e
        })
        .collect();
    let mut g = c.benchmark_group("encode_1000_events");
    g.throughput(Throughput::Bytes((msg.len() * events.len()) as u64));
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
    g.finish();
}

criterion_group!(benches, encoders);
criterion_main!(benches);
