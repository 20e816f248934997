//! `type = "docker_json_file"`: tails Docker's json-file logs, `<root>/<id>/<id>-json.log`
//! and their rotated siblings, one reader task per container *and sink*.
//!
//! Sinks progress independently. Docker's files are the buffer, so rather than reading a
//! container once and making every sink wait for the slowest, every sink that reads the
//! source gets its own reader of the container's files (sharing the page cache: a second
//! reader of fresh data costs parsing, not disk), its own position and its own checkpoint. A
//! sink that is down stops only its reader, which resumes from its own position when the sink
//! comes back, after a restart too. What Docker rotates and deletes meanwhile is kept by the
//! container's [`hold`], which opens every file as it appears and lets go once every sink's
//! checkpoint is past it (bounded by `hold_max_bytes`).
//!
//! How the pieces fit:
//! - [`discovery`] finds container directories (inotify + periodic rescan, id filters);
//! - [`reader`] is one (container, sink) async task; it runs [`tailer`] on the shared
//!   blocking pool ([`crate::tail::blocking`]), which holds the container's files
//!   ([`crate::tail::file::OpenFile`], listed consistently by `listing`), follows rotation,
//!   and turns lines into events (`lines`, with [`parser`] and [`partial`]) gathered in a
//!   batch whose messages share one buffer (`batch`);
//! - [`acks`] turns batch acknowledgements into that sink's checkpoint, a
//!   [`position::SavedPosition`] keyed `"<source>/<container id>/<sink>"`, whose file is
//!   recognised again by its [`crate::tail::fingerprint`]. A checkpoint of an older version,
//!   keyed `"<source>/<container id>"` (one position for every sink), becomes every sink's
//!   starting position on upgrade.
//!
//! The file machinery that is not particular to json-file logs (the blocking pool,
//! fingerprints, sibling listing, open files) lives in [`crate::tail`], shared with the
//! `docker_daemon` source's file mode; the hold, loss accounting, partial lines, parser,
//! positions and rotation limits are this source's own.

pub mod acks;
mod batch;
pub mod config;
mod container;
pub mod discovery;
pub mod group;
pub mod hold;
mod lines;
mod listing;
pub mod loss;
pub mod parser;
pub mod partial;
pub mod position;
pub mod rate_limit;
pub mod reader;
pub mod rotation;
pub mod tailer;
pub mod watch;

use super::{Source, SourceContext};
use crate::checkpoint::{per_sink, CheckpointStore};
use crate::docker::MetadataService;
use crate::tail::blocking;
use acks::AckTracker;
pub use config::{DockerJsonFileConfig, ReadFrom};
use discovery::{Found, IdFilter};
use hold::{Hold, HoldBudget};
use position::SavedPosition;
use reader::ReaderControl;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tailer::{StartAt, TailSettings};
use tokio::task::JoinSet;
use tracing::Instrument;
use watch::{Change, Watcher};

/// After a reader failed to start (e.g. permissions), wait this long before trying again.
const RETRY_FAILED_START: Duration = Duration::from_secs(30);
/// How often a container's hold looks at its directory without being woken by inotify: often
/// enough to open a rotated file before Docker deletes it (`max-file=2` at full speed rotates
/// several times a second).
const HOLD_POLL: Duration = Duration::from_millis(50);
/// Where inotify watches the directory (every rename wakes the hold at once, and a lost event
/// wakes every hold: see [`Runner::route`]) the poll is only a safety net, and a cheap one (a
/// stat of the live file) — so that 1,000 containers do not cost 20,000 looks a second.
/// Writes do not wake the hold: the readers tell `/status` the live file's size.
const HOLD_POLL_WATCHED: Duration = Duration::from_secs(60);
/// Batches read and not yet handed to the sinks, per source: twice the readers that run at
/// once (one being read while the other is handed on), whatever the number of containers.
fn inflight_batches() -> usize {
    2 * blocking::slots()
}
/// Where inotify watches the root, the periodic rescan (`rescan_interval`) is a safety net
/// only: at least this far apart.
const RESCAN_WATCHED: Duration = Duration::from_secs(30);
/// How often at most the sinks' checkpoints are re-written with what the hold saw.
const RESTAMP: Duration = Duration::from_millis(100);

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
            budget: HoldBudget::new(&ctx.name, self.config.hold_max_bytes.0),
            service,
            metadata_wait: self.config.metadata_wait.0,
            window: self.config.batch_window.0,
            multiline: self.config.docker.multiline.clone(),
            rate_limit: self.config.rate_limit.map(|r| r.0),
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
            root_watched: false,
            inflight: Arc::new(tokio::sync::Semaphore::new(inflight_batches())),
            pruned: false,
            ctx,
        }
        .run()
        .await
    }
}

