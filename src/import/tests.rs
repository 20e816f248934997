use super::import;
use crate::load_config_str;

fn generated(json: &str) -> String {
    let text = import(json, "daemon.json").unwrap();
    if let Err(e) = load_config_str(&text, "generated.toml") {
        panic!("the generated config does not load:\n{e}\n---\n{text}");
    }
    text
}

#[test]
fn syslog_driver() {
    let t = generated(
        r#"{"log-driver": "syslog", "log-opts": {"syslog-address": "tcp+tls://logs.example:6514",
            "syslog-facility": "mail", "syslog-format": "rfc5424micro", "tag": "{{.Name}}",
            "syslog-tls-ca-cert": "/etc/ca.pem", "syslog-tls-skip-verify": "true",
            "labels": "app,tier", "mode": "non-blocking", "max-buffer-size": "4m"},
            "storage-driver": "overlay2"}"#,
    );
    for want in [
        "[sinks.syslog]\ntype = \"syslog\"",
        "address = \"tcp+tls://logs.example:6514\"",
        "facility = \"mail\"",
        "format = \"rfc5424micro\"",
        "tag = \"{{.Name}}\"",
        "[sinks.syslog.tls]\nca_file = \"/etc/ca.pem\"\nverify = false",
        "labels = [\"app\", \"tier\"]",
        "# log-opts \"mode\" = \"non-blocking\": logwharf never blocks",
        "# daemon.json \"storage-driver\": not about logging",
        "\"log-driver\": \"json-file\"",
        "systemctl restart docker",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
}

#[test]
fn fluentd_driver() {
    let t = generated(
        r#"{"log-driver": "fluentd", "log-opts": {"fluentd-address": "127.0.0.1:24224",
            "tag": "docker.{{.Name}}", "fluentd-async": "true", "fluentd-request-ack": "true",
            "fluentd-sub-second-precision": "true", "fluentd-retry-wait": "1s"}}"#,
    );
    for want in [
        "type = \"fluentd\"",
        "address = \"127.0.0.1:24224\"",
        "tag = \"docker.{{.Name}}\"",
        "require_ack = true",
        "sub_second_precision = true",
        "# log-opts \"fluentd-async\" = \"true\": logwharf is always asynchronous",
        "# log-opts \"fluentd-retry-wait\"",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
}

#[test]
fn awslogs_driver_takes_the_stream_from_tag() {
    let t = generated(
        r#"{"log-driver": "awslogs", "log-opts": {"awslogs-region": "eu-west-1",
            "awslogs-group": "app", "tag": "{{.Name}}", "awslogs-create-group": "true",
            "awslogs-endpoint": "http://127.0.0.1:4566", "awslogs-multiline-pattern": "^INFO",
            "awslogs-force-flush-interval-seconds": "2", "awslogs-datetime-format": "%Y"}}"#,
    );
    for want in [
        "type = \"cloudwatch\"",
        "region = \"eu-west-1\"",
        "group = \"app\"",
        "stream = \"{{.Name}}\"",
        "create_missing_group = true",
        "endpoint = \"http://127.0.0.1:4566\"",
        "multiline = { start = \"^INFO\" }",
        "batch = { timeout = \"2s\" }",
        "# log-opts \"awslogs-datetime-format\"",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
}

#[test]
fn json_file_keeps_its_rotation_limits() {
    let t = generated(r#"{"log-opts": {"max-size": "20m", "max-file": "5", "compress": "true"}}"#);
    for want in [
        "type = \"file\"",
        "max_size = \"20m\"",
        "max_file = \"5\"",
        "compress = \"true\"",
        "\"max-size\": \"20m\", \"max-file\": \"5\"",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
}

#[test]
fn bad_input_is_named() {
    assert!(import("{", "d.json")
        .unwrap_err()
        .starts_with("d.json: not JSON"));
    assert!(import(r#"{"log-driver": "gelf"}"#, "d.json")
        .unwrap_err()
        .contains("\"gelf\" has no logwharf sink yet"));
    assert!(import(r#"{"log-opts": {"labels": ["a"]}}"#, "d.json")
        .unwrap_err()
        .contains("log-opts.labels: expected a string"));
}
