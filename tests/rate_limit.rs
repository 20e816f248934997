//! End-to-end (issue 13, point 5): the per-container read rate limit, the real `logwharf`
//! binary against the real Docker daemon (scripts/testbed). Two containers print the same
//! ≈200 KB; the source's `rate_limit = "20k"` applies to one, the other lifts it with the label
//! `logwharf.rate_limit=off`. Both deliver every line; the limited one takes at least the time
//! its rate implies (a lower bound the limit itself sets — how fast either goes is not
//! asserted), arrives after the other, and only it counts
//! `logwharf_rate_limited_seconds_total`.

mod common;

use common::docker::{self, Container};
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

const LINES: u64 = 3_000;
const RATE: u64 = 20 << 10;

fn numbers(path: &Path) -> Vec<u64> {
    json_lines(path)
        .iter()
        .filter_map(|e| e["message"].as_str()?.parse().ok())
        .collect()
}

fn json_file_bytes(c: &Container) -> u64 {
    std::fs::metadata(c.dir().join(format!("{}-json.log", c.id)))
        .map(|m| m.len())
        .unwrap_or(0)
}

#[test]
fn a_limited_container_is_read_at_its_rate_and_the_other_is_not_held_back() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("rate-limit");
    let script = format!("seq 1 {LINES}");
    let limited = Container::create("lw-e2e-rate-limited", &[], &script);
    let free = Container::create(
        "lw-e2e-rate-free",
        &["--label", "logwharf.rate_limit=off"],
        &script,
    );
    let cfg = t.config(&format!(
        r#"
[sources.containers]
type = "docker_json_file"
include = ["{}*", "{}*"]
rate_limit = "20k"
# The label must be known before the first read, however loaded the machine.
metadata_wait = "30s"
[sinks.out]
type = "file"
inputs = ["containers"]
path = "{{dir}}/out/{{{{.ID}}}}.log"
encoding = "json"
"#,
        limited.id, free.id
    ));
    let out = |c: &Container| t.path().join("out").join(format!("{}.log", &c.id[..12]));
    let (limited_out, free_out) = (out(&limited), out(&free));
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);

    let start = Instant::now();
    limited.start();
    free.start();
    let (mut limited_done, mut free_done) = (None, None);
    let mut progress = Vec::new(); // (seconds, lines of the limited container)
    let all = wait_until(Duration::from_secs(180), || {
        let n = numbers(&limited_out).len() as u64;
        progress.push((start.elapsed().as_secs_f64(), n));
        if free_done.is_none() && numbers(&free_out).len() as u64 >= LINES {
            free_done = Some(start.elapsed());
        }
        if limited_done.is_none() && n >= LINES {
            limited_done = Some(start.elapsed());
        }
        limited_done.is_some() && free_done.is_some()
    });
    assert_eq!(limited.wait(), 0);
    assert_eq!(free.wait(), 0);
    let text = http_get(&t.api_addr(), "/metrics").unwrap_or_default();
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(
        all,
        "limited: {} of {LINES} lines, unlimited: {} lines; log:\n{}",
        numbers(&limited_out).len(),
        numbers(&free_out).len(),
        lw.log()
    );

    // Nothing dropped, nothing twice, in order.
    let every: Vec<u64> = (1..=LINES).collect();
    assert_eq!(numbers(&limited_out), every, "the limited container");
    assert_eq!(numbers(&free_out), every, "the unlimited container");
    assert_eq!(metric(&text, "logwharf_lost_bytes_total", &[]), 0.0);
    assert_eq!(
        metric(&text, "logwharf_buffer_dropped_events_total", &[]),
        0.0
    );

    let (limited_done, free_done) = (limited_done.unwrap(), free_done.unwrap());
    let bytes = json_file_bytes(&limited);
    // A full bucket (one second's worth) at the start, then at most RATE bytes a second; the
    // last read (a quarter second's worth) starts as soon as the debt before it is paid.
    let implied =
        Duration::from_secs_f64(bytes.saturating_sub(RATE + RATE / 4) as f64 / RATE as f64);
    let rate = |done: Duration| bytes as f64 / done.as_secs_f64() / 1024.0;
    eprintln!(
        "{bytes} json-file bytes each: unlimited delivered in {free_done:?} ({:.0} KiB/s), \
         limited to 20 KiB/s in {limited_done:?} ({:.1} KiB/s; ≥ {implied:?} implied); limited \
         container's lines over time (s, lines): {:?}",
        rate(free_done),
        rate(limited_done),
        progress
            .iter()
            .step_by((progress.len() / 12).max(1))
            .map(|(s, n)| (format!("{s:.1}"), *n))
            .collect::<Vec<_>>()
    );
    assert!(bytes > 150_000, "{bytes} bytes");
    assert!(
        limited_done >= implied,
        "the limited container's {bytes} bytes arrived in {limited_done:?}, faster than 20 KiB/s allows ({implied:?})"
    );
    assert!(
        limited_done > free_done,
        "the unlimited container's last line ({free_done:?}) came after the limited one's ({limited_done:?})"
    );
    let waited = |c: &Container| {
        metric(
            &text,
            "logwharf_rate_limited_seconds_total",
            &[&format!("container=\"{}\"", c.id)],
        )
    };
    assert!(waited(&limited) > 0.0, "limited container:\n{text}");
    assert_eq!(waited(&free), 0.0, "unlimited container:\n{text}");
}
