//! End-to-end: routing by container. Three real containers (real dockerd, json-file, names and
//! labels from the Docker API) and three file sinks with `[sinks.NAME.filter]` tables and one
//! container's `logwharf.sinks` label: each sink gets exactly its containers' lines, and what
//! a filter keeps from a sink still moves that sink's checkpoint (a second run ships nothing).

mod common;

use common::docker::{self, Container};
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// `{sink: {container name: (stdout lines, stderr lines)}}` read from the sinks' outputs.
type Received = BTreeMap<String, BTreeMap<String, (usize, usize)>>;

fn received(dir: &Path) -> Received {
    let mut all = Received::new();
    for sink in ["fronts", "backs", "archive"] {
        let mine = all.entry(sink.into()).or_default();
        let Ok(files) = std::fs::read_dir(dir.join(sink)) else {
            continue;
        };
        for f in files {
            for e in json_lines(&f.unwrap().path()) {
                let name = e["container_name"].as_str().unwrap_or("?").to_string();
                let n = mine.entry(name).or_default();
                match e["stream"].as_str() {
                    Some("stderr") => n.1 += 1,
                    _ => n.0 += 1,
                }
            }
        }
    }
    all
}

#[test]
fn each_sink_gets_exactly_its_containers_lines() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("routing");
    let web = Container::create(
        "lw-e2e-route-web",
        &["--label", "tier=front"],
        "seq 1 100; seq 1 50 >&2",
    );
    let db = Container::create("lw-e2e-route-db", &["--label", "tier=back"], "seq 1 100");
    let batch = Container::create(
        "lw-e2e-route-batch",
        &["--label", "logwharf.sinks=archive"],
        "seq 1 100",
    );
    let cfg = t.config(&format!(
        r#"
checkpoint_interval = "100ms"
[sources.containers]
type = "docker_json_file"
include = ["{}*", "{}*", "{}*"]
metadata_wait = "30s"

[sinks.fronts]
type = "file"
inputs = ["containers"]
path = "{{dir}}/fronts/{{{{.Name}}}}.log"
encoding = "json"
filter = {{ containers = ["lw-e2e-route-web*"], streams = ["stdout"] }}

[sinks.backs]
type = "file"
inputs = ["containers"]
path = "{{dir}}/backs/{{{{.Name}}}}.log"
encoding = "json"
filter = {{ labels = {{ tier = "b*" }} }}

[sinks.archive]
type = "file"
inputs = ["containers"]
path = "{{dir}}/archive/{{{{.Name}}}}.log"
encoding = "json"
filter = {{ exclude_containers = ["*-db"] }}
"#,
        web.id, db.id, batch.id
    ));
    let (w, d, b) = (web.name.clone(), db.name.clone(), batch.name.clone());
    let expected: Received = [
        ("fronts", vec![(w.clone(), (100, 0))]),
        ("backs", vec![(d.clone(), (100, 0))]),
        (
            "archive",
            vec![(w.clone(), (100, 50)), (b.clone(), (100, 0))],
        ),
    ]
    .into_iter()
    .map(|(s, v)| (s.to_string(), v.into_iter().collect()))
    .collect();

    for c in [&web, &db, &batch] {
        c.start();
        assert_eq!(c.wait(), 0);
    }
    let mut lw = Logwharf::start(&cfg, &[]);
    let api = t.api_addr();
    // What the sinks take of the 450 lines: fronts 100, backs 100, archive 250.
    let text = lw.wait_metric(
        &api,
        "logwharf_sink_events_total",
        &[],
        100.0 + 100.0 + 250.0,
    );
    let done = wait_until(Duration::from_secs(60), || received(t.path()) == expected);
    assert!(
        done,
        "sinks got {:?}, expected {expected:?}; metrics:\n{text}\nlog:\n{}",
        received(t.path()),
        lw.log()
    );
    let text = http_get(&api, "/metrics").unwrap_or_default();
    // fronts kept out db (100), batch (100, by its label) and web's stderr (50); backs web (150)
    // and batch (100); archive db (100).
    for (sink, n) in [("fronts", 250.0), ("backs", 250.0), ("archive", 100.0)] {
        let label = format!("sink=\"{sink}\"");
        assert_eq!(
            metric(&text, "logwharf_sink_filtered_events_total", &[&label]),
            n,
            "{sink}: {text}"
        );
    }
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());

    // Filtered lines were settled, so every sink's checkpoint is at the end: a second run
    // reads and ships nothing more.
    let again = run_once(&cfg);
    assert_eq!(received(t.path()), expected, "second run:\n{again}");
}
