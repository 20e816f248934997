//! `type = "docker_api"`: the Docker Engine API as a source. Follows the metadata service's
//! containers and streams the logs of those not tailed from json-file (log driver `local`,
//! `journald`, … or every container of a remote daemon): one reader task per container *and
//! sink* ([`per_sink`]: sinks progress independently, each from its own cursor), started on
//! `start`, ended when the container's stream ends (`die`) or on `destroy`. With
//! `events = true`, container start/die/oom/kill become structured log events.

pub mod config;
pub(crate) mod cursor;
mod per_sink;
mod reader;

use super::{Source, SourceContext};
use crate::checkpoint::{self, CheckpointStore};
use crate::docker::{ContainerEvent, EventKind, MetaChange, MetadataService};
use crate::event::{ContainerMeta, Event, Stream};
use crate::filter::glob_set;
use crate::topology::SourceOutput;
use crate::untrusted::{clean_str, PeerContainer};
use bytes::Bytes;
pub use config::{DockerApiConfig, StreamSelection};
use globset::GlobSet;
use per_sink::EventFanout;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use cursor::Cursor;

/// Log drivers whose containers the API source leaves alone in `stream = "auto"`: json-file
/// (the `docker_json_file` source tails it), none (nothing to read), and the drivers that
/// deliver to logwharf's own receivers (streaming them too would duplicate every line).
const NOT_STREAMED: &[&str] = &["json-file", "none", "syslog", "fluentd"];

/// How often ended readers are forgotten.
const REAP_EVERY: Duration = Duration::from_secs(5);

/// At shutdown, how long queued lifecycle events may wait for a sink's room.
const EVENTS_GRACE: Duration = Duration::from_secs(2);

pub struct DockerApi {
    config: DockerApiConfig,
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl DockerApi {
    pub fn new(config: DockerApiConfig) -> anyhow::Result<Self> {
        Ok(Self {
            include: glob_set(&config.include)?,
            exclude: glob_set(&config.exclude)?.unwrap_or_else(GlobSet::empty),
            config,
        })
    }
}

/// What every reader task of one source shares.
pub(crate) struct Shared {
    pub source: Arc<str>,
    pub out: SourceOutput,
    pub checkpoints: Arc<CheckpointStore>,
    pub service: Arc<MetadataService>,
    pub config: DockerApiConfig,
    pub once: bool,
}

struct Task {
    handle: JoinHandle<()>,
    stop: CancellationToken,
}

impl Drop for Task {
    /// A source that fails (and is restarted by its supervisor) must not leave its readers
    /// running beside the new ones: they stop, sending what they hold first.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Supervisor {
    shared: Arc<Shared>,
    include: Option<GlobSet>,
    exclude: GlobSet,
    remote: bool,
    tasks: HashMap<String, Task>,
    /// Lifecycle events to the sinks (`events = true`).
    events: Option<EventFanout>,
}

impl Supervisor {
    /// Enabled by its labels and selected by `include`/`exclude`.
    fn selected(&self, meta: &ContainerMeta) -> bool {
        if !meta.enabled() {
            return false;
        }
        let name = meta.name.as_deref().unwrap_or("");
        let hit = |s: &GlobSet| s.is_match(name) || s.is_match(&meta.id);
        !(self.include.as_ref().is_some_and(|s| !hit(s)) || hit(&self.exclude))
    }

    /// Selected, and its logs are this source's to stream.
    fn wants(&self, meta: &ContainerMeta) -> bool {
        if !self.selected(meta) {
            return false;
        }
        let driver = meta.log_driver.as_deref().unwrap_or("json-file");
        match self.shared.config.stream {
            StreamSelection::None => false,
            StreamSelection::All => driver != "none",
            StreamSelection::Auto if self.remote => driver != "none",
            StreamSelection::Auto => !NOT_STREAMED.contains(&driver),
        }
    }

    /// Streams the container unless its readers run already.
    fn spawn(&mut self, meta: Arc<ContainerMeta>) {
        if self.wants(&meta)
            && self
                .tasks
                .get(&meta.id)
                .is_none_or(|t| t.handle.is_finished())
        {
            self.launch(meta, None);
        }
    }

    /// The container (re)started: its readers may still run, on their way out after seeing
    /// it stopped, so the new ones start once those have ended.
    fn started(&mut self, meta: Arc<ContainerMeta>) {
        if !self.wants(&meta) {
            return;
        }
        let before = self
            .tasks
            .remove(&meta.id)
            .filter(|t| !t.handle.is_finished());
        self.launch(meta, before);
    }

    fn launch(&mut self, meta: Arc<ContainerMeta>, after: Option<Task>) {
        tracing::debug!(container = %meta.id, name = ?meta.name, driver = ?meta.log_driver, "streaming container logs through the API");
        let stop = CancellationToken::new();
        let span = tracing::info_span!("container", id = %meta.short_id());
        let (shared, m, st) = (self.shared.clone(), meta.clone(), stop.clone());
        let handle = tokio::spawn(
            async move {
                if let Some(mut before) = after {
                    tokio::select! {
                        _ = &mut before.handle => {}
                        _ = st.cancelled() => return, // dropping `before` stops it
                    }
                }
                per_sink::follow_container(shared, m, st).await
            }
            .instrument(span),
        );
        self.tasks.insert(meta.id.clone(), Task { handle, stop });
    }

