//! `type = "docker_json_file"`: tails Docker's json-file logs, `<root>/<id>/<id>-json.log`
//! and their rotated siblings, one reader task per container.
//!
//! How the pieces fit:
//! - [`discovery`] finds container directories (inotify + periodic rescan, id filters);
//! - [`reader`] is a container's async task; it runs [`tailer`] on the blocking pool, which
//!   holds the container's [`files`] (listed consistently by `listing`), follows rotation,
//!   and turns lines into events (`lines`, with [`parser`] and [`partial`]) gathered in a
//!   batch whose messages share one buffer (`batch`);
//! - [`acks`] turns batch acknowledgements into the container's checkpoint, a
//!   [`position::SavedPosition`] keyed `"<source>/<container id>"`, whose file is recognised
//!   again by its [`fingerprint`].

pub mod acks;
mod batch;
pub mod config;
pub mod discovery;
pub mod files;
pub mod fingerprint;
mod lines;
mod listing;
pub mod parser;
pub mod partial;
pub mod position;
pub mod reader;
pub mod tailer;

use super::{Source, SourceContext};
use crate::docker::{MetaHandle, MetadataService};
use acks::AckTracker;
pub use config::{DockerJsonFileConfig, ReadFrom};
use discovery::{Found, IdFilter, Watcher};
use position::SavedPosition;
use reader::{Reader, ReaderControl};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tailer::{ContainerTail, StartAt, StartParams, TailMetrics, TailSettings};
use tokio::task::JoinSet;

/// After a reader failed to start (e.g. permissions), wait this long before trying again.
const RETRY_FAILED_START: Duration = Duration::from_secs(30);

pub struct DockerJsonFile {
    config: DockerJsonFileConfig,
    filter: Arc<IdFilter>,
    settings: TailSettings,
}

impl DockerJsonFile {
    pub fn new(config: DockerJsonFileConfig) -> anyhow::Result<Self> {
        Ok(Self {
            filter: Arc::new(IdFilter::new(&config.include, &config.exclude)?),
            settings: TailSettings::from_config(&config),
            config,
        })
    }
}

#[async_trait::async_trait]
impl Source for DockerJsonFile {
    async fn run(self: Box<Self>, ctx: SourceContext) -> anyhow::Result<()> {
        // Enrichment: the shared metadata service of this Docker daemon (lines of containers it
        // does not know carry the id only; nothing waits for a daemon that is not there).
        let service = if self.config.enrich {
            Some(MetadataService::shared(&self.config.enrich_options())?)
        } else {
            None
        };
        Runner {
            service,
            metadata_wait: self.config.metadata_wait.0,
            multiline: self.config.docker.multiline.clone(),
            root: self.config.root.clone(),
            read_from: self.config.read_from,
            rescan_every: self.config.rescan_interval.0.max(Duration::from_millis(10)),
            filter: self.filter,
            settings: self.settings,
            watcher: Watcher::new(!ctx.once),
            readers: HashMap::new(),
            retry_after: HashMap::new(),
            tasks: JoinSet::new(),
            root_present: None,
            pruned: false,
            ctx,
        }
        .run()
        .await
    }
}

struct Running {
    control: ReaderControl,
    dir: PathBuf,
}

/// The source's main task: discovery, and one reader task per container.
struct Runner {
    /// Container metadata for enrichment (`enrich = true`).
    service: Option<Arc<MetadataService>>,
    /// How long a container's first lines wait for its metadata.
    metadata_wait: Duration,
    /// Multiline merging options.
    multiline: logwharf_config::docker::MultilineConfig,
    root: PathBuf,
    read_from: ReadFrom,
    rescan_every: Duration,
    filter: Arc<IdFilter>,
    settings: TailSettings,
    watcher: Watcher,
    readers: HashMap<String, Running>,
    /// Containers whose reader failed to start, and when to try again.
    retry_after: HashMap<String, Instant>,
    /// Reader tasks; each returns its container id and whether it started.
    tasks: JoinSet<(String, bool)>,
    /// Whether the root existed at the last look (`None`: not looked yet).
    root_present: Option<bool>,
    /// Checkpoints of vanished containers were dropped (at the first look at the root).
    pruned: bool,
    ctx: SourceContext,
}

impl Runner {
    async fn run(mut self) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(self.rescan_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut first = true;
        let mut rescan = true;
        loop {
            if rescan {
                self.rescan(first).await;
                first = false;
                rescan = false;
            }
            if self.ctx.once {
                break;
            }
            tokio::select! {
                _ = tick.tick() => rescan = true,
                ev = self.watcher.next() => {
                    let mut ev = ev;
                    while let Some(e) = ev {
                        rescan |= self.route(&e);
                        ev = self.watcher.try_next();
                    }
                }
                Some(done) = self.tasks.join_next() => self.reader_ended(done),
                _ = self.ctx.shutdown.wait() => break,
            }
        }
        while let Some(done) = self.tasks.join_next().await {
            self.reader_ended(done);
        }
        Ok(())
    }

    /// Starts readers for new containers and stops those whose directory is gone.
    async fn rescan(&mut self, first: bool) {
        let (root, filter) = (self.root.clone(), self.filter.clone());
        let known: HashSet<String> = self.readers.keys().cloned().collect();
        let scanned =
            tokio::task::spawn_blocking(move || discovery::scan(&root, &filter, &known)).await;
        let found = match scanned {
            Ok(Ok(Some(found))) => found,
            Ok(Ok(None)) => {
                if self.root_present != Some(false) {
                    tracing::warn!(
                        source = %self.ctx.name,
                        "Docker's container directory {} does not exist yet; watching for it",
                        self.root.display()
                    );
                }
                self.root_present = Some(false);
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(source = %self.ctx.name, root = %self.root.display(), error = %e, "cannot list Docker's container directory; will retry");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "container scan panicked");
                return;
            }
        };
        if self.root_present == Some(false) {
            tracing::info!(source = %self.ctx.name, root = %self.root.display(), "Docker's container directory appeared");
        }
        self.root_present = Some(true);
        let root = self.root.clone();
        let _ = self.watcher.watch(&root);
        if !self.pruned {
            self.pruned = true;
            self.prune_checkpoints();
        }

