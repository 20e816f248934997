//! End-to-end: the real `logwharf` binary's `fluent` source receiving from Docker's own fluentd
//! driver and from Python's fluent-logger (both real clients, from scripts/testbed), the
//! captured fixtures of the four Forward modes, logwharf's `fluentd` sink shipping to another
//! logwharf that is SIGKILLed mid-stream, and hostile input.

mod common;

use common::docker::{self, Container};
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A fluent source on `port` into a file sink writing `{dir}/out/<path>` as JSON events.
fn receiver_config(port: u16, api: u16, path: &str, extra_source: &str) -> String {
    format!(
        r#"
checkpoint_interval = "1s"
[api]
address = "127.0.0.1:{api}"
[sources.fwd]
type = "fluent"
address = "tcp://127.0.0.1:{port}"
{extra_source}
[sinks.out]
type = "file"
inputs = ["fwd"]
path = "{{dir}}/out/{path}"
encoding = "json"
"#
    )
}

/// Waits until something accepts connections on `port`.
fn wait_listening(port: u16, lw: &Logwharf) {
    assert!(
        wait_until(PATIENCE, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "logwharf never listened on {port}:\n{}",
        lw.log()
    );
}

/// Lines of a JSON-lines output; a torn last line (SIGKILL mid-write) is skipped.
fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn metrics_of(api: u16) -> String {
    http_get(&format!("127.0.0.1:{api}"), "/metrics").unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Docker's own fluentd driver

fn driver_opts(port: u16, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--log-driver=fluentd".to_string(),
        "--log-opt".into(),
        format!("fluentd-address=127.0.0.1:{port}"),
        "--log-opt".into(),
        "tag=docker.{{.Name}}".into(),
    ];
    for e in extra {
        v.push("--log-opt".into());
        v.push(e.to_string());
    }
    v
}

fn numbers_of(events: &[&Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .trim_start_matches("err-")
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn docker_fluentd_driver_every_line_tag_stream_and_name_in_four_modes() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("fluent-docker");
    let (port, api) = (free_port(), free_port());
    let cfg = t.config(&receiver_config(port, api, "{{.Name}}.log", ""));
    let mut lw = Logwharf::start(&cfg, &[]);
    wait_listening(port, &lw);
    let both = "seq 1 500; seq 1 100 | while read n; do echo err-$n; done >&2";
    // (name, log-opts, script, stderr lines)
    let variants: [(&str, &[&str], &str, u64); 4] = [
        ("lw-fluent-plain", &[], both, 100),
        (
            "lw-fluent-subsec",
            &["fluentd-sub-second-precision=true"],
            both,
            100,
        ),
        ("lw-fluent-async", &["fluentd-async=true"], both, 100),
        // Docker waits for our ack of every line, which comes once the file sink wrote it.
        // stdout only: Docker 20.10's fluent-logger-golang reads acks of its stdout and stderr
        // writers concurrently through separate buffered readers, so one writer can swallow the
        // other's ack and resend (fluent/fluent-logger-golang#103) — with any server.
        (
            "lw-fluent-ack",
            &["fluentd-request-ack=true"],
            "seq 1 600",
            0,
        ),
    ];
    let mut containers = Vec::new();
    for (name, extra, script, _) in variants {
        let opts = driver_opts(port, extra);
        let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        let c = Container::create(name, &opts, script);
        c.start();
        containers.push(c);
    }
    for c in &containers {
        assert_eq!(c.wait(), 0);
    }
    let out = |name: &str| t.path().join("out").join(format!("{name}.log"));
    let done = wait_until(Duration::from_secs(60), || {
        variants.iter().all(|(n, ..)| count_lines(&out(n)) >= 600)
    });
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(done, "not every line arrived; log:\n{}", lw.log());
    for (c, (name, extra, _, n_err)) in containers.iter().zip(variants) {
        let events = json_lines(&out(name));
        assert_eq!(events.len(), 600, "{name}");
        let stdout: Vec<&Value> = events.iter().filter(|e| e["stream"] == "stdout").collect();
        let stderr: Vec<&Value> = events.iter().filter(|e| e["stream"] == "stderr").collect();
        assert_eq!(
            numbers_of(&stdout),
            (1..=600 - n_err).collect::<Vec<_>>(),
            "{name}"
        );
        assert_eq!(
            numbers_of(&stderr),
            (1..=n_err).collect::<Vec<_>>(),
            "{name}"
        );
        for e in &events {
            assert_eq!(e["tag"], format!("docker.{name}"), "{e}");
            assert_eq!(e["container_name"], name, "{e}");
            assert_eq!(e["container_id"], c.id.as_str(), "{e}");
            assert!(e.get("partial").is_none(), "{e}");
        }
        // Sub-second precision: EventTime with nanoseconds; otherwise whole seconds.
        let frac = |e: &Value| e["time"].as_str().unwrap()[20..29].to_string();
        let whole = events.iter().all(|e| frac(e) == "000000000");
        assert_eq!(
            whole,
            !extra.contains(&"fluentd-sub-second-precision=true"),
            "{name}: time precision"
        );
    }
}

#[test]
fn docker_fluentd_driver_100k_lines_no_loss() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("fluent-docker-100k");
    let (port, api) = (free_port(), free_port());
    let cfg = t.config(&receiver_config(port, api, "{{.Name}}.log", ""));
    let mut lw = Logwharf::start(&cfg, &[]);
    wait_listening(port, &lw);
    let opts = driver_opts(port, &["fluentd-sub-second-precision=true"]);
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let c = Container::create("lw-fluent-100k", &opts, "seq 1 100000");
    let started = Instant::now();
    c.start();
    assert_eq!(c.wait(), 0);
    let out = t.path().join("out/lw-fluent-100k.log");
    let done = wait_until(Duration::from_secs(120), || count_lines(&out) >= 100_000);
    let took = started.elapsed();
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(done, "only {} lines; log:\n{}", count_lines(&out), lw.log());
    let events = json_lines(&out);
    let nums: Vec<u64> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        nums,
        (1..=100_000).collect::<Vec<_>>(),
        "lost, duplicated or reordered lines"
    );
    eprintln!("100,000 lines through Docker's fluentd driver in {took:?}");
}

