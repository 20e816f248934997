//! The config loader with every component registered: key paths, line numbers and messages
//! of errors, Docker's option names as aliases, defaults. (Moved from the config crate when
//! component configs moved beside their components; the assertions are unchanged.)

use logwharf::{builtin_default, load_config_str};
use logwharf_collector::sources::docker_api::DockerApiConfig;
use logwharf_collector::sources::docker_json_file::DockerJsonFileConfig;
use logwharf_collector::sources::fluent::FluentSourceConfig;
use logwharf_config::WhenFull;
use logwharf_sinks::file::FileSinkConfig;
use logwharf_sinks::fluentd::FluentdSinkConfig;

fn errors(text: &str) -> Vec<String> {
    load_config_str(text, "t.toml")
        .unwrap_err()
        .errors
        .iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn the_issue_example_loads() {
    let c = load_config_str(
        r#"
data_dir = "/tmp/lw"
[sources.containers]
type = "docker_json_file"
root = "/var/lib/docker/containers"
[sinks.archive]
type = "file"
inputs = ["containers"]
path = "/var/log/logwharf/{{.ID}}.log"
encoding = "json"
max_size = "10m"
max_file = 3
compress = true
"#,
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.data_dir.to_str(), Some("/tmp/lw"));
    assert!(c.sources["containers"]
        .downcast_ref::<DockerJsonFileConfig>()
        .is_some());
    let s = &c.sinks["archive"];
    assert_eq!(s.inputs, vec!["containers"]);
    assert_eq!(s.buffer.when_full, WhenFull::Block);
    let f = s.inner.downcast_ref::<FileSinkConfig>().unwrap();
    assert_eq!(f.max_size, Some(logwharf_config::ByteSize(10 << 20)));
    assert_eq!(f.max_file, 3);
    assert!(f.compress);
}

#[test]
fn docker_option_names_are_aliases() {
    let c = load_config_str(
        r#"
[sources.c]
type = "docker_json_file"
[sinks.f]
type = "file"
inputs = ["c"]
path = "/tmp/x.log"
max-size = "1m"
max-file = 2
"#,
        "t.toml",
    )
    .unwrap();
    let f = c.sinks["f"].inner.downcast_ref::<FileSinkConfig>().unwrap();
    assert_eq!(
        (f.max_size, f.max_file),
        (Some(logwharf_config::ByteSize(1 << 20)), 2)
    );
}

#[test]
fn every_error_is_reported_with_path_and_line() {
    let e = errors(
        r#"
[sources.c]
type = "docker_json_file"
rooot = "/x"

[sources.d]
type = "docker_jsonfile"

[sinks.f]
type = "file"
inputs = ["c", "nope"]
path = "/tmp/{{.Nmae}}.log"

[sinks.g]
type = "file"
inputs = ["c"]
path = "/tmp/g.log"
max_size = "10q"
"#,
    );
    assert_eq!(
        e,
        vec![
            "line 4: sources.c.rooot: unknown key",
            "line 7: sources.d.type: unknown source type \"docker_jsonfile\" (known: docker_api, docker_daemon, docker_json_file, fluent, kafka, syslog)",
            "line 11: sinks.f.inputs: input \"nope\" names no source (sources: c, d)",
            "line 12: sinks.f.path: unknown field .Nmae in template \"/tmp/{{.Nmae}}.log\" (known: .ID .FullID .Name .ImageID .ImageFullID .ImageName .DaemonName)",
            "line 18: sinks.g.max_size: invalid size \"10q\" (expected e.g. 512, 10k, 20m, 1g)",
        ]
    );
}

#[test]
fn unknown_sink_type_and_missing_type() {
    let e = errors(
        r#"
[sources.c]
type = "docker_json_file"
[sinks.a]
type = "kafak"
inputs = ["c"]
[sinks.b]
inputs = ["c"]
"#,
    );
    assert_eq!(
        e,
        vec![
            "line 5: sinks.a.type: unknown sink type \"kafak\" (known: blackhole, cloudwatch, console, file, fluentd, kafka, socket, syslog)",
            "line 7: sinks.b: missing `type` (one of: blackhole, cloudwatch, console, file, fluentd, kafka, socket, syslog)",
        ]
    );
}

#[test]
fn compress_needs_rotation_like_docker() {
    let e = errors(
        r#"
[sources.c]
type = "docker_json_file"
[sinks.f]
type = "file"
inputs = ["c"]
path = "/tmp/f.log"
compress = true
"#,
    );
    assert_eq!(
        e,
        vec!["line 8: sinks.f.compress: compress cannot be true when max_file is less than 2 or max_size is not set"]
    );
}

#[test]
fn bad_encoding_and_buffer_keys() {
    let e = errors(
        r#"
[sources.c]
type = "docker_json_file"
[sinks.f]
type = "file"
inputs = ["c"]
path = "/tmp/f.log"
encoding = "text"
[sinks.f.buffer]
when_full = "drop_oldest"
"#,
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("line 10: sinks.f.buffer.when_full: unknown variant `drop_oldest`"),
        "{e:?}"
    );
    assert_eq!(
        e[1],
        "line 8: sinks.f.encoding: encoding \"text\" is not supported by this sink (expected one of: json, docker)"
    );
}

#[test]
fn syntax_errors_have_a_line() {
    let e = errors("[sources.c]\ntype = \n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("line 2: "), "{e:?}");
}

#[test]
fn builtin_default_is_valid() {
    let c = builtin_default();
    assert!(c.sinks.contains_key("console"));
}

#[test]
fn fluent_source_and_fluentd_sink_load_with_docker_aliases() {
    let c = load_config_str(
        r#"
[sources.fwd]
type = "fluent"
address = "tcp://127.0.0.1:24230"
auth = { shared_key = "s3cret" }
[sinks.agg]
type = "fluentd"
inputs = ["fwd"]
fluentd-address = "tls://agg.example:24284"
fluentd-sub-second-precision = "false"
fluentd-request-ack = "true"
compress = "gzip"
tag = "docker.{{.Name}}"
tls = { ca_file = "/etc/ca.pem" }
"#,
        "t.toml",
    )
    .unwrap();
    let s = c.sources["fwd"]
        .downcast_ref::<FluentSourceConfig>()
        .unwrap();
    assert_eq!(s.address.to_string(), "tcp://127.0.0.1:24230");
    assert_eq!(s.auth.as_ref().unwrap().shared_key, "s3cret");
    let f = c.sinks["agg"]
        .inner
        .downcast_ref::<FluentdSinkConfig>()
        .unwrap();
    assert_eq!(f.address.to_string(), "tls://agg.example:24284");
    assert!(!f.sub_second_precision && f.require_ack);
    assert_eq!(
        f.compress,
        logwharf_sinks::fluentd::ForwardCompression::Gzip
    );
    assert_eq!(f.tag.as_str(), "docker.{{.Name}}");
}

#[test]
fn fluent_errors_name_their_keys() {
    let e = errors(
        r#"
[sources.fwd]
type = "fluent"
address = "udp://x:1"
[sinks.agg]
type = "fluentd"
inputs = ["fwd"]
record = "xml"
tls = {}
"#,
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("line 4: sources.fwd.address: invalid address"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("line 8: sinks.agg.record: unknown variant"),
        "{e:?}"
    );
}

#[test]
fn docker_sources_load_and_a_bad_label_regex_names_its_key() {
    let c = load_config_str(
        r#"
[sources.api]
type = "docker_api"
host = "unix:///var/run/docker.sock"
events = true
env = "FOO,BAR"
labels_regex = "^com\\.docker\\.compose\\."
tag = "{{.Name}}/{{.ID}}"
multiline = { start = "^\\S", timeout = "2s" }
[sources.daemon]
type = "docker_daemon"
path = "/var/log/dockerd.log"
[sources.files]
type = "docker_json_file"
enrich = false
env_regex = "^APP_"
[sinks.out]
type = "blackhole"
inputs = ["*"]
"#,
        "t.toml",
    )
    .unwrap();
    let a = c.sources["api"].downcast_ref::<DockerApiConfig>().unwrap();
    assert!(a.events);
    assert_eq!(a.docker.env.0, ["FOO", "BAR"]);
    assert_eq!(
        a.docker.multiline.timeout.0,
        std::time::Duration::from_secs(2)
    );
    let j = c.sources["files"]
        .downcast_ref::<DockerJsonFileConfig>()
        .unwrap();
    assert!(!j.enrich);
    assert!(j.enrich_options().env_regex.is_some());

    let e = errors(
        r#"
[sources.api]
type = "docker_api"
labels_regex = "com.docker.(compose"
host = "ftp://x"
[sources.files]
type = "docker_json_file"
env_regex = "["
multiline = { start = "*oops" }
[sinks.out]
type = "blackhole"
inputs = ["*"]
"#,
    );
    assert!(
        e.iter().any(|l| l.starts_with(
            "line 4: sources.api.labels_regex: invalid regular expression \"com.docker.(compose\""
        )),
        "{e:#?}"
    );
    assert!(
        e.iter()
            .any(|l| l.starts_with("line 8: sources.files.env_regex: invalid regular expression")),
        "{e:#?}"
    );
}

/// The errors of a config whose kafka sink `k` (reading source `c`) has the keys `sink`,
/// which start on line 7.
fn kafka_errors(sink: &str) -> Vec<String> {
    errors(&format!(
        "\n[sources.c]\ntype = \"docker_json_file\"\n[sinks.k]\ntype = \"kafka\"\ninputs = [\"c\"]\n{sink}"
    ))
}

#[test]
fn kafka_sink_keys_are_checked() {
    let e = kafka_errors(
        r#"brokers = ["nohost"]
topic = "logs.{{.Nmae}}"
acks = "1"
encoding = "text"
queue_max_messages = 0
[sinks.k.librdkafka_options]
"sasl.password" = "${KAFKA_TEST_UNSET_PASSWORD:-secret}"
"#,
    );
    assert_eq!(
        e,
        vec![
            "line 8: sinks.k.topic: unknown field .Nmae in template \"logs.{{.Nmae}}\" (known: .ID .FullID .Name .ImageID .ImageFullID .ImageName .DaemonName)",
        ]
    );
    let e = kafka_errors(
        r#"brokers = ["nohost"]
topic = "logs"
acks = "1"
encoding = "text"
queue_max_messages = 0
"#,
    );
    assert_eq!(
        e,
        vec![
            "line 10: sinks.k.encoding: encoding \"text\" is not supported by this sink (expected one of: json, raw, docker)",
            "line 7: sinks.k.brokers.0: invalid broker \"nohost\" (expected \"host:port\")",
            "line 9: sinks.k.acks: acks = \"1\" needs enable_idempotence = false (the idempotent producer requires acks = \"all\")",
            "line 11: sinks.k.queue_max_messages: must be at least 1",
        ]
    );
    let e = kafka_errors(
        r#"brokers = ["k1:9093"]
topic = "logs"
tls = { ca_file = "/ca.pem", server_name = "kafka", crt_file = "/me.pem" }
"#,
    );
    assert_eq!(
        e,
        vec![
            "line 9: sinks.k.tls.server_name: is not supported by the kafka sink: librdkafka verifies each broker's advertised host name",
            "line 9: sinks.k.tls: crt_file and key_file go together",
        ]
    );
}

#[test]
fn filter_keys_are_checked_with_their_paths() {
    let e = errors(
        r#"
[sources.c]
type = "docker_json_file"
[sinks.f]
type = "file"
inputs = ["c"]
path = "/tmp/f.log"
[sinks.f.filter]
containers = ["web-[*"]
labels = { tier = "a{b" }
[sinks.g]
type = "file"
inputs = ["c"]
path = "/tmp/g.log"
filter = { streams = ["stdin"] }
[sinks.h]
type = "file"
inputs = ["c"]
path = "/tmp/h.log"
filter = { container = ["x"] }
"#,
    );
    assert_eq!(e.len(), 4, "{e:?}");
    assert!(
        e[0].starts_with("line 9: sinks.f.filter.containers: invalid glob \"web-[*\""),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("line 10: sinks.f.filter.labels.tier: invalid glob \"a{b\""),
        "{e:?}"
    );
    assert!(e[2].starts_with("line 15: sinks.g.filter.streams"), "{e:?}");
    assert!(e[2].contains("unknown variant `stdin`"), "{e:?}");
    assert!(e[3].starts_with("line 20: sinks.h.filter"), "{e:?}");
    assert!(e[3].contains("container"), "{e:?}");
}

#[test]
fn a_filter_loads() {
    let c = load_config_str(
        r#"
[sources.c]
type = "docker_json_file"
[sinks.f]
type = "file"
inputs = ["c"]
path = "/tmp/f.log"
filter = { containers = ["web-*"], exclude_containers = ["web-debug"], images = ["nginx:*"], labels = { tier = "front" }, streams = ["stderr"] }
"#,
        "t.toml",
    )
    .unwrap();
    let f = &c.sinks["f"].filter;
    assert_eq!(f.containers, ["web-*"]);
    assert_eq!(f.exclude_containers, ["web-debug"]);
    assert_eq!(f.images, ["nginx:*"]);
    assert_eq!(f.labels["tier"], "front");
    assert_eq!(f.streams, [logwharf_config::StreamName::Stderr]);
    assert!(c.sinks.values().all(|s| !s.filter.is_empty()));
}

const SINK: &str = "[sinks.b]\ntype = \"blackhole\"\ninputs = [\"c\"]\n";

#[test]
fn rate_limit_loads_and_a_bad_one_names_its_key() {
    let c = load_config_str(
        &format!("[sources.c]\ntype = \"docker_json_file\"\nrate_limit = \"1m\"\n{SINK}"),
        "t.toml",
    )
    .unwrap();
    let s = c.sources["c"]
        .downcast_ref::<DockerJsonFileConfig>()
        .unwrap();
    assert_eq!(s.rate_limit, Some(logwharf_config::ByteSize(1 << 20)));
    let none = load_config_str(
        &format!("[sources.c]\ntype = \"docker_json_file\"\n{SINK}"),
        "t.toml",
    )
    .unwrap();
    let s = none.sources["c"]
        .downcast_ref::<DockerJsonFileConfig>()
        .unwrap();
    assert_eq!(s.rate_limit, None, "no limit unless asked");

    for (value, msg) in [
        ("\"0\"", "must be more than 0"),
        ("\"fast\"", "invalid size"),
    ] {
        let e = errors(&format!(
            "[sources.c]\ntype = \"docker_json_file\"\nrate_limit = {value}\n{SINK}"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("line 3: sources.c.rate_limit: ") && e[0].contains(msg),
            "{value}: {e:?}"
        );
    }
}
