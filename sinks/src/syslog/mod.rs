//! `type = "syslog"`: events to a syslog server, formatted and framed as Docker's syslog driver
//! does it ([`format`]), over TCP, UDP, TCP+TLS or a unix socket (the shared [`SocketWriter`]).
//!
//! The task gathers batches with the shared batcher, encodes the whole group into one buffer
//! (one write for many lines on stream transports; a large group on the blocking pool,
//! crate::util::offload), writes it, and only then acknowledges the
//! batches. Reconnecting, the resend window and at-least-once delivery are the socket writer's
//! (crate::util::socket).
//!
//! The tag template is rendered once per container (and re-rendered when the container's
//! metadata changes), never per line, through the shared render cache with its one
//! empty-render rule (sinks/src/util/render.rs: e.g. `{{.Name}}` before the container's
//! metadata is known gives the short container id, Docker's default tag). Events without a
//! container (relayed from a syslog source) keep their own `appname` field as APP-NAME. The
//! formatter holds every header field to RFC 5424's characters and lengths, whatever its
//! origin, so no peer-supplied byte can end a frame early.
//!
//! A datagram over the cap (`max_message_bytes`) is cut and sent (as Docker's driver does),
//! counted in `logwharf_sink_truncated_events_total`; with `dead_letter` set, the whole event
//! is also written to the dead-letter file (reason `datagram_truncated`).

pub mod config;
pub mod format;

use crate::util::batcher::next_group;
use crate::util::confine::{Charset, Confinement};
use crate::util::dead_letter::DeadLetters;
use crate::util::offload::{self, Offload};
use crate::util::render::{NameTemplate, RenderCache};
use crate::util::socket::SocketWriter;
use crate::util::transport::Connector;
use bytes::Bytes;
pub use config::SyslogSinkConfig;
use format::{EncodeStats, Formatter};
use logwharf_collector::metrics as m;
use logwharf_collector::{Event, Sink, SinkBatch, SinkInput};
use logwharf_config::Template;
use std::sync::Arc;

/// The rendered tag per container (the shared [`RenderCache`]), so the template runs once per
/// container; its values confined to RFC 5424's PRINTUSASCII and APP-NAME's 48 characters.
pub struct TagCache {
    template: NameTemplate,
    cache: RenderCache<Arc<str>>,
    confinement: Confinement,
    /// The last relayed `appname`, so consecutive lines of one app share one allocation.
    last_app: Option<Arc<str>>,
}

impl TagCache {
    /// APP-NAME's limit in RFC 5424.
    pub const MAX_LEN: usize = 48;

    pub fn new(template: Template) -> TagCache {
        TagCache::for_sink("syslog", template)
    }

    /// Counts confined values under the sink's name.
    pub fn for_sink(sink: &str, template: Template) -> TagCache {
        TagCache {
            template: NameTemplate::new(template, "tag", Charset::PrintUsAscii, Self::MAX_LEN),
            cache: RenderCache::default(),
            confinement: Confinement::new(sink),
            last_app: None,
        }
    }

    /// APP-NAME for `ev`: the container's rendered tag; for an event without a container, its
    /// own `appname` field (relayed from a syslog source), else the template's rendering.
    pub fn get(&mut self, ev: &Event) -> Arc<str> {
        if ev.container.is_none() {
            if let Some(app) = ev
                .fields
                .as_ref()
                .and_then(|f| f.get("appname"))
                .and_then(|v| v.as_str())
            {
                return match &self.last_app {
                    Some(a) if &**a == app => a.clone(),
                    _ => self.last_app.insert(Arc::from(app)).clone(),
                };
            }
        }
        let (t, conf) = (&self.template, &self.confinement);
        self.cache
            .get(ev.container.as_ref(), |m| Arc::from(t.render(m, conf)))
    }
}

/// The running sink.
pub struct SyslogSink {
    config: SyslogSinkConfig,
    encoder: Offload<GroupEncoder>,
    writer: SocketWriter,
    metrics: Metrics,
    /// Where the whole event of a datagram cut at its cap goes.
    dead_letters: DeadLetters,
}

/// What encodes a group (on the blocking pool for a large one: [`Offload`]).
struct GroupEncoder {
    formatter: Formatter,
    tags: TagCache,
    /// Datagrams cut at the cap are noted, for the dead-letter file.
    note_cut: bool,
    /// The largest group's bytes so far: the next buffer's capacity.
    cap: usize,
}

