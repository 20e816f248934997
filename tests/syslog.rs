//! End-to-end: the `syslog` sink against a real rsyslog (each test starts its own instance on
//! its own loopback port, one output file per facility, and stops it by pid), the `syslog`
//! source against Docker's own syslog driver, golden bytes against Docker's captures
//! (tests/fixtures/syslog/), and hostile input against the source.

mod common;

use common::docker::{self, Container};
use common::rsyslog::Rsyslog;
use common::*;
use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A logwharf whose `syslog` source (the feeder, `tcp://127.0.0.1:feed`) relays into the sink
/// under test (`sink` is the body of `[sinks.out]` without `type`/`inputs`).
fn relay_config(feed: u16, sink: &str) -> String {
    format!(
        r#"
[sources.feed]
type = "syslog"
address = "tcp://127.0.0.1:{feed}"
[sinks.out]
type = "syslog"
inputs = ["feed"]
{sink}
"#
    )
}

fn connect_retry(port: u16) -> TcpStream {
    let end = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > end => panic!("cannot connect to 127.0.0.1:{port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Writes `n` numbered RFC 5424 lines (`app` as APP-NAME) in chunks of `chunk`, pausing
/// `pause` between chunks.
fn feed_numbers(port: u16, app: &str, range: std::ops::Range<u32>, chunk: usize, pause: Duration) {
    let mut s = connect_retry(port);
    let lines: Vec<u32> = range.collect();
    for c in lines.chunks(chunk) {
        let mut buf = Vec::new();
        for n in c {
            writeln!(
                buf,
                "<14>1 2026-11-25T13:04:34.665154Z feeder {app} 1 - - line {n}"
            )
            .unwrap();
        }
        s.write_all(&buf).unwrap();
        std::thread::sleep(pause);
    }
}

fn numbers(lines: &[(String, String, Vec<u8>)]) -> Vec<u32> {
    lines
        .iter()
        .filter_map(|(_, _, m)| {
            std::str::from_utf8(m)
                .ok()?
                .strip_prefix("line ")?
                .parse()
                .ok()
        })
        .collect()
}

fn missing(got: &[u32], n: u32) -> Vec<u32> {
    let set: std::collections::HashSet<u32> = got.iter().copied().collect();
    (0..n).filter(|i| !set.contains(i)).collect()
}

// ---------------------------------------------------------------------------------------------
// Sink → real rsyslog
// ---------------------------------------------------------------------------------------------

/// 10,000 lines of a real container's json-file log → syslog sink (tcp, facility mail, `tag`)
/// → rsyslog's mail file; `app` renders the expected APP-NAME from the container.
fn rsyslog_tcp_10k(name: &str, tag: &str, app: impl Fn(&Container) -> String) {
    if !Rsyslog::require() || !docker::require() {
        return;
    }
    let t = TestDir::new(name);
    let rs = Rsyslog::start(t.path(), free_port());
    let c = Container::create(name, &[], "seq 1 10000");
    let cfg = t.config(&format!(
        r#"
[sources.containers]
type = "docker_json_file"
include = ["{}*"]
[sinks.rsyslog]
type = "syslog"
inputs = ["containers"]
address = "tcp://127.0.0.1:{}"
facility = "mail"
format = "rfc5424"
tag = "{tag}"
"#,
        c.id, rs.port
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    c.start();
    assert_eq!(c.wait(), 0);
    let ok = wait_until(Duration::from_secs(60), || {
        count_lines(&rs.file("mail")) >= 10_000
    });
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let lines = rs.lines("mail");
    assert!(
        ok,
        "{} of 10000 lines arrived; log:\n{}",
        lines.len(),
        lw.log()
    );
    assert_eq!(lines.len(), 10_000);
    let want = app(&c);
    for (i, (fs, app, msg)) in lines.iter().enumerate() {
        assert_eq!(fs, "mail.info");
        assert_eq!(app, &want);
        assert_eq!(msg, (i + 1).to_string().as_bytes());
    }
}

#[test]
fn rsyslog_tcp_10k_lines_from_a_container_mail_facility_id_tag() {
    rsyslog_tcp_10k("lw-sys-tcp10k-id", "{{.ID}}/{{.DaemonName}}", |c| {
        format!("{}/docker", &c.id[..12])
    });
}

#[test]
fn rsyslog_tcp_10k_lines_from_a_container_mail_facility_name_tag() {
    rsyslog_tcp_10k("lw-sys-tcp10k", "{{.Name}}", |c| c.name.clone());
}

#[test]
fn rsyslog_udp_paced_every_line_arrives() {
    if !Rsyslog::require() {
        return;
    }
    let t = TestDir::new("sys-udp");
    let rs = Rsyslog::start(t.path(), free_port());
    let feed = free_port();
    let cfg = t.config(&relay_config(
        feed,
        &format!(
            "address = \"udp://127.0.0.1:{}\"\nfacility = \"mail\"\nformat = \"rfc3164\"",
            rs.port
        ),
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    // 10,000 lines at about 5,000/s: 100 every 20 ms. (The sink sends a batch's datagrams
    // back to back; rsyslog's receive buffer is raised to 8 MB so bursts fit, as a busy UDP
    // receiver's would be.)
    feed_numbers(feed, "udpapp", 0..10_000, 100, Duration::from_millis(20));
    let ok = wait_until(PATIENCE, || count_lines(&rs.file("mail")) >= 10_000);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let lines = rs.lines("mail");
    let got = numbers(&lines);
    eprintln!("udp: {} of 10000 arrived", got.len());
    assert!(
        ok,
        "{} of 10000 arrived; missing e.g. {:?}",
        got.len(),
        &missing(&got, 10_000)[..5.min(missing(&got, 10_000).len())]
    );
    assert!(missing(&got, 10_000).is_empty());
    assert!(lines
        .iter()
        .all(|(fs, app, _)| fs == "mail.info" && app == "udpapp"));
}

#[test]
fn rsyslog_octet_counting_keeps_embedded_newlines_in_one_message() {
    if !Rsyslog::require() {
        return;
    }
    let t = TestDir::new("sys-octet");
    let rs = Rsyslog::start(t.path(), free_port());
    let feed = free_port();
    let cfg = t.config(&relay_config(
        feed,
        &format!(
            "address = \"tcp://127.0.0.1:{}\"\nfacility = \"local3\"\nformat = \"rfc5424\"\nframing = \"octet-counting\"\nnewlines = \"keep\"",
            rs.port
        ),
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    let mut s = connect_retry(feed);
    // Octet-counted into our source too, so the newline survives the way in.
    let m1 = "<14>1 2026-11-25T13:04:34Z h octapp 1 - - first\nsecond";
    write!(s, "{} {m1}", m1.len()).unwrap();
    feed_numbers(feed, "octapp", 0..1000, 100, Duration::from_millis(5));
    let ok = wait_until(PATIENCE, || count_lines(&rs.file("local3")) >= 1001);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let lines = rs.lines("local3");
    assert!(ok, "{} lines; log:\n{}", lines.len(), lw.log());
    // rsyslog escapes the control character it received inside the one message.
    assert!(
        lines
            .iter()
            .any(|(_, app, m)| app == "octapp" && m == b"first#012second"),
        "{:?}",
        &lines[..3.min(lines.len())]
    );
    assert!(missing(&numbers(&lines), 1000).is_empty());
}

#[test]
fn rsyslog_over_tls_octet_counted_like_docker() {
    if !Rsyslog::require() {
        return;
    }
    let t = TestDir::new("sys-rstls");
    make_certs(t.path());
    let tls_port = free_port();
    let rs = Rsyslog::start_tls(t.path(), free_port(), tls_port, t.path());
    let feed = free_port();
    let cfg = t.config(&relay_config(
        feed,
        &format!(
            "address = \"tcp+tls://127.0.0.1:{tls_port}\"\nfacility = \"mail\"\nformat = \"rfc5424\"\ntls = {{ ca_file = \"{{dir}}/ca.crt\" }}"
        ),
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    feed_numbers(feed, "tlsapp", 0..1000, 100, Duration::from_millis(5));
    let ok = wait_until(PATIENCE, || count_lines(&rs.file("mail")) >= 1000);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let lines = rs.lines("mail");
    assert!(
        ok,
        "{} of 1000 lines; log:\n{}\nrsyslogd: {}",
        lines.len(),
        lw.log(),
        std::fs::read_to_string(rs.dir.join("rsyslogd.err")).unwrap_or_default()
    );
    assert_eq!(numbers(&lines), (0..1000).collect::<Vec<_>>());
    assert!(lines
        .iter()
        .all(|(fs, app, _)| fs == "mail.info" && app == "tlsapp"));
}

#[test]
fn rsyslog_stopped_10s_mid_stream_nothing_lost_over_tcp() {
    if !Rsyslog::require() {
        return;
    }
    let t = TestDir::new("sys-restart");
    let mut rs = Rsyslog::start(t.path(), free_port());
    let feed = free_port();
    let api = free_port();
    let cfg = t.config(&format!(
        "[api]\naddress = \"127.0.0.1:{api}\"\n{}",
        relay_config(
            feed,
            &format!(
                "address = \"tcp://127.0.0.1:{}\"\nfacility = \"mail\"\nformat = \"rfc5424micro\"",
                rs.port
            ),
        )
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    const N: u32 = 10_000;
    // 500 lines/s for 20 s; rsyslog is down for 10 s once lines flow through it.
    let feeder = std::thread::spawn(move || {
        feed_numbers(feed, "restartapp", 0..N, 50, Duration::from_millis(100))
    });
    assert!(
        wait_until(PATIENCE, || count_lines(&rs.file("mail")) > 0),
        "nothing reached rsyslog:\n{}",
        lw.log()
    );
    rs.stop();
    let before = count_lines(&rs.file("mail"));
    std::thread::sleep(Duration::from_secs(10));
    rs.launch();
    feeder.join().unwrap();
    let ok = wait_until(Duration::from_secs(60), || {
        missing(&numbers(&rs.lines("mail")), N).is_empty()
    });
    let metrics = http_get(&format!("127.0.0.1:{api}"), "/metrics").unwrap_or_default();
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let got = numbers(&rs.lines("mail"));
    let miss = missing(&got, N);
    eprintln!(
        "restart: {} lines before the stop, {} received in all, {} duplicates, {} missing; resent bytes {}",
        before,
        got.len(),
        got.len() as i64 - (N as i64 - miss.len() as i64),
        miss.len(),
        metric(&metrics, "logwharf_sink_resent_bytes_total", &[])
    );
    assert!(
        before > 0 && before < N as usize,
        "rsyslog was not stopped mid-stream ({before})"
    );
    assert!(
        ok && miss.is_empty(),
        "missing {} lines, e.g. {:?}; log:\n{}",
        miss.len(),
        &miss[..miss.len().min(10)],
        lw.log()
    );
    assert!(metric(&metrics, "logwharf_sink_errors_total", &[]) >= 1.0);
}

#[test]
fn rsyslog_embedded_newlines_and_non_utf8_bytes() {
    if !Rsyslog::require() {
        return;
    }
    let t = TestDir::new("sys-bytes");
    let rs = Rsyslog::start(t.path(), free_port());
    let feed = free_port();
    let feed2 = free_port();
    let cfg = t.config(&format!(
        r#"
[sources.feed]
type = "syslog"
address = "tcp://127.0.0.1:{feed}"
[sources.feed2]
type = "syslog"
address = "tcp://127.0.0.1:{feed2}"
[sinks.escaped]
type = "syslog"
inputs = ["feed"]
address = "tcp://127.0.0.1:{port}"
facility = "local1"
format = "rfc3164"
[sinks.split]
type = "syslog"
inputs = ["feed2"]
address = "tcp://127.0.0.1:{port}"
facility = "local2"
format = "rfc5424"
newlines = "split"
"#,
        port = rs.port
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    // A message with a newline and a Latin-1 byte, octet-counted into our source. The source
    // keeps valid UTF-8 as is; a lone \xe9 becomes U+FFFD (counted) — the bytes logwharf itself
    // receives as UTF-8 pass through untouched.
    let body = "<14>1 2026-11-25T13:04:34Z h byteapp 1 - - caf\u{e9} one\ntwo \u{1F600}";
    for port in [feed, feed2] {
        let mut s = connect_retry(port);
        write!(s, "{} {body}", body.len()).unwrap();
        s.write_all(b"<14>1 2026-11-25T13:04:34Z h byteapp 1 - - raw \xff\xfe bytes\n")
            .unwrap();
    }
    let ok = wait_until(PATIENCE, || {
        count_lines(&rs.file("local1")) >= 2 && count_lines(&rs.file("local2")) >= 3
    });
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(ok, "{}", lw.log());
    let esc = rs.lines("local1");
    let msgs: Vec<&[u8]> = esc.iter().map(|(_, _, m)| m.as_slice()).collect();
    assert!(
        msgs.contains(&"caf\u{e9} one#012two \u{1F600}".as_bytes()),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"raw \u{FFFD}\u{FFFD} bytes".as_bytes()),
        "{msgs:?}"
    );
    let split = rs.lines("local2");
    let msgs: Vec<&[u8]> = split.iter().map(|(_, _, m)| m.as_slice()).collect();
    assert!(msgs.contains(&"caf\u{e9} one".as_bytes()), "{msgs:?}");
    assert!(msgs.contains(&"two \u{1F600}".as_bytes()), "{msgs:?}");
    assert!(split
        .iter()
        .all(|(fs, app, _)| fs == "local2.info" && app == "byteapp"));
}

// ---------------------------------------------------------------------------------------------
// Golden bytes: the sink's formatter against Docker's captures
// ---------------------------------------------------------------------------------------------

mod golden {
    use super::*;
    use bytes::Bytes;
    use logwharf_collector::{ContainerMeta, Event, Stream};
    use logwharf_config::Template;
    use logwharf_sinks::syslog::config::{Framing, Newlines, SyslogFormat};
    use logwharf_sinks::syslog::format::{EncodeStats, Formatter, Zone};
    use logwharf_sinks::syslog::TagCache;
    use std::sync::Arc;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/syslog")
                .join(name),
        )
        .unwrap()
    }

    /// The event Docker logged: container `lw-capture` with the id in the tag, the message, the
    /// stream from the PRI, and the time Docker stamped (`time_ns`).
    fn event(tag: &str, msg: &str, pri: u32, time_ns: i64) -> Event {
        let (name, id) = tag.split_once('/').unwrap();
        let mut meta = ContainerMeta::from_id(format!("{id}{}", "0".repeat(52)));
        meta.name = Some(name.to_string());
        let stream = if pri % 8 == 3 {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let mut e = Event::new(time_ns, stream, Bytes::from(msg.to_string()));
        e.container = Some(Arc::new(meta));
        e
    }

    /// Splits a capture into messages (newline or octet-counted frames).
    fn frames(data: &[u8], octet: bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let (frame, next) = if octet {
                let sp = rest.iter().position(|&b| b == b' ').unwrap();
                let n: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
                (&rest[..sp + 1 + n], &rest[sp + 1 + n..])
            } else {
                let nl = rest.iter().position(|&b| b == b'\n').unwrap();
                (&rest[..nl + 1], &rest[nl + 1..])
            };
            out.push(frame.to_vec());
            rest = next;
        }
        out
    }

    fn check(file: &str, format: SyslogFormat, framing: Option<Framing>) {
        let data = fixture(file);
        let octet = framing == Some(Framing::OctetCounting);
        let frames = frames(&data, octet);
        assert_eq!(frames.len(), 2, "{file}");
        for want in frames {
            let text = String::from_utf8(want.clone()).unwrap();
            let body = if octet {
                text.split_once(' ').unwrap().1
            } else {
                &text
            };
            let pri: u32 = body[1..body.find('>').unwrap()].parse().unwrap();
            let msg = body.trim_end().rsplit(' ').next().unwrap();
            // Docker's time, to the precision it wrote (the year of a 3164 stamp is 2026).
            let time_ns = if format.is_rfc5424() {
                let ts = body.split(' ').nth(1).unwrap();
                logwharf_collector::time::parse_rfc3339_nanos(ts.as_bytes()).unwrap()
            } else {
                let stamp = &body[body.find('>').unwrap() + 1..][..15];
                let t = format!("2026-11-{:0>2}T{}Z", stamp[4..6].trim(), &stamp[7..]);
                logwharf_collector::time::parse_rfc3339_nanos(t.as_bytes()).unwrap()
            };
            let tag = "lw-capture/";
            let start = body.find(tag).unwrap();
            let tag = &body[start..start + tag.len() + 12];
            let ev = event(tag, msg, pri, time_ns + 999); // sub-precision digits are dropped
            let mut f = Formatter::new(
                format,
                2,
                "vm".into(),
                "11458".into(),
                framing,
                Newlines::Escape,
                2048,
            )
            .with_zone(Zone::Fixed(0));
            let mut tags = TagCache::new(Template::parse("{{.Name}}/{{.ID}}").unwrap());
            let (mut out, mut ends, mut st) = (Vec::new(), Vec::new(), EncodeStats::default());
            f.encode(&mut out, &mut ends, &ev, &tags.get(&ev), &mut st);
            assert_eq!(String::from_utf8_lossy(&out), text, "{file}");
            assert_eq!(out, want, "{file}");
        }
    }

    #[test]
    fn golden_rfc5424_over_tcp() {
        check(
            "tcp-rfc5424.bin",
            SyslogFormat::Rfc5424,
            Some(Framing::Newline),
        );
    }

    #[test]
    fn golden_rfc5424micro_over_tcp() {
        check(
            "tcp-rfc5424micro.bin",
            SyslogFormat::Rfc5424Micro,
            Some(Framing::Newline),
        );
    }

    #[test]
    fn golden_rfc3164_over_tcp() {
        check(
            "tcp-rfc3164.bin",
            SyslogFormat::Rfc3164,
            Some(Framing::Newline),
        );
    }

    #[test]
    fn golden_default_format_over_tcp() {
        check(
            "tcp-default.bin",
            SyslogFormat::Unix,
            Some(Framing::Newline),
        );
    }

    #[test]
    fn golden_rfc3164_over_udp() {
        check("udp-rfc3164.bin", SyslogFormat::Rfc3164, None);
    }

    #[test]
    fn golden_rfc5424_over_tls_is_octet_counted() {
        check(
            "tls-rfc5424.bin",
            SyslogFormat::Rfc5424,
            Some(Framing::OctetCounting),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Source ← Docker's own syslog driver
// ---------------------------------------------------------------------------------------------

fn docker_to_source(proto: &str, format: &str, name: &str) {
    if !docker::require() {
        return;
    }
    let t = TestDir::new(name);
    let port = free_port();
    let cfg = t.config(&format!(
        r#"
[sources.docker]
type = "syslog"
address = "{proto}://127.0.0.1:{port}"
[sinks.out]
type = "file"
inputs = ["docker"]
path = "{{dir}}/out.log"
encoding = "json"
"#
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    // Docker's driver needs the listener up before the container starts (UDP cannot be
    // probed: the source says when it is bound).
    if proto == "tcp" {
        connect_retry(port);
    } else {
        lw.wait_log("syslog source listening", 1);
    }
    let c = Container::create(
        name,
        &[
            "--log-driver=syslog",
            "--log-opt",
            &format!("syslog-address={proto}://127.0.0.1:{port}"),
            "--log-opt",
            &format!("syslog-format={format}"),
            "--log-opt",
            "syslog-facility=local4",
            "--log-opt",
            "tag={{.Name}}",
        ],
        // Paced a little: UDP has no flow control, and Docker sends as fast as it reads.
        "i=1; while [ $i -le 500 ]; do echo out-$i; echo err-$i >&2; i=$((i+1)); [ $((i % 50)) = 0 ] && sleep 0.05; done; true",
    );
    c.start();
    assert_eq!(c.wait(), 0);
    let out = t.path().join("out.log");
    let ok = wait_until(PATIENCE, || count_lines(&out) >= 1000);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let events = json_lines(&out);
    assert!(ok, "{} of 1000 events; log:\n{}", events.len(), lw.log());
    let mut seen: HashMap<String, serde_json::Value> = HashMap::new();
    for e in &events {
        seen.insert(e["message"].as_str().unwrap().to_string(), e.clone());
    }
    for i in 1..=500 {
        for (prefix, severity, stream) in [("out", "info", "stdout"), ("err", "err", "stderr")] {
            let m = format!("{prefix}-{i}");
            let e = seen.get(&m).unwrap_or_else(|| panic!("{m} missing"));
            let f = &e["fields"];
            assert_eq!(f["facility"], "local4", "{e}");
            assert_eq!(f["severity"], severity, "{e}");
            assert_eq!(f["appname"], name, "{e}");
            assert_eq!(e["stream"], stream, "{e}");
        }
    }
}

#[test]
fn docker_syslog_driver_rfc5424micro_over_tcp_to_source_to_file() {
    docker_to_source("tcp", "rfc5424micro", "lw-sys-drv-tcp");
}

#[test]
fn docker_syslog_driver_rfc3164_over_udp_to_source_to_file() {
    docker_to_source("udp", "rfc3164", "lw-sys-drv-udp");
}

// ---------------------------------------------------------------------------------------------
// Hostile input to the source
// ---------------------------------------------------------------------------------------------

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn bad_input_is_counted_and_other_connections_keep_flowing() {
    let t = TestDir::new("sys-bad");
    let port = free_port();
    let api = free_port();
    let cfg = t.config(&format!(
        r#"
[api]
address = "127.0.0.1:{api}"
[sources.rx]
type = "syslog"
address = "tcp://127.0.0.1:{port}"
frame_timeout = "2s"
[sinks.null]
type = "blackhole"
inputs = ["rx"]
"#
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    let mut good = connect_retry(port);
    let line = |n: u32| format!("<14>1 2026-11-25T13:04:34Z h good 1 - - ok {n}\n");
    good.write_all(line(0).as_bytes()).unwrap();
    let rss_before = rss_kb(lw.pid());

    // A slowloris: half a frame, then nothing.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"<14>1 2026-11-25T13:04:34Z h slow 1 - - never end")
        .unwrap();
    // Garbage bytes (with a few newlines so it is many frames).
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut seed = 42u64;
    let junk: Vec<u8> = (0..200_000)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 32) as u8
        })
        .collect();
    garbage.write_all(&junk).unwrap();
    garbage.write_all(b"\n").unwrap();
    // An unterminated 10 MB frame (write from a thread: the reader discards as it goes).
    let big = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let chunk = vec![b'A'; 1 << 20];
        s.write_all(b"<14>1 2026-11-25T13:04:34Z h big 1 - - ")
            .unwrap();
        for _ in 0..10 {
            s.write_all(&chunk).unwrap();
        }
        s
    });
    // A bad octet count, and invalid UTF-8.
    let mut bad = TcpStream::connect(("127.0.0.1", port)).unwrap();
    bad.write_all(b"99999999999999 <14>1 - h bad 1 - - x\n")
        .unwrap();
    bad.write_all(b"<14>1 2026-11-25T13:04:34Z h bad 1 - - caf\xe9\n")
        .unwrap();
    // An octet count far over max_frame.
    bad.write_all(b"900000 <14>1 - h bad 1 - - short\n")
        .unwrap();

    // The good connection is unaffected meanwhile.
    for n in 1..=1000 {
        good.write_all(line(n).as_bytes()).unwrap();
    }
    let _big = big.join().unwrap();
    let addr = format!("127.0.0.1:{api}");
    let m = || http_get(&addr, "/metrics").unwrap_or_default();
    let errs = |text: &str, kind: &str| {
        metric(
            text,
            "logwharf_source_errors_total",
            &[&format!("kind=\"{kind}\"")],
        )
    };
    let ok = wait_until(PATIENCE, || {
        let text = m();
        metric(&text, "logwharf_source_events_total", &[]) >= 1001.0
            && errs(&text, "timeout") >= 1.0
            && errs(&text, "frame_too_large") >= 2.0
    });
    let text = m();
    let rss_after = rss_kb(lw.pid());
    assert!(
        lw.child.try_wait().unwrap().is_none(),
        "logwharf died: {}",
        lw.log()
    );
    // More good lines after all that, on a new connection too.
    good.write_all(line(1001).as_bytes()).unwrap();
    let mut good2 = TcpStream::connect(("127.0.0.1", port)).unwrap();
    good2.write_all(line(1002).as_bytes()).unwrap();
    drop(good2);
    assert!(
        ok,
        "metrics:\n{}\nlog:\n{}",
        text.lines()
            .filter(|l| l.contains("source"))
            .collect::<Vec<_>>()
            .join("\n"),
        lw.log()
    );
    for kind in [
        "malformed",
        "bad_octet_count",
        "invalid_utf8",
        "frame_too_large",
        "timeout",
    ] {
        assert!(errs(&text, kind) >= 1.0, "no {kind} error counted:\n{text}");
    }
    eprintln!("RSS before {rss_before} kB, after the 10 MB frame and the rest {rss_after} kB");
    assert!(
        rss_after < rss_before + 40_000,
        "memory grew from {rss_before} to {rss_after} kB"
    );
    let done = wait_until(PATIENCE, || {
        metric(&m(), "logwharf_source_events_total", &[]) >= 1003.0
    });
    assert!(done);
    assert_eq!(lw.terminate(), Some(0));
    let log = lw.log();
    // The log names the peer of each problem.
    assert!(log.contains("peer=\"127.0.0.1:"), "{log}");
    assert!(log.contains("frame_timeout"), "{log}");
}

// ---------------------------------------------------------------------------------------------
// TLS: sink → source, both over tcp+tls with a throwaway CA
// ---------------------------------------------------------------------------------------------

#[test]
fn tls_sink_to_tls_source_verified_and_octet_counted() {
    if !require("openssl (scripts/testbed)", has_openssl()) {
        return;
    }
    let t = TestDir::new("sys-tls");
    make_certs(t.path());
    let (feed, tls) = (free_port(), free_port());
    let cfg = t.config(&format!(
        r#"
[sources.feed]
type = "syslog"
address = "tcp://127.0.0.1:{feed}"
[sinks.tls]
type = "syslog"
inputs = ["feed"]
address = "tcp+tls://127.0.0.1:{tls}"
format = "rfc5424"
facility = "auth"
tls = {{ ca_file = "{{dir}}/ca.crt" }}
[sources.rx]
type = "syslog"
address = "tcp+tls://127.0.0.1:{tls}"
tls = {{ crt_file = "{{dir}}/srv.crt", key_file = "{{dir}}/srv.key" }}
[sinks.out]
type = "file"
inputs = ["rx"]
path = "{{dir}}/out.log"
encoding = "json"
"#
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    feed_numbers(feed, "tlsapp", 0..2000, 500, Duration::from_millis(10));
    let out = t.path().join("out.log");
    let ok = wait_until(PATIENCE, || count_lines(&out) >= 2000);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let events = json_lines(&out);
    assert!(ok, "{} of 2000; log:\n{}", events.len(), lw.log());
    let msgs: Vec<u32> = events
        .iter()
        .filter_map(|e| e["message"].as_str()?.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(missing(&msgs, 2000).is_empty());
    assert!(events
        .iter()
        .all(|e| e["fields"]["facility"] == "auth" && e["fields"]["appname"] == "tlsapp"));
}

#[test]
fn unix_stream_and_datagram_sockets_sink_to_source() {
    let t = TestDir::new("sys-unix");
    let feed = free_port();
    let cfg = t.config(&format!(
        r#"
[sources.feed]
type = "syslog"
address = "tcp://127.0.0.1:{feed}"
[sinks.stream]
type = "syslog"
inputs = ["feed"]
address = "unix://{{dir}}/stream.sock"
format = "rfc5424"
facility = "local5"
[sinks.gram]
type = "syslog"
inputs = ["feed"]
address = "unixgram://{{dir}}/gram.sock"
format = "rfc3164"
facility = "local6"
[sources.rx_stream]
type = "syslog"
address = "unix://{{dir}}/stream.sock"
[sources.rx_gram]
type = "syslog"
address = "unixgram://{{dir}}/gram.sock"
[sinks.out]
type = "file"
inputs = ["rx_*"]
path = "{{dir}}/out.log"
encoding = "json"
"#
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    let sock = t.path().join("gram.sock");
    assert!(wait_until(PATIENCE, || sock.exists()));
    feed_numbers(feed, "unixapp", 0..1000, 100, Duration::from_millis(10));
    let out = t.path().join("out.log");
    let ok = wait_until(PATIENCE, || count_lines(&out) >= 2000);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let events = json_lines(&out);
    assert!(ok, "{} of 2000; log:\n{}", events.len(), lw.log());
    for fac in ["local5", "local6"] {
        let got: Vec<u32> = events
            .iter()
            .filter(|e| e["fields"]["facility"] == fac)
            .filter_map(|e| e["message"].as_str()?.strip_prefix("line ")?.parse().ok())
            .collect();
        assert!(
            missing(&got, 1000).is_empty(),
            "{fac}: {} events",
            got.len()
        );
    }
    assert!(
        !sock.exists(),
        "the source removes its socket file at shutdown"
    );
}

#[test]
fn a_stalled_sink_stops_the_source_reading_tcp_memory_stays_bounded() {
    let t = TestDir::new("sys-backpressure");
    // A "syslog server" that accepts and never reads.
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stalled_port = stalled.local_addr().unwrap().port();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let (c, _) = stalled.accept().unwrap();
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
        drop(c);
    });
    let feed = free_port();
    let cfg = t.config(&format!(
        "{}\nbuffer = {{ max_events = 4096 }}\n",
        relay_config(
            feed,
            &format!("address = \"tcp://127.0.0.1:{stalled_port}\"\nresend_window = 0")
        )
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    let mut s = connect_retry(feed);
    s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let line = b"<14>1 2026-11-25T13:04:34Z h app 1 - - 0123456789012345678901234567890123456789012345678901234567890123456789\n";
    let chunk = line.repeat(1000);
    let mut sent = 0usize;
    let blocked = loop {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break true,
        }
        if sent > 1 << 30 {
            break false;
        }
    };
    let rss = rss_kb(lw.pid());
    eprintln!(
        "the feeder could write {} MB before blocking; logwharf RSS {} MB",
        sent >> 20,
        rss >> 10
    );
    assert!(
        blocked,
        "1 GB went in without the source ever stopping to read"
    );
    assert!(rss < 300_000, "RSS {rss} kB");
    drop(s);
    lw.kill9();
    done_tx.send(()).unwrap();
    holder.join().unwrap();
}

#[test]
fn udp_datagrams_that_find_the_pipeline_full_are_dropped_and_counted() {
    let t = TestDir::new("sys-udpdrop");
    let stalled = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stalled_port = stalled.local_addr().unwrap().port();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let (c, _) = stalled.accept().unwrap();
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
        drop(c);
    });
    let (rx, fast, api) = (free_port(), free_port(), free_port());
    let cfg = t.config(&format!(
        r#"
[api]
address = "127.0.0.1:{api}"
[sources.udp]
type = "syslog"
address = "udp://127.0.0.1:{rx}"
receive_buffer_bytes = 4096
[sources.fast]
type = "syslog"
address = "udp://127.0.0.1:{fast}"
[sinks.out]
type = "syslog"
inputs = ["udp", "fast"]
address = "tcp://127.0.0.1:{stalled_port}"
resend_window = 0
buffer = {{ max_events = 1000 }}
"#
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    let addr = format!("127.0.0.1:{api}");
    assert!(wait_until(PATIENCE, || http_get(&addr, "/health").is_some()));
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let msg = [
        b"<14>1 2026-11-25T13:04:34Z h app 1 - - ".as_slice(),
        &[b'x'; 200],
    ]
    .concat();
    let dropped = || {
        metric(
            &http_get(&addr, "/metrics").unwrap_or_default(),
            "logwharf_source_dropped_events_total",
            &["reason=\"pipeline_full\""],
        )
    };
    // The pipeline is filled through a source with the default receive buffer: through the
    // tiny one, a loaded machine lets so few datagrams in that the stalled sink's TCP buffers
    // absorb them all (a run at load 3.5 got 28,002 of 2,284,000 and never filled it).
    let mut sent = 0;
    let ok = wait_until(PATIENCE, || {
        for _ in 0..2000 {
            let _ = s.send_to(&msg, ("127.0.0.1", fast));
            sent += 1;
        }
        dropped() > 0.0
    });
    let d = dropped();
    // A tiny kernel buffer overflows too; those drops are counted from /proc/net/udp.
    let kernel = || {
        metric(
            &http_get(&addr, "/metrics").unwrap_or_default(),
            "logwharf_source_dropped_events_total",
            &["reason=\"receive_buffer\""],
        )
    };
    let k_ok = wait_until(PATIENCE, || {
        for _ in 0..2000 {
            let _ = s.send_to(&msg, ("127.0.0.1", rx));
        }
        kernel() > 0.0
    });
    eprintln!(
        "sent {sent} datagrams; {d} counted as dropped at the full pipeline, {} by the kernel",
        kernel()
    );
    assert!(k_ok, "no kernel drop counted; log:\n{}", lw.log());
    assert!(
        ok,
        "no drop counted after {sent} datagrams; log:\n{}",
        lw.log()
    );
    assert!(lw.log().contains("pipeline full, UDP datagrams dropped"));
    lw.kill9();
    done_tx.send(()).unwrap();
    holder.join().unwrap();
}
