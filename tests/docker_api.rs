//! End-to-end: the real `logwharf` binary against the real Docker daemon (scripts/testbed):
//! metadata on every line, the tag compared with Docker's own syslog driver output, rename
//! mid-run, the `local` driver through the API stream (once), TTY containers, a dockerd restart
//! while logwharf runs, a Java stack trace merged by a label pattern, bad input (no daemon,
//! a bad label regex), and a dead syslog server that holds up no other sink's stream (issue 13).

mod common;

use common::docker::{self, Container};
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The restart test stops dockerd: the other tests of this file hold the daemon shared, the
/// restart test exclusively.
static DOCKERD: RwLock<()> = RwLock::new(());

fn daemon_shared() -> std::sync::RwLockReadGuard<'static, ()> {
    DOCKERD.read().unwrap_or_else(|p| p.into_inner())
}

/// A docker_api source over the containers named `prefix*`, into `{dir}/out.log` as JSON.
fn api_config(prefix: &str, extra: &str) -> String {
    format!(
        r#"
[sources.api]
type = "docker_api"
include = ["{prefix}*"]
inactivity_timeout = "2s"
{extra}
[sinks.out]
type = "file"
inputs = ["api"]
path = "{{dir}}/out.log"
encoding = "json"
"#
    )
}

fn out(t: &TestDir) -> std::path::PathBuf {
    t.path().join("out.log")
}

fn messages(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.get("fields").is_none())
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn wait_for_lines(path: &Path, n: usize, secs: u64) -> bool {
    wait_until(Duration::from_secs(secs), || {
        json_lines(path)
            .iter()
            .filter(|e| e.get("fields").is_none())
            .count()
            >= n
    })
}

fn docker_cmd(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().expect("docker");
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Lines received on a TCP port (Docker's syslog driver), collected in the background.
fn syslog_listener() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().take(4) {
            let Ok(conn) = conn else { return };
            let g = g.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    g.lock().unwrap().push(line);
                }
            });
        }
    });
    (port, got)
}

