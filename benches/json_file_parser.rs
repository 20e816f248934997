//! Throughput of the `docker_json_file` source: the line parser alone over realistic json-file
//! lines, the tailer (file → events), and the whole source in `--once` mode feeding a sink
//! that only acknowledges (what `json-file → blackhole` costs, minus the binary's wiring).
//!
//! Run: `cargo bench -p logwharf-collector --bench json_file_parser`, best pinned to one
//! core (`taskset -c 0 target/release/deps/json_file_parser-* --bench`). Times are the
//! process's CPU time (user + system, all threads), not wall time, so that other load on a
//! shared machine does not distort them; pinned to one core that is "throughput on one
//! core". Lines average ≈200 bytes, like the issue's 1,000,000-line ≈200 MB file.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use logwharf_collector::checkpoint::CheckpointStore;
use logwharf_collector::sources::docker_json_file::parser::LineParser;
use logwharf_collector::sources::docker_json_file::tailer::{
    ContainerTail, Flush, StartAt, StartParams, TailMetrics, TailSettings,
};
use logwharf_collector::sources::docker_json_file::DockerJsonFile;
use logwharf_collector::sources::docker_json_file::DockerJsonFileConfig;
use logwharf_collector::sources::{Source, SourceContext};
use logwharf_collector::{Shutdown, SourceOutput};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A realistic mix: plain application lines, structured (JSON-in-JSON, many escapes),
/// stack-trace lines with tabs, HTML-ish text (Go's `\u003c` escapes), non-ASCII, stderr,
/// and a few lines with `attrs`.
fn realistic_lines(n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ns = (i as u64 * 7_919_357) % 1_000_000_000;
        let time = format!("2026-11-25T13:{:02}:{:02}.{ns:09}Z", (i / 60) % 60, i % 60);
        let (log, stream) = match i % 20 {
            0..=11 => (
                format!(
                    "2026-11-25 13:04:22.901 INFO  [http-nio-8080-exec-{}] c.e.api.OrderController - GET /api/v1/orders/{} 200 in {}ms user=alice tenant=acme\\n",
                    i % 16,
                    100_000 + i,
                    i % 97
                ),
                "stdout",
            ),
            12..=15 => (
                format!(
                    "{{\\\"level\\\":\\\"info\\\",\\\"ts\\\":1795611862.{ns},\\\"caller\\\":\\\"server/handler.go:{}\\\",\\\"msg\\\":\\\"request done\\\",\\\"path\\\":\\\"/v1/items/{i}\\\",\\\"status\\\":200}}\\n",
                    i % 400
                ),
                "stdout",
            ),
            16 => (
                format!("\\tat com.example.service.PaymentService.charge(PaymentService.java:{})\\n", i % 900),
                "stderr",
            ),
            17 => (
                format!("rendering \\u003cdiv class=\\\"row\\\"\\u003e item {i} \\u0026 more \\u003c/div\\u003e done\\n"),
                "stdout",
            ),
            18 => (
                format!("Zürich → München: Lieferung {i} unterwegs ✓ (Größe: M)\\n"),
                "stdout",
            ),
            _ => (
                format!("WARN worker {} retrying job {i} after timeout (attempt 2/5)\\n", i % 8),
                "stderr",
            ),
        };
        let line = if i % 50 == 7 {
            format!(
                r#"{{"log":"{log}","stream":"{stream}","attrs":{{"tag":"shop/web","com.docker.compose.service":"web"}},"time":"{time}"}}"#
            )
        } else {
            format!(r#"{{"log":"{log}","stream":"{stream}","time":"{time}"}}"#)
        };
        out.push(line);
    }
    out
}

fn bench_parser(c: &mut Criterion) {
    let lines = realistic_lines(20_000);
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    eprintln!(
        "parser input: {} lines, {:.1} bytes/line",
        lines.len(),
        bytes as f64 / lines.len() as f64
    );
    let mut g = c.benchmark_group("parse_line");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("realistic_20k_lines", |b| {
        let mut parser = LineParser::new();
        let mut out = BytesMut::with_capacity(512 << 10);
        b.iter_custom(|iters| {
            let t0 = cpu_time();
            for _ in 0..iters {
                let mut ok = 0usize;
                for (i, l) in lines.iter().enumerate() {
                    if i % 2048 == 0 {
                        out.clear(); // one buffer per batch, as the tailer does
                    }
                    ok += parser.parse(l.as_bytes(), &mut out).is_some() as usize;
                }
                assert_eq!(ok, lines.len());
            }
            cpu_time() - t0
        })
    });
    g.finish();
}

