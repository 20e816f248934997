//! End-to-end supervision: a sink that fails at run time is restarted and counted, `/health`
//! names it while it is down and answers 200 once it delivers again, and no line is lost —
//! the batches it had taken are handed to the restarted sink and the checkpoint never passes
//! what it had not delivered. Also: `run --once` beside a daemon that holds the API port.
//!
//! The failure is one root cannot write through: the file sink's directory is a regular file
//! (chmod would not stop root).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const ID: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";

fn health(api: &str) -> Option<(u16, Value)> {
    let (code, body) = http_get_status(api, "/health")?;
    Some((code, serde_json::from_str(&body).ok()?))
}

/// The line numbers in the sink's output, in file order.
fn delivered(out: &Path) -> Vec<u32> {
    json_lines(out)
        .iter()
        .map(|e| {
            e["message"].as_str().unwrap()["line ".len()..]
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_failing_sink_is_restarted_reported_and_loses_nothing() {
    let t = TestDir::new("supervise");
    let dir = t.path().join("containers").join(ID);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(format!("{ID}-json.log"));
    append_json_lines(&log, 0..500);
    // The sink's directory is a regular file: every write fails (ENOTDIR/EEXIST), even as root.
    let out_dir = t.path().join("out");
    std::fs::write(&out_dir, "in the way").unwrap();
    let port = free_port();
    let api = format!("127.0.0.1:{port}");
    let cfg = t.config(&format!(
        r#"
checkpoint_interval = "100ms"
[api]
address = "{api}"
[sources.c]
type = "docker_json_file"
root = "{{dir}}/containers"
enrich = false
[sinks.archive]
type = "file"
inputs = ["c"]
path = "{{dir}}/out/archive.log"
[sinks.count]
type = "blackhole"
inputs = ["c"]
"#
    ));
    let mut lw = Logwharf::start(&cfg, &[]);

    // Down: restarted and counted, and /health names it with its error.
    let restarts = || {
        let m = http_get(&api, "/metrics").unwrap_or_default();
        metric(
            &m,
            "logwharf_component_restarts_total",
            &["component=\"sinks.archive\""],
        )
    };
    assert!(
        wait_until(Duration::from_secs(60), || restarts() >= 2.0),
        "the failing sink was not restarted twice; log:\n{}",
        lw.log()
    );
    let (code, doc) = health(&api).expect("/health answers");
    assert_eq!(code, 503, "{doc}");
    assert_eq!(doc["ok"], false, "{doc}");
    assert_eq!(
        doc["failing"],
        serde_json::json!(["sinks.archive"]),
        "{doc}"
    );
    let archive = &doc["components"]["sinks.archive"];
    assert!(
        archive["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("/out/archive.log")),
        "{doc}"
    );
    assert_eq!(
        doc["components"]["sinks.count"]["state"], "running",
        "{doc}"
    );
    assert_eq!(doc["components"]["sources.c"]["state"], "running", "{doc}");
    let log_text = lw.log();
    assert!(
        log_text.contains("sink failed; restarting it") && log_text.contains("sinks.archive"),
        "the restart is logged with its cause:\n{log_text}"
    );

    // More lines arrive while it is down; then the obstacle goes away.
    append_json_lines(&log, 500..1000);
    std::fs::remove_file(&out_dir).unwrap();
    let out = t.path().join("out/archive.log");
    assert!(
        wait_until(Duration::from_secs(90), || count_lines(&out) >= 1000),
        "the restarted sink did not catch up ({} lines); log:\n{}",
        count_lines(&out),
        lw.log()
    );
    assert!(
        wait_until(Duration::from_secs(30), || health(&api)
            .is_some_and(|(code, _)| code == 200)),
        "/health stayed unhealthy: {:?}",
        health(&api)
    );
    let (_, doc) = health(&api).unwrap();
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(
        doc["components"]["sinks.archive"]["state"], "running",
        "{doc}"
    );
    assert!(
        doc["components"]["sinks.archive"]["restarts"].as_u64() >= Some(2),
        "{doc}"
    );

    // Every line, in order (a batch re-sent after a restart may repeat: at-least-once).
    let mut got = delivered(&out);
    got.dedup();
    assert_eq!(
        got,
        (0..1000).collect::<Vec<_>>(),
        "lines lost or reordered"
    );
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());

    // The checkpoint covers everything now: a new run ships nothing again.
    let before = count_lines(&out);
    run_once(&cfg);
    assert_eq!(
        count_lines(&out),
        before,
        "the checkpoint did not advance to the end"
    );
}

#[test]
fn a_once_run_beside_a_daemon_that_holds_the_api_port_serves_no_api() {
    let t = TestDir::new("once-api");
    let dir = t.path().join("containers").join(ID);
    std::fs::create_dir_all(&dir).unwrap();
    append_json_lines(&dir.join(format!("{ID}-json.log")), 0..10);
    // The daemon's port, taken.
    let daemon = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = daemon.local_addr().unwrap().port();
    let cfg = t.config(&format!(
        r#"
[api]
address = "127.0.0.1:{port}"
[sources.c]
type = "docker_json_file"
root = "{{dir}}/containers"
enrich = false
[sinks.out]
type = "file"
inputs = ["c"]
path = "{{dir}}/out.log"
"#
    ));
    run_once(&cfg);
    assert_eq!(count_lines(&t.path().join("out.log")), 10);

    // Asked for explicitly, the API must bind: a clear error.
    let mut lw = Logwharf::start(&cfg, &["--once", "--api"]);
    assert_eq!(lw.wait(Duration::from_secs(60)), Some(1));
    assert!(lw.log().contains("api.address"), "{}", lw.log());
}
