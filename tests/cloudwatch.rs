//! End-to-end: real containers (testbed dockerd) → json-file → the real `logwharf` binary →
//! the `cloudwatch` sink → the strict front (tests/cloudwatch_front.py, which refuses any
//! request that breaks a documented limit or lacks a valid SigV4 signature, and injects
//! throttling) → moto, the CloudWatch Logs emulator; read back with boto3's GetLogEvents.
//!
//! Each test starts its own moto and front on free ports and stops them by pid.

mod cloudwatch_support;
mod common;

use cloudwatch_support::*;
use common::docker::{self, Container};
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Docker and moto both present; a missing one fails under CI=true.
fn require_peers() -> bool {
    docker::require() && require_moto()
}

struct Setup {
    t: TestDir,
}

impl Setup {
    fn new(name: &str) -> Setup {
        Setup {
            t: TestDir::new(name),
        }
    }

    /// A config reading the given containers into one cloudwatch sink with `sink` keys.
    fn config(&self, containers: &[&Container], endpoint: &str, sink: &str) -> PathBuf {
        let include: Vec<String> = containers
            .iter()
            .map(|c| format!("\"{}*\"", c.id))
            .collect();
        self.t.config(&format!(
            r#"
checkpoint_interval = "1s"
[sources.containers]
type = "docker_json_file"
include = [{include}]
[sinks.cw]
type = "cloudwatch"
inputs = ["containers"]
region = "us-east-1"
endpoint = "{endpoint}"
request_timeout = "3s"
buffer = {{ max_events = 4096 }}
{sink}
{retry}
"#,
            include = include.join(", "),
            retry = if sink.contains("retry_max_wait") {
                ""
            } else {
                "retry_max_wait = \"2s\""
            },
        ))
    }

    fn metrics(&self) -> String {
        http_get(&self.t.api_addr(), "/metrics").unwrap_or_default()
    }
}

/// The numbered lines of one stream, in the order the service returns them.
fn numbers(events: &[Value], stream: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["stream"] == stream)
        .filter_map(|e| e["head"].as_str()?.get(..6)?.parse().ok())
        .collect()
}

fn env_creds() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "AKIDFROMENV"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ]
}

