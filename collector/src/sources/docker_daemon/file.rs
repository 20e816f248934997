//! The daemon's log from a file (`dockerd … 2>>/var/log/docker.log`, rotated by logrotate):
//! the async half, which runs the [`follow::Follower`] step by step on the shared blocking
//! pool ([`crate::tail::blocking`]) — no read or stat ever blocks a runtime thread — ships
//! each step's lines (at most [`follow::MAX_BATCH`] a batch) and moves the checkpoint
//! ([`checkpoint::DaemonCheckpoint`], key `"<source>/file"`) once a batch and every one before
//! it are delivered ([`OrderedAcks`]). At the end of the file it polls every `poll_interval`;
//! `run --once` stops there.

mod checkpoint;
mod follow;
#[cfg(test)]
mod tests;

use super::config::DockerDaemonConfig;
use crate::ack::ordered::OrderedAcks;
use crate::sources::SourceContext;
use crate::tail::blocking;
use anyhow::Context;
use checkpoint::DaemonCheckpoint;
use follow::{Follower, Step, MAX_LINE};

pub(super) async fn run(config: &DockerDaemonConfig, ctx: &SourceContext) -> anyhow::Result<()> {
    let key = format!("{}/file", ctx.name);
    let chain = OrderedAcks::for_checkpoint(ctx.checkpoints.clone(), key.clone());
    let saved = ctx.checkpoints.get(&key).and_then(|v| {
        let c = DaemonCheckpoint::from_json(&v);
        if c.is_none() {
            tracing::warn!(checkpoint = %key, value = %v, "unreadable checkpoint of the Docker daemon's log file; ignoring it");
        }
        c
    });
    let path = &config.path;
    let mut follower = Follower::new(&ctx.name, path, saved, config.read_from, MAX_LINE)?;
    let mut waiting_logged = false;
    loop {
        let (back, step) = blocking::run(move || {
            let step = follower.step();
            (follower, step)
        })
        .await
        .context("the Docker daemon's log reader failed")?;
        follower = back;
        match step.with_context(|| format!("reading {}", path.display()))? {
            Step::Lines(events, cp) => {
                waiting_logged = false;
                let done = chain.track(Some(cp.to_json()));
                tokio::select! {
                    sent = ctx.out.send(events, Some(done)) => sent.map_err(|e| anyhow::anyhow!(e))?,
                    _ = ctx.shutdown.wait() => return Ok(()),
                }
                continue;
            }
            Step::Idle if ctx.once => return Ok(()),
            Step::Idle => {}
            Step::Missing(e) => {
                if ctx.once {
                    anyhow::bail!("cannot open {}: {e}", path.display());
                }
                if !waiting_logged {
                    tracing::warn!(path = %path.display(), error = %e, "the Docker daemon's log file is not there; waiting for it");
                    waiting_logged = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.poll_interval.0) => {}
            _ = ctx.shutdown.wait() => return Ok(()),
        }
    }
}
