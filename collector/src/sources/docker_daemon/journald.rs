//! The daemon's log from journald: `journalctl -u UNIT --follow -o json`, resumed with
//! `--after-cursor` from the checkpointed journal cursor; journalctl is restarted with backoff
//! if it exits.

use super::config::{DaemonReadFrom, DockerDaemonConfig};
use super::line_event;
use crate::ack::ordered::OrderedAcks;
use crate::backoff::Backoff;
use crate::sources::SourceContext;
use anyhow::Context;
use futures_util::FutureExt;
use serde_json::{json, Value};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

const MAX_BATCH: usize = 1024;

pub(super) async fn run(config: &DockerDaemonConfig, ctx: &SourceContext) -> anyhow::Result<()> {
    let key = format!("{}/journald", ctx.name);
    let chain = OrderedAcks::for_checkpoint(ctx.checkpoints.clone(), key.clone());
    let mut cursor: Option<String> = ctx
        .checkpoints
        .get(&key)
        .and_then(|v| v["cursor"].as_str().map(str::to_string));
    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(30),
    );
    loop {
        let mut cmd = tokio::process::Command::new(&config.journalctl);
        cmd.args(["-u", &config.unit, "-o", "json"]);
        if !ctx.once {
            cmd.arg("--follow");
        }
        match (&cursor, config.read_from) {
            (Some(c), _) => {
                cmd.arg(format!("--after-cursor={c}"));
            }
            (None, DaemonReadFrom::Beginning) => {
                cmd.arg("--no-tail");
            }
            (None, DaemonReadFrom::End) => {
                cmd.args(["--lines", "0"]);
            }
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", config.journalctl.display()))?;
        let stdout = child.stdout.take().context("journalctl has no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        loop {
            let first = tokio::select! {
                l = lines.next_line() => l?,
                _ = ctx.shutdown.wait() => return Ok(()),
            };
            let Some(first) = first else { break };
            backoff.reset();
            let mut batch = Vec::new();
            let mut next = Some(first);
            while let Some(l) = next.take() {
                if let Some((e, c)) = entry(&l) {
                    batch.push(e);
                    cursor = Some(c);
                }
                if batch.len() < MAX_BATCH {
                    if let Some(Ok(Some(l))) = lines.next_line().now_or_never() {
                        next = Some(l);
                    }
                }
            }
            let done = chain.track(cursor.as_ref().map(|c| json!({ "cursor": c })));
            ctx.out
                .send(batch, Some(done))
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
        }
        let status = child.wait().await.ok();
        if ctx.once {
            return Ok(());
        }
        tracing::warn!(
            ?status,
            "journalctl exited; restarting it from the last cursor"
        );
        tokio::select! {
            _ = backoff.wait() => {}
            _ = ctx.shutdown.wait() => return Ok(()),
        }
    }
}

/// One `journalctl -o json` line → the event and its cursor.
fn entry(line: &str) -> Option<(crate::event::Event, String)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let cursor = v["__CURSOR"].as_str()?.to_string();
    let msg: Vec<u8> = match &v["MESSAGE"] {
        Value::String(s) => s.clone().into_bytes(),
        // Non-UTF-8 messages come as arrays of bytes.
        Value::Array(a) => a
            .iter()
            .filter_map(|b| b.as_u64().map(|b| b as u8))
            .collect(),
        _ => return None,
    };
    let ts = v["__REALTIME_TIMESTAMP"]
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .map(|us| us * 1000)
        .unwrap_or_else(crate::time::now_nanos);
    Some((line_event(&msg, ts), cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries() {
        let l = r#"{"__CURSOR":"s=abc;i=1","__REALTIME_TIMESTAMP":"1795611862901652","PRIORITY":"6","MESSAGE":"time=\"2026-11-25T13:04:22.5Z\" level=info msg=\"API listen on /run/docker.sock\""}"#;
        let (e, c) = entry(l).unwrap();
        assert_eq!(c, "s=abc;i=1");
        assert_eq!(e.time_ns, 1_795_611_862_500_000_000);
        let f = e.fields.unwrap();
        assert_eq!(f["level"], "info");
        assert_eq!(f["msg"], "API listen on /run/docker.sock");
        let l = r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1000","MESSAGE":[104,105,255]}"#;
        let (e, _) = entry(l).unwrap();
        assert_eq!(&e.message[..], b"hi\xff");
        assert_eq!(e.time_ns, 1_000_000);
        assert!(entry("not json").is_none());
    }
}
