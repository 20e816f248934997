//! `[sinks.NAME.filter]`: which of its inputs' events a sink takes, by container (name, image,
//! labels) and stream. Shared by every sink; the collector's router applies it
//! (`collector/src/filter.rs`). An empty filter takes everything.

use crate::load::Decoder;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Container names (globs, without Docker's leading `/`) the sink takes; empty: all.
    pub containers: Vec<String>,
    /// Container names (globs) the sink never takes.
    pub exclude_containers: Vec<String>,
    /// Image names (globs, e.g. `nginx:*`); empty: all.
    pub images: Vec<String>,
    /// Labels the container must carry, each value matching its glob.
    pub labels: BTreeMap<String, String>,
    /// `stdout`, `stderr` (and `unknown`, for events not from a container stream); empty: all.
    pub streams: Vec<StreamName>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamName {
    Stdout,
    Stderr,
    Unknown,
}

impl FilterConfig {
    /// Takes every event.
    pub fn is_empty(&self) -> bool {
        *self == FilterConfig::default()
    }

    /// Decodes the table and reports every bad glob under its key.
    pub(crate) fn decode(d: &mut Decoder<'_>) -> Option<FilterConfig> {
        let f: FilterConfig = d.decode()?;
        let mut ok = true;
        let mut check = |key: &[&str], g: &str| {
            if let Err(e) = globset::Glob::new(g) {
                d.error(key, format!("invalid glob {g:?}: {e}"));
                ok = false;
            }
        };
        for (key, globs) in [
            ("containers", &f.containers),
            ("exclude_containers", &f.exclude_containers),
            ("images", &f.images),
        ] {
            for g in globs {
                check(&[key], g);
            }
        }
        for (label, g) in &f.labels {
            check(&["labels", label], g);
        }
        ok.then_some(f)
    }
}
