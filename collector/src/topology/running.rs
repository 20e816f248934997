//! The running pipeline: starts every sink and source of a [`Config`] under its supervisor,
//! applies reloads ([`Topology::run_reloadable`]), and stops in order — sources, then the
//! sinks' drain, then the final checkpoints — within one `shutdown_timeout`.
//!
//! A reload ([`super::reload::Plan`]) leaves every unchanged component running untouched.
//! Added components start; a changed or removed sink gets no new batches and drains what it
//! holds (at most `shutdown_timeout`, then it is stopped and what it still held is read again
//! from the checkpoints); a source restarts when it or the set of sinks it feeds changed. A
//! restarting source is stopped first, then the reload waits (at most `shutdown_timeout`)
//! until every sink has settled the batches it sent, so that its next instance, which starts
//! from the checkpoints, sends no line twice to a sink that stayed. A config whose new
//! components fail to build changes nothing. A changed or removed sink with a disk buffer
//! stops reading it and drains only what it was given; the buffer is closed (its acked
//! position stored) before a new instance opens the same directory and reads on from there.

use super::reload::{fingerprint, prints, Outstanding, Plan};
use super::{first_then, open_disk_buffer, SinkTarget, SourceCounts, SourceOutput};
use crate::buffer::disk::{DiskBuffer, DiskWriter};
use crate::checkpoint::CheckpointStore;
use crate::filter::SinkFilter;
use crate::health::Health;
use crate::inflight::SupervisedInput;
use crate::shutdown::Shutdown;
use crate::sink::{Sink, SinkContext};
use crate::sources::{Source, SourceContext};
use crate::supervisor::{supervise_sink, supervise_source};
use crate::Config;
use anyhow::Context;
use globset::GlobMatcher;
use logwharf_config::BufferType;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

type SinkOuter = logwharf_config::SinkOuter<dyn crate::sink::SinkConfig>;
type SourceOuter = logwharf_config::SourceOuter<dyn crate::sources::SourceConfig>;

/// A running pipeline.
pub struct Topology;

impl Topology {
    /// Runs `config` until `shutdown` is triggered (or, with `once`, until every source has
    /// read everything present), then drains and writes the final checkpoints. Every source
    /// and sink is supervised (restarted after errors and panics) and reported in `health`.
    pub async fn run(
        config: &Config,
        once: bool,
        shutdown: Shutdown,
        health: Health,
    ) -> anyhow::Result<()> {
        Self::run_reloadable(config, once, shutdown, health, None).await
    }

    /// As [`Topology::run`]; each config received on `reloads` (already validated) is
    /// applied while the pipeline runs.
    pub async fn run_reloadable(
        config: &Config,
        once: bool,
        shutdown: Shutdown,
        health: Health,
        mut reloads: Option<mpsc::UnboundedReceiver<Config>>,
    ) -> anyhow::Result<()> {
        let store = Arc::new(
            CheckpointStore::open(&config.data_dir).context("opening the checkpoint store")?,
        );
        let mut pipeline = Pipeline {
            store: store.clone(),
            health: health.clone(),
            shutdown: shutdown.clone(),
            once,
            config: config.clone(),
            sinks: BTreeMap::new(),
            sources: BTreeMap::new(),
            retiring: Vec::new(),
            source_ended: Arc::new(tokio::sync::Notify::new()),
        };
        // Build everything before starting anything, so a bad component starts nothing.
        let built = pipeline
            .build(config, &all(&config.sinks), &all(&config.sources))
            .await?;
        pipeline.start(config, built).await;
        health.set_running();

        let flusher = tokio::spawn(
            store
                .clone()
                .run_flusher(config.checkpoint_interval.0, shutdown.clone()),
        );
        // Until the signal (or every source has finished: `--once` at the end of its input).
        // A source's end is told (not awaited), so that the same loop can take a reload that
        // replaces them; the tick is a safety net only.
        let ended = pipeline.source_ended.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = ended.notified() => if pipeline.all_sources_finished() {
                    break;
                },
                _ = tick.tick() => if pipeline.all_sources_finished() {
                    break;
                },
                new = recv(&mut reloads) => match new {
                    Some(new) => pipeline.reload(new).await,
                    None => reloads = None,
                },
            }
        }
        pipeline.stop().await;
        shutdown.trigger();
        let _ = flusher.await;
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.flush())
            .await
            .context("checkpoint writer")?
            .context("writing the final checkpoints")?;
        tracing::info!("stopped; checkpoints written");
        Ok(())
    }
}

