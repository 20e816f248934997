//! End-to-end (issue 15): a sink's `disk` buffer keeps Docker's remote drivers from blocking on
//! a server that is away, survives SIGKILL, and delivers everything once the server is back —
//! the real `logwharf` binary, the real Docker daemon with its `syslog` and `fluentd` drivers,
//! a real rsyslogd (and a second logwharf as the fluent server). Then damage: bytes flipped in
//! the middle of a segment and a tail cut off: `logwharf check` names both (exit 1), `--repair`
//! fixes them and a second `check` is clean; and, on the damage as it was, logwharf starts,
//! skips and counts, and delivers every other record.
//!
//! `LW_DISK_N` sets the number of lines of the Docker scenarios (default 600,000: Docker's
//! own buffering absorbs 200,000 lines, and with a memory buffer 600,000 block the container —
//! measured with `LW_DISK_BUFFER=memory`; the issue's 2,000,000 runs by hand). `LW_DISK_BUFFER=memory` runs them with a memory buffer instead, by
//! hand, to see the failure the disk buffer prevents (they then fail).

mod common;

use common::docker::{self, Container};
use common::rsyslog::Rsyslog;
use common::*;
use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn n_lines(default: u64) -> u64 {
    std::env::var("LW_DISK_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn metrics(api: &str) -> String {
    http_get(api, "/metrics").unwrap_or_default()
}

/// `docker wait` with a deadline: `Some(exit code)`, or `None` while it still runs.
fn wait_exit(c: &Container, timeout: Duration) -> Option<i32> {
    let (tx, rx) = std::sync::mpsc::channel();
    let id = c.id.clone();
    std::thread::spawn(move || {
        let out = std::process::Command::new("docker")
            .args(["wait", &id])
            .output();
        let _ = tx.send(out.ok().and_then(|o| String::from_utf8(o.stdout).ok()));
    });
    rx.recv_timeout(timeout)
        .ok()
        .flatten()
        .and_then(|s| s.trim().parse().ok())
}

/// Runs `seq 1 n` in a container logging through `driver` (Docker log-opts) while the sink's
/// server is down, and waits until `seq` has written its last line (the container marks it in
/// a bind-mounted directory: it was never blocked) and every line is in logwharf's disk
/// buffer; then lets the container exit. It exits only then because Docker cuts the logs of
/// a container whose driver is still sending 10 s after it exited (moby's
/// `loggerCloseTimeout`: "Logger didn't exit in time: logs may be truncated"), which a loaded
/// machine reaches with any server. Returns (seq done, all buffered) after the start.
fn write_while_server_down(
    t: &TestDir,
    name: &str,
    driver: &[String],
    n: u64,
    lw: &Logwharf,
    api: &str,
) -> (Duration, Duration) {
    let ctl = t.path().join("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    let mut opts: Vec<String> = driver.to_vec();
    opts.extend(["-v".to_string(), format!("{}:/ctl", ctl.display())]);
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let c = Container::create(
        name,
        &opts,
        &format!("seq 1 {n}; touch /ctl/written; while [ ! -e /ctl/exit ]; do sleep 0.1; done"),
    );
    let start = Instant::now();
    c.start();
    // The deadlines only cap a hang: with a memory buffer `seq` blocks for good once it is
    // full, since the server never comes up meanwhile.
    let written = wait_until(Duration::from_secs(300), || ctl.join("written").exists());
    let ran = start.elapsed();
    assert!(
        written,
        "the container was still writing after {ran:?} with the server down (blocked); log:\n{}",
        lw.log()
    );
    let buffered = wait_until(Duration::from_secs(300), || {
        metric(
            &metrics(api),
            "logwharf_buffer_events",
            &["sink=\"central\""],
        ) >= n as f64
    });
    let all = start.elapsed();
    assert!(
        buffered,
        "not every line reached the disk buffer:\n{}\nlog:\n{}",
        metrics(api),
        lw.log()
    );
    std::fs::write(ctl.join("exit"), b"").unwrap();
    assert_eq!(wait_exit(&c, Duration::from_secs(120)), Some(0));
    (ran, all)
}

/// The numbers in rsyslog's `local0` file (`facility.severity app msg`).
fn rsyslog_numbers(rs: &Rsyslog) -> Vec<u64> {
    let data = std::fs::read(rs.file("local0")).unwrap_or_default();
    data.split(|&b| b == b'\n')
        .filter_map(|l| {
            let msg = l.rsplit(|&b| b == b' ').next()?;
            std::str::from_utf8(msg).ok()?.trim().parse().ok()
        })
        .collect()
}

/// Every number of 1..=n is there; how many lines came more than once.
fn check_all_arrived(got: &[u64], n: u64, what: &str) -> usize {
    let set: HashSet<u64> = got.iter().copied().collect();
    let missing: Vec<u64> = (1..=n).filter(|i| !set.contains(i)).take(10).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {n} distinct lines arrived; first missing: {missing:?}",
        set.len()
    );
    got.len() - set.len()
}

/// The buffer type under test: `disk`, or `LW_DISK_BUFFER` (by hand).
fn buffer_type() -> String {
    std::env::var("LW_DISK_BUFFER").unwrap_or_else(|_| "disk".into())
}

fn syslog_config(src: u16, dst: u16, api: &str) -> String {
    let buffer = buffer_type();
    format!(
        r#"
shutdown_timeout = "3s"
[api]
address = "{api}"
[sources.docker]
type = "syslog"
address = "tcp://127.0.0.1:{src}"
[sinks.central]
type = "syslog"
inputs = ["docker"]
address = "tcp://127.0.0.1:{dst}"
facility = "local0"
format = "rfc5424"
buffer = {{ type = "{buffer}" }}
"#
    )
}

#[test]
fn docker_syslog_driver_does_not_block_on_a_dead_server_and_every_line_survives_sigkill() {
    if !docker::require() || !Rsyslog::require() {
        return;
    }
    let n = n_lines(600_000);
    let t = TestDir::new("disk-syslog");
    let (src, dst) = (free_port(), free_port());
    let api = t.api_addr();
    let cfg = t.config(&syslog_config(src, dst, &api));
    let mut lw = Logwharf::start(&cfg, &[]);
    wait_port(src, "logwharf's syslog source");
    let driver = [
        "--log-driver=syslog".to_string(),
        "--log-opt".into(),
        format!("syslog-address=tcp://127.0.0.1:{src}"),
        "--log-opt".into(),
        "syslog-format=rfc5424micro".into(),
    ];
    let (ran, buffered) = write_while_server_down(&t, "lw-e2e-disk-syslog", &driver, n, &lw, &api);
    let bytes = metric(
        &metrics(&api),
        "logwharf_buffer_bytes",
        &["sink=\"central\""],
    );
    lw.kill9();
    eprintln!(
        "{n} lines: the container wrote them all in {ran:?} with the server down; all in the disk buffer after {buffered:?} ({bytes} bytes); SIGKILL"
    );

    let mut lw = Logwharf::start(&cfg, &[]);
    wait_port(src, "logwharf (restarted)");
    let rs = Rsyslog::start(t.path(), dst);
    let up = Instant::now();
    let done = wait_until(Duration::from_secs(600), || {
        count_lines(&rs.file("local0")) as u64 >= n
    });
    let delivered = up.elapsed();
    let m = metrics(&api);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let got = rsyslog_numbers(&rs);
    assert!(
        done,
        "rsyslog has {} of {n} lines; log:\n{}",
        got.len(),
        lw.log()
    );
    let dups = check_all_arrived(&got, n, "syslog");
    eprintln!("delivered {n} lines {delivered:?} after the server came up ({dups} duplicates)");
    assert_eq!(
        metric(&m, "logwharf_buffer_corrupt_records_total", &[]),
        0.0
    );
    assert_eq!(metric(&m, "logwharf_buffer_dropped_events_total", &[]), 0.0);
}

/// A fluent source on `port` into a file sink (the fluent server the sink ships to).
fn fluent_server_config(port: u16, api: u16) -> String {
    format!(
        r#"
[api]
address = "127.0.0.1:{api}"
[sources.fwd]
type = "fluent"
address = "tcp://127.0.0.1:{port}"
[sinks.out]
type = "file"
inputs = ["fwd"]
path = "{{dir}}/out/server.log"
encoding = "json"
"#
    )
}

#[test]
fn docker_fluentd_driver_does_not_block_on_a_dead_server_and_every_line_survives_sigkill() {
    if !docker::require() {
        return;
    }
    let n = n_lines(600_000);
    let t = TestDir::new("disk-fluent");
    let (src, dst, server_api) = (free_port(), free_port(), free_port());
    let api = t.api_addr();
    let buffer = buffer_type();
    let cfg = t.config(&format!(
        r#"
shutdown_timeout = "3s"
[api]
address = "{api}"
[sources.docker]
type = "fluent"
address = "tcp://127.0.0.1:{src}"
[sinks.central]
type = "fluentd"
inputs = ["docker"]
address = "tcp://127.0.0.1:{dst}"
require_ack = true
buffer = {{ type = "{buffer}" }}
"#
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    wait_port(src, "logwharf's fluent source");
    // Docker's default (synchronous) mode: it writes each line to the socket, so a source that
    // stops reading blocks the container. Not `fluentd-request-ack`: Docker 20.10's client
    // loses its ack reader now and then (fluent/fluent-logger-golang#103) and then drops
    // every later line of the container ("Logger already closed"), with any server.
    let driver = [
        "--log-driver=fluentd".to_string(),
        "--log-opt".into(),
        format!("fluentd-address=127.0.0.1:{src}"),
    ];
    let (ran, buffered) = write_while_server_down(&t, "lw-e2e-disk-fluent", &driver, n, &lw, &api);
    lw.kill9();
    eprintln!(
        "{n} lines: the container wrote them all in {ran:?} with the fluent server down; all in the disk buffer after {buffered:?}; SIGKILL"
    );

    let mut lw = Logwharf::start(&cfg, &[]);
    wait_port(src, "logwharf (restarted)");
    let server_dir = t.path().join("server");
    std::fs::create_dir_all(&server_dir).unwrap();
    let server_cfg = server_dir.join("server.toml");
    std::fs::write(
        &server_cfg,
        format!(
            "data_dir = \"{}/data\"\n{}",
            server_dir.display(),
            fluent_server_config(dst, server_api).replace("{dir}", server_dir.to_str().unwrap())
        ),
    )
    .unwrap();
    let mut server = Logwharf::start(&server_cfg, &[]);
    let out = server_dir.join("out/server.log");
    let done = wait_until(Duration::from_secs(600), || count_lines(&out) as u64 >= n);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert_eq!(server.terminate(), Some(0), "{}", server.log());
    let got: Vec<u64> = json_lines(&out)
        .iter()
        .filter_map(|e| e["message"].as_str()?.trim().parse().ok())
        .collect();
    assert!(
        done,
        "the fluent server has {} of {n} lines; log:\n{}",
        got.len(),
        lw.log()
    );
    let dups = check_all_arrived(&got, n, "fluent");
    eprintln!("fluent: all {n} lines delivered after the restart ({dups} duplicates)");
}

// ---------------------------------------------------------------------------------------------
// Damage

/// Writes RFC 5424 lines `from..=to` to a syslog TCP listener.
fn send_lines(port: u16, from: u64, to: u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut buf = Vec::new();
    for i in from..=to {
        let line = format!("<134>1 2024-01-01T00:00:00Z host app - - - {i}");
        buf.extend_from_slice(format!("{} {line}", line.len()).as_bytes());
        if buf.len() > 64 << 10 {
            s.write_all(&buf).unwrap();
            buf.clear();
        }
    }
    s.write_all(&buf).unwrap();
}

/// The lines (numbers) of each record in a segment, in order, with each record's offset and
/// length.
fn records(seg: &Path) -> Vec<(u64, u64, Vec<u64>)> {
    use logwharf_collector::buffer::disk::{codec, segment};
    let mut s = segment::Scanner::open(seg, 0, None).unwrap();
    let mut interner = codec::Interner::default();
    let mut out = Vec::new();
    while let Some(item) = s.next_item().unwrap() {
        let segment::Item::Record {
            offset, payload, ..
        } = item
        else {
            panic!("damage before the test made any: {item:?}");
        };
        let b = codec::decode(&payload, &mut interner).unwrap();
        let nums = b
            .events
            .iter()
            .map(|e| std::str::from_utf8(&e.message).unwrap().parse().unwrap())
            .collect();
        out.push((offset, s.pos() - offset, nums));
    }
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// `logwharf check -c cfg [--repair]`.
fn check_cmd(cfg: &Path, repair: bool) -> std::process::Output {
    let mut c = std::process::Command::new(bin());
    c.args(["check", "-c", cfg.to_str().unwrap()]);
    if repair {
        c.arg("--repair");
    }
    c.output().unwrap()
}

/// Copies the files of directory `from` (no subdirectories) into a new directory `to`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

#[test]
fn a_damaged_record_is_skipped_and_counted_a_torn_tail_cut_and_the_rest_delivered() {
    if !Rsyslog::require() {
        return;
    }
    const N: u64 = 50_000;
    let t = TestDir::new("disk-damage");
    let (src, dst) = (free_port(), free_port());
    let api = t.api_addr();
    let cfg = t.config(&syslog_config(src, dst, &api));
    let mut lw = Logwharf::start(&cfg, &[]);
    wait_port(src, "logwharf's syslog source");
    // In several connections, so that there are many records.
    for k in 0..10 {
        send_lines(src, k * N / 10 + 1, (k + 1) * N / 10);
    }
    lw.wait_metric(
        &api,
        "logwharf_buffer_events",
        &["sink=\"central\""],
        N as f64,
    );
    lw.kill9();

    let dir = t.path().join("data/buffers/central");
    let seg = segments(&dir)
        .into_iter()
        .find(|p| std::fs::metadata(p).unwrap().len() > 8)
        .expect("a segment with records");
    let recs = records(&seg);
    assert!(recs.len() >= 5, "only {} records", recs.len());
    // Flip bytes in the middle of a record in the middle; cut the last record short.
    let mid = recs.len() / 2;
    let (off, len, ref lost_mid) = recs[mid];
    let mut bytes = std::fs::read(&seg).unwrap();
    for b in &mut bytes[(off + len / 2) as usize..(off + len / 2 + 4) as usize] {
        *b ^= 0x5a;
    }
    let (last_off, last_len, ref lost_tail) = recs[recs.len() - 1];
    bytes.truncate((last_off + last_len / 2) as usize);
    std::fs::write(&seg, &bytes).unwrap();
    let lost: HashSet<u64> = lost_mid.iter().chain(lost_tail).copied().collect();

    let problems = logwharf_collector::buffer::disk::check(&dir, false);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].offset, off, "{}", problems[0]);
    assert!(
        problems[0].what.contains("damaged record"),
        "{}",
        problems[0]
    );
    assert_eq!(problems[1].offset, last_off, "{}", problems[1]);
    assert!(problems[1].what.contains("torn tail"), "{}", problems[1]);

    // `logwharf check` names both, with the file and offset, and exits 1.
    let out = check_cmd(&cfg, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let name = seg.display().to_string();
    assert!(
        text.contains(&format!("{name}:{off}: damaged record")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{name}:{last_off}: torn tail")),
        "{text}"
    );

    // `--repair` fixes both (exit 0) and a second `check` finds nothing; the repaired segment
    // holds every other record. On a copy of the damage, which is put back afterwards for the
    // daemon to meet.
    let damaged = t.path().join("damaged");
    copy_dir(&dir, &damaged);
    let out = check_cmd(&cfg, true);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for at in [off, last_off] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{name}:{at}: ")) && l.ends_with("repaired: fixed")),
            "{text}"
        );
    }
    let out = check_cmd(&cfg, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a second check after --repair: {text}"
    );
    assert!(text.contains(": clean"), "{text}");
    let kept: Vec<u64> = records(&seg).into_iter().flat_map(|r| r.2).collect();
    let want_kept: Vec<u64> = recs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != mid && *i != recs.len() - 1)
        .flat_map(|(_, r)| r.2.iter().copied())
        .collect();
    assert!(
        kept == want_kept,
        "the repaired segment holds every other record, in order"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::rename(&damaged, &dir).unwrap();

    let rs = Rsyslog::start(t.path(), dst);
    let mut lw = Logwharf::start(&cfg, &[]);
    let want = N - lost.len() as u64;
    let done = wait_until(Duration::from_secs(300), || {
        count_lines(&rs.file("local0")) as u64 >= want
    });
    let m = lw.wait_metric(
        &api,
        "logwharf_buffer_corrupt_records_total",
        &["sink=\"central\""],
        1.0,
    );
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let got: HashSet<u64> = rsyslog_numbers(&rs).into_iter().collect();
    assert!(done, "{} of {want} lines; log:\n{}", got.len(), lw.log());
    let expected: HashSet<u64> = (1..=N).filter(|i| !lost.contains(i)).collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "every line of every other record, once each"
    );
    assert!(
        got == expected,
        "the lines of the two damaged records are the ones missing"
    );
    assert_eq!(
        metric(
            &m,
            "logwharf_buffer_corrupt_records_total",
            &["sink=\"central\""]
        ),
        1.0
    );
    let log = lw.log();
    assert!(log.contains("cut a torn tail"), "{log}");
    assert_eq!(
        log.matches("damaged record skipped").count(),
        1,
        "logged once: {log}"
    );
    eprintln!(
        "damage: {} records, {} lines lost with the two damaged ones, {} delivered",
        recs.len(),
        lost.len(),
        got.len()
    );
}
