//! `type = "file"`: events into local files named by a path template rendered per container
//! (`/var/log/logwharf/{{.Name}}.log`), as JSON events or Docker's json-file lines, with
//! Docker's rotation limits `max_size`, `max_file`, `compress` ([`rotation`]).
//!
//! Per batch: events are grouped by their file ([`PathCache`] renders the template once per
//! container, its values confined under the template's directory) and each group is encoded into one buffer; the groups are then written on the
//! blocking pool by [`writer::OpenFiles`], one `write` per file unless a rotation falls inside
//! the group. The batch is acknowledged only when every group is in its file. A failed write is
//! counted, logged with its path and retried with backoff from the byte where it stopped (no
//! torn or repeated lines); after the last retry the sink fails with the error, and its
//! supervisor restarts it with the batch (whose groups already written are then written again:
//! at-least-once).

pub mod config;
pub mod rotation;
pub mod writer;

use crate::encoding::Encoder;
use crate::util::confine::Confinement;
use crate::util::render::{PathTemplate, RenderCache};
use anyhow::Context;
pub use config::FileSinkConfig;
use logwharf_collector::backoff::Backoff;
use logwharf_collector::metrics as m;
use logwharf_collector::{Batch, ContainerMeta, Sink, SinkBatch, SinkInput};
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
    encoder: Encoder,
    paths: PathCache,
    policy: RotationPolicy,
    max_open_files: usize,
    idle_timeout: Duration,
    retry: RetryPolicy,
    /// Buffers of earlier batches, reused.
    spare: Vec<Vec<u8>>,
}

impl FileSink {
    pub fn new(name: &str, config: &FileSinkConfig) -> FileSink {
        FileSink {
            name: name.into(),
            encoder: Encoder::new(config.encoding),
            paths: PathCache::new(name, config.path.clone()),
            policy: RotationPolicy {
                max_size: config.max_size.map(|s| s.0),
                max_file: config.max_file,
                compress: config.compress,
            },
            max_open_files: config.max_open_files,
            idle_timeout: config.idle_timeout.0,
            retry: RetryPolicy::default(),
            spare: Vec::new(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> FileSink {
        self.retry = retry;
        self
    }

    /// Encodes `batch` into one [`Pending`] group per destination file.
    fn encode(&mut self, batch: &Batch) -> Vec<Pending> {
        let mut groups: Vec<Pending> = Vec::new();
        // Consecutive events of the same container (the usual case) skip the lookup.
        let mut last: Option<(*const ContainerMeta, usize)> = None;
        for event in &batch.events {
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

    /// Writes one batch, retrying failures; an error once the retries are spent.
    async fn deliver(
        &mut self,
        files: &mut Option<OpenFiles>,
        batch: &Batch,
        mut groups: Vec<Pending>,
    ) -> anyhow::Result<()> {
        let mut backoff = self.retry.backoff();
        let mut attempt = 0;
        loop {
            let mut set = files
                .take()
                .expect("the open files are back after each write");
            let (set, back, errors) = tokio::task::spawn_blocking(move || {
                let mut errors = Vec::new();
                for g in groups.iter_mut() {
                    if let Err(e) = set.write(g) {
                        errors.push(e);
                    }
                }
                (set, groups, errors)
            })
            .await
            .context("file writer task")?;
            *files = Some(set);
            groups = back;
            if errors.is_empty() {
                break;
            }
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
        }
        let bytes: usize = groups.iter().map(|g| g.buf.len()).sum();
        metrics::counter!(m::SINK_EVENTS, "sink" => self.name.to_string())
            .increment(batch.len() as u64);
        metrics::counter!(m::SINK_BYTES, "sink" => self.name.to_string()).increment(bytes as u64);
        for g in groups {
            if self.spare.len() < 16 && g.buf.capacity() <= 4 << 20 {
                self.spare.push(g.buf);
            }
        }
        Ok(())
    }

    async fn handle(&mut self, files: &mut Option<OpenFiles>, sb: SinkBatch) -> anyhow::Result<()> {
        let (batch, ack) = sb.into_parts();
        let groups = self.encode(&batch);
        self.deliver(files, &batch, groups).await?;
        ack.delivered();
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
                    Some(sb) => self.handle(&mut files, sb).await?,
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
