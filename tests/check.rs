//! End-to-end: `logwharf check` and the `data_dir` lock, with the real binary on a fake Docker
//! root (json-file logs written as Docker writes them; no daemon needed).
//!
//! - a container's directory deleted while logwharf was stopped leaves its checkpoint stale:
//!   `check` exits 1 naming it, `check --repair` removes it, `check` exits 0;
//! - a second `logwharf run` on the same `data_dir` is refused, naming the directory and the
//!   running one's pid; `check --repair` is refused while it runs; plain `check` works beside.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

const A: &str = "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0";
const B: &str = "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1";

/// Two containers with 10 lines each, read by one json-file source into a file sink.
fn setup(t: &TestDir) -> std::path::PathBuf {
    for id in [A, B] {
        let dir = t.path().join("root").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        append_json_lines(&dir.join(format!("{id}-json.log")), 0..10);
    }
    t.config(
        r#"
[sources.files]
type = "docker_json_file"
root = "{dir}/root"
enrich = false
[sinks.out]
type = "file"
inputs = ["files"]
path = "{dir}/out.log"
"#,
    )
}

fn logwharf(args: &[&str], config: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .args(["-c", config.to_str().unwrap()])
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_deleted_containers_checkpoint_is_found_repaired_and_then_clean() {
    let t = TestDir::new("check-stale");
    let cfg = setup(&t);
    run_once(&cfg);
    assert_eq!(count_lines(&t.path().join("out.log")), 20);
    let clean = logwharf(&["check"], &cfg);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));

    std::fs::remove_dir_all(t.path().join("root").join(B)).unwrap();
    let found = logwharf(&["check"], &cfg);
    assert_eq!(found.status.code(), Some(1), "{}", text(&found));
    let out = String::from_utf8_lossy(&found.stdout);
    let problem: Vec<&str> = out.lines().filter(|l| l.contains(B)).collect();
    assert_eq!(problem.len(), 1, "one line names the container: {out}");
    assert!(
        problem[0].contains("checkpoints.json") && problem[0].contains("is gone"),
        "{out}"
    );
    assert!(!out.contains(&format!("{A} is gone")), "{out}");

    let repaired = logwharf(&["check", "--repair"], &cfg);
    assert_eq!(repaired.status.code(), Some(0), "{}", text(&repaired));
    assert!(
        String::from_utf8_lossy(&repaired.stdout).contains("repaired: checkpoint removed"),
        "{}",
        text(&repaired)
    );
    let again = logwharf(&["check"], &cfg);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    // The other container's position survived: a new run ships nothing again.
    run_once(&cfg);
    assert_eq!(count_lines(&t.path().join("out.log")), 20);
}

#[test]
fn a_second_run_and_a_repair_are_refused_while_a_daemon_holds_the_data_dir() {
    let t = TestDir::new("check-lock");
    let cfg = setup(&t);
    let mut daemon = Logwharf::start(&cfg, &[]);
    let lock = t.path().join("data/logwharf.lock");
    let pid = daemon.pid().to_string();
    assert!(
        wait_until(PATIENCE, || std::fs::read_to_string(&lock)
            .is_ok_and(|s| s.trim() == pid)),
        "the daemon did not take the lock; log:\n{}",
        daemon.log()
    );
    wait_until(PATIENCE, || count_lines(&t.path().join("out.log")) == 20);

    let data_dir = t.path().join("data").display().to_string();
    let second = logwharf(&["run"], &cfg);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    let err = String::from_utf8_lossy(&second.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("logwharf: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert!(
        line.contains(&data_dir) && line.contains(&format!("pid {pid}")),
        "names the directory and the other pid: {line}"
    );

    let repair = logwharf(&["check", "--repair"], &cfg);
    assert_eq!(repair.status.code(), Some(2), "{}", text(&repair));
    assert!(
        String::from_utf8_lossy(&repair.stderr).contains(&format!("pid {pid}")),
        "{}",
        text(&repair)
    );
    let read_only = logwharf(&["check"], &cfg);
    assert_eq!(read_only.status.code(), Some(0), "{}", text(&read_only));

    assert_eq!(daemon.terminate(), Some(0), "{}", daemon.log());
    // Released with the process: a repair (and a run) may go ahead now.
    let repair = logwharf(&["check", "--repair"], &cfg);
    assert_eq!(repair.status.code(), Some(0), "{}", text(&repair));
}