        let present: HashSet<&str> = found.iter().map(|f| f.id.as_str()).collect();
        let gone: Vec<String> = self
            .readers
            .keys()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(r) = self.readers.get(&id) {
                if !r.control.removed.load(std::sync::atomic::Ordering::Acquire) {
                    tracing::debug!(container = %id, "container directory removed");
                    r.control.mark_removed();
                    let dir = r.dir.clone();
                    self.watcher.forget(&dir);
                }
            }
        }
        let start_at = if first && self.read_from == ReadFrom::End {
            StartAt::End
        } else {
            StartAt::Beginning
        };
        let now = Instant::now();
        for f in found {
            let watched = self.watcher.watch(&f.dir);
            if f.live_name.is_some()
                && !self.readers.contains_key(&f.id)
                && self.retry_after.get(&f.id).is_none_or(|t| *t <= now)
            {
                self.spawn_reader(f, start_at, watched);
            }
        }
    }

    fn spawn_reader(&mut self, found: Found, start_at: StartAt, watched: bool) {
        let Found { id, dir, live_name } = found;
        let live_name = live_name.expect("only containers with a log are started");
        let control = ReaderControl::default();
        control
            .watched
            .store(watched, std::sync::atomic::Ordering::Relaxed);
        self.readers.insert(
            id.clone(),
            Running {
                control: control.clone(),
                dir: dir.clone(),
            },
        );
        let key = checkpoint_key(&self.ctx.name, &id);
        let saved = self
            .ctx
            .checkpoints
            .get(&key)
            .and_then(|v| SavedPosition::from_json(&v));
        let params = StartParams {
            metrics: TailMetrics::new(&self.ctx.name, &id),
            id: id.clone(),
            dir,
            live_name,
            settings: self.settings.clone(),
            saved,
            start_at,
        };
        let lag = metrics::gauge!(crate::metrics::CHECKPOINT_LAG_BYTES, "source" => self.ctx.name.to_string(), "container" => id.clone());
        let store = self.ctx.checkpoints.clone();
        let (out, shutdown, once) = (
            self.ctx.out.clone(),
            self.ctx.shutdown.clone(),
            self.ctx.once,
        );
        let meta = MetaHandle::new(self.service.clone(), &id);
        let metadata_wait = self.metadata_wait;
        let multiline = self.multiline.clone();
        self.tasks.spawn(async move {
            let started = tokio::task::spawn_blocking(move || ContainerTail::start(params)).await;
            let (tail, commit_now) = match started {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::warn!(container = %id, error = %e, "cannot open the container's log; will try again later");
                    return (id, false);
                }
                Err(e) => {
                    tracing::error!(container = %id, error = %e, "opening the container's log panicked");
                    return (id, false);
                }
            };
            let tracker = AckTracker::new(store, key, id.clone(), lag, tail.resume_point());
            if let Some(p) = commit_now {
                tracker.commit_now(p);
            }
            tracing::debug!(container = %id, "reading container log");
            Reader {
                tail,
                tracker,
                out,
                shutdown,
                once,
                control,
                meta,
                metadata_wait,
                multiline,
            }
            .run()
            .await;
            (id, true)
        });
    }

    fn reader_ended(&mut self, done: Result<(String, bool), tokio::task::JoinError>) {
        match done {
            Ok((id, started)) => {
                self.readers.remove(&id);
                if started {
                    self.retry_after.remove(&id);
                } else {
                    self.retry_after
                        .insert(id, Instant::now() + RETRY_FAILED_START);
                }
            }
            Err(e) => tracing::error!(error = %e, "container reader task failed"),
        }
    }

    /// Routes an inotify event: new data for a reader, or a change that needs a rescan.
    fn route(&mut self, ev: &notify::Event) -> bool {
        let mut rescan = false;
        for p in &ev.paths {
            let parent = p.parent();
            if p == &self.root || parent == Some(self.root.as_path()) {
                rescan = true; // a container directory came or went
            } else if let Some(dir) = parent.filter(|d| d.parent() == Some(self.root.as_path())) {
                match dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|id| self.readers.get(id))
                {
                    Some(r) => r.control.wake.notify_one(),
                    None => rescan = true, // maybe its first log file
                }
            }
        }
        rescan
    }

    /// Drops the checkpoints of containers whose directory is gone (never while the root
    /// itself is missing: that is more likely a mount problem than every container gone).
    fn prune_checkpoints(&self) {
        let prefix = format!("{}/", self.ctx.name);
        for (key, _) in self.ctx.checkpoints.with_prefix(&prefix) {
            let id = &key[prefix.len()..];
            if !is_container_dir(&self.root, id) {
                tracing::info!(container = %id, "dropping the checkpoint of a container that no longer exists");
                self.ctx.checkpoints.remove(&key);
            }
        }
    }
}

fn is_container_dir(root: &Path, id: &str) -> bool {
    !id.is_empty() && !id.contains('/') && root.join(id).is_dir()
}

/// The checkpoint store key of a container.
pub fn checkpoint_key(source: &str, container: &str) -> String {
    format!("{source}/{container}")
}

#[cfg(test)]
mod tests;