#[test]
fn fifty_thousand_mixed_lines_from_real_containers_arrive_in_order_within_every_limit() {
    if !require_peers() {
        return;
    }
    let s = Setup::new("cw-50k");
    let emu = Emulator::start(&s.t);
    // Two containers, 25,000 numbered lines each: 100 bytes, every 100th 200 KiB; the first
    // container also writes one 300 KiB line (number 999999), which must be split.
    let script = |extra: &str| {
        format!(
            r#"pad=$(head -c 93 /dev/zero | tr '\0' a); big=$(head -c 204793 /dev/zero | tr '\0' b)
i=1; while [ $i -le 25000 ]; do
  if [ $((i % 100)) -eq 0 ]; then printf '%06d %s\n' $i "$big"; else printf '%06d %s\n' $i "$pad"; fi
  i=$((i+1)); done
{extra}"#
        )
    };
    let huge = "printf '999999 %s\\n' \"$(head -c 307193 /dev/zero | tr '\\0' c)\"";
    let c1 = Container::create("lw-e2e-cw-50k-a", &[], &script(huge));
    let c2 = Container::create("lw-e2e-cw-50k-b", &[], &script(""));
    // Config keys win over the environment: the front sees the config's key id.
    let cfg = s.config(
        &[&c1, &c2],
        &emu.endpoint(),
        &format!(
            "group = \"lw-50k\"\ncreate_missing_group = true\nbatch = {{ timeout = \"1s\" }}\naccess_key_id = \"AKIDFROMCONFIG\"\nsecret_access_key = \"{SECRET}\""
        ),
    );
    let mut lw = start_logwharf(&cfg, &env_creds());
    c1.start();
    c2.start();
    assert_eq!(c1.wait(), 0);
    assert_eq!(c2.wait(), 0);
    let started = Instant::now();
    // 50,001 lines; the 300 KiB one becomes two events.
    let want = 25_000 + 2 + 25_000;
    let sent = |m: &str| metric(m, "logwharf_sink_events_total", &[]) as usize;
    let done = wait_until(Duration::from_secs(300), || sent(&s.metrics()) >= want);
    let metrics = s.metrics();
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(
        done,
        "only {} events sent; log:\n{}",
        sent(&metrics),
        lw.log()
    );
    eprintln!(
        "50k: delivered in {:?} after the containers exited",
        started.elapsed()
    );

    let stats = emu.assert_no_violations();
    assert_eq!(stats["access_keys"], serde_json::json!(["AKIDFROMCONFIG"]));
    let events = emu.dump("lw-50k");
    for c in [&c1, &c2] {
        let nums = numbers(&events, &c.id);
        let mut expect: Vec<u64> = (1..=25_000).collect();
        if c.id == c1.id {
            expect.push(999_999);
        }
        assert_eq!(nums.len(), expect.len(), "stream {}", c.name);
        assert!(
            nums == expect,
            "stream {} out of order or incomplete",
            c.name
        );
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["stream"] == c.id.as_str())
            .collect();
        for e in &mine {
            let n: u64 = e["head"].as_str().unwrap()[..6].parse().unwrap_or(0);
            let len = e["len"].as_u64().unwrap();
            match n {
                0 => {} // the second piece of the split line
                999_999 => assert_eq!(len, 262_118, "first piece of the split 300 KiB line"),
                n if n % 100 == 0 => assert_eq!(len, 204_800),
                _ => assert_eq!(len, 100),
            }
        }
        // Timestamps never go backwards within a stream.
        assert!(mine
            .windows(2)
            .all(|w| w[0]["timestamp"].as_i64() <= w[1]["timestamp"].as_i64()));
    }
    // The 300 KiB line: 262,118 bytes, then the remaining 45,082, right after it.
    let a: Vec<&Value> = events
        .iter()
        .filter(|e| e["stream"] == c1.id.as_str())
        .collect();
    let last = a.last().unwrap();
    assert_eq!(last["len"], 307_200 - 262_118);
    assert!(last["head"].as_str().unwrap().starts_with("cccc"));
    assert_eq!(
        metric(
            &metrics,
            "logwharf_sink_oversize_events_total",
            &["action=\"split\""]
        ),
        1.0
    );
}

#[test]
fn truncate_option_cuts_a_300_kib_line_and_counts_it() {
    if !require_peers() {
        return;
    }
    let s = Setup::new("cw-trunc");
    let emu = Emulator::start(&s.t);
    let c = Container::create(
        "lw-e2e-cw-trunc",
        &[],
        "echo before; head -c 307200 /dev/zero | tr '\\0' t; echo; echo after",
    );
    let cfg = s.config(
        &[&c],
        &emu.endpoint(),
        "group = \"lw-trunc\"\ncreate_missing_group = true\noversize = \"truncate\"\nbatch = { timeout = \"500ms\" }",
    );
    let mut lw = start_logwharf(&cfg, &env_creds());
    c.start();
    assert_eq!(c.wait(), 0);
    let done = wait_until(Duration::from_secs(60), || {
        metric(&s.metrics(), "logwharf_sink_events_total", &[]) >= 3.0
    });
    let metrics = s.metrics();
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(done, "{}", lw.log());
    emu.assert_no_violations();
    let ev = emu.dump("lw-trunc");
    let lens: Vec<u64> = ev.iter().map(|e| e["len"].as_u64().unwrap()).collect();
    assert_eq!(lens, vec![6, 262_118, 5]);
    assert_eq!(
        metric(
            &metrics,
            "logwharf_sink_oversize_events_total",
            &["action=\"truncate\""]
        ),
        1.0
    );
}

