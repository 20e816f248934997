//! The daemon's log from a file: read from the checkpointed offset (when the file is still the
//! same inode and not shorter), poll for growth, follow rotation (finish the old file, then
//! the new one from its start) and truncation (start over).

use super::config::{DaemonReadFrom, DockerDaemonConfig};
use super::line_event;
use crate::ack::ordered::OrderedAcks;
use crate::sources::SourceContext;
use serde_json::json;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

const READ_BYTES: usize = 256 << 10;
/// A line longer than this is shipped in pieces.
const MAX_LINE: usize = 1 << 20;
const MAX_BATCH: usize = 1024;

pub(super) async fn run(config: &DockerDaemonConfig, ctx: &SourceContext) -> anyhow::Result<()> {
    let key = format!("{}/file", ctx.name);
    let chain = OrderedAcks::for_checkpoint(ctx.checkpoints.clone(), key.clone());
    let saved = ctx.checkpoints.get(&key);
    let path = config.path.clone();
    let mut waiting_logged = false;
    let mut first_open = true;
    loop {
        // Open (or wait for) the file.
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                if ctx.once {
                    anyhow::bail!("cannot open {}: {e}", path.display());
                }
                if !waiting_logged {
                    tracing::warn!(path = %path.display(), error = %e, "the Docker daemon's log file is not there; waiting for it");
                    waiting_logged = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(config.poll_interval.0) => continue,
                    _ = ctx.shutdown.wait() => return Ok(()),
                }
            }
        };
        waiting_logged = false;
        let md = f.metadata()?;
        let (dev, ino) = (md.dev(), md.ino());
        let mut offset = 0u64;
        if first_open {
            let same = saved
                .as_ref()
                .filter(|v| v["dev"] == json!(dev) && v["ino"] == json!(ino));
            offset = match same.and_then(|v| v["offset"].as_u64()) {
                Some(o) if o <= md.len() => o,
                _ if config.read_from == DaemonReadFrom::End => md.len(),
                _ => 0,
            };
            first_open = false;
        }
        match tail(f, dev, ino, offset, config, ctx, &chain).await? {
            Tail::Stopped => return Ok(()),
            Tail::Reopen => continue,
        }
    }
}

enum Tail {
    Stopped,
    /// The path now names another file (rotation): open it from its start.
    Reopen,
}

async fn tail(
    mut f: std::fs::File,
    dev: u64,
    ino: u64,
    mut offset: u64,
    config: &DockerDaemonConfig,
    ctx: &SourceContext,
    chain: &Arc<OrderedAcks<serde_json::Value>>,
) -> anyhow::Result<Tail> {
    f.seek(SeekFrom::Start(offset))?;
    let mut carry: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let n = f.read(&mut buf)?;
        if n > 0 {
            carry.extend_from_slice(&buf[..n]);
            let mut events = Vec::new();
            let mut start = 0;
            let now = crate::time::now_nanos();
            while let Some(nl) = memchr::memchr(b'\n', &carry[start..]) {
                let line = &carry[start..start + nl];
                if !line.is_empty() {
                    events.push(line_event(line, now));
                }
                start += nl + 1;
            }
            if carry.len() - start > MAX_LINE {
                events.push(line_event(&carry[start..], now));
                start = carry.len();
            }
            offset += start as u64;
            carry.drain(..start);
            for chunk in chunk_events(events) {
                let done = chain.track(Some(json!({"dev": dev, "ino": ino, "offset": offset})));
                ctx.out
                    .send(chunk, Some(done))
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
            }
            continue;
        }
        if ctx.once {
            return Ok(Tail::Stopped);
        }
        // At the end: has the path been rotated or the file truncated?
        match std::fs::metadata(&config.path) {
            Ok(md) if md.dev() != dev || md.ino() != ino => return Ok(Tail::Reopen),
            _ => {}
        }
        if f.metadata().map(|m| m.len()).unwrap_or(0) < offset + carry.len() as u64 {
            tracing::warn!(path = %config.path.display(), "the Docker daemon's log file was truncated; reading it from its start");
            offset = 0;
            carry.clear();
            f.seek(SeekFrom::Start(0))?;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(config.poll_interval.0) => {}
            _ = ctx.shutdown.wait() => return Ok(Tail::Stopped),
        }
    }
}

/// Batches of at most `MAX_BATCH` events; the checkpoint of a read is attached to its last.
fn chunk_events(mut events: Vec<crate::event::Event>) -> Vec<Vec<crate::event::Event>> {
    let mut out = Vec::new();
    while events.len() > MAX_BATCH {
        let rest = events.split_off(MAX_BATCH);
        out.push(std::mem::replace(&mut events, rest));
    }
    out.push(events);
    out
}