fn write_log(dir: &Path, id: &str, lines: &[String], repeat: usize) -> u64 {
    let cdir = dir.join(id);
    std::fs::create_dir_all(&cdir).unwrap();
    let path = cdir.join(format!("{id}-json.log"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for _ in 0..repeat {
        for l in lines {
            f.write_all(l.as_bytes()).unwrap();
            f.write_all(b"\n").unwrap();
        }
    }
    f.flush().unwrap();
    std::fs::metadata(&path).unwrap().len()
}

fn bench_tail(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let lines = realistic_lines(20_000);
    let size = write_log(tmp.path(), "bench", &lines, 5); // 100k lines
    let mut g = c.benchmark_group("tail_file");
    g.throughput(Throughput::Bytes(size));
    g.sample_size(20);
    g.bench_function("100k_lines_to_events", |b| {
        b.iter_custom(|iters| {
            let t0 = cpu_time();
            for _ in 0..iters {
                tail_once(tmp.path());
            }
            cpu_time() - t0
        })
    });
    g.finish();
}

fn tail_once(dir: &Path) {
    let (mut t, _) = ContainerTail::start(StartParams {
        id: "bench".into(),
        dir: dir.join("bench"),
        live_name: "bench-json.log".into(),
        settings: TailSettings::default(),
        metrics: TailMetrics::noop(),
        saved: None,
        start_at: StartAt::Beginning,
        hold: None,
        sink: "bench".into(),
    })
    .unwrap();
    let mut n = 0;
    loop {
        let batch = t.next_batch(Flush::Expired, Instant::now());
        n += batch.events.len();
        if batch.idle {
            break;
        }
    }
    assert_eq!(n, 100_000);
}

/// The source in `--once` mode into a sink that acknowledges every batch: one run reads a
/// 1,000,000-line file end to end, as `logwharf run --once` with a blackhole sink would.
fn bench_source_once(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("containers");
    let lines = realistic_lines(20_000);
    let size = write_log(&root, "e2e", &lines, 50); // 1M lines
    eprintln!(
        "end-to-end input: 1,000,000 lines, {:.1} MB",
        size as f64 / 1e6
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("source_once");
    g.throughput(Throughput::Bytes(size));
    g.sample_size(10);
    g.bench_function("1m_lines_to_acking_sink", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let data = tempfile::tempdir().unwrap();
                let t0 = cpu_time();
                rt.block_on(async {
                    let (out, mut input) = SourceOutput::for_test("bench", 16_384);
                    let ctx = SourceContext {
                        name: "bench".into(),
                        out,
                        shutdown: Shutdown::new(),
                        checkpoints: Arc::new(CheckpointStore::open(data.path()).unwrap()),
                        once: true,
                    };
                    let config = DockerJsonFileConfig {
                        root: root.clone(),
                        ..DockerJsonFileConfig::default()
                    };
                    let src: Box<dyn Source> = Box::new(DockerJsonFile::new(config).unwrap());
                    let source = tokio::spawn(src.run(ctx));
                    let mut events = 0usize;
                    while let Some(sb) = input.recv().await {
                        events += sb.batch.len();
                        let (_batch, ack) = sb.into_parts();
                        ack.delivered();
                    }
                    source.await.unwrap().unwrap();
                    assert_eq!(events, 1_000_000);
                });
                spent += cpu_time() - t0;
            }
            spent
        })
    });
    g.finish();
    eprintln!("peak RSS of the bench process: {:.1} MB", peak_rss_mb());
}

/// CPU time (user + system) of this process, all threads.
fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(us(ru.ru_utime) + us(ru.ru_stime))
}

fn peak_rss_mb() -> f64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as f64 / 1024.0
}

criterion_group!(benches, bench_parser, bench_tail, bench_source_once);
criterion_main!(benches);