#[test]
fn moto_stopped_for_10_s_mid_stream_loses_nothing() {
    if !require_peers() {
        return;
    }
    let s = Setup::new("cw-outage");
    let emu = Emulator::start(&s.t);
    // 20,000 numbered lines over about 10 s.
    let c = Container::create(
        "lw-e2e-cw-outage",
        &[],
        "i=0; while [ $i -lt 20000 ]; do seq $((i+1)) $((i+500)); i=$((i+500)); sleep 0.25; done",
    );
    let cfg = s.config(
        &[&c],
        &emu.endpoint(),
        "group = \"lw-outage\"\ncreate_missing_group = true\nbatch = { timeout = \"500ms\" }",
    );
    let mut lw = start_logwharf(&cfg, &env_creds());
    c.start();
    // Mid-stream: once the first lines were delivered.
    lw.wait_metric(
        &s.t.api_addr(),
        "logwharf_sink_events_total",
        &["sink=\"cw\""],
        1.0,
    );
    // Stop moto (SIGSTOP: it neither answers nor forgets) for 10 s mid-stream.
    unsafe { libc::kill(emu.moto.pid(), libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(10));
    unsafe { libc::kill(emu.moto.pid(), libc::SIGCONT) };
    assert_eq!(c.wait(), 0);
    let complete = || {
        let ev = emu.dump("lw-outage");
        let got: std::collections::HashSet<u64> = ev
            .iter()
            .filter_map(|e| e["head"].as_str()?.trim().parse().ok())
            .collect();
        got.len() >= 20_000
    };
    let done = wait_until(Duration::from_secs(120), complete);
    let metrics = s.metrics();
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    let ev = emu.dump("lw-outage");
    let nums: Vec<u64> = ev
        .iter()
        .filter_map(|e| e["head"].as_str()?.trim().parse().ok())
        .collect();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for n in &nums {
        *seen.entry(*n).or_default() += 1;
    }
    let missing: Vec<u64> = (1..=20_000).filter(|n| !seen.contains_key(n)).collect();
    let retries = metric(&metrics, "logwharf_sink_retries_total", &[]);
    eprintln!(
        "outage: {} events, {} distinct, {} duplicates (timed-out requests moto processed after SIGCONT), {retries} retries",
        nums.len(),
        seen.len(),
        nums.len() - seen.len()
    );
    assert!(
        done && missing.is_empty(),
        "lost {} lines, first {:?}; log:\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        lw.log()
    );
    assert!(retries >= 1.0, "no retry was counted during the outage");
    emu.assert_no_violations();
}

#[test]
fn throttling_is_backed_off_with_growing_waits_and_loses_nothing() {
    if !require_peers() {
        return;
    }
    let s = Setup::new("cw-throttle");
    let emu = Emulator::start(&s.t);
    let c = Container::create("lw-e2e-cw-throttle", &[], "seq 1 3000");
    // The group exists already; the stream is created on first use.
    emu.boto3("c.create_log_group(logGroupName='lw-throttle')");
    let cfg = s.config(
        &[&c],
        &emu.endpoint(),
        "group = \"lw-throttle\"\nbatch = { timeout = \"500ms\" }\nretry_max_wait = \"5s\"",
    );
    c.start();
    assert_eq!(c.wait(), 0);
    emu.throttle(5);
    // Credentials from the environment; the front verifies the signature with that secret.
    let mut lw = start_logwharf(&cfg, &env_creds());
    let done = wait_until(Duration::from_secs(60), || {
        metric(&s.metrics(), "logwharf_sink_events_total", &[]) >= 3000.0
    });
    let metrics = s.metrics();
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(done, "{}", lw.log());
    let stats = emu.assert_no_violations();
    assert_eq!(stats["throttled"], 5);
    assert_eq!(stats["access_keys"], serde_json::json!(["AKIDFROMENV"]));
    assert_eq!(
        metric(
            &metrics,
            "logwharf_sink_retries_total",
            &["kind=\"throttling\""]
        ),
        5.0
    );
    // The waits between the throttled attempts grow: equal jitter over 100 ms doubling.
    let times: Vec<f64> = stats["put_times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    let gaps: Vec<f64> = times.windows(2).take(5).map(|w| w[1] - w[0]).collect();
    eprintln!("throttling: waits between attempts {gaps:?} s");
    for (i, g) in gaps.iter().enumerate() {
        let floor = 0.05 * f64::from(1u32 << i);
        assert!(
            *g >= floor * 0.9,
            "wait {i} was {g} s, below {floor} s: {gaps:?}"
        );
    }
    let nums: Vec<u64> = emu
        .dump("lw-throttle")
        .iter()
        .filter_map(|e| e["head"].as_str()?.parse().ok())
        .collect();
    assert_eq!(nums, (1..=3000).collect::<Vec<u64>>());
}

#[test]
fn missing_groups_are_created_with_retention_and_profile_credentials_are_used() {
    if !require_peers() {
        return;
    }
    let s = Setup::new("cw-create");
    let emu = Emulator::start(&s.t);
    let a = Container::create("lw-e2e-cw-create-a", &[], "seq 1 1000");
    let b = Container::create("lw-e2e-cw-create-b", &[], "seq 1 1000");
    // Credentials from the shared credentials file, profile chosen by AWS_PROFILE.
    let creds = s.t.path().join("credentials");
    std::fs::write(
        &creds,
        format!("[default]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = nope\n\n[lw]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = {SECRET}\n"),
    )
    .unwrap();
    // One group per container (json-file alone knows the ids, not the names); neither exists.
    let cfg = s.config(
        &[&a, &b],
        &emu.endpoint(),
        "group = \"lw-{{.ID}}\"\ncreate_missing_group = true\nretention_days = 7\nbatch = { timeout = \"500ms\" }",
    );
    a.start();
    b.start();
    assert_eq!(a.wait(), 0);
    assert_eq!(b.wait(), 0);
    let creds_s = creds.to_str().unwrap().to_string();
    let mut lw = start_logwharf(
        &cfg,
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", creds_s.as_str()),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_PROFILE", "lw"),
        ],
    );
    let done = wait_until(Duration::from_secs(60), || {
        metric(&s.metrics(), "logwharf_sink_events_total", &[]) >= 2000.0
    });
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(done, "{}", lw.log());
    let stats = emu.assert_no_violations();
    assert_eq!(stats["access_keys"], serde_json::json!(["AKIDPROFILE"]));
    for c in [&a, &b] {
        let nums: Vec<u64> = emu
            .dump(&format!("lw-{}", &c.id[..12]))
            .iter()
            .filter_map(|e| e["head"].as_str()?.parse().ok())
            .collect();
        assert_eq!(nums, (1..=1000).collect::<Vec<u64>>(), "{}", c.name);
    }
    let out = emu.boto3(
        "print(json.dumps({g['logGroupName']: g.get('retentionInDays') for g in c.describe_log_groups()['logGroups']}))",
    );
    let groups: Value = serde_json::from_str(out.trim()).unwrap();
    for c in [&a, &b] {
        assert_eq!(groups[format!("lw-{}", &c.id[..12])], 7, "{groups}");
    }
}