#[test]
fn metadata_on_every_line_and_tag_exactly_as_dockers_syslog_driver() {
    // Taken before the check: the restart test holds the write side while dockerd is down.
    let _daemon = daemon_shared();
    if !docker::require() {
        return;
    }
    let t = TestDir::new("api-meta");
    let template = r#"{{.Name}}/{{.ID}}/{{.FullID}}/{{.ImageName}}/{{.ImageID}}/{{.ImageFullID}}/{{.DaemonName}}/{{upper .Name}}/{{truncate .FullID 16}}/{{index .ContainerLabels "com.docker.compose.service"}}/{{.Name | printf "%.6s"}}/{{join (split .Name "-") "+"}}/{{title "ab-cd"}}/{{json .Name}}/{{pad .ID 0 0}}"#;
    let (port, syslog) = syslog_listener();
    // Docker 20.10 keeps a local cache for drivers that cannot be read ("dual logging"), so the
    // very container whose syslog output Docker renders is also readable through the API.
    let c = Container::create(
        "lw-api-meta-web-1",
        &[
            "--log-driver",
            "syslog",
            "--log-opt",
            &format!("syslog-address=tcp://127.0.0.1:{port}"),
            "--log-opt",
            "syslog-format=rfc5424",
            "--log-opt",
            &format!("tag={template}"),
            "--label",
            "com.docker.compose.project=shop",
            "--label",
            "com.docker.compose.service=web",
            "--label",
            "team=payments",
            "-e",
            "APP_MODE=prod",
            "-e",
            "SECRET_TOKEN=hunter2",
        ],
        "for i in 1 2 3 4 5; do echo line-$i; done; echo oops >&2",
    );
    let cfg = t.config(&api_config(
        "lw-api-meta-",
        &format!(
            "stream = \"all\"\nenv = [\"APP_MODE\"]\ntag = '{}'",
            template.replace('\'', "\\'")
        ),
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    assert_eq!(c.wait(), 0);
    let ok = wait_for_lines(&out(&t), 6, 60);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(ok, "lines missing; log:\n{}", lw.log());
    let events = json_lines(&out(&t));
    let image_id = docker_cmd(&["inspect", "-f", "{{.Image}}", &c.id]);
    let ours = events[0]["tag"].as_str().unwrap().to_string();
    for e in events.iter().filter(|e| e.get("fields").is_none()) {
        assert_eq!(e["container_id"], c.id.as_str());
        assert_eq!(e["container_name"], "lw-api-meta-web-1");
        assert_eq!(e["image_name"], "logwharf-busybox:latest");
        assert_eq!(e["image_id"], image_id.as_str());
        assert_eq!(e["labels"]["team"], "payments");
        assert_eq!(e["compose_project"], "shop");
        assert_eq!(e["compose_service"], "web");
        assert_eq!(
            e["env"],
            serde_json::json!({"APP_MODE": "prod"}),
            "env is selected, never copied"
        );
        assert_eq!(e["tag"], ours.as_str());
    }
    // Docker's rendering: APP-NAME of its RFC 5424 lines.
    assert!(wait_until(PATIENCE, || syslog.lock().unwrap().len() >= 6));
    let docker_lines = syslog.lock().unwrap().clone();
    for l in &docker_lines {
        let app = l.split(' ').nth(3).unwrap();
        assert_eq!(app, ours, "Docker's tag vs ours; Docker's line: {l}");
    }
    eprintln!("tag rendered identically by Docker and logwharf: {ours}");
}

#[test]
fn renamed_container_later_lines_carry_the_new_name() {
    // Taken before the check: the restart test holds the write side while dockerd is down.
    let _daemon = daemon_shared();
    if !docker::require() {
        return;
    }
    let t = TestDir::new("api-rename");
    let c = Container::create(
        "lw-api-rename-old",
        &["--log-driver", "local"],
        "i=0; while [ $i -lt 50 ]; do echo n$i; i=$((i+1)); sleep 0.1; done",
    );
    let cfg = t.config(&api_config("lw-api-rename-", ""));
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    assert!(wait_for_lines(&out(&t), 10, 60), "{}", lw.log());
    remove_leftover("lw-api-rename-new");
    docker_cmd(&["rename", "lw-api-rename-old", "lw-api-rename-new"]);
    assert_eq!(c.wait(), 0);
    let ok = wait_for_lines(&out(&t), 50, 60);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(ok, "{}", lw.log());
    let events = json_lines(&out(&t));
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["container_name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "lw-api-rename-old");
    assert_eq!(*names.last().unwrap(), "lw-api-rename-new");
    // Once renamed, never the old name again.
    let first_new = names
        .iter()
        .position(|n| *n == "lw-api-rename-new")
        .unwrap();
    assert!(names[first_new..].iter().all(|n| *n == "lw-api-rename-new"));
    let _ = Command::new("docker")
        .args(["rm", "-f", "lw-api-rename-new"])
        .status();
}

#[test]
fn local_driver_lines_arrive_once_through_the_api_and_json_file_containers_are_left_alone() {
    // Taken before the check: the restart test holds the write side while dockerd is down.
    let _daemon = daemon_shared();
    if !docker::require() {
        return;
    }
    let t = TestDir::new("api-local");
    // A pause longer than inactivity_timeout (2 s) makes the watchdog re-attach mid-stream,
    // even when the stream was attached a second or two late on a loaded machine (a 3 s pause
    // left too little room there). (6 s failed once, before the re-attach re-read everything
    // when Docker's `since` missed the cursor's line: lines after the pause did not arrive.)
    let c = Container::create(
        "lw-api-local-a",
        &["--log-driver", "local"],
        "seq 1 3000; seq 1 100 >&2; sleep 5; seq 3001 4000; exit 7",
    );
    let jf = Container::create("lw-api-local-jsonfile", &[], "seq 1 10");
    let cfg = t.config(&api_config("lw-api-local-", "events = true"));
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    jf.start();
    c.start();
    assert_eq!(c.wait(), 7);
    let ok = wait_for_lines(&out(&t), 4100, 60);
    std::thread::sleep(Duration::from_secs(3)); // anything extra (duplicates) would show now
    let metrics = http_get(&t.api_addr(), "/metrics").unwrap_or_default();
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(ok, "{}", lw.log());
    let events = json_lines(&out(&t));
    let lines: Vec<&Value> = events
        .iter()
        .filter(|e| e.get("fields").is_none())
        .collect();
    assert!(
        lines.iter().all(|e| e["container_id"] == c.id.as_str()),
        "the json-file container was streamed too"
    );
    let nums = |stream: &str| -> Vec<u64> {
        lines
            .iter()
            .filter(|e| e["stream"] == stream)
            .map(|e| e["message"].as_str().unwrap().parse().unwrap())
            .collect()
    };
    assert_eq!(nums("stdout"), (1..=4000).collect::<Vec<_>>());
    assert_eq!(nums("stderr"), (1..=100).collect::<Vec<_>>());
    assert!(
        metric(
            &metrics,
            "logwharf_docker_stream_attaches_total",
            &["reason=\"watchdog\""]
        ) >= 1.0,
        "the watchdog never re-attached:\n{metrics}"
    );
    // Lifecycle events: start, and die with the exit code.
    let life: Vec<&Value> = events
        .iter()
        .filter(|e| e.get("fields").is_some() && e["container_id"] == c.id.as_str())
        .collect();
    assert!(life.iter().any(|e| e["fields"]["docker_event"] == "start"));
    let die = life
        .iter()
        .find(|e| e["fields"]["docker_event"] == "die")
        .expect("a die event");
    assert_eq!(die["fields"]["exit_code"], 7);
    assert_eq!(
        die["message"],
        "container lw-api-local-a died with exit code 7"
    );
}

#[test]
fn tty_container_lines_have_no_header_garbage() {
    // Taken before the check: the restart test holds the write side while dockerd is down.
    let _daemon = daemon_shared();
    if !docker::require() {
        return;
    }
    let t = TestDir::new("api-tty");
    // A TTY line that starts with bytes a multiplexing header would (0x01 0x00 …).
    let c = Container::create(
        "lw-api-tty-1",
        &["-t", "--log-driver", "local"],
        r"printf '\001\002\003 starts like a header\n'; echo second; echo third",
    );
    let cfg = t.config(&api_config("lw-api-tty-", ""));
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    assert_eq!(c.wait(), 0);
    let ok = wait_for_lines(&out(&t), 3, 60);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(ok, "{}", lw.log());
    let events = json_lines(&out(&t));
    assert_eq!(
        messages(&events),
        ["\u{1}\u{2}\u{3} starts like a header", "second", "third"]
    );
    assert!(events.iter().all(|e| e["stream"] == "stdout"));
}

const STACK_TRACE_SCRIPT: &str = r#"echo '2026-11-25 13:04:22 INFO starting'
echo '2026-11-25 13:04:23 ERROR request failed'
echo 'java.lang.IllegalStateException: boom'
printf '\tat com.example.OrderService.place(OrderService.java:42)\n'
printf '\tat com.example.Api.handle(Api.java:7)\n'
echo 'Caused by: java.io.IOException: disk full'
printf '\t... 12 more\n'
echo '2026-11-25 13:04:24 INFO recovered'"#;

const MERGED_TRACE: &str = "2026-11-25 13:04:23 ERROR request failed\njava.lang.IllegalStateException: boom\n\tat com.example.OrderService.place(OrderService.java:42)\n\tat com.example.Api.handle(Api.java:7)\nCaused by: java.io.IOException: disk full\n\t... 12 more";

/// A stack trace from a container labelled `logwharf.multiline.start`, through `source`
/// (`api`: the `local` driver and the API stream; `files`: json-file and the tailer).
fn stack_trace_is_one_event(source: &str) {
    let t = TestDir::new(&format!("multiline-{source}"));
    let name = format!("lw-ml-{source}-1");
    let mut opts = vec!["--label", r"logwharf.multiline.start=^\d{4}-\d\d-\d\d "];
    if source == "api" {
        opts.extend(["--log-driver", "local"]);
    }
    let c = Container::create(&name, &opts, STACK_TRACE_SCRIPT);
    let cfg = if source == "api" {
        api_config(&format!("lw-ml-{source}-"), "")
    } else {
        json_file_config(&c.id, "")
    };
    let cfg = t.config(&cfg);
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    assert_eq!(c.wait(), 0);
    // The last event is shipped when its flush timeout (1 s) passes.
    let ok = wait_for_lines(&out(&t), 3, 60);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(ok, "{}", lw.log());
    let m = messages(&json_lines(&out(&t)));
    assert_eq!(m.len(), 3, "{m:#?}");
    assert_eq!(m[0], "2026-11-25 13:04:22 INFO starting");
    assert_eq!(m[1], MERGED_TRACE);
    assert_eq!(m[2], "2026-11-25 13:04:24 INFO recovered");
}

#[test]
fn java_stack_trace_with_a_label_pattern_is_one_event_api_stream() {
    // Taken before the check: the restart test holds the write side while dockerd is down.
    let _daemon = daemon_shared();
    if !docker::require() {
        return;
    }
    stack_trace_is_one_event("api");
}

#[test]
fn java_stack_trace_with_a_label_pattern_is_one_event_json_file() {
    // Taken before the check: the restart test holds the write side while dockerd is down.
    let _daemon = daemon_shared();
    if !docker::require() {
        return;
    }
    stack_trace_is_one_event("files");
}

/// Stops dockerd (SIGTERM by its pid file) and starts it again exactly as
/// scripts/testbed.d/10-docker.sh does; returns once it answers.
fn restart_dockerd() {
    let pid: i32 = std::fs::read_to_string("/var/run/docker.pid")
        .expect("dockerd pid file")
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert!(
        wait_until(Duration::from_secs(60), || unsafe { libc::kill(pid, 0) }
            != 0),
        "dockerd did not stop"
    );
    let _ = std::fs::remove_file("/var/run/docker.pid");
    Command::new("sh")
        .args([
            "-c",
            "nohup dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
             -p /var/run/docker.pid >>/var/log/dockerd.log 2>&1 &",
        ])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || Command::new("docker")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())),
        "dockerd did not come back"
    );
}