/// One group, encoded.
struct Encoded {
    buf: Vec<u8>,
    /// Where each message ends in `buf`.
    ends: Vec<usize>,
    /// (batch in the group, event in the batch) of datagrams cut at the cap.
    cut: Vec<(usize, usize)>,
    stats: EncodeStats,
    events: usize,
}

impl GroupEncoder {
    fn encode(&mut self, group: &[SinkBatch]) -> Encoded {
        let mut e = Encoded {
            buf: Vec::with_capacity(self.cap),
            ends: Vec::new(),
            cut: Vec::new(),
            stats: EncodeStats::default(),
            events: 0,
        };
        for (g, sb) in group.iter().enumerate() {
            for (i, ev) in sb.batch.events.iter().enumerate() {
                let tag = self.tags.get(ev);
                let truncated = e.stats.truncated;
                self.formatter
                    .encode(&mut e.buf, &mut e.ends, ev, &tag, &mut e.stats);
                if e.stats.truncated > truncated && self.note_cut {
                    e.cut.push((g, i));
                }
            }
            e.events += sb.batch.len();
        }
        self.cap = self.cap.max(e.buf.len());
        e
    }
}

struct Metrics {
    events: metrics::Counter,
    bytes: metrics::Counter,
    truncated: metrics::Counter,
}

impl SyslogSink {
    pub fn new(name: &str, config: &SyslogSinkConfig) -> anyhow::Result<SyslogSink> {
        SyslogSink::with_dead_letters(name, config, DeadLetters::disabled(name))
    }

    /// As [`SyslogSink::new`]; the events of datagrams cut at their cap are also written,
    /// whole, to `dead_letters`.
    pub fn with_dead_letters(
        name: &str,
        config: &SyslogSinkConfig,
        dead_letters: DeadLetters,
    ) -> anyhow::Result<SyslogSink> {
        let address = config
            .address
            .clone()
            .ok_or_else(|| anyhow::anyhow!("syslog sink {name:?}: no address"))?;
        let framing = (!address.is_datagram()).then(|| config.effective_framing());
        let formatter = Formatter::new(
            config.format,
            config.facility.0,
            config
                .hostname
                .clone()
                .unwrap_or_else(logwharf_collector::host::hostname),
            config
                .procid
                .clone()
                .unwrap_or_else(|| std::process::id().to_string()),
            framing,
            config.newlines,
            config.effective_max_message(),
        );
        let connector = Connector::new(address, config.tls.as_ref(), config.connect_timeout.0)?;
        let writer = SocketWriter::new(
            name,
            "syslog",
            connector,
            config.resend_window.0 as usize,
            config.resend_window_age.0,
        );
        Ok(SyslogSink {
            encoder: Offload::new(GroupEncoder {
                formatter,
                tags: TagCache::for_sink(name, config.tag.clone()),
                note_cut: dead_letters.is_enabled(),
                cap: 64 << 10,
            }),
            writer,
            metrics: Metrics {
                events: metrics::counter!(m::SINK_EVENTS, "sink" => name.to_string()),
                bytes: metrics::counter!(m::SINK_BYTES, "sink" => name.to_string()),
                truncated: metrics::counter!(m::SINK_TRUNCATED, "sink" => name.to_string()),
            },
            config: config.clone(),
            dead_letters,
        })
    }
}