#[test]
fn a_stream_whose_group_may_not_be_created_does_not_hold_up_the_others() {
    if !require_peers() {
        return;
    }
    let s = Setup::new("cw-isolate");
    let emu = Emulator::start(&s.t);
    let ok = Container::create("lw-e2e-cw-iso-ok", &[], "seq 1 2000");
    let stuck = Container::create("lw-e2e-cw-iso-stuck", &[], "seq 1 2000");
    // Only the first container's group exists, and the sink may not create groups.
    let (g_ok, g_stuck) = (
        format!("lw-{}", &ok.id[..12]),
        format!("lw-{}", &stuck.id[..12]),
    );
    emu.boto3(&format!("c.create_log_group(logGroupName='{g_ok}')"));
    let cfg = s.config(
        &[&ok, &stuck],
        &emu.endpoint(),
        "group = \"lw-{{.ID}}\"\nbatch = { timeout = \"500ms\" }",
    );
    ok.start();
    stuck.start();
    assert_eq!(ok.wait(), 0);
    assert_eq!(stuck.wait(), 0);
    let mut lw = start_logwharf(&cfg, &env_creds());
    let done = wait_until(Duration::from_secs(60), || {
        metric(&s.metrics(), "logwharf_sink_events_total", &[]) >= 2000.0
    });
    let nums: Vec<u64> = emu
        .dump(&g_ok)
        .iter()
        .filter_map(|e| e["head"].as_str()?.parse().ok())
        .collect();
    assert!(done, "{}", lw.log());
    assert_eq!(nums, (1..=2000).collect::<Vec<u64>>());
    // The stuck stream is retried, not dropped: its group appears, and everything flows.
    // (Its first attempt — PutLogEvents, then CreateLogStream — may still be under way when
    // the other stream is done, so wait for the retry to be counted.)
    let retried = wait_until(PATIENCE, || {
        metric(
            &s.metrics(),
            "logwharf_sink_retries_total",
            &["kind=\"resource_not_found\""],
        ) >= 1.0
    });
    assert!(retried, "{}", s.metrics());
    emu.boto3(&format!("c.create_log_group(logGroupName='{g_stuck}')"));
    let done = wait_until(Duration::from_secs(60), || {
        metric(&s.metrics(), "logwharf_sink_events_total", &[]) >= 4000.0
    });
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(done, "{}", lw.log());
    let nums: Vec<u64> = emu
        .dump(&g_stuck)
        .iter()
        .filter_map(|e| e["head"].as_str()?.parse().ok())
        .collect();
    assert_eq!(nums, (1..=2000).collect::<Vec<u64>>());
    emu.assert_no_violations();
}

