//! Where reloads come from: SIGHUP (systemd's `ExecReload`) and, with `run --watch-config`,
//! changes to the config file. Each reads the file again and validates it; a valid config goes
//! to the pipeline ([`logwharf_collector::Topology::run_reloadable`]), an invalid one is logged
//! with every error and the running configuration goes on.

use logwharf::load_config;
use logwharf_collector::Config;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Reads `origin` again; `Some` when it is a valid config.
pub fn read_again(origin: &str, why: &str) -> Option<Config> {
    let path = Path::new(origin);
    if !path.is_file() {
        tracing::warn!(config = %origin, "{why}: no config file to read again; the running configuration goes on");
        return None;
    }
    match load_config(path) {
        Ok(c) => {
            tracing::info!(config = %origin, "{why}: the config file is valid");
            Some(c)
        }
        Err(e) => {
            tracing::error!(config = %origin, errors = %e.to_string().trim_end(), "{why}: the config file is not valid; the running configuration goes on unchanged");
            None
        }
    }
}

/// Watches the config file's directory (editors replace a file by renaming a new one over
/// it, which a watch on the file itself would miss) and reloads after each change, once the
/// writes have paused for a moment.
pub fn watch(origin: String, tx: mpsc::UnboundedSender<Config>) -> anyhow::Result<()> {
    let path = PathBuf::from(&origin);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_os_string());
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if ev.paths.iter().any(|p| p.file_name() == name.as_deref()) && !ev.kind.is_access() {
                let _ = ev_tx.send(());
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        let _watcher = watcher;
        while ev_rx.recv().await.is_some() {
            // A save is often several events (truncate, write, rename): take them as one.
            tokio::time::sleep(Duration::from_millis(300)).await;
            while ev_rx.try_recv().is_ok() {}
            if let Some(c) = read_again(&origin, "config file changed") {
                if tx.send(c).is_err() {
                    return;
                }
            }
        }
    });
    tracing::info!(config = %path.display(), "watching the config file; changes are applied as they are saved");
    Ok(())
}
