//! `logwharf status`: the daemon's `/status` as a table — one row per container (name, lag,
//! write rate, and per sink its state, lag, losses and the time left before Docker's rotation
//! deletes what it has not delivered), then one row per sink and per receiver — or, with
//! `--json`, the document itself.

use super::{fetch_status, human_bytes, human_secs};
use serde_json::Value;
use std::fmt::Write;
use std::net::SocketAddr;

pub fn run(addr: SocketAddr, json: bool) -> anyhow::Result<()> {
    let doc = fetch_status(addr)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&doc));
    }
    Ok(())
}

/// A container's name for people: its name, else its short id.
pub fn container_name(c: &Value) -> String {
    match c["name"].as_str() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => c["id"].as_str().unwrap_or("?").chars().take(12).collect(),
    }
}

/// One sink's cell in a container's row: `up`, or `retrying, lag 3.2 kB, lost 1.0 MB, loss in 45s`.
pub fn sink_cell(s: &Value) -> String {
    let mut cell = s["state"].as_str().unwrap_or("?").to_string();
    let lag = s["lag_bytes"].as_f64().unwrap_or(0.0);
    if lag > 0.0 {
        let _ = write!(cell, ", lag {}", human_bytes(lag));
    }
    let lost = s["lost_bytes"].as_f64().unwrap_or(0.0);
    if lost > 0.0 {
        let _ = write!(cell, ", lost {}", human_bytes(lost));
    }
    let dropped = s["dropped"].as_u64().unwrap_or(0);
    if dropped > 0 {
        let _ = write!(cell, ", dropped {dropped}");
    }
    if let Some(t) = s["time_to_loss_secs"].as_f64() {
        let _ = write!(cell, ", loss in {}", human_secs(t));
    }
    cell
}

pub fn render(doc: &Value) -> String {
    let empty = Vec::new();
    let containers = doc["containers"].as_array().unwrap_or(&empty);
    let sinks = doc["sinks"].as_array().unwrap_or(&empty);
    let sink_names: Vec<&str> = sinks.iter().filter_map(|s| s["name"].as_str()).collect();
    let mut out = String::new();

    let mut head = vec!["CONTAINER".to_string(), "LAG".into(), "IN/S".into()];
    head.extend(sink_names.iter().map(|n| n.to_uppercase()));
    let mut rows = vec![head];
    for c in containers {
        let mut row = vec![
            container_name(c),
            human_bytes(c["lag_bytes"].as_f64().unwrap_or(0.0)),
            human_bytes(c["bytes_in_per_sec"].as_f64().unwrap_or(0.0)),
        ];
        let per_sink = c["sinks"].as_array().unwrap_or(&empty);
        for name in &sink_names {
            row.push(
                per_sink
                    .iter()
                    .find(|s| s["sink"].as_str() == Some(name))
                    .map_or("-".to_string(), sink_cell),
            );
        }
        rows.push(row);
    }
    if containers.is_empty() {
        out.push_str("no containers are read\n");
    } else {
        out.push_str(&table(&rows));
    }

    out.push('\n');
    let mut rows = vec![[
        "SINK",
        "TYPE",
        "STATE",
        "EVENTS",
        "EVENTS/S",
        "BUFFER",
        "RETRIES",
        "LAST ERROR",
    ]
    .map(String::from)
    .to_vec()];
    for s in sinks {
        let buffer = match (s["buffer_events"].as_u64(), s["buffer_max_events"].as_u64()) {
            (Some(n), Some(max)) => format!("{n}/{max}"),
            _ => "-".into(),
        };
        let error = match (s["last_error"].as_str(), s["last_error_time"].as_str()) {
            (Some(e), Some(t)) => format!("{t} {e}"),
            (Some(e), None) => e.to_string(),
            _ => String::new(),
        };
        rows.push(vec![
            s["name"].as_str().unwrap_or("?").into(),
            s["type"].as_str().unwrap_or("").into(),
            s["state"].as_str().unwrap_or("?").into(),
            s["events"].to_string(),
            s["events_per_sec"].to_string(),
            buffer,
            s["retries"].to_string(),
            error,
        ]);
    }
    out.push_str(&table(&rows));

    let receivers = doc["receivers"].as_array().unwrap_or(&empty);
    if !receivers.is_empty() {
        out.push('\n');
        let mut rows = vec![["RECEIVER", "CONNECTIONS", "ERRORS"]
            .map(String::from)
            .to_vec()];
        for r in receivers {
            let errors = r["errors"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            rows.push(vec![
                r["name"].as_str().unwrap_or("?").into(),
                r["connections"].to_string(),
                errors,
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
}

/// Rows as left-aligned columns two spaces apart (the last column unpadded).
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_per_container_and_a_cell_per_sink() {
        let doc = serde_json::json!({
            "containers": [{"id": "abcdef0123456789", "name": "web-1", "lag_bytes": 3000,
                "bytes_in_per_sec": 100000.0,
                "sinks": [{"sink": "file", "state": "up", "lag_bytes": 0},
                          {"sink": "syslog", "state": "retrying", "lag_bytes": 3000, "time_to_loss_secs": 45.0}]}],
            "sinks": [{"name": "file", "type": "file", "state": "up", "events": 5, "events_per_sec": 1.0, "retries": 0},
                      {"name": "syslog", "type": "syslog", "state": "retrying", "events": 0, "events_per_sec": 0.0,
                       "retries": 3, "last_error": "connect refused", "last_error_time": "2026-12-02T01:00:00Z"}],
            "receivers": []
        });
        let text = render(&doc);
        assert!(text.contains("web-1"), "{text}");
        assert!(text.contains("retrying, lag 3.0 kB, loss in 45s"), "{text}");
        assert!(text.contains("connect refused"), "{text}");
    }
}
