//! Option groups that several components share: `tls` and `batch` tables, and where to start
//! reading (`read_from`, `start_at`).

use crate::{ByteSize, DurationValue};
use serde::Deserialize;
use std::path::PathBuf;

/// `tls = { … }`: TLS settings for a client (sinks) or a server (receiving sources).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// CA bundle (PEM) to verify the peer; default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Our certificate chain (PEM): a client certificate, or the server's certificate.
    pub crt_file: Option<PathBuf>,
    /// The private key (PEM) for `crt_file`.
    pub key_file: Option<PathBuf>,
    /// Verify the peer's certificate (and, for clients, its name). Only turn off for tests.
    pub verify: bool,
    /// Name to verify the server certificate against; default: the host of the address.
    pub server_name: Option<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            crt_file: None,
            key_file: None,
            verify: true,
            server_name: None,
        }
    }
}

/// `batch = { … }`: how a network sink groups events into one request or write.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    pub max_events: usize,
    pub max_bytes: ByteSize,
    /// Send a partial batch after this long.
    pub timeout: DurationValue,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: 10_000,
            max_bytes: ByteSize(1 << 20),
            timeout: DurationValue::from_millis(1000),
        }
    }
}

/// Where a source starts in a file or stream it has no checkpoint for: the `read_from` key of
/// the file sources and the `start_at` key of `docker_api` (both names kept; one meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    /// Everything there is.
    #[default]
    Beginning,
    /// Only what is written from now on.
    End,
}