async fn recv(r: &mut Option<mpsc::UnboundedReceiver<Config>>) -> Option<Config> {
    match r {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

fn all<T>(m: &BTreeMap<String, T>) -> Vec<String> {
    m.keys().cloned().collect()
}

struct RunningSink {
    fingerprint: String,
    /// Which source names its `inputs` match.
    matchers: Vec<GlobMatcher>,
    /// Its buffer's sending end; sources get clones.
    target: SinkTarget,
    task: JoinHandle<()>,
    /// Its disk buffer (`buffer.type = "disk"`), closed once the sink has ended.
    disk: Option<DiskBuffer>,
}

/// A sink's disk buffer at build time.
enum DiskPlan {
    Memory,
    Opened(Box<(DiskBuffer, DiskWriter)>),
    /// The running instance of the sink holds the buffer's directory: opened once it retired.
    AfterRetire,
}

struct RunningSource {
    fingerprint: String,
    /// Stops this source only (a child of the process's shutdown).
    stop: Shutdown,
    outstanding: Arc<Outstanding>,
    task: JoinHandle<()>,
    /// Its task has ended (set just before it tells `Pipeline::source_ended`).
    done: Arc<AtomicBool>,
}

/// A sink built, with its filter and its disk buffer.
type BuiltSink = (String, SinkContext, Box<dyn Sink>, SinkFilter, DiskPlan);

/// Components built for a start or a reload, not started yet.
struct Built {
    sinks: Vec<BuiltSink>,
    sources: Vec<(String, Box<dyn Source>)>,
}

struct Pipeline {
    store: Arc<CheckpointStore>,
    health: Health,
    shutdown: Shutdown,
    once: bool,
    /// The config the running components come from.
    config: Config,
    sinks: BTreeMap<String, RunningSink>,
    sources: BTreeMap<String, RunningSource>,
    /// Sinks a reload replaced or removed, draining (each bounded by its own deadline).
    retiring: Vec<JoinHandle<()>>,
    /// Poked whenever a source's task ends (`--once`: the run ends when all have).
    source_ended: Arc<tokio::sync::Notify>,
}

impl Pipeline {
    async fn build(
        &self,
        config: &Config,
        sinks: &[String],
        sources: &[String],
    ) -> anyhow::Result<Built> {
        let mut built = Built {
            sinks: Vec::new(),
            sources: Vec::new(),
        };
        for name in sinks {
            let sc = &config.sinks[name];
            let cx = SinkContext {
                name: name.as_str().into(),
                buffer: sc.buffer.clone(),
                data_dir: config.data_dir.clone(),
                dead_letter: sc.dead_letter.clone(),
                shutdown: self.shutdown.clone(),
            };
            let sink = sc
                .inner
                .build(cx.clone())
                .with_context(|| format!("building sink {name:?}"))?;
            let filter = SinkFilter::new(name.as_str().into(), &sc.filter)
                .with_context(|| format!("sinks.{name}.filter"))?;
            let disk = match sc.buffer.kind {
                BufferType::Memory => DiskPlan::Memory,
                _ if self.sinks.get(name).is_some_and(|s| s.disk.is_some()) => {
                    DiskPlan::AfterRetire
                }
                BufferType::Disk => {
                    let (b, w) = open_disk_buffer(&config.data_dir, name, &sc.buffer).await?;
                    DiskPlan::Opened(Box::new((b, w)))
                }
            };
            built.sinks.push((name.clone(), cx, sink, filter, disk));
        }
        for name in sources {
            let src = config.sources[name]
                .build()
                .with_context(|| format!("building source {name:?}"))?;
            built.sources.push((name.clone(), src));
        }
        Ok(built)
    }

    /// Starts what `built` holds: sinks first, so that the sources find them.
    async fn start(&mut self, config: &Config, built: Built) {
        for (name, cx, sink, filter, disk) in built.sinks {
            let sc = &config.sinks[&name];
            let disk = match disk {
                DiskPlan::Memory => None,
                DiskPlan::Opened(d) => Some(*d),
                DiskPlan::AfterRetire => {
                    match open_disk_buffer(&config.data_dir, &name, &sc.buffer).await {
                        Ok(d) => Some(d),
                        Err(e) => {
                            tracing::error!(sink = %name, error = %format!("{e:#}"), "reload: the disk buffer could not be opened again; the sink runs with a memory buffer until the next start");
                            None
                        }
                    }
                }
            };
            self.start_sink(&name, sc, cx, sink, filter, disk);
        }
        for (name, src) in built.sources {
            self.start_source(&name, &config.sources[&name], src);
        }
    }

    fn start_sink(
        &mut self,
        name: &str,
        sc: &SinkOuter,
        cx: SinkContext,
        sink: Box<dyn Sink>,
        filter: SinkFilter,
        disk: Option<(DiskBuffer, DiskWriter)>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let name: Arc<str> = name.into();
        let matchers = sc.inputs.iter().map(|i| input_matcher(i)).collect();
        let mut target = SinkTarget::new(name.clone(), tx.clone(), &sc.buffer).with_filter(filter);
        let disk = disk.map(|(mut buf, w)| {
            buf.start_reader(tx, self.shutdown.clone());
            target = target.clone().with_disk(w);
            buf
        });
        crate::status::global()
            .register_sink(&name, sc.type_name)
            .watch_buffer(target.buffer.probe());
        let component = self.health.register(&format!("sinks.{name}"));
        let input = SupervisedInput::new(name.clone(), rx, component.clone());
        let factory = first_then(sink, {
            let inner = sc.inner.clone();
            move || inner.build(cx.clone())
        });
        // Every log line of the sink's task (and of what it awaits) names the sink.
        let span = tracing::info_span!("sink", r#type = sc.type_name, name = %name);
        let task = tokio::spawn(supervise_sink(component, factory, input).instrument(span));
        self.sinks.insert(
            name.to_string(),
            RunningSink {
                fingerprint: fingerprint(sc),
                matchers,
                target,
                task,
                disk,
            },
        );
    }

    /// The sinks that read source `name` now, in name order.
    fn targets_for(&self, name: &str) -> Vec<&RunningSink> {
        self.sinks
            .values()
            .filter(|s| s.matchers.iter().any(|m| m.is_match(name)))
            .collect()
    }

    fn start_source(&mut self, name: &str, sc: &SourceOuter, src: Box<dyn Source>) {
        let mine = self.targets_for(name);
        if mine.is_empty() {
            tracing::warn!(source = %name, "no sink reads this source; its events are discarded");
        }
        let name: Arc<str> = name.into();
        crate::status::global().register_source(&name, sc.type_name);
        let outstanding = Arc::new(Outstanding::default());
        let out = SourceOutput {
            source: name.clone(),
            targets: mine.iter().map(|s| s.target.clone()).collect(),
            counts: Some(SourceCounts::new(&name)),
            flow: 0,
            outstanding: Some(outstanding.clone()),
        };
        let stop = self.shutdown.child();
        let context = {
            let (name, stop, store, once) =
                (name.clone(), stop.clone(), self.store.clone(), self.once);
            move || SourceContext {
                name: name.clone(),
                out: out.clone(),
                shutdown: stop.clone(),
                checkpoints: store.clone(),
                once,
            }
        };
        let factory = first_then(src, {
            let sc = sc.clone();
            move || sc.build()
        });
        let component = self.health.register(&format!("sources.{name}"));
        let span = tracing::info_span!("source", r#type = sc.type_name, name = %name);
        let (ended, done) = (self.source_ended.clone(), Arc::new(AtomicBool::new(false)));
        let supervised = supervise_source(component, factory, context, stop.clone());
        let task = tokio::spawn({
            let done = done.clone();
            async move {
                supervised.await;
                done.store(true, Ordering::Release);
                ended.notify_one();
            }
            .instrument(span)
        });
        self.sources.insert(
            name.to_string(),
            RunningSource {
                fingerprint: fingerprint(sc),
                stop,
                outstanding,
                task,
                done,
            },
        );
    }

    /// Every source's task has ended (`--once`: all read to the end).
    fn all_sources_finished(&self) -> bool {
        self.sources
            .values()
            .all(|s| s.done.load(Ordering::Acquire) || s.task.is_finished())
    }

    /// Applies `new` (see the module doc); a config whose new parts fail to build is refused
    /// and the running one goes on.
    async fn reload(&mut self, new: Config) {
        warn_restart_only(&self.config, &new);
        let old_sinks = prints(&self.sinks, |s| s.fingerprint.clone());
        let old_sources = prints(&self.sources, |s| s.fingerprint.clone());
        let new_sinks = prints(&new.sinks, fingerprint);
        let new_sources = prints(&new.sources, fingerprint);
        let plan = Plan::between(&old_sinks, &new_sinks, &old_sources, &new_sources);

        // Which unchanged sources feed a sink that is added, replaced or removed.
        let replaced: Vec<&String> = plan
            .sinks_added
            .iter()
            .chain(&plan.sinks_changed)
            .chain(&plan.sinks_removed)
            .collect();
        let reads = |sink: &str, source: &str, config: &Config| {
            config
                .sinks
                .get(sink)
                .is_some_and(|s| s.inputs.iter().any(|i| input_matcher(i).is_match(source)))
        };
        let retargeted: Vec<String> = plan
            .sources_unchanged
            .iter()
            .filter(|src| {
                replaced
                    .iter()
                    .any(|k| reads(k, src, &self.config) || reads(k, src, &new))
            })
            .cloned()
            .collect();
        if plan.is_empty() && retargeted.is_empty() {
            tracing::info!("reload: nothing changed");
            self.config = new;
            return;
        }
        let start_sinks: Vec<String> = plan
            .sinks_added
            .iter()
            .chain(&plan.sinks_changed)
            .cloned()
            .collect();
        let start_sources: Vec<String> = plan
            .sources_added
            .iter()
            .chain(&plan.sources_changed)
            .chain(&retargeted)
            .cloned()
            .collect();
        let built = match self.build(&new, &start_sinks, &start_sources).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "reload refused: the running configuration goes on unchanged");
                return;
            }
        };
        tracing::info!(
            sinks_added = ?plan.sinks_added, sinks_changed = ?plan.sinks_changed,
            sinks_removed = ?plan.sinks_removed, sources_added = ?plan.sources_added,
            sources_changed = ?plan.sources_changed, sources_removed = ?plan.sources_removed,
            sources_restarted = ?retargeted, "reloading"
        );
        let limit = new.shutdown_timeout.0;

        // Stop the sources that go or restart, then wait for what they sent to settle.
        let stopping: Vec<(String, RunningSource)> = plan
            .sources_changed
            .iter()
            .chain(&plan.sources_removed)
            .chain(&retargeted)
            .filter_map(|n| self.sources.remove(n).map(|s| (n.clone(), s)))
            .collect();
        for (_, s) in &stopping {
            s.stop.trigger();
        }
        let deadline = Instant::now() + limit;
        for (name, s) in stopping {
            let mut task = s.task;
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(source = %name, "reload: source did not stop within shutdown_timeout; aborting it");
                task.abort();
                let _ = task.await;
            }
            let left = s.outstanding.count();
            if left > 0 && !s.outstanding.settled(limit).await {
                tracing::warn!(source = %name, batches = s.outstanding.count(), "reload: the sinks did not settle this source's batches within shutdown_timeout; its new instance reads them again (a sink that delivers them late has them twice)");
            }
            if plan.sources_removed.contains(&name) {
                self.health.remove(&format!("sources.{name}"));
                crate::status::global().remove_source(&name);
            }
        }

        // Retire the sinks that go or are replaced: no new batches; they drain what they hold.
        for name in plan.sinks_changed.iter().chain(&plan.sinks_removed) {
            if let Some(s) = self.sinks.remove(name) {
                let removed = plan.sinks_removed.contains(name);
                if removed {
                    // Gone from /status now, while it drains (its health entry when done).
                    crate::status::global().remove_sink(name);
                }
                if s.disk.is_some() {
                    // Its directory must be free before the new instance opens it.
                    retire_disk(name, s, limit).await;
                    if removed {
                        self.health.remove(&format!("sinks.{name}"));
                    }
                } else {
                    self.retire(name, s, limit, removed);
                }
            }
        }
        self.start(&new, built).await;
        self.config = new;
        tracing::info!("reload done");
    }

    /// Drops the pipeline's end of `s`'s buffer; the sink finishes once its sources have let
    /// go too and it has drained, or is stopped at `limit`.
    fn retire(&mut self, name: &str, s: RunningSink, limit: Duration, removed: bool) {
        let RunningSink { target, task, .. } = s;
        drop(target);
        let (name, health) = (name.to_string(), self.health.clone());
        self.retiring.push(tokio::spawn(async move {
            let mut task = task;
            if tokio::time::timeout(limit, &mut task).await.is_err() {
                tracing::warn!(sink = %name, "reload: the old sink did not drain within shutdown_timeout; what it still holds is not checkpointed and will be read again");
                task.abort();
                let _ = task.await;
            }
            if removed {
                health.remove(&format!("sinks.{name}"));
            }
        }));
    }

    /// Stops sources, drains sinks: one deadline, `shutdown_timeout` from now.
    async fn stop(self) {
        let deadline = Instant::now() + self.config.shutdown_timeout.0;
        for (name, s) in self.sources {
            s.stop.trigger();
            let mut task = s.task;
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(source = %name, "source did not stop within shutdown_timeout; aborting it");
                task.abort();
                let _ = task.await;
            }
        }
        self.health.set_stopping();
        tracing::info!("sources stopped; draining sinks");
        // The sinks' channels close once every source (holding the senders) has stopped and
        // the pipeline's own ends are dropped.
        let mut disks = Vec::new();
        let tasks: Vec<(String, JoinHandle<()>)> = self
            .sinks
            .into_iter()
            .map(|(n, s)| {
                disks.extend(s.disk);
                (n, s.task)
            })
            .collect();
        for (name, mut t) in tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                tracing::warn!(sink = %name, "sink did not drain within shutdown_timeout; what it still holds is not checkpointed and will be re-read");
                t.abort();
                let _ = t.await;
            }
        }
        for t in self.retiring {
            let _ = t.await;
        }
        for d in disks {
            d.close().await;
        }
    }
}