#[async_trait::async_trait]
impl Sink for SyslogSink {
    async fn run(mut self: Box<Self>, mut input: SinkInput) -> anyhow::Result<()> {
        let batch = self.config.batch;
        while let Some(group) = next_group(&mut input, &batch).await {
            let events = offload::events(&group);
            let (group, e) = self
                .encoder
                .encode(
                    group,
                    events,
                    |enc: &mut GroupEncoder, g: &Vec<SinkBatch>| enc.encode(g),
                )
                .await?;
            let n = e.buf.len();
            self.writer.deliver(Bytes::from(e.buf), &e.ends).await;
            for run in e.cut.chunk_by(|a, b| a.0 == b.0) {
                let batch = &group[run[0].0].batch;
                let refused = run.iter().map(|&(_, i)| &batch.events[i]);
                self.dead_letters
                    .write(&batch.source, refused, "datagram_truncated");
            }
            for sb in group {
                sb.into_parts().1.delivered();
            }
            self.metrics.events.increment(e.events as u64);
            self.metrics.bytes.increment(n as u64);
            if e.stats.truncated > 0 {
                self.metrics.truncated.increment(e.stats.truncated as u64);
            }
        }
        self.writer.shutdown().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use logwharf_collector::{ContainerMeta, Stream};

    #[test]
    fn tags_render_once_per_container_and_follow_renames() {
        let mut tags = TagCache::new(Template::parse("{{.Name}}/{{.ID}}").unwrap());
        let mut meta = ContainerMeta::from_id("d2ae8d3a9846aaaaaaaa");
        meta.name = Some("sysl".into());
        let c = Arc::new(meta);
        let mut e = Event::new(0, Stream::Stdout, Bytes::from_static(b"x"));
        e.container = Some(c.clone());
        assert_eq!(&*tags.get(&e), "sysl/d2ae8d3a9846");
        let mut renamed = (*c).clone();
        renamed.name = Some("other".into());
        e.container = Some(Arc::new(renamed));
        assert_eq!(&*tags.get(&e), "other/d2ae8d3a9846");
        let mut anon = Event::new(0, Stream::Stdout, Bytes::from_static(b"x"));
        anon.container = Some(Arc::new(ContainerMeta::from_id("0123456789abcdef")));
        assert_eq!(&*tags.get(&anon), "/0123456789ab");
        let mut only_name = TagCache::new(Template::parse("{{.Name}}").unwrap());
        assert_eq!(&*only_name.get(&anon), "0123456789ab");
        // No container: the template renders against no metadata; empty → `logwharf`.
        let mut relayed = Event::new(0, Stream::Unknown, Bytes::from_static(b"x"));
        assert_eq!(&*tags.get(&relayed), "/");
        assert_eq!(&*only_name.get(&relayed), "logwharf");
        let mut f = serde_json::Map::new();
        f.insert("appname".into(), "cron".into());
        relayed.fields = Some(Box::new(f));
        assert_eq!(&*tags.get(&relayed), "cron");
        // A peer's name with a newline and a fake header stays one APP-NAME token.
        let mut hostile = ContainerMeta::from_id("0123456789abcdef");
        hostile.name = Some("x\n<14>1 2026-11-25T13:04:34Z h forged - - hi".into());
        anon.container = Some(Arc::new(hostile));
        assert_eq!(
            &*only_name.get(&anon),
            "x_<14>1_2026-11-25T13:04:34Z_h_forged_-_-_hi"
        );
    }

    #[tokio::test]
    async fn a_datagram_cut_at_the_cap_is_sent_and_its_whole_event_dead_lettered() {
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = peer.local_addr().unwrap().port();
        let c = crate::load_test_config(&format!(
            "[sources.s]\ntype = \"docker_json_file\"\n[sinks.sys]\ntype = \"syslog\"\ninputs = [\"s\"]\naddress = \"udp://127.0.0.1:{port}\"\nmax_message = \"200\"\ndead_letter = true\n"
        ))
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let mut cx = logwharf_collector::SinkContext::for_test("sys");
        cx.data_dir = d.path().to_path_buf();
        cx.dead_letter = c.sinks["sys"].dead_letter.clone();
        let sink = c.sinks["sys"].inner.build(cx).unwrap();
        let (tx, input) = logwharf_collector::SinkInput::for_test("sys");
        let long = "y".repeat(500);
        let batch = logwharf_collector::Batch {
            source: "s".into(),
            events: vec![
                Event::new(0, Stream::Stdout, Bytes::from_static(b"short")),
                Event::new(0, Stream::Stdout, Bytes::from(long.clone())),
            ],
        };
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        let ack =
            logwharf_collector::AckToken::new(Some(Box::new(move |ok| ack_tx.send(ok).unwrap())));
        tx.send(logwharf_collector::SinkBatch::detached(batch, ack))
            .unwrap();
        drop(tx);
        sink.run(input).await.unwrap();
        assert_eq!(ack_rx.try_recv(), Ok(true), "settled");
        let mut buf = [0u8; 4096];
        for _ in 0..2 {
            let n = peer.recv(&mut buf).unwrap();
            assert!(n <= 200, "{n}");
        }
        let text = std::fs::read_to_string(d.path().join("dead-letter/sys.log")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["message"], long.as_str());
        assert_eq!(lines[0]["dead_letter_reason"], "datagram_truncated");
    }
}
