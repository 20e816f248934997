//! The `/status` document, built from the [`Registry`] when asked. Its shape (a public
//! interface, like the config keys: fields are added, never renamed):
//!
//! ```json
//! {"time": "...",
//!  "sources": [{"name", "type", "events", "bytes", "events_per_sec", "bytes_per_sec"}],
//!  "containers": [{"source", "id", "name", "image", "file", "position", "lag_bytes",
//!                  "bytes_in_per_sec", "bytes_out_per_sec", "max_size", "max_file",
//!                  "time_to_loss_secs",
//!                  "sinks": [{"sink", "state", "read_file", "read_position", "delivered_file",
//!                             "delivered_position", "lag_bytes", "events", "bytes",
//!                             "bytes_per_sec", "dropped", "lost_bytes", "time_to_loss_secs"}]}],
//!  "sinks": [{"name", "type", "state", "health", "restarts", "last_error", "last_error_time",
//!             "retries", "events", "bytes", "events_per_sec", "bytes_per_sec", "dropped",
//!             "buffer_events", "buffer_bytes", "buffer_max_events", "buffer_max_bytes"}],
//!  "receivers": [{"name", "connections", "errors": {"kind": n}}]}
//! ```
//!
//! A sink's `state` is `down` while its supervisor restarts it (or it has not proven itself
//! since), `retrying` while its newest news is an error, else `up`. `time_to_loss_secs` is
//! the time left before Docker's rotation deletes bytes that sink has not delivered, from the
//! container's `max-size`/`max-file` and its write rate over the last seconds; absent when
//! nothing is at risk, 0 when Docker has deleted them already (then only `hold_max_bytes`
//! keeps them).

use super::container::time_to_loss;
use super::{lock, Registry};
use crate::health::Health;
use crate::time::{format_rfc3339, now_nanos, Fraction};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

fn rate(r: f64) -> Value {
    ((r * 10.0).round() / 10.0).into()
}

