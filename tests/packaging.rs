//! End-to-end packaging: the systemd unit passes `systemd-analyze verify`; SIGHUP (the unit's
//! `ExecReload`) checks the config again and never stops the daemon; the runtime image made by
//! `scripts/build-image` (no registry here: `docker import` of a root filesystem) runs against
//! the testbed's dockerd with the README's mounts and ships a container's lines to a file sink
//! on a mounted directory.

mod common;

use common::docker::{self, Container};
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const ID: &str = "0ddba11a0ddba11a0ddba11a0ddba11a0ddba11a0ddba11a0ddba11a0ddba11a";

#[test]
fn the_systemd_unit_verifies() {
    if !require(
        "systemd-analyze",
        command_runs("systemd-analyze", "--version"),
    ) {
        return;
    }
    let t = TestDir::new("unit");
    let unit = std::fs::read_to_string("packaging/logwharf.service").unwrap();
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(unit.contains("StateDirectory=logwharf"));
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let path = t.path().join("logwharf.service");
    let bin = bin();
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/logwharf", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sighup_checks_the_config_and_the_daemon_goes_on() {
    let t = TestDir::new("sighup");
    let dir = t.path().join("containers").join(ID);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(format!("{ID}-json.log"));
    append_json_lines(&log, 0..10);
    let cfg = t.config(
        r#"
[sources.files]
type = "docker_json_file"
root = "{dir}/containers"
enrich = false
[sinks.out]
type = "file"
inputs = ["files"]
path = "{dir}/out.log"
"#,
    );
    let out = t.path().join("out.log");
    let mut lw = Logwharf::start(&cfg, &[]);
    assert!(
        wait_until(PATIENCE, || count_lines(&out) >= 10),
        "{}",
        lw.log()
    );
    let hup = |lw: &Logwharf| {
        let r = Command::new("kill")
            .args(["-HUP", &lw.pid().to_string()])
            .status()
            .unwrap();
        assert!(r.success());
    };
    hup(&lw);
    lw.wait_log("SIGHUP: the config file is valid", 1);
    std::fs::write(&cfg, "[sources.files]\ntype = \n").unwrap();
    hup(&lw);
    lw.wait_log("SIGHUP: the config file is not valid", 1);
    // Still running, still shipping.
    append_json_lines(&log, 10..20);
    assert!(
        wait_until(PATIENCE, || count_lines(&out) >= 20),
        "{}",
        lw.log()
    );
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
}

#[test]
fn the_runtime_image_ships_a_containers_lines() {
    if !docker::require() {
        return;
    }
    let t = TestDir::new("image");
    let tag = "logwharf-e2e-image:test";
    let built = Command::new("scripts/build-image")
        .args(["--binary", bin().to_str().unwrap(), tag])
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build-image: {}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let c = Container::create("lw-e2e-image-app", &[], "seq 1 1000");
    let etc = t.path().join("etc");
    let out = t.path().join("out");
    let data = t.path().join("data");
    for d in [&etc, &out, &data] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(
        etc.join("logwharf.toml"),
        format!(
            r#"checkpoint_interval = "200ms"
[api]
enabled = false
[sources.containers]
type = "docker_json_file"
include = ["{}*"]
[sinks.archive]
type = "file"
inputs = ["containers"]
path = "/out/{{{{.Name}}}}.log"
encoding = "json"
"#,
            c.id
        ),
    )
    .unwrap();
    c.start();
    assert_eq!(c.wait(), 0);
    let name = "lw-e2e-image-logwharf";
    let _ = Command::new("docker")
        .args(["rm", "-f", name])
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status();
    let mount = |host: &Path, inside: &str, ro: bool| {
        format!("{}:{inside}{}", host.display(), if ro { ":ro" } else { "" })
    };
    let run = Command::new("docker")
        .args(["run", "-d", "--network", "none", "--name", name])
        .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
        .args([
            "-v",
            "/var/lib/docker/containers:/var/lib/docker/containers:ro",
        ])
        .args(["-v", &mount(&data, "/var/lib/logwharf", false)])
        .args(["-v", &mount(&etc, "/etc/logwharf", true)])
        .args(["-v", &mount(&out, "/out", false)])
        .arg(tag)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let shipped = out.join(format!("{}.log", c.name));
    let done = wait_until(Duration::from_secs(60), || count_lines(&shipped) >= 1000);
    let logs = Command::new("docker")
        .args(["logs", name])
        .output()
        .unwrap();
    let _ = Command::new("docker")
        .args(["rm", "-f", name])
        .stdout(Stdio::null())
        .status();
    let _ = Command::new("docker")
        .args(["rmi", tag])
        .stdout(Stdio::null())
        .status();
    assert!(
        done,
        "{} of 1000 lines shipped; logwharf's log:\n{}{}",
        count_lines(&shipped),
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
    let events = json_lines(&shipped);
    assert_eq!(events.len(), 1000);
    assert_eq!(events[999]["message"], "1000");
    assert_eq!(events[0]["container_name"], c.name.as_str());
}
