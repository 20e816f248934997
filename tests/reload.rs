//! End-to-end: reload without loss. A real container writes numbered lines (~100/s) to its
//! json-file log while logwharf ships them to three file sinks. A SIGHUP adds a sink, changes
//! another (a new path) and leaves the third as it was: the unchanged sink has every line
//! exactly once, the added one every line from where it started to the end, and the changed
//! one's two files together every line. A second SIGHUP with a broken config is refused, and
//! the daemon goes on shipping.

mod common;

use common::docker::{self, Container};
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const LINES: usize = 1500;

/// `line N` → how many times it is in the file.
fn numbers(path: &Path) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    for e in json_lines(path) {
        let msg = e["message"].as_str().unwrap_or_default().trim_end();
        if let Some(n) = msg.strip_prefix("line ").and_then(|n| n.parse().ok()) {
            *seen.entry(n).or_insert(0) += 1;
        }
    }
    seen
}

fn config(id: &str, changed_path: &str, with_added: bool) -> String {
    let mut text = format!(
        r#"
checkpoint_interval = "100ms"
[sources.containers]
type = "docker_json_file"
include = ["{id}*"]
metadata_wait = "30s"

[sinks.same]
type = "file"
inputs = ["containers"]
path = "{{dir}}/same.log"
encoding = "json"

[sinks.changed]
type = "file"
inputs = ["containers"]
path = "{{dir}}/{changed_path}"
encoding = "json"
"#
    );
    if with_added {
        text.push_str(
            "\n[sinks.added]\ntype = \"file\"\ninputs = [\"containers\"]\npath = \"{dir}/added.log\"\nencoding = \"json\"\n",
        );
    }
    text
}

fn sighup(lw: &Logwharf) {
    // SAFETY: kill(2) on the child's pid.
    unsafe { libc::kill(lw.pid(), libc::SIGHUP) };
}

#[test]
fn sighup_adds_changes_and_keeps_sinks_without_loss_or_duplicates() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("reload");
    let c = Container::create(
        "lw-e2e-reload",
        &[],
        &format!(
            "i=0; while [ $i -lt {LINES} ]; do echo \"line $i\"; i=$((i+1)); usleep 10000; done"
        ),
    );
    let cfg = t.config(&config(&c.id, "changed.log", false));
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    let same = t.path().join("same.log");
    assert!(
        wait_until(Duration::from_secs(60), || numbers(&same).len() >= 200),
        "no lines reached the sinks:\n{}",
        lw.log()
    );

    // Reload 1: `changed` gets a new path, `added` appears, `same` stays as it was.
    t.config(&config(&c.id, "changed2.log", true));
    sighup(&lw);
    lw.wait_log("reload done", 1);
    let at_reload = numbers(&same).len();

    // Reload 2: a broken file is refused; the daemon goes on with the running config.
    std::fs::write(&cfg, "[sinks.same]\ntype = \"file\"\nno_such_key = 1\n").unwrap();
    sighup(&lw);
    lw.wait_log("the config file is not valid", 1);
    assert!(
        wait_until(Duration::from_secs(60), || numbers(&same).len()
            > at_reload + 100),
        "shipping stopped after the refused reload:\n{}",
        lw.log()
    );

    assert_eq!(c.wait(), 0);
    let all_in = |p: &str| numbers(&t.path().join(p)).contains_key(&(LINES - 1));
    assert!(
        wait_until(Duration::from_secs(120), || all_in("same.log")
            && all_in("added.log")
            && all_in("changed2.log")),
        "the last line did not reach every sink:\n{}",
        lw.log()
    );
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert_eq!(
        lw.log().matches("reload done").count(),
        1,
        "the broken config was applied:\n{}",
        lw.log()
    );

    // The unchanged sink: every line exactly once.
    let same = numbers(&same);
    let wrong: Vec<_> = (0..LINES)
        .filter(|n| same.get(n) != Some(&1))
        .map(|n| (n, same.get(&n).copied().unwrap_or(0)))
        .collect();
    assert!(wrong.is_empty(), "unchanged sink: (line, times) {wrong:?}");

    // The added sink: from its first line to the last, each once.
    let added = numbers(&t.path().join("added.log"));
    let first = *added.keys().next().unwrap();
    let wrong: Vec<_> = (first..LINES)
        .filter(|n| added.get(n) != Some(&1))
        .collect();
    assert!(wrong.is_empty(), "added sink from line {first}: {wrong:?}");

    // The changed sink: its old and new files together hold every line (at least once).
    let mut changed = numbers(&t.path().join("changed.log"));
    for (n, k) in numbers(&t.path().join("changed2.log")) {
        *changed.entry(n).or_insert(0) += k;
    }
    let missing: Vec<_> = (0..LINES).filter(|n| !changed.contains_key(n)).collect();
    assert!(missing.is_empty(), "changed sink lost lines {missing:?}");
    let old = numbers(&t.path().join("changed.log"));
    assert!(
        !old.is_empty() && old.len() < LINES,
        "the changed sink's old path should hold the lines before the reload only ({} lines)",
        old.len()
    );
}

