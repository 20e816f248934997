//! The dead-letter file every sink shares (`dead_letter = true` or `{ path, max_size }`): each
//! event a sink's peer refuses for good (Kafka: too large, invalid topic; CloudWatch: rejected
//! by timestamp, invalid, empty; syslog: a datagram cut at its cap) is written there as one
//! JSON line — the event exactly as `encoding = "json"` writes it, plus `dead_letter_reason`,
//! `dead_letter_sink` and `dead_letter_time` — and counted in
//! `logwharf_dead_letter_events_total{sink,reason}`. The sink still counts the refusal as
//! before and settles the event (checkpoints move on): the file is the copy.
//!
//! Bounded by `max_size`: a line that would take the file past it is not written but counted
//! in `logwharf_dead_letter_dropped_events_total{sink,reason="full"}`, with a warning; nothing
//! already written is ever rotated away. Moving or truncating the file (after sending its
//! lines again) makes room: the file is opened for each write (refusals are rare), so a moved
//! file is never written behind the operator's back. Each write is `fsync`ed before the sink
//! settles the events, because the checkpoint that then moves past them makes this the only
//! copy. The writes are synchronous (small, rare) and serialised by a mutex: Kafka reports
//! from librdkafka's thread, CloudWatch from its stream workers.

use crate::encoding::{write_json_string, Encoder, JsonStyle};
use logwharf_collector::checkpoint::create_private_dir;
use logwharf_collector::metrics as m;
use logwharf_collector::time::{write_rfc3339, Fraction};
use logwharf_collector::{Event, SinkContext};
use logwharf_config::Encoding;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One sink's dead-letter writer (cheap to clone; a no-op without `dead_letter`).
#[derive(Clone)]
pub struct DeadLetters {
    sink: Arc<str>,
    file: Option<Arc<DeadLetterFile>>,
}

struct DeadLetterFile {
    path: PathBuf,
    max_size: u64,
    /// Serialises writers; holds refusals since the file was last found full or failing.
    state: Mutex<Trouble>,
}

/// Refused events not written since the last successful write: each kind of trouble is
/// warned about once until a write succeeds again.
#[derive(Default)]
struct Trouble {
    full: u64,
    failed: u64,
}

impl DeadLetters {
    /// The writer of the sink `cx` builds (disabled unless its `dead_letter` is set).
    pub fn new(cx: &SinkContext) -> DeadLetters {
        let file = cx.dead_letter.as_ref().map(|c| {
            Arc::new(DeadLetterFile {
                path: c.path_for(&cx.data_dir, &cx.name),
                max_size: c.max_size.0,
                state: Mutex::new(Trouble::default()),
            })
        });
        DeadLetters {
            sink: cx.name.clone(),
            file,
        }
    }

    /// A writer that writes nothing (sink unit tests).
    pub fn disabled(sink: &str) -> DeadLetters {
        DeadLetters {
            sink: sink.into(),
            file: None,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.file.is_some()
    }

    /// The file written to, when enabled.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref().map(|f| f.path.as_path())
    }

    /// Writes `events` (read by the source `source`), refused for `reason`.
    pub fn write<'a>(
        &self,
        source: &str,
        events: impl IntoIterator<Item = &'a Event>,
        reason: &'static str,
    ) {
        let Some(file) = &self.file else {
            return;
        };
        let mut lines = Vec::new();
        let mut ends = Vec::new();
        let now = logwharf_collector::time::now_nanos();
        for ev in events {
            encode_line(&mut lines, source, ev, reason, &self.sink, now);
            ends.push(lines.len());
        }
        if ends.is_empty() {
            return;
        }
        let mut trouble = file.state.lock().unwrap_or_else(|p| p.into_inner());
        let (written, outcome) = match file.append(&lines, &ends) {
            Ok(n) if n == ends.len() => (n, Ok(())),
            Ok(n) => (n, Err(None)),
            Err((n, e)) => (n, Err(Some(e))),
        };
        if written > 0 {
            metrics::counter!(m::DEAD_LETTER_EVENTS, "sink" => self.sink.to_string(), "reason" => reason)
                .increment(written as u64);
        }
        let lost = (ends.len() - written) as u64;
        match outcome {
            Ok(()) => *trouble = Trouble::default(),
            Err(None) => {
                metrics::counter!(m::DEAD_LETTER_DROPPED, "sink" => self.sink.to_string(), "reason" => "full")
                    .increment(lost);
                if trouble.full == 0 {
                    tracing::warn!(sink = %self.sink, path = %file.path.display(), max_size = file.max_size, reason,
                        "the dead-letter file is full: refused events are counted in {} but not written; send its lines again and move it away to make room",
                        m::DEAD_LETTER_DROPPED);
                }
                trouble.full += lost;
            }
            Err(Some(e)) => {
                metrics::counter!(m::DEAD_LETTER_DROPPED, "sink" => self.sink.to_string(), "reason" => "error")
                    .increment(lost);
                if trouble.failed == 0 {
                    tracing::error!(sink = %self.sink, path = %file.path.display(), error = %e, events = lost, reason,
                        "cannot write refused events to the dead-letter file; they are counted in {} (warned again after a write succeeds)", m::DEAD_LETTER_DROPPED);
                }
                trouble.failed += lost;
            }
        }
    }
}