#[test]
fn docker_partial_lines_are_joined_and_request_ack_does_not_stall_them() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("fluent-docker-partial");
    let (port, api) = (free_port(), free_port());
    let cfg = t.config(&receiver_config(port, api, "{{.Name}}.log", ""));
    let mut lw = Logwharf::start(&cfg, &[]);
    wait_listening(port, &lw);
    let opts = driver_opts(port, &["fluentd-request-ack=true"]);
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    // 40,000 bytes: Docker sends 16,384 + 16,384 + 7,232, waiting for our ack of each piece.
    let c = Container::create(
        "lw-fluent-partial",
        &opts,
        "head -c 40000 /dev/zero | tr '\\0' x; echo; echo after",
    );
    let started = Instant::now();
    c.start();
    assert_eq!(c.wait(), 0);
    let took = started.elapsed();
    let out = t.path().join("out/lw-fluent-partial.log");
    let done = wait_until(PATIENCE, || count_lines(&out) >= 2);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(done, "{}", lw.log());
    let events = json_lines(&out);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["message"].as_str().unwrap(), "x".repeat(40_000));
    assert!(events[0].get("partial").is_none());
    assert_eq!(events[1]["message"], "after");
    // Acks of the pieces are not held until the line is complete (partial_timeout is 5 s).
    assert!(took < Duration::from_secs(4), "the container took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Python fluent-logger

fn venv_python() -> PathBuf {
    let dir = std::env::var("TESTBED_DIR").unwrap_or_else(|_| "/var/tmp/logwharf-testbed".into());
    PathBuf::from(dir).join("venv/bin/python")
}

fn fluent_logger_available() -> bool {
    Command::new(venv_python())
        .args(["-c", "import fluent.sender, msgpack"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn python_fluent_logger_message_and_forward_modes_are_received() {
    if !require("fluent-logger (scripts/testbed)", fluent_logger_available()) {
        return;
    }
    let t = TestDir::new("fluent-logger");
    let (port, api) = (free_port(), free_port());
    let cfg = t.config(&receiver_config(port, api, "all.log", ""));
    let mut lw = Logwharf::start(&cfg, &[]);
    wait_listening(port, &lw);
    let script = format!(
        r#"
import msgpack, time
from fluent import sender
s = sender.FluentSender("app", host="127.0.0.1", port={port}, nanosecond_precision=True)
for i in range(200):
    assert s.emit("web", {{"log": "message-mode %d" % i, "source": "stderr", "n": i}}), s.last_error
s.close()
# Forward mode, through the same client's transport (fluent-logger has no Forward API).
s = sender.FluentSender("app", host="127.0.0.1", port={port})
now = int(time.time())
for b in range(4):
    entries = [[sender.EventTime(now, j), {{"log": "forward-mode %d" % (b * 50 + j), "source": "stdout"}}] for j in range(50)]
    assert s._send(msgpack.packb(["app.fwd", entries, {{"size": 50}}])), s.last_error
s.close()
"#
    );
    let st = Command::new(venv_python())
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(st.success());
    let out = t.path().join("out/all.log");
    let done = wait_until(PATIENCE, || count_lines(&out) >= 400);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(done, "{} lines; log:\n{}", count_lines(&out), lw.log());
    let events = json_lines(&out);
    let msg: Vec<&Value> = events.iter().filter(|e| e["tag"] == "app.web").collect();
    let fwd: Vec<&Value> = events.iter().filter(|e| e["tag"] == "app.fwd").collect();
    assert_eq!(msg.len(), 200);
    assert_eq!(fwd.len(), 200);
    for (i, e) in msg.iter().enumerate() {
        assert_eq!(e["message"], format!("message-mode {i}"));
        assert_eq!(e["stream"], "stderr");
        assert_eq!(e["fields"]["n"], i);
        assert!(e.get("container_id").is_none());
    }
    for (i, e) in fwd.iter().enumerate() {
        assert_eq!(e["message"], format!("forward-mode {i}"));
        assert_eq!(e["stream"], "stdout");
        assert!(e["time"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{:09}Z", i % 50)));
    }
}

// ---------------------------------------------------------------------------------------------
// The captured fixtures of the four modes, through the binary

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/fluent/{name}.msgpack")),
    )
    .unwrap()
}

#[test]
fn the_four_mode_fixtures_arrive_through_the_binary() {
    let t = TestDir::new("fluent-fixtures");
    let (port, api) = (free_port(), free_port());
    let cfg = t.config(&receiver_config(
        port,
        api,
        "all.log",
        "partial_timeout = \"200ms\"",
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    wait_listening(port, &lw);
    let names = [
        "docker-message",
        "docker-partial",
        "fluent-logger-message",
        "forward",
        "packed-forward",
        "compressed-packed-forward",
    ];
    for name in names {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(&fixture(name)).unwrap();
        // compressed-packed-forward carries a chunk: its ack comes back once delivered.
        if name == "compressed-packed-forward" {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut b = [0u8; 64];
            let n = s.read(&mut b).unwrap();
            let mut want = Vec::new();
            rmp::encode::write_map_len(&mut want, 1).unwrap();
            rmp::encode::write_str(&mut want, "ack").unwrap();
            rmp::encode::write_str(&mut want, "Y2h1bmstMQ==").unwrap();
            assert_eq!(&b[..n], &want[..]);
        }
    }
    // 3 + 2 + 2 + 2 + 5 + 6 events.
    let out = t.path().join("out/all.log");
    let done = wait_until(PATIENCE, || count_lines(&out) >= 20);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(done, "{} lines; log:\n{}", count_lines(&out), lw.log());
    let events = json_lines(&out);
    assert_eq!(events.len(), 20);
    let by_msg: HashMap<String, &Value> = events
        .iter()
        .map(|e| (e["message"].as_str().unwrap().to_string(), e))
        .collect();
    assert_eq!(by_msg["hello-err"]["stream"], "stderr");
    assert_eq!(by_msg["hello-err"]["container_name"], "docker-message");
    assert_eq!(by_msg["hello-err"]["tag"], "docker.docker-message");
    assert_eq!(
        by_msg["hello-err"]["time"],
        "2026-11-25T13:47:28.788983239Z"
    );
    assert_eq!(by_msg["nonl"]["partial"], true);
    assert!(by_msg.contains_key(&"x".repeat(20_000)));
    assert_eq!(by_msg["from fluent-logger"]["fields"]["level"], "info");
    assert_eq!(
        by_msg["integer time, message key"]["time"],
        "2026-11-25T13:04:23.000000000Z"
    );
    assert_eq!(by_msg["forward two"]["stream"], "stderr");
    assert_eq!(by_msg["packed line 3"]["tag"], "docker.packed");
    assert_eq!(by_msg["second gzip member"]["tag"], "docker.packed");
}

// ---------------------------------------------------------------------------------------------
// logwharf → logwharf with gzip and require_ack, the receiver SIGKILLed and restarted

/// A minimal Forward client: numbered lines in Forward mode, each message with a chunk, waiting
/// for its ack (so the sending logwharf acks us only once its own sink was acked downstream).
struct Feeder {
    s: TcpStream,
}

impl Feeder {
    fn connect(port: u16) -> Feeder {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        Feeder { s }
    }

    fn try_send(&mut self, tag: &str, from: u64, to: u64) -> std::io::Result<()> {
        let chunk = self.write(tag, from, to)?;
        self.read_ack(&chunk)
    }

    /// Reads the next ack and checks it is for `chunk`.
    fn read_ack(&mut self, chunk: &str) -> std::io::Result<()> {
        let mut want = Vec::new();
        rmp::encode::write_map_len(&mut want, 1).unwrap();
        rmp::encode::write_str(&mut want, "ack").unwrap();
        rmp::encode::write_str(&mut want, chunk).unwrap();
        let mut got = vec![0u8; want.len()];
        self.s.read_exact(&mut got)?;
        assert_eq!(got, want);
        Ok(())
    }

    /// Writes lines `from..to` as one Forward-mode message with chunk `c<from>`.
    fn write(&mut self, tag: &str, from: u64, to: u64) -> std::io::Result<String> {
        let mut b = Vec::new();
        rmp::encode::write_array_len(&mut b, 3).unwrap();
        rmp::encode::write_str(&mut b, tag).unwrap();
        rmp::encode::write_array_len(&mut b, (to - from) as u32).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for n in from..to {
            rmp::encode::write_array_len(&mut b, 2).unwrap();
            rmp::encode::write_uint(&mut b, now).unwrap();
            rmp::encode::write_map_len(&mut b, 2).unwrap();
            rmp::encode::write_str(&mut b, "log").unwrap();
            rmp::encode::write_str(&mut b, &n.to_string()).unwrap();
            rmp::encode::write_str(&mut b, "source").unwrap();
            rmp::encode::write_str(&mut b, "stdout").unwrap();
        }
        let chunk = format!("c{from}");
        rmp::encode::write_map_len(&mut b, 1).unwrap();
        rmp::encode::write_str(&mut b, "chunk").unwrap();
        rmp::encode::write_str(&mut b, &chunk).unwrap();
        self.s.write_all(&b)?;
        Ok(chunk)
    }
}

#[test]
fn fluentd_sink_to_fluent_source_gzip_ack_receiver_killed_mid_stream_loses_nothing() {
    let t = TestDir::new("fluent-kill");
    let (a_port, b_port, b_api) = (free_port(), free_port(), free_port());
    // B: the receiving logwharf.
    let b_dir = t.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let b_cfg = b_dir.join("logwharf.toml");
    std::fs::write(
        &b_cfg,
        receiver_config(b_port, b_api, "b.log", "")
            .replace("{dir}", b_dir.to_str().unwrap())
            .replace(
                "checkpoint_interval",
                &format!(
                    "data_dir = \"{}/data\"\ncheckpoint_interval",
                    b_dir.display()
                ),
            ),
    )
    .unwrap();
    // A: fluent source (fed below) → fluentd sink (gzip, require_ack) → B.
    let batch = 500;
    let a_cfg = t.config(&format!(
        r#"
[sources.in]
type = "fluent"
address = "127.0.0.1:{a_port}"
# One feeder message (250 lines) per source batch, so a sink group is exactly 500 lines: the
# batcher groups whole source batches, and a group is what one kill can repeat.
batch_max_events = 250
[sinks.fwd]
type = "fluentd"
inputs = ["in"]
address = "tcp://127.0.0.1:{b_port}"
compress = "gzip"
require_ack = true
ack_timeout = "2s"
batch = {{ max_events = {batch}, timeout = "100ms" }}
"#
    ));
    let mut b = Logwharf::start(&b_cfg, &[]);
    wait_listening(b_port, &b);
    let mut a = Logwharf::start(&a_cfg, &[]);
    wait_listening(a_port, &a);

    // Lines stream in continuously (acks are read by a second thread), so B dies with a group
    // in flight.
    let total = 100_000u64;
    let step = 250u64;
    let mut f = Feeder::connect(a_port);
    let mut acks = Feeder {
        s: f.s.try_clone().unwrap(),
    };
    let feeder = std::thread::spawn(move || {
        let mut n = 1;
        while n <= total {
            f.write("app.kill", n, n + step).unwrap();
            n += step;
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let acker = std::thread::spawn(move || -> std::io::Result<()> {
        let mut n = 1;
        while n <= total {
            acks.read_ack(&format!("c{n}"))?;
            n += step;
        }
        Ok(())
    });
    let out = b_dir.join("out/b.log");
    // Kill B twice while lines flow; restart it on the same port after a pause.
    for k in 1..=2 {
        assert!(
            wait_until(Duration::from_secs(60), || count_lines(&out)
                > k * 20_000 - 8_000),
            "too little arrived before kill {k}:\nA:\n{}\nB:\n{}",
            a.log(),
            b.log()
        );
        b.kill9();
        eprintln!("kill {k}: B had written {} lines", count_lines(&out));
        std::thread::sleep(Duration::from_millis(1500));
        b = Logwharf::start(&b_cfg, &[]);
        wait_listening(b_port, &b);
    }
    feeder.join().expect("the feeder wrote every line");
    if let Err(e) = acker.join().unwrap() {
        panic!(
            "not every chunk was acknowledged: {e}\nA:\n{}\nB:\n{}",
            a.log(),
            b.log()
        );
    }
    let complete = || {
        let ev = read_events(&out);
        let got: std::collections::HashSet<u64> = ev
            .iter()
            .filter_map(|e| e["message"].as_str()?.parse().ok())
            .collect();
        got.len() as u64 == total
    };
    let done = wait_until(Duration::from_secs(60), complete);
    let m = metrics_of(b_api);
    assert_eq!(a.terminate(), Some(0), "{}", a.log());
    assert_eq!(b.terminate(), Some(0), "{}", b.log());
    let events = read_events(&out);
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for e in &events {
        *seen
            .entry(e["message"].as_str().unwrap().parse().unwrap())
            .or_default() += 1;
    }
    let missing: Vec<u64> = (1..=total).filter(|n| !seen.contains_key(n)).collect();
    let duplicates = events.len() - seen.len();
    eprintln!(
        "receiver killed twice: {} delivered, {} distinct, {duplicates} duplicates; sender log:\n{}",
        events.len(),
        seen.len(),
        a.log()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("connected"))
            .take(12)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        done && missing.is_empty(),
        "lost {} lines, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Each kill can repeat at most the one group (500 lines) written but not acknowledged.
    assert!(duplicates <= 2 * batch, "{duplicates} duplicates");
    assert!(events.iter().all(|e| e["tag"] == "app.kill"));
    let _ = m;
}

// ---------------------------------------------------------------------------------------------
// Hostile input

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Sends `bytes`, then waits for the server to close the connection (true) or not (false).
fn send_and_expect_close(port: u16, bytes: &[u8], half_close: bool) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut b = [0u8; 256];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn message_mode(tag: &str, log: &str) -> Vec<u8> {
    let mut b = Vec::new();
    rmp::encode::write_array_len(&mut b, 3).unwrap();
    rmp::encode::write_str(&mut b, tag).unwrap();
    rmp::encode::write_uint(&mut b, 1_795_611_862).unwrap();
    rmp::encode::write_map_len(&mut b, 1).unwrap();
    rmp::encode::write_str(&mut b, "log").unwrap();
    rmp::encode::write_str(&mut b, log).unwrap();
    b
}

/// CompressedPackedForward whose entries expand to `members` MiB of zeros (1 MiB of zeros
/// deflates to about 1 KiB; deflate cannot do better than ~1:1000, so a 1 GiB bomb is ~1 MiB).
fn gzip_bomb(members: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = gz.finish().unwrap();
    let mut entries = Vec::with_capacity(member.len() * members);
    for _ in 0..members {
        entries.extend_from_slice(&member);
    }
    let mut b = Vec::new();
    rmp::encode::write_array_len(&mut b, 3).unwrap();
    rmp::encode::write_str(&mut b, "bomb").unwrap();
    rmp::encode::write_bin(&mut b, &entries).unwrap();
    rmp::encode::write_map_len(&mut b, 1).unwrap();
    rmp::encode::write_str(&mut b, "compressed").unwrap();
    rmp::encode::write_str(&mut b, "gzip").unwrap();
    b
}

#[test]
fn hostile_input_is_counted_closes_only_that_connection_and_memory_stays_bounded() {
    let t = TestDir::new("fluent-hostile");
    let (port, api) = (free_port(), free_port());
    let cfg = t.config(&receiver_config(port, api, "all.log", ""));
    let mut lw = Logwharf::start(&cfg, &[]);
    wait_listening(port, &lw);

    // A well-behaved client stays connected throughout and is never disturbed.
    let mut good = TcpStream::connect(("127.0.0.1", port)).unwrap();
    good.write_all(&message_mode("good", "before")).unwrap();

    let bomb = gzip_bomb(1024);
    eprintln!("gzip bomb: {} bytes → 1 GiB", bomb.len());
    let mut claims_2_32 = vec![0x93u8];
    rmp::encode::write_str(&mut claims_2_32, "t").unwrap();
    claims_2_32.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x92, 0x01, 0x80]);
    let mut truncated = message_mode("t", "a line that is cut");
    truncated.truncate(truncated.len() - 5);
    let cases: [(&str, Vec<u8>, bool); 5] = [
        (
            "garbage",
            b"\xc1this is not msgpack at all\n".to_vec(),
            false,
        ),
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        ("truncated", truncated, true),
        ("too_large", claims_2_32, false),
        ("decompressed_too_large", bomb, false),
    ];
    for (kind, bytes, half_close) in &cases {
        assert!(
            send_and_expect_close(port, bytes, *half_close),
            "{kind}: the connection stayed open"
        );
        good.write_all(&message_mode("good", kind)).unwrap();
    }
    good.write_all(&message_mode("good", "after")).unwrap();
    drop(good);

    let out = t.path().join("out/all.log");
    assert!(
        wait_until(PATIENCE, || count_lines(&out) >= 7),
        "{}",
        lw.log()
    );
    let m = metrics_of(api);
    let rss = peak_rss_kib(lw.pid());
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let events = json_lines(&out);
    let msgs: Vec<&str> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        msgs,
        [
            "before",
            "garbage",
            "garbage",
            "truncated",
            "too_large",
            "decompressed_too_large",
            "after"
        ]
    );
    for kind in [
        "garbage",
        "truncated",
        "too_large",
        "decompressed_too_large",
    ] {
        let want = if kind == "garbage" { 2.0 } else { 1.0 };
        assert_eq!(
            metric(
                &m,
                "logwharf_source_errors_total",
                &[&format!("kind=\"{kind}\"")]
            ),
            want,
            "{kind}:\n{m}"
        );
    }
    // The log names the peer.
    assert!(lw.log().contains("peer=127.0.0.1:"), "{}", lw.log());
    // 64 MiB decompression cap + buffers; nowhere near the bomb's 1 GiB.
    assert!(rss < 300 * 1024, "peak RSS {rss} KiB");
}

#[test]
fn a_wrong_shared_key_is_refused_and_counted_the_right_one_gets_through() {
    let t = TestDir::new("fluent-auth");
    let (port, api) = (free_port(), free_port());
    let cfg = t.config(&receiver_config(
        port,
        api,
        "all.log",
        "auth = { shared_key = \"s3cret\", self_hostname = \"recv\" }",
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    wait_listening(port, &lw);
    // logwharf's own sink as the client: one with the wrong key, one with the right one.
    let (wrong_api, right_api) = (free_port(), free_port());
    let client = |key: &str, api: u16, name: &str| {
        let d = t.path().join(name);
        std::fs::create_dir_all(d.join("containers")).unwrap();
        let p = d.join("logwharf.toml");
        let inp = free_port();
        std::fs::write(
            &p,
            format!(
                r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.in]
type = "fluent"
address = "127.0.0.1:{inp}"
[sinks.fwd]
type = "fluentd"
inputs = ["in"]
address = "127.0.0.1:{port}"
auth = {{ shared_key = "{key}", self_hostname = "{name}" }}
"#,
                d = d.display(),
            ),
        )
        .unwrap();
        (p, inp)
    };
    let (wrong_cfg, wrong_in) = client("guess", wrong_api, "wrong");
    let (right_cfg, right_in) = client("s3cret", right_api, "right");
    let mut wrong = Logwharf::start(&wrong_cfg, &[]);
    let mut right = Logwharf::start(&right_cfg, &[]);
    for (ip, lwc, tag) in [(wrong_in, &wrong, "wrong"), (right_in, &right, "right")] {
        wait_listening(ip, lwc);
        let mut s = TcpStream::connect(("127.0.0.1", ip)).unwrap();
        s.write_all(&message_mode(tag, &format!("from the {tag} key")))
            .unwrap();
    }
    let out = t.path().join("out/all.log");
    assert!(
        wait_until(PATIENCE, || count_lines(&out) >= 1),
        "{}\nright:\n{}",
        lw.log(),
        right.log()
    );
    assert!(
        wait_until(PATIENCE, || metric(
            &metrics_of(api),
            "logwharf_source_errors_total",
            &["kind=\"auth\""]
        ) >= 1.0),
        "{}",
        lw.log()
    );
    let sink_errors = || {
        metric(
            &metrics_of(wrong_api),
            "logwharf_sink_errors_total",
            &["kind=\"connect\""],
        )
    };
    wait_until(PATIENCE, || sink_errors() >= 1.0);
    let sink_errors = sink_errors();
    wrong.kill9();
    assert_eq!(right.terminate(), Some(0), "{}", right.log());
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let events = json_lines(&out);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["message"], "from the right key");
    assert!(
        sink_errors >= 1.0,
        "the sender counts its refused handshakes"
    );
    assert!(
        wrong.log().contains("shared_key mismatch"),
        "{}",
        wrong.log()
    );
    assert!(
        lw.log()
            .contains("wrong shared key from client \\\"wrong\\\"")
            || lw.log().contains("wrong shared key from client"),
        "{}",
        lw.log()
    );
}

// ---------------------------------------------------------------------------------------------
// Transports: TLS and unix sockets, sink to source; UDP heartbeat

/// A throwaway CA and a server certificate for 127.0.0.1 signed by it (openssl CLI):
/// (ca.pem, cert.pem, key.pem).
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    let openssl = |args: &[&str]| {
        let st = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "openssl {args:?}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=logwharf test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca);
    let mut csr = vec!["req", "-new", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "key.pem", "-out", "cert.csr"]);
    openssl(&csr);
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    (p("ca.pem"), p("cert.pem"), p("key.pem"))
}

/// logwharf A (fluent source on `a_port`) → fluentd sink at `sink_addr` → logwharf B
/// (fluent source at `source_addr`) → file; returns the events B wrote.
fn relay(
    name: &str,
    source_addr: &str,
    source_extra: &str,
    sink_addr: &str,
    sink_extra: &str,
) -> Vec<Value> {
    let t = TestDir::new(name);
    let b_dir = t.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let b_cfg = b_dir.join("logwharf.toml");
    std::fs::write(
        &b_cfg,
        format!(
            r#"
data_dir = "{d}/data"
[api]
address = "127.0.0.1:{api}"
[sources.fwd]
type = "fluent"
address = "{source_addr}"
{source_extra}
[sinks.out]
type = "file"
inputs = ["fwd"]
path = "{d}/out.log"
"#,
            d = b_dir.display(),
            api = free_port()
        )
        .replace("{dir}", t.path().to_str().unwrap()),
    )
    .unwrap();
    let a_port = free_port();
    let a_cfg = t.config(&format!(
        r#"
[sources.in]
type = "fluent"
address = "127.0.0.1:{a_port}"
[sinks.fwd]
type = "fluentd"
inputs = ["in"]
address = "{sink_addr}"
require_ack = true
batch = {{ timeout = "50ms" }}
{sink_extra}
"#
    ));
    let mut b = Logwharf::start(&b_cfg, &[]);
    // Any of B's address kinds (tcp, tls, unix): B says when it listens.
    b.wait_log("fluent source listening", 1);
    let mut a = Logwharf::start(&a_cfg, &[]);
    wait_listening(a_port, &a);
    let mut f = Feeder::connect(a_port);
    f.s.set_read_timeout(Some(PATIENCE)).unwrap();
    if let Err(e) = f.try_send("relay", 1, 101) {
        panic!("no ack: {e}\nA:\n{}\nB:\n{}", a.log(), b.log());
    }
    let out = b_dir.join("out.log");
    let done = wait_until(PATIENCE, || count_lines(&out) >= 100);
    assert_eq!(a.terminate(), Some(0), "{}", a.log());
    assert_eq!(b.terminate(), Some(0), "{}", b.log());
    assert!(done, "A:\n{}\nB:\n{}", a.log(), b.log());
    json_lines(&out)
}

#[test]
fn tls_from_sink_to_source() {
    let d = TestDir::new("fluent-tls-certs");
    let (ca, crt, key) = test_pki(d.path());
    let port = free_port();
    let ev = relay(
        "fluent-tls",
        &format!("tls://127.0.0.1:{port}"),
        &format!(
            "tls = {{ crt_file = \"{}\", key_file = \"{}\" }}\nauth = {{ shared_key = \"k\" }}",
            crt.display(),
            key.display()
        ),
        &format!("tls://127.0.0.1:{port}"),
        &format!(
            "tls = {{ ca_file = \"{}\" }}\nauth = {{ shared_key = \"k\" }}",
            ca.display()
        ),
    );
    assert_eq!(ev.len(), 100);
    assert_eq!(ev[99]["message"], "100");
}

#[test]
fn unix_socket_from_sink_to_source() {
    let d = TestDir::new("fluent-unix-sock");
    let sock = d.path().join("fwd.sock");
    let addr = format!("unix://{}", sock.display());
    let ev = relay("fluent-unix", &addr, "", &addr, "compress = \"gzip\"");
    assert_eq!(ev.len(), 100);
    assert_eq!(ev[0]["tag"], "relay");
}

#[test]
fn udp_heartbeats_are_answered_when_enabled() {
    let t = TestDir::new("fluent-heartbeat");
    let (port, api) = (free_port(), free_port());
    let cfg = t.config(&receiver_config(port, api, "all.log", "heartbeat = true"));
    let mut lw = Logwharf::start(&cfg, &[]);
    wait_listening(port, &lw);
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    u.send_to(b"", ("127.0.0.1", port)).unwrap();
    let mut b = [9u8; 8];
    let (n, _) = u.recv_from(&mut b).expect("a heartbeat answer");
    assert_eq!(&b[..n], b"\0");
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
}

/// `import-daemon-json` on a daemon.json for Docker's `fluentd` driver: the generated config
/// (run for this test's container) sends a real container's lines to a Forward server (a
/// second logwharf's fluent source) with the same tag, name, stream and messages as Docker's
/// own fluentd driver sends for a twin container.
#[test]
fn a_fluentd_daemon_json_imports_to_a_config_that_ships_like_dockers_driver() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("fluent-import");
    let (port, api) = (free_port(), free_port());
    let cfg = t.config(&receiver_config(port, api, "{{.Name}}.log", ""));
    let mut receiver = Logwharf::start(&cfg, &[]);
    wait_listening(port, &receiver);

    let agent = TestDir::new("fluent-import-agent");
    let script = "seq 1 200; seq 1 50 | while read n; do echo err-$n; done >&2";
    let ours = Container::create("lw-fluent-import-ours", &[], script);
    let mine = import_daemon_json(
        agent.path(),
        &format!(
            r#"{{"log-driver": "fluentd", "log-opts": {{"fluentd-address": "127.0.0.1:{port}",
                "tag": "docker.{{{{.Name}}}}", "fluentd-sub-second-precision": "true",
                "fluentd-async": "true"}}}}"#
        ),
        &[&ours.id],
    );
    let mut lw = Logwharf::start(&agent.config(&mine), &[]);
    lw.wait_log(docker::CONNECTED, 1);
    ours.start();
    let opts = driver_opts(
        port,
        &["fluentd-sub-second-precision=true", "fluentd-async=true"],
    );
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let theirs = Container::create("lw-fluent-import-theirs", &opts, script);
    theirs.start();
    assert_eq!(ours.wait(), 0);
    assert_eq!(theirs.wait(), 0);
    let file = |c: &Container| t.path().join("out").join(format!("{}.log", c.name));
    let done = wait_until(Duration::from_secs(60), || {
        count_lines(&file(&ours)) >= 250 && count_lines(&file(&theirs)) >= 250
    });
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert_eq!(receiver.terminate(), Some(0), "{}", receiver.log());
    assert!(
        done,
        "agent log:\n{}\nreceiver log:\n{}",
        lw.log(),
        receiver.log()
    );
    // What the receiver recorded, with the container's name written as NAME.
    let seen = |c: &Container| {
        let mut v: Vec<String> = json_lines(&file(c))
            .iter()
            .map(|e| {
                format!(
                    "{} {} {} {}",
                    e["tag"].as_str().unwrap_or("?").replace(&c.name, "NAME"),
                    e["container_name"]
                        .as_str()
                        .unwrap_or("?")
                        .replace(&c.name, "NAME"),
                    e["stream"],
                    e["message"]
                )
            })
            .collect();
        v.sort();
        v
    };
    let want = seen(&theirs);
    assert_eq!(want.len(), 250, "Docker's driver: {want:?}");
    assert_eq!(seen(&ours), want);
}
