//! `type = "blackhole"`: accepts and counts, for benchmarks.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BlackholeConfig {}