struct Running {
    /// One per sink's reader (they share `removed` and `watched`).
    controls: Vec<ReaderControl>,
    /// Wakes the container's hold.
    hold_wake: Arc<tokio::sync::Notify>,
    dir: PathBuf,
}

impl Running {
    /// The container's log was written: its readers read on.
    fn wake_readers(&self) {
        for c in &self.controls {
            c.wake.notify_one();
        }
    }

    /// Its files changed (a rotation) or events were lost: the hold looks too.
    fn wake(&self) {
        self.hold_wake.notify_one();
        self.controls.iter().for_each(ReaderControl::names_changed);
    }
}

/// The source's main task: discovery, and one reader task per container.
struct Runner {
    /// The source's `hold_max_bytes`, shared by the containers' holds.
    budget: Arc<HoldBudget>,
    /// Container metadata for enrichment (`enrich = true`).
    service: Option<Arc<MetadataService>>,
    /// How long a container's first lines wait for its metadata.
    metadata_wait: Duration,
    /// `batch_window`: after inotify events, read the next ones this much later, so that the
    /// writes of that time (of every container) wake their readers together, once.
    window: Duration,
    /// Multiline merging options.
    multiline: logwharf_config::docker::MultilineConfig,
    /// The source's `rate_limit` (bytes per second per container).
    rate_limit: Option<u64>,
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
    /// inotify watches the root (the periodic rescan is then a safety net only).
    root_watched: bool,
    /// Batches read and not yet handed on, for all the source's containers together.
    inflight: Arc<tokio::sync::Semaphore>,
    /// Checkpoints of vanished containers were dropped (at the first look at the root).
    pruned: bool,
    ctx: SourceContext,
}

