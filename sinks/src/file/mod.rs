//! `type = "file"`: events into local files named by a path template rendered per container
//! (`/var/log/logwharf/{{.Name}}.log`), as JSON events or Docker's json-file lines, with
//! Docker's rotation limits `max_size`, `max_file`, `compress` ([`rotation`]).
//!
//! Per job — a batch and the others waiting in the buffer, up to [`JOB_MAX_EVENTS`]: events
//! are grouped by their file ([`PathCache`] renders the template once per container, its
//! values confined under the template's directory) and each group is encoded into one buffer;
//! the groups are then written on the blocking pool by [`writer::OpenFiles`] (many events are
//! encoded there too, [`crate::util::offload`]), one `write` per file unless a rotation falls
//! inside the group. The job's batches are acknowledged only when every group is in its file.
//! A failed write is counted, logged with its path and retried with backoff from the byte where
//! it stopped (no torn or repeated lines); after the last retry the sink fails with the error,
//! and its supervisor restarts it with the batches (whose groups already written are then
//! written again: at-least-once).

pub mod config;
pub mod rotation;
pub mod writer;

use crate::encoding::Encoder;
use crate::util::confine::Confinement;
use crate::util::offload::POOL_MIN_EVENTS;
use crate::util::render::{PathTemplate, RenderCache};
use anyhow::Context;
pub use config::FileSinkConfig;
use logwharf_collector::backoff::Backoff;
use logwharf_collector::metrics as m;
use logwharf_collector::{AckToken, Batch, ContainerMeta, Sink, SinkBatch, SinkInput};
use logwharf_config::Template;
use rotation::RotationPolicy;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use writer::{LineEnd, OpenFiles, Pending};

/// How often a failed write is retried, and how long to wait in between.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The waits between attempts: the one shared backoff policy, bounded by this policy.
    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.initial_backoff, self.max_backoff)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The path of each container's file: the path template rendered once per container through
/// the shared [`RenderCache`], each value confined to one path segment under the template's
/// static prefix ([`PathTemplate`]; values with `/`, `..`, NUL or control characters are
/// changed, counted and logged).
pub struct PathCache {
    template: PathTemplate,
    cache: RenderCache<Arc<Path>>,
    confinement: Confinement,
}

impl PathCache {
    pub fn new(sink: &str, template: Template) -> PathCache {
        PathCache {
            template: PathTemplate { template },
            cache: RenderCache::default(),
            confinement: Confinement::new(sink),
        }
    }

    pub fn resolve(&mut self, container: Option<&Arc<ContainerMeta>>) -> Arc<Path> {
        // A static path is the same for everyone.
        let container = container.filter(|_| !self.template.template.is_static());
        let (t, conf) = (&self.template, &self.confinement);
        self.cache.get(container, |m| t.render(m, conf))
    }
}

pub struct FileSink {
    name: Arc<str>,
    /// Away only while a pool job encodes a batch.
    encoder: Option<Box<FileEncoder>>,
    policy: RotationPolicy,
    max_open_files: usize,
    idle_timeout: Duration,
    retry: RetryPolicy,
}

/// What encodes a batch into one group per file.
struct FileEncoder {
    encoder: Encoder,
    paths: PathCache,
    /// Buffers of earlier batches, reused.
    spare: Vec<Vec<u8>>,
}

/// What a pool job does: encode (many events) and write, or write the groups encoded.
enum Work {
    Encode(Vec<Arc<Batch>>),
    Write(Vec<Pending>),
}

/// The most events one pool job encodes and writes: what waits in the sink's buffer is taken
/// together, up to this (one hand-off to the pool and back per job, not per batch). Not more:
/// the job's buffer (≈ 1.3 MB of JSON here) should stay in the cache until it is written —
/// with 8,192, one core spent 15 % more CPU per GB.
const JOB_MAX_EVENTS: usize = 4096;

impl FileEncoder {
    /// Encodes `batches` into one [`Pending`] group per destination file.
    fn encode(&mut self, batches: &[Arc<Batch>]) -> Vec<Pending> {
        let mut groups: Vec<Pending> = Vec::new();
        // Consecutive events of the same container (the usual case) skip the lookup.
        let mut last: Option<(*const ContainerMeta, usize)> = None;
        for (batch, event) in batches
            .iter()
            .flat_map(|b| b.events.iter().map(move |e| (b, e)))
        {
            let key = event
                .container
                .as_ref()
                .map_or(std::ptr::null(), Arc::as_ptr);
            let gi = match last {
                Some((k, gi)) if k == key => gi,
                _ => {
                    let path = self.paths.resolve(event.container.as_ref());
                    let gi = match groups.iter().position(|g| g.path == path) {
                        Some(gi) => gi,
                        None => {
                            let mut buf = self.spare.pop().unwrap_or_default();
                            buf.clear();
                            groups.push(Pending::new(path, buf));
                            groups.len() - 1
                        }
                    };
                    last = Some((key, gi));
                    gi
                }
            };
            let g = &mut groups[gi];
            self.encoder.encode_line(&batch.source, event, &mut g.buf);
            g.lines.push(LineEnd {
                end: g.buf.len(),
                time_ns: event.time_ns,
            });
        }
        groups
    }
}