/// Retires a sink with a disk buffer: it stops reading the buffer (what is left stays there
/// for its next instance), drains what it was given (at most `limit`), and the buffer is
/// closed with its acked position stored.
async fn retire_disk(name: &str, s: RunningSink, limit: Duration) {
    let RunningSink {
        target,
        mut task,
        disk,
        ..
    } = s;
    drop(target);
    let mut disk = disk.expect("a disk-buffered sink");
    disk.stop_reader();
    if tokio::time::timeout(limit, &mut task).await.is_err() {
        tracing::warn!(sink = %name, "reload: the old sink did not drain within shutdown_timeout; what it held stays in its disk buffer");
        task.abort();
        let _ = task.await;
    }
    disk.close().await;
}

/// A sink's `inputs` entry: a glob over source names (taken literally when it is not one).
fn input_matcher(input: &str) -> GlobMatcher {
    globset::Glob::new(input)
        .unwrap_or_else(|_| globset::Glob::new(&globset::escape(input)).unwrap())
        .compile_matcher()
}

/// Keys a reload cannot apply to a running process.
fn warn_restart_only(old: &Config, new: &Config) {
    let mut keys = Vec::new();
    if old.data_dir != new.data_dir {
        keys.push("data_dir");
    }
    if fingerprint(&old.api) != fingerprint(&new.api) {
        keys.push("api");
    }
    if old.checkpoint_interval != new.checkpoint_interval {
        keys.push("checkpoint_interval");
    }
    if !keys.is_empty() {
        tracing::warn!(
            ?keys,
            "reload: these keys take effect at the next start only"
        );
    }
}