#[test]
fn credentials_from_the_container_credentials_endpoint_sign_requests() {
    if !require_peers() {
        return;
    }
    let s = Setup::new("cw-ecs");
    let emu = Emulator::start(&s.t);
    let c = Container::create("lw-e2e-cw-ecs", &[], "seq 1 500");
    let cfg = s.config(
        &[&c],
        &emu.endpoint(),
        "group = \"lw-ecs\"\ncreate_missing_group = true\nbatch = { timeout = \"500ms\" }",
    );
    c.start();
    assert_eq!(c.wait(), 0);
    // No keys in the config, the environment or a profile: the chain reaches the container
    // endpoint (the front serves it); its session token is signed too, and verified.
    let uri = format!("{}/_front/ecs-credentials", emu.endpoint());
    let mut lw = start_logwharf(
        &cfg,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ("AWS_CONFIG_FILE", "/nonexistent"),
        ],
    );
    let done = wait_until(Duration::from_secs(60), || {
        metric(&s.metrics(), "logwharf_sink_events_total", &[]) >= 500.0
    });
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(done, "{}", lw.log());
    let stats = emu.assert_no_violations();
    assert_eq!(stats["access_keys"], serde_json::json!(["AKIDFROMECS"]));
    assert!(stats["ecs_credential_requests"].as_u64().unwrap() >= 1);
    let n = emu.dump("lw-ecs").len();
    assert_eq!(n, 500);
}

/// `import-daemon-json` on a daemon.json for Docker's `awslogs` driver: the generated config,
/// run as is (but for this test's container), sends a real container's lines to the group,
/// in a stream named by `tag` as Docker's driver names it.
#[test]
fn an_awslogs_daemon_json_imports_to_a_config_that_ships_there() {
    if !require_peers() {
        return;
    }
    let s = Setup::new("cw-import");
    let emu = Emulator::start(&s.t);
    let c = Container::create("lw-e2e-cw-import", &[], "seq 1 300");
    let mine = import_daemon_json(
        s.t.path(),
        &format!(
            r#"{{"log-driver": "awslogs", "log-opts": {{"awslogs-region": "us-east-1",
                "awslogs-endpoint": "{}", "awslogs-group": "lw-import", "tag": "{{{{.Name}}}}",
                "awslogs-create-group": "true", "awslogs-force-flush-interval-seconds": "1"}}}}"#,
            emu.endpoint()
        ),
        &[&c.id],
    );
    let cfg = s.t.config(&mine);
    let mut lw = start_logwharf(&cfg, &env_creds());
    // The stream is named from the container's metadata: start it once Docker answers.
    lw.wait_log(docker::CONNECTED, 1);
    c.start();
    assert_eq!(c.wait(), 0);
    let sent = |m: &str| metric(m, "logwharf_sink_events_total", &[]) as usize;
    let done = wait_until(Duration::from_secs(120), || sent(&s.metrics()) >= 300);
    assert_eq!(lw.terminate(), Some(0), "{}", lw.log());
    assert!(
        done,
        "{} of 300 sent; log:\n{}",
        sent(&s.metrics()),
        lw.log()
    );
    let events = emu.dump("lw-import");
    assert_eq!(events.len(), 300, "first: {:?}", events.first());
    assert!(
        events.iter().all(|e| e["stream"] == c.name.as_str()),
        "streams {:?}, want {:?}; log:\n{}",
        events
            .iter()
            .map(|e| e["stream"].to_string())
            .collect::<std::collections::BTreeSet<_>>(),
        c.name,
        lw.log()
    );
    let got: Vec<u64> = events
        .iter()
        .filter_map(|e| e["head"].as_str()?.parse().ok())
        .collect();
    assert_eq!(got, (1..=300).collect::<Vec<_>>());
}