#[test]
fn dockerd_restart_reconnects_and_loses_nothing() {
    if !docker::require() {
        return;
    }
    let _daemon = DOCKERD.write().unwrap_or_else(|p| p.into_inner());
    let t = TestDir::new("api-restart");
    // Restarted by Docker after the daemon comes back; each boot numbers its lines.
    let c = Container::create(
        "lw-api-restart-1",
        &["--log-driver", "local", "--restart", "always"],
        "n=$(cat /boot 2>/dev/null || echo 0); n=$((n+1)); echo $n > /boot; \
         i=0; while [ $i -lt 40 ]; do echo boot$n-$i; i=$((i+1)); sleep 0.1; done; sleep 1000",
    );
    // The same on json-file, tailed by the docker_json_file source and enriched.
    let jf = Container::create(
        "lw-api-restart-jf",
        &["--restart", "always"],
        "n=$(cat /boot 2>/dev/null || echo 0); n=$((n+1)); echo $n > /boot; \
         i=0; while [ $i -lt 40 ]; do echo jf-boot$n-$i; i=$((i+1)); sleep 0.1; done; sleep 1000",
    );
    let cfg = t.config(&format!(
        "{}\n[sources.files]\ntype = \"docker_json_file\"\ninclude = [\"{}*\"]\n",
        api_config("lw-api-restart-", "")
            .replace("inputs = [\"api\"]", "inputs = [\"api\", \"files\"]"),
        jf.id
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    jf.start();
    assert!(wait_for_lines(&out(&t), 20, 60), "{}", lw.log());
    restart_dockerd();
    // After the restart a container started only now is enriched too (events re-followed).
    let late = Container::create(
        "lw-api-restart-late",
        &["--log-driver", "local"],
        "echo late-line",
    );
    late.start();
    let expected = || {
        let logs = Command::new("docker")
            .args(["logs", &c.id])
            .output()
            .unwrap();
        String::from_utf8_lossy(&logs.stdout)
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let done = wait_until(Duration::from_secs(60), || {
        let want = expected();
        let got = messages(&json_lines(&out(&t)));
        want.iter().any(|l| l.starts_with("boot2-39"))
            && want.iter().all(|l| got.contains(l))
            && got.iter().any(|l| l == "late-line")
    });
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let want = expected();
    let events = json_lines(&out(&t));
    let got = messages(&events);
    let missing: Vec<&String> = want.iter().filter(|l| !got.contains(l)).collect();
    assert!(
        done && missing.is_empty(),
        "missing {missing:?}; log:\n{}",
        lw.log()
    );
    let mut sorted = got.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "duplicates after the reconnect");
    // Every json-file line is enriched, before and after the restart.
    for e in events
        .iter()
        .filter(|e| e["container_id"] == jf.id.as_str())
    {
        assert_eq!(e["container_name"], "lw-api-restart-jf", "{e}");
    }
    let late_ev = events.iter().find(|e| e["message"] == "late-line").unwrap();
    assert_eq!(late_ev["container_name"], "lw-api-restart-late");
    assert!(
        lw.log()
            .contains("connected to the Docker daemon; containers re-listed"),
        "{}",
        lw.log()
    );
}

#[test]
fn absent_daemon_is_waited_for_with_one_clear_log_line() {
    let t = TestDir::new("api-absent");
    let cfg = t.config(
        r#"
[sources.api]
type = "docker_api"
host = "unix:///nonexistent/docker.sock"
[sinks.out]
type = "blackhole"
inputs = ["api"]
"#,
    );
    let mut lw = Logwharf::start(&cfg, &[]);
    // Several failed attempts (each counted), and still running.
    lw.wait_metric(&t.api_addr(), "logwharf_docker_reconnects_total", &[], 3.0);
    assert!(
        lw.child.try_wait().unwrap().is_none(),
        "logwharf exited:\n{}",
        lw.log()
    );
    assert_eq!(lw.terminate(), Some(0));
    let log = lw.log();
    let warned = log
        .lines()
        .filter(|l| l.contains("Docker daemon unavailable"))
        .count();
    assert_eq!(warned, 1, "expected one warning while retrying:\n{log}");
    assert!(log.contains("unix:///nonexistent/docker.sock"), "{log}");

    let v = Command::new(bin())
        .args(["validate", "--connect", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout).to_string() + &String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(1), "{text}");
    assert!(
        text.contains("sources.api") && text.contains("unix:///nonexistent/docker.sock"),
        "{text}"
    );
}

#[test]
fn a_label_regex_that_does_not_compile_is_a_config_error_naming_the_key() {
    let t = TestDir::new("api-badregex");
    let cfg = t.config(
        r#"
[sources.api]
type = "docker_api"
labels_regex = "com\\.docker\\.(compose"
[sinks.out]
type = "blackhole"
inputs = ["api"]
"#,
    );
    let v = Command::new(bin())
        .args(["validate", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(2), "{err}");
    assert!(
        err.contains("sources.api.labels_regex: invalid regular expression"),
        "{err}"
    );
}

/// A docker_json_file source over one container (by id), enriched (the default), into
/// `{dir}/out.log` as JSON.
fn json_file_config(id: &str, extra: &str) -> String {
    format!(
        r#"
[sources.files]
type = "docker_json_file"
include = ["{id}*"]
{extra}
[sinks.out]
type = "file"
inputs = ["files"]
path = "{{dir}}/out.log"
encoding = "json"
"#
    )
}

#[test]
fn json_file_lines_are_enriched_and_follow_a_rename() {
    // Taken before the check: the restart test holds the write side while dockerd is down.
    let _daemon = daemon_shared();
    if !docker::require() {
        return;
    }
    let t = TestDir::new("jf-meta");
    let c = Container::create(
        "lw-jf-meta-old",
        &[
            "--label",
            "com.docker.compose.project=shop",
            "--label",
            "com.docker.compose.service=orders",
            "--label",
            "team=payments",
            "-e",
            "APP_MODE=prod",
            "-e",
            "SECRET_TOKEN=hunter2",
        ],
        "i=0; while [ $i -lt 40 ]; do echo n$i; i=$((i+1)); sleep 0.1; done",
    );
    let cfg = t.config(&json_file_config(
        &c.id,
        "env = [\"APP_MODE\"]\ntag = \"{{.Name}}/{{.ID}}\"",
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    assert!(wait_for_lines(&out(&t), 10, 60), "{}", lw.log());
    remove_leftover("lw-jf-meta-new");
    docker_cmd(&["rename", "lw-jf-meta-old", "lw-jf-meta-new"]);
    assert_eq!(c.wait(), 0);
    let ok = wait_for_lines(&out(&t), 40, 60);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(ok, "{}", lw.log());
    let events = json_lines(&out(&t));
    assert_eq!(
        messages(&events),
        (0..40).map(|i| format!("n{i}")).collect::<Vec<_>>()
    );
    for e in &events {
        assert_eq!(e["container_id"], c.id.as_str());
        assert_eq!(e["image_name"], "logwharf-busybox:latest");
        assert_eq!(e["labels"]["team"], "payments");
        assert_eq!(e["compose_project"], "shop");
        assert_eq!(e["compose_service"], "orders");
        assert_eq!(e["env"], serde_json::json!({"APP_MODE": "prod"}));
    }
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["container_name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "lw-jf-meta-old");
    assert_eq!(
        events[0]["tag"],
        format!("lw-jf-meta-old/{}", &c.id[..12]).as_str()
    );
    assert_eq!(*names.last().unwrap(), "lw-jf-meta-new");
    assert_eq!(
        events.last().unwrap()["tag"],
        format!("lw-jf-meta-new/{}", &c.id[..12]).as_str()
    );
    let first_new = names.iter().position(|n| *n == "lw-jf-meta-new").unwrap();
    assert!(names[first_new..].iter().all(|n| *n == "lw-jf-meta-new"));
    let _ = Command::new("docker")
        .args(["rm", "-f", "lw-jf-meta-new"])
        .status();
}

#[test]
fn docker_daemon_log_from_its_file_parsed_into_fields_with_a_checkpoint() {
    // Taken before the check: the restart test holds the write side while dockerd is down.
    let _daemon = daemon_shared();
    if !docker::require() {
        return;
    }
    let t = TestDir::new("daemon-log");
    // The testbed redirects dockerd's output to /var/log/dockerd.log (no journald here).
    let cfg = t.config(
        r#"
[sources.daemon]
type = "docker_daemon"
mode = "file"
path = "/var/log/dockerd.log"
[sinks.out]
type = "file"
inputs = ["daemon"]
path = "{dir}/out.log"
encoding = "json"
"#,
    );
    run_once(&cfg);
    let events = json_lines(&out(&t));
    assert!(!events.is_empty(), "nothing read from /var/log/dockerd.log");
    let parsed: Vec<&Value> = events
        .iter()
        .filter(|e| e["fields"]["level"].is_string())
        .collect();
    assert!(
        !parsed.is_empty(),
        "no logfmt line parsed: {:?}",
        &events[..events.len().min(3)]
    );
    for e in &parsed {
        assert!(e["fields"]["msg"].is_string() || e["fields"].get("msg").is_none());
        assert!(
            ["debug", "info", "warning", "error", "fatal", "panic", "trace"]
                .contains(&e["fields"]["level"].as_str().unwrap()),
            "{e}"
        );
    }
    // A second run starts from the checkpoint: only what dockerd wrote since.
    let n1 = events.len();
    run_once(&cfg);
    let n2 = json_lines(&out(&t)).len();
    assert!(
        n2 - n1 < n1,
        "the second run re-read everything ({n1} then {n2})"
    );
}

/// Removes a container left under `name` by an earlier, interrupted run (a rename target is
/// not covered by `Container`'s own clean-up).
fn remove_leftover(name: &str) {
    let _ = Command::new("docker")
        .args(["rm", "-f", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The syslog sink's numbers, in the order rsyslog wrote them.
fn syslog_numbers(rs: &common::rsyslog::Rsyslog) -> Vec<u64> {
    rs.lines("local0")
        .iter()
        .filter_map(|(_, _, m)| std::str::from_utf8(m).ok()?.trim().parse().ok())
        .collect()
}

/// The file sink's numbers, in order.
fn file_numbers(t: &TestDir) -> Vec<u64> {
    messages(&json_lines(&out(t)))
        .iter()
        .filter_map(|m| m.parse().ok())
        .collect()
}

#[test]
fn a_dead_syslog_server_holds_up_no_api_stream_and_gets_every_line_from_its_own_cursor() {
    use common::rsyslog::Rsyslog;
    let _daemon = daemon_shared();
    if !docker::require() || !Rsyslog::require() {
        return;
    }
    const N: u64 = 20_000;
    let t = TestDir::new("api-iso");
    let port = free_port();
    // ≈0.8 MB in the local driver's files: rotated (and compressed) seven times, all kept.
    let c = Container::create(
        "lw-api-iso-1",
        &[
            "--log-driver",
            "local",
            "--log-opt",
            "max-size=100k",
            "--log-opt",
            "max-file=10",
        ],
        &format!("seq 1 {N}"),
    );
    // The syslog sink's buffer is small, so its stream stalls at once and, after
    // inactivity_timeout (2s), is let go until the server is back.
    let cfg = t.config(&format!(
        r#"checkpoint_interval = "1s"
shutdown_timeout = "3s"
{}
[sinks.sys]
type = "syslog"
inputs = ["api"]
address = "tcp://127.0.0.1:{port}"
facility = "local0"
format = "rfc5424"
buffer = {{ max_events = 500 }}
"#,
        api_config("lw-api-iso-", "")
    ));
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log(docker::CONNECTED, 1);
    let began = std::time::Instant::now();
    c.start();
    assert_eq!(c.wait(), 0);
    let all = |got: &[u64]| got.len() as u64 >= N;
    let file_ok = wait_until(PATIENCE, || all(&file_numbers(&t)));
    let file_took = began.elapsed();
    assert!(
        file_ok,
        "the file sink has {} of {N} lines while the syslog server is down; log:\n{}",
        file_numbers(&t).len(),
        lw.log()
    );
    assert_eq!(
        file_numbers(&t),
        (1..=N).collect::<Vec<_>>(),
        "file sink: every line once, in order"
    );
    // The syslog sink's stream was let go, not kept open by a stalled reader.
    lw.wait_log("let go of the log stream", 1);
    // A restart while the syslog sink still has nothing: each sink resumes from its own
    // checkpoint (the file sink's is at the end, the syslog sink's at the start); the syslog
    // sink stalls again and lets go again; once the server is up, its stream re-reads
    // Docker's (rotated, compressed) files from its cursor with `since`.
    lw.terminate();
    let mut lw = Logwharf::start(&cfg, &[]);
    lw.wait_log("let go of the log stream", 1);
    let rs = Rsyslog::start(t.path(), port);
    let sys_ok = wait_until(PATIENCE, || all(&syslog_numbers(&rs)));
    let m = lw.wait_metric(
        &t.api_addr(),
        "logwharf_docker_stream_attaches_total",
        &["sink=\"sys\"", "reason=\"backpressure\""],
        1.0,
    );
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let got = syslog_numbers(&rs);
    assert!(
        sys_ok,
        "rsyslog got {} of {N} lines; log:\n{}",
        got.len(),
        lw.log()
    );
    assert_eq!(
        got,
        (1..=N).collect::<Vec<_>>(),
        "syslog: every line once, in order"
    );
    assert_eq!(
        file_numbers(&t).len() as u64,
        N,
        "the restart shipped nothing twice to the file sink"
    );
    assert_eq!(metric(&m, "logwharf_lost_bytes_total", &[]), 0.0);
    assert_eq!(metric(&m, "logwharf_docker_stream_gaps_total", &[]), 0.0);
    let attaches: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("logwharf_docker_stream_attaches_total{"))
        .collect();
    eprintln!(
        "api isolation: the file sink had all {N} lines {file_took:?} after the container started, with the syslog server down; then rsyslog got all {N}, in order; after the restart: {attaches:#?}"
    );
}

/// FNV-1a 64, hex: the hash a docker_api cursor keeps of its line.
fn fnv1a_hex(b: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &c in b {
        h ^= c as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[test]
fn an_old_per_container_cursor_becomes_every_sinks_position_and_nothing_is_shipped_twice() {
    let _daemon = daemon_shared();
    if !docker::require() {
        return;
    }
    const N: u64 = 20_000;
    const DONE: u64 = 10_000;
    let t = TestDir::new("api-upgrade");
    let c = Container::create(
        "lw-api-upgrade-1",
        &[
            "--log-driver",
            "local",
            "--log-opt",
            "max-size=100k",
            "--log-opt",
            "max-file=10",
        ],
        &format!("seq 1 {N}"),
    );
    c.start();
    assert_eq!(c.wait(), 0);
    // The checkpoint a version before per-sink cursors wrote after delivering line DONE:
    // `<source>/<container>` = {time_ns, stream, hash} of that line.
    let logs = docker_cmd(&["logs", "-t", &c.id]);
    let ts = logs
        .lines()
        .find(|l| l.ends_with(&format!(" {DONE}")))
        .and_then(|l| l.split(' ').next())
        .expect("the line in docker logs")
        .to_string();
    let time_ns: i64 = Command::new("date")
        .args(["-d", &ts, "+%s%N"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().parse().unwrap())
        .unwrap();
    let key = format!("api/{}", c.id);
    let data = t.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let old = serde_json::json!({"version": 1, "checkpoints": {
        key.clone(): {"time_ns": time_ns, "stream": "stdout", "hash": fnv1a_hex(DONE.to_string().as_bytes())}
    }});
    std::fs::write(data.join("checkpoints.json"), old.to_string()).unwrap();
    let cfg = t.config(&format!(
        "{}\n[sinks.second]\ntype = \"file\"\ninputs = [\"api\"]\npath = \"{{dir}}/second.log\"\nencoding = \"json\"\n",
        api_config("lw-api-upgrade-", "")
    ));
    let log = run_once(&cfg);
    let want: Vec<u64> = (DONE + 1..=N).collect();
    assert_eq!(file_numbers(&t), want, "first sink; log:\n{log}");
    let second: Vec<u64> = messages(&json_lines(&t.path().join("second.log")))
        .iter()
        .filter_map(|m| m.parse().ok())
        .collect();
    assert_eq!(second, want, "second sink; log:\n{log}");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(data.join("checkpoints.json")).unwrap()).unwrap();
    let cps = &saved["checkpoints"];
    assert!(cps.get(&key).is_none(), "old key carried over: {cps}");
    for sink in ["out", "second"] {
        assert!(
            cps[format!("{key}/{sink}")]["time_ns"].as_i64() > Some(time_ns),
            "{sink}'s own cursor moved on: {cps}"
        );
    }
    eprintln!(
        "upgrade: both sinks resumed after line {DONE} from the old per-container cursor; Docker's since {} the cursor's line (rewind: {})",
        if log.contains("did not have the cursor's line") { "missed" } else { "had" },
        log.contains("reading everything Docker has")
    );
}