impl Runner {
    async fn run(mut self) -> anyhow::Result<()> {
        let mut first = true;
        let mut rescan = true;
        let mut next_rescan = tokio::time::Instant::now();
        let mut changes = Vec::new();
        // After writes were read, the next ones wait for the batching window.
        let mut writes_from = tokio::time::Instant::now();
        loop {
            if rescan {
                let settled = self.rescan(first).await;
                first = false;
                rescan = false;
                let every = if settled && self.root_watched {
                    self.rescan_every.max(RESCAN_WATCHED)
                } else {
                    self.rescan_every
                };
                next_rescan = tokio::time::Instant::now() + every;
            }
            if self.ctx.once {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next_rescan) => rescan = true,
                queue = self.watcher.next(&mut changes, writes_from) => {
                    for c in changes.drain(..) {
                        rescan |= self.route(&c);
                    }
                    if queue == watch::Queue::Writes {
                        writes_from = tokio::time::Instant::now() + self.window;
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

    /// Starts readers for new containers and stops those whose directory is gone. Whether it
    /// settled: no directory was newly watched before its log appeared (the log may have come
    /// between the look and the watch, so the next rescan should not be long).
    async fn rescan(&mut self, first: bool) -> bool {
        let (root, filter) = (self.root.clone(), self.filter.clone());
        let known: HashSet<String> = self.readers.keys().cloned().collect();
        let scanned = blocking::run(move || discovery::scan(&root, &filter, &known)).await;
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
                self.root_watched = false;
                return false;
            }
            Ok(Err(e)) => {
                tracing::warn!(source = %self.ctx.name, root = %self.root.display(), error = %e, "cannot list Docker's container directory; will retry");
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "container scan panicked");
                return false;
            }
        };
        if self.root_present == Some(false) {
            tracing::info!(source = %self.ctx.name, root = %self.root.display(), "Docker's container directory appeared");
        }
        self.root_present = Some(true);
        let root = self.root.clone();
        self.root_watched = self.watcher.watch_root(&root);
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
                if !r.controls[0]
                    .removed
                    .load(std::sync::atomic::Ordering::Acquire)
                {
                    tracing::debug!(container = %id, "container directory removed");
                    r.controls.iter().for_each(ReaderControl::mark_removed);
                    r.hold_wake.notify_one();
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
        let mut settled = true;
        for f in found {
            let new = !self.watcher.watches(&f.dir);
            let watched = self.watcher.watch_container(&f.dir, &f.id);
            if new && f.live_name.is_none() && !self.readers.contains_key(&f.id) {
                settled = false;
            }
            if f.live_name.is_some()
                && !self.readers.contains_key(&f.id)
                && self.retry_after.get(&f.id).is_none_or(|t| *t <= now)
            {
                self.spawn_reader(f, start_at, watched);
            }
        }
        settled
    }

    fn spawn_reader(&mut self, found: Found, start_at: StartAt, watched: bool) {
        let Found { id, dir, live_name } = found;
        let live_name = live_name.expect("only containers with a log are started");
        let sinks = self.ctx.out.sinks();
        let store = self.ctx.checkpoints.clone();
        migrate_checkpoint(&store, &self.ctx.name, &id, &sinks);
        let first = ReaderControl::default();
        first
            .watched
            .store(watched, std::sync::atomic::Ordering::Relaxed);
        // Without any sink, one reader still follows the files (and discards).
        let views: Vec<Option<usize>> = if sinks.is_empty() {
            vec![None]
        } else {
            (0..sinks.len()).map(Some).collect()
        };
        let controls: Vec<ReaderControl> = views
            .iter()
            .enumerate()
            .map(|(i, _)| {
                if i == 0 {
                    first.clone()
                } else {
                    first.sibling()
                }
            })
            .collect();
        // With several sinks, the container's shared reader has a control of its own.
        let group_control = first.sibling();
        let mut all_controls = controls.clone();
        if views.len() > 1 {
            all_controls.push(group_control.clone());
        }
        let hold_wake = Arc::new(tokio::sync::Notify::new());
        self.readers.insert(
            id.clone(),
            Running {
                controls: all_controls,
                hold_wake: hold_wake.clone(),
                dir: dir.clone(),
            },
        );
        let limits = rotation::RotationLimits::read(&dir);
        let stats = crate::status::global().container(
            &self.ctx.name,
            &id,
            limits.max_size,
            limits.max_file,
        );
        let hold = Hold::new(
            &id,
            dir.clone(),
            &live_name,
            sinks.len(),
            self.budget.clone(),
        );
        let mut parts = Vec::new();
        for (view, control) in views.into_iter().zip(controls) {
            let (sink, out) = match view {
                Some(i) => (sinks[i].clone(), self.ctx.out.only(i)),
                None => (Arc::<str>::from(""), self.ctx.out.clone()),
            };
            let key = match view {
                Some(_) => sink_checkpoint_key(&self.ctx.name, &id, &sink),
                None => checkpoint_key(&self.ctx.name, &id),
            };
            parts.push(container::SinkPart {
                saved: store.get(&key).and_then(|v| SavedPosition::from_json(&v)),
                lag: metrics::gauge!(crate::metrics::CHECKPOINT_LAG_BYTES, "source" => self.ctx.name.to_string(), "container" => id.clone(), "sink" => sink.to_string()),
                position: view.map(|_| stats.sink(&sink)),
                sink: view.map(|i| (i, sink)),
                key,
                out,
                control,
            });
        }
        let common = container::Common {
            source: self.ctx.name.clone(),
            id: id.clone(),
            dir,
            live_name,
            settings: self.settings.clone(),
            hold,
            hold_wake,
            service: self.service.clone(),
            store,
            stats,
            shutdown: self.ctx.shutdown.clone(),
            once: self.ctx.once,
            metadata_wait: self.metadata_wait,
            multiline: self.multiline.clone(),
            rate_limit: self.rate_limit,
            start_at,
            watched: first.watched.clone(),
            inflight: self.inflight.clone(),
        };
        // A child of the source's span: every log line of this container's readers names it.
        let span = tracing::info_span!("container", id = %&id[..id.floor_char_boundary(12)]);
        self.tasks.spawn(
            async move { (id, container::run(common, parts, group_control).await) }
                .instrument(span),
        );
    }

    fn reader_ended(&mut self, done: Result<(String, bool), tokio::task::JoinError>) {
        match done {
            Ok((id, started)) => {
                self.readers.remove(&id);
                crate::status::global().remove_container(&self.ctx.name, &id);
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

    /// Routes an inotify change: new data for a container's readers, a rotation for its
    /// readers and hold, or a change that needs a rescan (whether it does). Events lost (the
    /// kernel's queue overflowed, or inotify failed) wake every reader and hold, which then
    /// look for themselves: their polls are slow where inotify watches.
    fn route(&mut self, change: &Change) -> bool {
        match change {
            Change::Lost => {
                self.readers.values().for_each(Running::wake);
                true
            }
            Change::Root => true,
            Change::Written(id) => match self.readers.get(&**id) {
                Some(r) => {
                    r.wake_readers();
                    false
                }
                // Its reader failed to start: retried on its own schedule, not per write.
                None => !self.retry_after.contains_key(&**id),
            },
            Change::Files(id) => match self.readers.get(&**id) {
                Some(r) => {
                    r.wake();
                    false
                }
                None => true, // maybe its first log file
            },
        }
    }

    /// Drops the checkpoints of containers whose directory is gone (never while the root
    /// itself is missing: that is more likely a mount problem than every container gone).
    fn prune_checkpoints(&self) {
        let prefix = format!("{}/", self.ctx.name);
        for (key, _) in self.ctx.checkpoints.with_prefix(&prefix) {
            let rest = &key[prefix.len()..];
            let id = rest.split_once('/').map_or(rest, |(id, _sink)| id);
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

/// The checkpoint store key of a container as versions before per-sink positions wrote it
/// (still used when no sink reads the source).
pub fn checkpoint_key(source: &str, container: &str) -> String {
    per_sink::input_key(source, container)
}

/// The checkpoint store key of one sink's position in a container.
pub fn sink_checkpoint_key(source: &str, container: &str, sink: &str) -> String {
    per_sink::sink_key(source, container, sink)
}

/// Upgrade: a container's checkpoint from before per-sink positions (every sink had delivered
/// up to it) becomes the position of every sink that has none of its own yet.
fn migrate_checkpoint(store: &CheckpointStore, source: &str, id: &str, sinks: &[Arc<str>]) {
    per_sink::carry_over(store, source, id, sinks);
}

/// Keeps a container's hold looking at its directory: woken by inotify when names change, or
/// every [`HOLD_POLL`] where inotify does not watch (where it does, every
/// [`HOLD_POLL_WATCHED`] as a safety net);
/// each sink's checkpoint learns what it saw. Runs until dropped (when the container's
/// readers are done) or shutdown.
pub(super) async fn hold_loop(
    hold: Arc<Hold>,
    wake: Arc<tokio::sync::Notify>,
    watched: Arc<std::sync::atomic::AtomicBool>,
    shutdown: crate::shutdown::Shutdown,
    trackers: Vec<Arc<AckTracker>>,
    stats: Arc<crate::status::ContainerStats>,
) {
    let mut warned = false;
    let mut stale = false;
    let mut stamped = Instant::now();
    let watched = || watched.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let poll = match (watched(), stale) {
            // What it saw is not in the checkpoints yet: look again when they may be rewritten.
            (_, true) => RESTAMP.saturating_sub(stamped.elapsed()),
            (true, false) => HOLD_POLL_WATCHED,
            (false, false) => HOLD_POLL,
        };
        tokio::select! {
            // Woken by a name change (not by writes): list the directory now.
            _ = wake.notified() => hold.look_again(),
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.wait() => return,
        }
        let h = hold.clone();
        let every = if watched() {
            Duration::MAX
        } else {
            hold::FULL_LOOK
        };
        match blocking::look(move || h.refresh_listing_every(every)).await {
            Ok(Ok(changed)) => {
                warned = false;
                if changed {
                    if let Some((ino, size)) = hold.live() {
                        stats.observe_live(ino, size); // the write rate, for /status
                    }
                }
                // A write changes the live file's size: re-written at most every RESTAMP.
                stale |= changed;
                if stale && stamped.elapsed() >= RESTAMP {
                    trackers.iter().for_each(|t| t.restamp());
                    (stale, stamped) = (false, Instant::now());
                }
            }
            Ok(Err(e)) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "cannot look at the container's log files to hold them; will retry");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
