//! End-to-end: network peers are untrusted. Five hostile Forward records (a multi-byte id
//! across byte 12, a `../` name, an absolute `/../` name, a name with a newline and a fake
//! RFC 5424 header, an invalid UTF-8 id), then 100 ordinary ones, through the real binary's
//! `fluent` source to a `file` sink (`{{.Name}}/{{.ID}}.log`) and a `syslog` sink (`{{.Name}}`
//! tag, newline framing) feeding a real rsyslog: logwharf stays up, both sinks deliver every
//! record, nothing is created outside the file sink's directory, and rsyslog receives exactly
//! one message per record.

mod common;

use common::rsyslog::Rsyslog;
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ORDINARY_ID: &str = "d2ae8d3a9846e1ba1cc4b1b14b3d2f1c7d9e5d8f1a2b3c4d5e6f708192a3b4c5";

/// One Forward Message-mode message: `[tag, time, {container_id, container_name, source, log}]`,
/// the id and name written as raw msgpack str bytes (so they may be invalid UTF-8).
fn record(id: &[u8], name: &[u8], log: &str) -> Vec<u8> {
    let mut b = Vec::new();
    rmp::encode::write_array_len(&mut b, 3).unwrap();
    rmp::encode::write_str(&mut b, "docker.trust").unwrap();
    rmp::encode::write_uint(&mut b, 1_795_611_862).unwrap();
    rmp::encode::write_map_len(&mut b, 4).unwrap();
    for (k, v) in [
        (&b"container_id"[..], id),
        (b"container_name", name),
        (b"source", b"stdout"),
        (b"log", log.as_bytes()),
    ] {
        rmp::encode::write_str(&mut b, std::str::from_utf8(k).unwrap()).unwrap();
        rmp::encode::write_str_len(&mut b, v.len() as u32).unwrap();
        b.extend_from_slice(v);
    }
    b
}

/// Every file and directory under `root`.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

fn lines_under(dir: &Path) -> Vec<serde_json::Value> {
    walk(dir)
        .iter()
        .filter(|p| p.is_file())
        .flat_map(|p| json_lines(p))
        .collect()
}

#[test]
fn hostile_metadata_through_fluent_to_file_and_rsyslog() {
    if !Rsyslog::require() {
        return;
    }
    let t = TestDir::new("trust");
    let rs = Rsyslog::start(t.path(), free_port());
    let (port, api) = (free_port(), free_port());
    let cfg = t.config(&format!(
        r#"
[api]
address = "127.0.0.1:{api}"
[sources.fwd]
type = "fluent"
address = "tcp://127.0.0.1:{port}"
[sinks.files]
type = "file"
inputs = ["fwd"]
path = "{{dir}}/sink/a/b/out/{{{{.Name}}}}/{{{{.ID}}}}.log"
encoding = "json"
[sinks.rsyslog]
type = "syslog"
inputs = ["fwd"]
address = "tcp://127.0.0.1:{}"
facility = "mail"
format = "rfc5424"
framing = "newline"
tag = "{{{{.Name}}}}"
"#,
        rs.port
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    assert!(
        wait_until(Duration::from_secs(30), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "logwharf never listened on {port}:\n{}",
        lw.log()
    );

    let escape_abs = t.path().join("escaped-abs");
    let mut multibyte_id = b"0123456789a".to_vec();
    multibyte_id.extend_from_slice("€".as_bytes());
    multibyte_id.resize(64, b'b');
    let mut invalid_utf8_id = b"\xff\xfe".to_vec();
    invalid_utf8_id.resize(64, b'c');
    let absolute = format!("/{}{}", "../".repeat(16), escape_abs.display());
    let hostile: [(&[u8], &[u8]); 5] = [
        (&multibyte_id, b"/multibyte"),
        (ORDINARY_ID.as_bytes(), b"../../escaped-rel"),
        (ORDINARY_ID.as_bytes(), absolute.as_bytes()),
        (
            ORDINARY_ID.as_bytes(),
            b"/nl\n<14>1 2026-11-25T13:04:34Z forged-host forged-app 1 - - forged-message",
        ),
        (&invalid_utf8_id, b"/badid"),
    ];
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    for (i, (id, name)) in hostile.iter().enumerate() {
        s.write_all(&record(id, name, &format!("hostile-{i}")))
            .unwrap();
    }
    for n in 0..100 {
        s.write_all(&record(
            ORDINARY_ID.as_bytes(),
            b"/ordinary",
            &format!("ordinary-{n}"),
        ))
        .unwrap();
    }
    drop(s);

    let sink_dir = t.path().join("sink");
    let out_dir = sink_dir.join("a/b/out");
    let arrived = wait_until(Duration::from_secs(60), || {
        lines_under(&sink_dir).len() >= 105 && count_lines(&rs.file("mail")) >= 105
    });
    let metrics = http_get(&format!("127.0.0.1:{api}"), "/metrics").unwrap_or_default();
    assert_eq!(
        lw.child.try_wait().unwrap(),
        None,
        "logwharf exited:\n{}",
        lw.log()
    );
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(
        arrived,
        "file sink: {} of 105 records, rsyslog: {} of 105 messages; log:\n{}",
        lines_under(&sink_dir).len(),
        count_lines(&rs.file("mail")),
        lw.log()
    );

    // File sink: every record, the 100 ordinary ones in their file, nothing outside `out/`.
    let ordinary = out_dir
        .join("ordinary")
        .join(&ORDINARY_ID[..12])
        .with_extension("log");
    let got: Vec<String> = json_lines(&ordinary)
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..100).map(|n| format!("ordinary-{n}")).collect();
    assert_eq!(got, want, "{}", ordinary.display());
    assert_eq!(lines_under(&sink_dir).len(), 105);
    for p in walk(&sink_dir) {
        assert!(
            p.starts_with(&out_dir) || out_dir.starts_with(&p),
            "{} is outside the file sink's directory {}",
            p.display(),
            out_dir.display()
        );
    }
    for p in walk(t.path()) {
        let name = p.file_name().unwrap().to_string_lossy();
        assert!(
            !name.contains("escaped") || p.starts_with(&out_dir),
            "{} was created outside {}",
            p.display(),
            out_dir.display()
        );
    }
    assert!(!escape_abs.exists());
    // Ids not in Docker's form are kept as a field, not used as the id.
    let all = lines_under(&out_dir);
    let bad_ids: Vec<&str> = all
        .iter()
        .filter_map(|e| e["fields"]["container_id"].as_str())
        .collect();
    assert_eq!(bad_ids.len(), 2, "{all:?}");
    assert!(bad_ids.iter().any(|i| i.starts_with("0123456789a€")));

    // Syslog: exactly one message per record; the ordinary ones in order.
    let lines = rs.lines("mail");
    assert_eq!(lines.len(), 105, "{lines:#?}");
    let ordinary: Vec<String> = lines
        .iter()
        .filter(|(_, app, _)| app == "ordinary")
        .map(|(_, _, m)| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(ordinary, want);
    assert!(
        lines
            .iter()
            .all(|(_, app, m)| app != "forged-app" && m != b"forged-message"),
        "a forged frame arrived: {lines:#?}"
    );

    assert!(
        metric(
            &metrics,
            "logwharf_sink_confined_values_total",
            &["sink=\"files\""]
        ) >= 2.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "logwharf_source_errors_total",
            &["kind=\"invalid_container_id\""]
        ),
        2.0,
        "{metrics}"
    );
}