impl Registry {
    /// The `/status` document; `health` says which components the supervisor restarts.
    pub fn report(&self, health: &Health) -> Value {
        let (_, h) = health.report();
        let components = &h["components"];
        let sources: Vec<Value> = lock(&self.sources)
            .iter()
            .map(|(name, s)| {
                json!({
                    "name": &**name,
                    "type": s.kind.get().copied().unwrap_or(""),
                    "events": s.events.total(),
                    "bytes": s.bytes.total(),
                    "events_per_sec": rate(s.events.rate()),
                    "bytes_per_sec": rate(s.bytes.rate()),
                })
            })
            .collect();

        let mut states = Map::new();
        let sinks: Vec<Value> = lock(&self.sinks)
            .iter()
            .map(|(name, s)| {
                let c = &components[format!("sinks.{name}")];
                let health_state = c["state"].as_str().unwrap_or("unknown");
                let down = matches!(health_state, "starting" | "restarting" | "recovering");
                let state = if down {
                    "down"
                } else if s.is_retrying() {
                    "retrying"
                } else {
                    "up"
                };
                states.insert(name.to_string(), state.into());
                let mut o = json!({
                    "name": &**name,
                    "type": s.kind.get().copied().unwrap_or(""),
                    "state": state,
                    "health": health_state,
                    "restarts": c["restarts"].as_u64().unwrap_or(0),
                    "retries": s.retries.load(Ordering::Relaxed),
                    "events": s.events.total(),
                    "bytes": s.bytes.total(),
                    "events_per_sec": rate(s.events.rate()),
                    "bytes_per_sec": rate(s.bytes.rate()),
                    "dropped": s.dropped.load(Ordering::Relaxed),
                });
                // The newer of the sink's own last error and its supervisor's.
                let own = s.last_error();
                let supervisor = c["last_error"].as_str().map(|e| (e.to_string(), 0));
                if let Some((e, at)) = own.or(supervisor) {
                    o["last_error"] = e.into();
                    if at != 0 {
                        o["last_error_time"] = format_rfc3339(at, Fraction::Seconds).into();
                    } else if let Some(t) = c.get("last_error_time") {
                        o["last_error_time"] = t.clone();
                    }
                }
                if let Some(b) = s.buffer_fill() {
                    o["buffer_events"] = b.events.into();
                    o["buffer_bytes"] = b.bytes.into();
                    o["buffer_max_events"] = b.max_events.into();
                    o["buffer_max_bytes"] = b.max_bytes.into();
                }
                o
            })
            .collect();

        // A snapshot of the entries: the sources add and remove theirs meanwhile.
        let entries: Vec<_> = lock(&self.containers).values().cloned().collect();
        let containers: Vec<Value> = entries
            .iter()
            .map(|c| {
                let names = lock(&c.meta).clone();
                let written = c.written.rate();
                let live = c.live_size().unwrap_or(0);
                let (mut lag, mut out_rate, mut ttl) = (0u64, 0f64, None::<f64>);
                let mut read = None;
                let sinks: Vec<Value> = lock(&c.sinks)
                    .iter()
                    .map(|p| {
                        let delivered = lock(&p.delivered).clone();
                        let r = lock(&p.read).clone();
                        if read.is_none() {
                            read = r.clone();
                        }
                        let bytes_rate = p.bytes.rate();
                        out_rate = out_rate.max(bytes_rate);
                        let mut o = json!({
                            "sink": &*p.sink,
                            "state": states.get(&*p.sink).cloned().unwrap_or("up".into()),
                            "events": p.events.total(),
                            "bytes": p.bytes.total(),
                            "bytes_per_sec": rate(bytes_rate),
                            "dropped": p.dropped.load(Ordering::Relaxed),
                            "lost_bytes": p.lost_bytes.load(Ordering::Relaxed),
                        });
                        if let Some((f, off)) = r {
                            o["read_file"] = f.into();
                            o["read_position"] = off.into();
                        }
                        if let Some(d) = delivered {
                            lag = lag.max(d.behind);
                            o["delivered_file"] = d.file.as_str().into();
                            o["delivered_position"] = d.offset.into();
                            o["lag_bytes"] = d.behind.into();
                            if let Some(t) = time_to_loss(&d, c.max_size, c.max_file, live, written)
                            {
                                ttl = Some(ttl.map_or(t, |m: f64| m.min(t)));
                                o["time_to_loss_secs"] = rate(t);
                            }
                        }
                        o
                    })
                    .collect();
                let mut o = json!({
                    "source": &*c.source,
                    "id": c.id,
                    "name": names.name.as_deref().map(|n| n.trim_start_matches('/')),
                    "image": names.image,
                    "lag_bytes": lag,
                    "bytes_in_per_sec": rate(written),
                    "bytes_out_per_sec": rate(out_rate),
                    "sinks": sinks,
                });
                if let Some((f, off)) = read {
                    o["file"] = f.into();
                    o["position"] = off.into();
                }
                if let Some(m) = c.max_size {
                    o["max_size"] = m.into();
                }
                if let Some(m) = c.max_file {
                    o["max_file"] = m.into();
                }
                if let Some(t) = ttl {
                    o["time_to_loss_secs"] = rate(t);
                }
                o
            })
            .collect();

        let receivers: Vec<Value> = lock(&self.receivers)
            .iter()
            .map(|(name, r)| {
                let errors: Map<String, Value> = lock(&r.errors)
                    .iter()
                    .map(|(k, v)| (k.to_string(), (*v).into()))
                    .collect();
                json!({
                    "name": &**name,
                    "connections": r.connections.load(Ordering::Relaxed).max(0),
                    "errors": errors,
                })
            })
            .collect();

        json!({
            "time": format_rfc3339(now_nanos(), Fraction::Seconds),
            "health": h["status"],
            "sources": sources,
            "containers": containers,
            "sinks": sinks,
            "receivers": receivers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Delivered;

    #[test]
    fn a_report_names_containers_sinks_and_their_state() {
        let r = Registry::default();
        let health = Health::new();
        let hs = health.register("sinks.syslog");
        hs.started();
        health.set_running();
        r.register_sink("syslog", "syslog")
            .retrying("connect: connection refused");
        r.register_source("logs", "docker_json_file").sent(3, 30);
        let c = r.container(&"logs".into(), "abc", Some(1_000_000), Some(2));
        let mut meta = crate::event::ContainerMeta::from_id("abc");
        meta.name = Some("/web-1".into());
        c.set_meta(&std::sync::Arc::new(meta));
        c.sink("syslog").set_delivered(Delivered {
            file: "abc-json.log".into(),
            offset: 0,
            behind: 500,
            newer_files: 0,
        });
        let doc = r.report(&health);
        assert_eq!(doc["sinks"][0]["state"], "retrying", "{doc}");
        assert_eq!(doc["sinks"][0]["last_error"], "connect: connection refused");
        let c = &doc["containers"][0];
        assert_eq!(c["name"], "web-1");
        assert_eq!(c["lag_bytes"], 500);
        assert_eq!(c["sinks"][0]["state"], "retrying");
        assert!(
            c["time_to_loss_secs"].is_null(),
            "nothing written yet: {doc}"
        );
        hs.failed("panicked");
        assert_eq!(r.report(&health)["sinks"][0]["state"], "down");
    }

    #[test]
    fn a_removed_sink_and_source_leave_the_report() {
        let r = Registry::default();
        let health = Health::new();
        r.register_sink("a", "file");
        r.register_sink("b", "file");
        r.register_source("logs", "docker_json_file");
        let c = r.container(&"logs".into(), "abc", None, None);
        c.sink("a");
        c.sink("b");
        r.remove_sink("a");
        let doc = r.report(&health);
        let names = |v: &Value, key: &str| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s[key].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(&doc["sinks"], "name"), ["b"], "{doc}");
        assert_eq!(
            names(&doc["containers"][0]["sinks"], "sink"),
            ["b"],
            "{doc}"
        );
        r.remove_source("logs");
        let doc = r.report(&health);
        assert_eq!(doc["sources"], json!([]), "{doc}");
        assert_eq!(doc["containers"], json!([]), "{doc}");
    }
}