impl DeadLetterFile {
    /// Appends the lines (`ends`: where each ends in `lines`) that fit under `max_size`, in
    /// order, and syncs. Returns how many were written (all that fit, stopping at the first
    /// that does not), or the error with how many were written before it.
    fn append(&self, lines: &[u8], ends: &[usize]) -> Result<usize, (usize, io::Error)> {
        let fail = |e: io::Error| (0, e);
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(fail)?;
        }
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(fail)?;
        let size = f.metadata().map_err(fail)?.len();
        let room = self.max_size.saturating_sub(size) as usize;
        let fit = ends.iter().take_while(|&&e| e <= room).count();
        if fit == 0 {
            return Ok(0);
        }
        f.write_all(&lines[..ends[fit - 1]])
            .and_then(|()| f.sync_data())
            .map_err(|e| (0, e))?;
        Ok(fit)
    }
}

/// One dead-letter line: the `json` encoding of `ev`, its closing brace replaced by the
/// three dead-letter fields, and `\n`.
fn encode_line(out: &mut Vec<u8>, source: &str, ev: &Event, reason: &str, sink: &str, now: i64) {
    Encoder::new(Encoding::Json).encode(source, ev, out);
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    out.extend_from_slice(b",\"dead_letter_reason\":");
    write_json_string(out, reason.as_bytes(), JsonStyle::Standard);
    out.extend_from_slice(b",\"dead_letter_sink\":");
    write_json_string(out, sink.as_bytes(), JsonStyle::Standard);
    out.extend_from_slice(b",\"dead_letter_time\":\"");
    write_rfc3339(out, now, Fraction::Nanos);
    out.extend_from_slice(b"\"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use logwharf_collector::{ContainerMeta, Stream};
    use logwharf_config::{ByteSize, DeadLetterConfig};

    fn writer(dir: &Path, max_size: u64) -> DeadLetters {
        let mut cx = SinkContext::for_test("central");
        cx.data_dir = dir.to_path_buf();
        cx.dead_letter = Some(DeadLetterConfig {
            path: None,
            max_size: ByteSize(max_size),
        });
        DeadLetters::new(&cx)
    }

    fn event(msg: &'static str) -> Event {
        let mut e = Event::new(1_764_633_600_000_000_001, Stream::Stderr, Bytes::from(msg));
        let mut c = ContainerMeta::from_id("d2ae8d3a9846aaaaaaaa");
        c.name = Some("web".into());
        e.container = Some(Arc::new(c));
        e
    }

    #[test]
    fn a_line_is_the_json_encoding_plus_the_dead_letter_fields() {
        let d = tempfile::tempdir().unwrap();
        let w = writer(d.path(), 1 << 20);
        let path = d.path().join("dead-letter/central.log");
        assert_eq!(w.path(), Some(path.as_path()));
        let e = event("too \"big\"\n");
        w.write("docker", [&e, &e], "message_too_large");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let mut json = Vec::new();
        Encoder::new(Encoding::Json).encode("docker", &e, &mut json);
        let json = String::from_utf8(json).unwrap();
        assert!(
            lines[0].starts_with(&json[..json.len() - 1]),
            "{}",
            lines[0]
        );
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["message"], "too \"big\"\n");
        assert_eq!(v["container_name"], "web");
        assert_eq!(v["source"], "docker");
        assert_eq!(v["dead_letter_reason"], "message_too_large");
        assert_eq!(v["dead_letter_sink"], "central");
        assert!(v["dead_letter_time"].as_str().unwrap().ends_with('Z'));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }

    #[test]
    fn past_max_size_events_are_counted_not_written_and_a_moved_file_makes_room() {
        let d = tempfile::tempdir().unwrap();
        let e = event("x");
        let mut one = Vec::new();
        encode_line(&mut one, "s", &e, "too_old", "central", 0);
        // Room for two lines and a half.
        let w = writer(d.path(), (one.len() * 5 / 2) as u64);
        let path = d.path().join("dead-letter/central.log");
        w.write("s", [&e, &e, &e], "too_old");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        w.write("s", [&e], "too_old");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        // The operator moves the file away (after sending it again): written anew.
        std::fs::rename(&path, d.path().join("sent.log")).unwrap();
        w.write("s", [&e], "too_new");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\"dead_letter_reason\":\"too_new\""));
    }

    #[test]
    fn disabled_writes_nothing_and_errors_do_not_panic() {
        let d = tempfile::tempdir().unwrap();
        DeadLetters::disabled("k").write("s", [&event("x")], "empty");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        // A path under a regular file cannot be created: counted, not a panic.
        std::fs::write(d.path().join("f"), b"").unwrap();
        let mut cx = SinkContext::for_test("k");
        cx.dead_letter = Some(DeadLetterConfig {
            path: Some(d.path().join("f/dl.log")),
            max_size: ByteSize(1 << 20),
        });
        DeadLetters::new(&cx).write("s", [&event("x")], "empty");
    }
}
