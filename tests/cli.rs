//! The command line: `validate`, `--version`, and the exit codes users script against.

mod common;

use common::*;
use std::process::Command;

#[test]
fn validate_lists_every_error_with_line_and_exits_2() {
    let t = TestDir::new("validate");
    let cfg = t.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[sources.c]\ntype = \"docker_json_file\"\nroot = 5\n[sinks.f]\ntype = \"file\"\ninputs = [\"x\"]\npath = \"/tmp/a\"\nmax_size = \"1q\"\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("3 configuration errors"), "{err}");
    assert!(
        err.contains(":line 3: sources.c.root: invalid type"),
        "{err}"
    );
    assert!(
        err.contains(":line 6: sinks.f.inputs: input \"x\" names no source (sources: c)"),
        "{err}"
    );
    assert!(
        err.contains(":line 8: sinks.f.max_size: invalid size \"1q\""),
        "{err}"
    );
    // `run` refuses the same file without starting anything.
    let out = Command::new(bin())
        .args(["run", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn validate_accepts_the_builtin_default_and_version_prints() {
    let out = Command::new(bin())
        .arg("validate")
        .env_remove("LOGWHARF_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("logwharf "));
}

#[test]
fn missing_docker_root_is_said_once_and_watched() {
    let t = TestDir::new("noroot");
    let cfg = t.config(
        "[sources.c]\ntype = \"docker_json_file\"\nroot = \"{dir}/not-yet\"\n[sinks.b]\ntype = \"blackhole\"\ninputs = [\"c\"]\n",
    );
    let mut lw = Logwharf::start(&cfg, &[]);
    assert!(wait_until(std::time::Duration::from_secs(10), || lw
        .log()
        .contains("does not exist yet")));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        lw.log().matches("does not exist yet").count(),
        1,
        "{}",
        lw.log()
    );
    assert_eq!(lw.terminate(), Some(0));
}

#[test]
fn example_configs_are_valid() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new(bin())
            .args(["validate", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `run --once` on a terminal ends with the progress line's summary (the bar itself is
/// redrawn in place); without one (a pipe, journald) the log has no progress output at all.
#[test]
fn run_once_shows_progress_on_a_terminal_only() {
    let t = TestDir::new("progress");
    let id = "ab".repeat(32);
    let dir = t.path().join("root").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    append_json_lines(&dir.join(format!("{id}-json.log")), 0..2000);
    let cfg = t.config(
        "[sources.c]\ntype = \"docker_json_file\"\nroot = \"{dir}/root\"\nenrich = false\n[sinks.b]\ntype = \"blackhole\"\ninputs = [\"c\"]\n",
    );
    // `script` runs the command on a pseudo-terminal (util-linux, on every Debian).
    let out = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} run --once -c {}",
            bin().display(),
            cfg.display()
        ))
        .arg("/dev/null")
        .output()
        .expect("running `script` (util-linux)");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("delivered ") && tty.contains("2000 lines"),
        "no progress summary on a terminal:\n{tty}"
    );

    let plain = run_once(&t.config(
        "data_dir = \"{dir}/data2\"\n[sources.c]\ntype = \"docker_json_file\"\nroot = \"{dir}/root\"\nenrich = false\n[sinks.b]\ntype = \"blackhole\"\ninputs = [\"c\"]\n",
    ));
    assert!(
        !plain.contains("delivered"),
        "progress output without a terminal:\n{plain}"
    );
}