    fn reconcile(&mut self) {
        for (meta, _running) in self.shared.service.snapshot() {
            self.spawn(meta);
        }
        self.tasks.retain(|_, t| !t.handle.is_finished());
    }

    async fn stop_all(&mut self) {
        for t in self.tasks.values() {
            t.stop.cancel();
        }
        for (_, mut t) in self.tasks.drain() {
            let _ = (&mut t.handle).await;
        }
    }

    async fn wait_all(&mut self) {
        for (_, mut t) in self.tasks.drain() {
            let _ = (&mut t.handle).await;
        }
    }

    async fn on_event(&mut self, ev: ContainerEvent, meta: Option<Arc<ContainerMeta>>) {
        let selected = meta.as_ref().is_none_or(|m| self.selected(m));
        if let Some(fan) = self.events.as_ref().filter(|_| selected) {
            if let Some(e) = lifecycle_event(&ev, meta.as_ref()) {
                fan.send(e);
            }
        }
        match ev.kind {
            EventKind::Start => {
                if let Some(m) = meta {
                    self.started(m);
                }
            }
            EventKind::Destroy => {
                if let Some(mut t) = self.tasks.remove(&ev.id) {
                    t.stop.cancel();
                    let _ = (&mut t.handle).await;
                }
                checkpoint::per_sink::remove_input(
                    &self.shared.checkpoints,
                    &self.shared.source,
                    &ev.id,
                );
            }
            _ => {}
        }
    }
}

/// A container lifecycle event as a log event (`events = true`).
fn lifecycle_event(ev: &ContainerEvent, meta: Option<&Arc<ContainerMeta>>) -> Option<Event> {
    let what = match ev.kind {
        EventKind::Start => "started".to_string(),
        EventKind::Die => match ev.exit_code {
            Some(c) => format!("died with exit code {c}"),
            None => "died".to_string(),
        },
        EventKind::Oom => "ran out of memory (OOM)".to_string(),
        EventKind::Kill => match &ev.signal {
            Some(s) => format!("was sent signal {s}"),
            None => "was killed".to_string(),
        },
        _ => return None,
    };
    let name = meta
        .and_then(|m| m.name.clone())
        .or_else(|| ev.name.clone())
        .unwrap_or_else(|| clean_str(&ev.id).chars().take(12).collect());
    let mut e = Event::new(
        ev.time_ns,
        Stream::Unknown,
        Bytes::from(format!("container {name} {what}")),
    );
    let mut fields = serde_json::Map::new();
    fields.insert("docker_event".into(), ev.kind.as_str().into());
    if let Some(c) = ev.exit_code {
        fields.insert("exit_code".into(), c.into());
    }
    if let Some(s) = &ev.signal {
        fields.insert("signal".into(), s.clone().into());
    }
    e.fields = Some(Box::new(fields));
    e.container = Some(meta.cloned().unwrap_or_else(|| {
        let peer = PeerContainer::new(
            Some(ev.id.as_bytes()),
            ev.name.as_deref().map(str::as_bytes),
        );
        Arc::new(peer.meta.unwrap_or_default())
    }));
    Some(e)
}

#[async_trait::async_trait]
impl Source for DockerApi {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        let opts = self.config.enrich_options();
        let service = MetadataService::shared(&opts)?;
        let remote = service.host().is_remote();
        let mut changes = service.subscribe();
        let shared = Arc::new(Shared {
            source: ctx.name.clone(),
            out: ctx.out.clone(),
            checkpoints: ctx.checkpoints.clone(),
            service: service.clone(),
            config: self.config.clone(),
            once: ctx.once,
        });
        let events_stop = CancellationToken::new();
        let _stop_events = events_stop.clone().drop_guard();
        let mut sup = Supervisor {
            events: self
                .config
                .events
                .then(|| EventFanout::new(&shared.out, events_stop.clone())),
            shared,
            include: self.include,
            exclude: self.exclude,
            remote,
            tasks: HashMap::new(),
        };
        if ctx.once {
            if !service.wait_ready(Duration::from_secs(30)).await {
                anyhow::bail!(
                    "the Docker daemon at {} is unavailable: {:?}",
                    service.host(),
                    service.state()
                );
            }
            sup.reconcile();
            sup.wait_all().await;
            if let Some(fan) = sup.events.take() {
                fan.close().await;
            }
            return Ok(());
        }
        if service.wait_ready(Duration::from_secs(5)).await {
            sup.reconcile();
        }
        let mut reap = tokio::time::interval(REAP_EVERY);
        loop {
            tokio::select! {
                _ = ctx.shutdown.wait() => break,
                _ = reap.tick() => sup.tasks.retain(|_, t| !t.handle.is_finished()),
                c = changes.recv() => match c {
                    Ok(MetaChange::Event(ev, meta)) => sup.on_event(ev, meta).await,
                    Ok(MetaChange::Resynced) => sup.reconcile(),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "fell behind the Docker events; re-reading every container");
                        sup.reconcile();
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
        sup.stop_all().await;
        // Lifecycle events already queued go out to the sinks that take them within a grace
        // period; what a sink without room still owes then is dropped (they have no
        // checkpoint to be read again from).
        if let Some(fan) = sup.events.take() {
            let _ = tokio::time::timeout(EVENTS_GRACE, fan.close()).await;
        }
        Ok(())
    }
}
