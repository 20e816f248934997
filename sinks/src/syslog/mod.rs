//! `type = "syslog"`: events to a syslog server, formatted and framed as Docker's syslog driver
//! does it ([`format`]), over TCP, UDP, TCP+TLS or a unix socket (the shared [`SocketWriter`]).
//!
//! The task gathers batches with the shared batcher, encodes the whole group into one buffer
//! (one write for many lines on stream transports), writes it, and only then acknowledges the
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

pub mod config;
pub mod format;

use crate::util::batcher::next_group;
use crate::util::confine::{Charset, Confinement};
use crate::util::render::{NameTemplate, RenderCache};
use crate::util::socket::SocketWriter;
use crate::util::transport::Connector;
use bytes::Bytes;
pub use config::SyslogSinkConfig;
use format::{EncodeStats, Formatter};
use logwharf_collector::metrics as m;
use logwharf_collector::{Event, Sink, SinkInput};
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
    formatter: Formatter,
    tags: TagCache,
    writer: SocketWriter,
    metrics: Metrics,
}

struct Metrics {
    events: metrics::Counter,
    bytes: metrics::Counter,
    truncated: metrics::Counter,
}

impl SyslogSink {
    pub fn new(name: &str, config: &SyslogSinkConfig) -> anyhow::Result<SyslogSink> {
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
            formatter,
            tags: TagCache::for_sink(name, config.tag.clone()),
            writer,
            metrics: Metrics {
                events: metrics::counter!(m::SINK_EVENTS, "sink" => name.to_string()),
                bytes: metrics::counter!(m::SINK_BYTES, "sink" => name.to_string()),
                truncated: metrics::counter!(m::SINK_TRUNCATED, "sink" => name.to_string()),
            },
            config: config.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Sink for SyslogSink {
    async fn run(mut self: Box<Self>, mut input: SinkInput) -> anyhow::Result<()> {
        let mut ends = Vec::new();
        let mut cap = 64 << 10;
        let batch = self.config.batch;
        while let Some(group) = next_group(&mut input, &batch).await {
            let mut buf = Vec::with_capacity(cap);
            ends.clear();
            let mut stats = EncodeStats::default();
            let mut events = 0;
            for sb in &group {
                for ev in &sb.batch.events {
                    let tag = self.tags.get(ev);
                    self.formatter
                        .encode(&mut buf, &mut ends, ev, &tag, &mut stats);
                }
                events += sb.batch.len();
            }
            cap = cap.max(buf.len());
            let n = buf.len();
            self.writer.deliver(Bytes::from(buf), &ends).await;
            for sb in group {
                sb.into_parts().1.delivered();
            }
            self.metrics.events.increment(events as u64);
            self.metrics.bytes.increment(n as u64);
            if stats.truncated > 0 {
                self.metrics.truncated.increment(stats.truncated as u64);
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
}
