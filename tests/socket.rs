//! The `socket` sink against real listeners: newline-delimited JSON over TCP (with the listener
//! coming up only after logwharf has started, so the sink must reconnect), and one datagram per
//! event over UDP.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

const ID: &str = "5ac0e7b1d2c3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f809";

fn json_file(n: u32) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 1..=n {
        v.extend_from_slice(
            format!("{{\"log\":\"line {i}\\n\",\"stream\":\"stdout\",\"time\":\"2026-12-01T10:00:00.{i:09}Z\"}}\n")
                .as_bytes(),
        );
    }
    v
}

fn config(t: &TestDir, address: &str, api_port: u16, n: u32) -> std::path::PathBuf {
    let dir = t.path().join("containers").join(ID);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{ID}-json.log")), json_file(n)).unwrap();
    t.config(&format!(
        r#"
[api]
address = "127.0.0.1:{api_port}"
[sources.c]
type = "docker_json_file"
root = "{{dir}}/containers"
enrich = false
[sinks.out]
type = "socket"
inputs = ["c"]
address = "{address}"
batch = {{ timeout = "20ms" }}
"#
    ))
}

#[test]
fn tcp_lines_arrive_in_order_after_the_listener_comes_up_late() {
    let t = TestDir::new("socket-tcp");
    let port = free_port();
    let api = free_port();
    let cfg = config(&t, &format!("tcp://127.0.0.1:{port}"), api, 2000);
    let mut lw = Logwharf::start(&cfg, &[]);
    // Nothing listens yet: the sink must be retrying (connection refused), not giving up.
    assert!(
        wait_until(Duration::from_secs(60), || {
            http_get(&format!("127.0.0.1:{api}"), "/metrics")
                .is_some_and(|m| metric(&m, "logwharf_sink_retries_total", &["out"]) >= 1.0)
        }),
        "{}",
        lw.log()
    );
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut lines = BufReader::new(conn).lines();
    for i in 1..=2000 {
        let l = lines
            .next()
            .expect("connection open")
            .expect("a line within 60 s");
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["message"], format!("line {i}"), "{l}");
        assert_eq!(v["container_id"], ID);
        assert_eq!(v["source"], "c");
    }
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
}

#[test]
fn udp_sends_one_datagram_per_event() {
    let t = TestDir::new("socket-udp");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let cfg = config(&t, &format!("udp://127.0.0.1:{port}"), free_port(), 50);
    let log = run_once(&cfg);
    let mut buf = [0u8; 65536];
    for i in 1..=50 {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i}: {e}\n{log}"));
        let d = &buf[..n];
        assert_eq!(d.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(d).unwrap();
        assert_eq!(v["message"], format!("line {i}"));
    }
}