/// `run --watch-config`: saving the file applies it (here: a second sink appears, then the
/// first goes, and leaves `/status`), on a fake Docker root, since what is tested is the
/// watch, not Docker.
#[test]
fn watch_config_applies_a_saved_file() {
    let t = TestDir::new("watchcfg");
    let id = "cd".repeat(32);
    let dir = t.path().join("root").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(format!("{id}-json.log"));
    append_json_lines(&log, 0..10);
    let one = "[sources.c]\ntype = \"docker_json_file\"\nroot = \"{dir}/root\"\nenrich = false\n\
               [sinks.a]\ntype = \"file\"\ninputs = [\"c\"]\npath = \"{dir}/a.log\"\n";
    let two =
        format!("{one}[sinks.b]\ntype = \"file\"\ninputs = [\"c\"]\npath = \"{{dir}}/b.log\"\n");
    // The second version's full text (TestDir::config writes the file: take it, then write
    // the first version, which runs).
    let two_text = std::fs::read_to_string(t.config(&two)).unwrap();
    let cfg = t.config(one);
    let mut lw = Logwharf::start(&cfg, &["--watch-config"]);
    lw.wait_log("watching the config file", 1);
    assert!(wait_until(PATIENCE, || count_lines(
        &t.path().join("a.log")
    ) == 10));
    // An editor's save: a new file renamed over the old one.
    let tmp = t.path().join("logwharf.toml.new");
    std::fs::write(&tmp, &two_text).unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();
    lw.wait_log("reload done", 1);
    append_json_lines(&log, 10..20);
    assert!(
        wait_until(PATIENCE, || count_lines(&t.path().join("a.log")) == 20
            && count_lines(&t.path().join("b.log")) == 20),
        "a: {}, b: {}\n{}",
        count_lines(&t.path().join("a.log")),
        count_lines(&t.path().join("b.log")),
        lw.log()
    );

    // A third save removes `a`: it leaves /status, its per-container position too.
    let sinks = |doc: &serde_json::Value| -> (Vec<String>, Vec<String>) {
        let names = |v: &serde_json::Value, key: &str| -> Vec<String> {
            let all = v.as_array().map(Vec::as_slice).unwrap_or_default();
            let mut v: Vec<String> = all
                .iter()
                .filter_map(|s| s[key].as_str().map(String::from))
                .collect();
            v.sort();
            v
        };
        (
            names(&doc["sinks"], "name"),
            names(&doc["containers"][0]["sinks"], "sink"),
        )
    };
    let status = || -> serde_json::Value {
        let body = http_get(&t.api_addr(), "/status").unwrap_or_default();
        serde_json::from_str(&body).unwrap_or_default()
    };
    let both = (
        vec!["a".to_string(), "b".to_string()],
        vec!["a".to_string(), "b".to_string()],
    );
    assert_eq!(sinks(&status()), both, "before the removal: {}", status());
    let a = format!(
        "[sinks.a]\ntype = \"file\"\ninputs = [\"c\"]\npath = \"{}/a.log\"\n",
        t.path().display()
    );
    let three = two_text.replace(&a, "");
    assert!(!three.contains("[sinks.a]"), "{three}");
    std::fs::write(&tmp, three).unwrap();
    std::fs::rename(&tmp, &cfg).unwrap();
    lw.wait_log("reload done", 2);
    let only_b = (vec!["b".to_string()], vec!["b".to_string()]);
    assert!(
        wait_until(PATIENCE, || sinks(&status()) == only_b),
        "a removed sink stays in /status: {}\n{}",
        status(),
        lw.log()
    );
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
}
