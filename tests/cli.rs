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
