//! End-to-end: `logwharf import-daemon-json` on a daemon.json for Docker's `syslog` driver
//! (remote TCP address, `syslog-facility=mail`, `tag={{.Name}}`, `syslog-format=rfc5424micro`);
//! the generated config is validated and run against a real rsyslog, and what rsyslog
//! records of a real container's stdout and stderr is what it records of the same lines sent
//! by Docker's own syslog driver.

mod common;

use common::docker::{self, Container};
use common::rsyslog::Rsyslog;
use common::*;
use std::process::Command;
use std::time::Duration;

const SCRIPT: &str = "echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2";

/// rsyslog's `facility.severity app-name msg` lines of `app`, with `app` written as NAME.
fn recorded(rs: &Rsyslog, app: &str) -> Vec<String> {
    let mut v: Vec<String> = rs
        .lines("mail")
        .into_iter()
        .filter(|(_, a, _)| a == app)
        .map(|(fs, _, msg)| format!("{fs} NAME {}", String::from_utf8_lossy(&msg)))
        .collect();
    v.sort();
    v
}

#[test]
fn a_syslog_daemon_json_becomes_a_config_that_ships_like_dockers_driver() {
    if !Rsyslog::require() || !docker::require() {
        return;
    }
    let t = TestDir::new("import-syslog");
    let rs = Rsyslog::start(t.path(), free_port());
    let ours = Container::create("lw-e2e-import-ours", &[], SCRIPT);
    // Run as generated, but on this test's container only, with its own data_dir and API.
    let mine = import_daemon_json(
        t.path(),
        &format!(
            r#"{{"log-driver": "syslog", "log-opts": {{"syslog-address": "tcp://127.0.0.1:{}",
                "syslog-facility": "mail", "tag": "{{{{.Name}}}}", "syslog-format": "rfc5424micro"}}}}"#,
            rs.port
        ),
        &[&ours.id],
    );
    let cfg = t.config(&mine);
    let v = Command::new(bin())
        .args(["validate", "-c"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "{}\n{mine}",
        String::from_utf8_lossy(&v.stdout)
    );

    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    ours.start();
    assert_eq!(ours.wait(), 0);

    // The same lines through Docker's own driver to the same server.
    let theirs = Container::create(
        "lw-e2e-import-theirs",
        &[
            "--log-driver",
            "syslog",
            "--log-opt",
            &format!("syslog-address=tcp://127.0.0.1:{}", rs.port),
            "--log-opt",
            "syslog-facility=mail",
            "--log-opt",
            "tag={{.Name}}",
            "--log-opt",
            "syslog-format=rfc5424micro",
        ],
        SCRIPT,
    );
    theirs.start();
    assert_eq!(theirs.wait(), 0);

    let done = wait_until(Duration::from_secs(60), || {
        recorded(&rs, &ours.name).len() >= 4 && recorded(&rs, &theirs.name).len() >= 4
    });
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(
        done,
        "rsyslog has {:?}; log:\n{}",
        rs.lines("mail"),
        lw.log()
    );
    let want = [
        "mail.err NAME err-1",
        "mail.err NAME err-2",
        "mail.info NAME out-1",
        "mail.info NAME out-2",
    ];
    assert_eq!(recorded(&rs, &theirs.name), want, "Docker's driver");
    assert_eq!(
        recorded(&rs, &ours.name),
        want,
        "logwharf, from the imported config"
    );
}