impl FileSink {
    pub fn new(name: &str, config: &FileSinkConfig) -> FileSink {
        FileSink {
            name: name.into(),
            encoder: Some(Box::new(FileEncoder {
                encoder: Encoder::new(config.encoding),
                paths: PathCache::new(name, config.path.clone()),
                spare: Vec::new(),
            })),
            policy: RotationPolicy {
                max_size: config.max_size.map(|s| s.0),
                max_file: config.max_file,
                compress: config.compress,
            },
            max_open_files: config.max_open_files,
            idle_timeout: config.idle_timeout.0,
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> FileSink {
        self.retry = retry;
        self
    }

    fn encoder(&mut self) -> &mut FileEncoder {
        self.encoder
            .as_mut()
            .expect("the encoder is back after each write")
    }

    /// Encodes and writes `batches`, retrying failures; an error once the retries are spent.
    /// Many events are encoded in the pool job that writes them, beside the reading that feeds
    /// the sink (why: [`crate::util::offload`]); a few here.
    async fn deliver(
        &mut self,
        files: &mut Option<OpenFiles>,
        batches: Vec<Arc<Batch>>,
    ) -> anyhow::Result<()> {
        let mut backoff = self.retry.backoff();
        let mut attempt = 0;
        let events: usize = batches.iter().map(|b| b.len()).sum();
        let mut work = if events >= POOL_MIN_EVENTS {
            Work::Encode(batches)
        } else {
            Work::Write(self.encoder().encode(&batches))
        };
        let groups = loop {
            let mut set = files
                .take()
                .expect("the open files are back after each write");
            let mut encoder = self
                .encoder
                .take()
                .expect("the encoder is back after each write");
            let (set, back, groups, errors) = tokio::task::spawn_blocking(move || {
                let mut groups = match work {
                    Work::Encode(batches) => encoder.encode(&batches),
                    Work::Write(groups) => groups,
                };
                let mut errors = Vec::new();
                for g in groups.iter_mut() {
                    if let Err(e) = set.write(g) {
                        errors.push(e);
                    }
                }
                (set, encoder, groups, errors)
            })
            .await
            .context("file writer task")?;
            *files = Some(set);
            self.encoder = Some(back);
            if errors.is_empty() {
                break groups;
            }
            work = Work::Write(groups);
            for e in &errors {
                metrics::counter!(m::SINK_ERRORS, "sink" => self.name.to_string(), "kind" => e.kind)
                    .increment(1);
            }
            let first = &errors[0];
            if attempt >= self.retry.retries {
                // The sink fails: its supervisor restarts it with this batch (and logs why).
                anyhow::bail!(
                    "writing {}: {first} ({} file(s) failed, {} attempts)",
                    first.path.display(),
                    errors.len(),
                    attempt + 1
                );
            }
            let delay = backoff.next_delay();
            tracing::warn!(sink = %self.name, path = %first.path.display(), error = %first, failed_files = errors.len(), retry_in = ?delay, "file write failed; retrying");
            metrics::counter!(m::SINK_RETRIES, "sink" => self.name.to_string()).increment(1);
            logwharf_collector::status::global()
                .sink(&self.name)
                .retrying(&format!("writing {}: {first}", first.path.display()));
            tokio::time::sleep(delay).await;
            attempt += 1;
        };
        let bytes: usize = groups.iter().map(|g| g.buf.len()).sum();
        metrics::counter!(m::SINK_EVENTS, "sink" => self.name.to_string()).increment(events as u64);
        metrics::counter!(m::SINK_BYTES, "sink" => self.name.to_string()).increment(bytes as u64);
        let spare = &mut self.encoder().spare;
        for g in groups {
            if spare.len() < 16 && g.buf.capacity() <= 4 << 20 {
                spare.push(g.buf);
            }
        }
        Ok(())
    }

    /// Delivers `first` and what else waits in the buffer now (up to [`JOB_MAX_EVENTS`]).
    async fn handle(
        &mut self,
        files: &mut Option<OpenFiles>,
        input: &mut SinkInput,
        first: SinkBatch,
    ) -> anyhow::Result<()> {
        let mut events = first.batch.len();
        let (mut batches, mut acks) = (Vec::new(), Vec::new());
        let mut next = Some(first);
        while let Some(sb) = next.take() {
            let (batch, ack) = sb.into_parts();
            batches.push(batch);
            acks.push(ack);
            if events < JOB_MAX_EVENTS {
                next = input.try_recv();
                events += next.as_ref().map_or(0, |sb| sb.batch.len());
            }
        }
        self.deliver(files, batches).await?;
        acks.into_iter().for_each(AckToken::delivered);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    async fn run(mut self: Box<Self>, mut input: SinkInput) -> anyhow::Result<()> {
        let mut files = Some(OpenFiles::new(
            self.name.clone(),
            self.policy,
            self.max_open_files,
            tokio::runtime::Handle::current(),
        ));
        let mut idle =
            tokio::time::interval((self.idle_timeout / 2).max(Duration::from_millis(10)));
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                sb = input.recv() => match sb {
                    Some(sb) => self.handle(&mut files, &mut input, sb).await?,
                    None => break,
                },
                _ = idle.tick() => {
                    if let Some(f) = files.as_mut() {
                        f.close_idle(self.idle_timeout);
                    }
                }
            }
        }
        if let Some(mut f) = files.take() {
            tokio::task::spawn_blocking(move || f.finish())
                .await
                .context("file writer task")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
