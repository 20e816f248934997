//! Where the Docker daemon is and how to reach it: `host` option, then `DOCKER_HOST`, then the
//! local socket; the API version is negotiated down to what the daemon speaks (Docker 20.10
//! answers 1.41 and refuses newer clients).

use anyhow::Context;
use bollard::{ClientVersion, Docker};
use std::fmt;
use std::path::PathBuf;

/// The default local socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Seconds a request (not a stream) may take before it counts as failed.
const REQUEST_TIMEOUT_SECS: u64 = 30;

/// The oldest API version logwharf speaks to; newer daemons are asked for what they support.
const CLIENT_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// A Docker daemon address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DockerHost {
    Unix(PathBuf),
    /// `host:port`, plain HTTP.
    Tcp(String),
}

impl DockerHost {
    /// `configured`, else `DOCKER_HOST`, else the local socket.
    pub fn resolve(configured: Option<&str>) -> anyhow::Result<DockerHost> {
        let env = std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty());
        let s = configured.or(env.as_deref()).unwrap_or(DEFAULT_SOCKET);
        Self::parse(s)
    }

    pub fn parse(s: &str) -> anyhow::Result<DockerHost> {
        if let Some(p) = s.strip_prefix("unix://") {
            Ok(DockerHost::Unix(PathBuf::from(p)))
        } else if s.starts_with('/') {
            Ok(DockerHost::Unix(PathBuf::from(s)))
        } else if let Some(a) = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("http://"))
        {
            let a = a.trim_end_matches('/');
            anyhow::ensure!(!a.is_empty(), "Docker host {s:?} names no address");
            Ok(DockerHost::Tcp(if a.contains(':') {
                a.to_string()
            } else {
                format!("{a}:2375")
            }))
        } else {
            anyhow::bail!(
                "unsupported Docker host {s:?} (expected unix:///path or tcp://host:port)"
            )
        }
    }

    /// A daemon on another machine: its json-file logs are not on this host.
    pub fn is_remote(&self) -> bool {
        matches!(self, DockerHost::Tcp(_))
    }
}

impl fmt::Display for DockerHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerHost::Unix(p) => write!(f, "unix://{}", p.display()),
            DockerHost::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// Connects and negotiates the API version; fails when the daemon does not answer.
pub async fn connect(host: &DockerHost) -> anyhow::Result<Docker> {
    let docker = match host {
        DockerHost::Unix(p) => {
            let path = p.to_str().context("socket path is not UTF-8")?;
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, &CLIENT_VERSION)
        }
        DockerHost::Tcp(a) => Docker::connect_with_http(a, REQUEST_TIMEOUT_SECS, &CLIENT_VERSION),
    }
    .with_context(|| format!("cannot use the Docker daemon at {host}"))?;
    // Lowers the version to the daemon's when it is older than ours.
    docker
        .negotiate_version()
        .await
        .with_context(|| format!("the Docker daemon at {host} does not answer"))
}

/// `validate --connect`: a description of the daemon that answered, or why none did.
pub async fn check(configured: Option<&str>) -> Result<String, String> {
    let host = DockerHost::resolve(configured).map_err(|e| format!("{e:#}"))?;
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let d = connect(&host).await?;
        let v = d.version().await?;
        anyhow::Ok(format!(
            "Docker {} (API {}) at {host}",
            v.version.unwrap_or_default(),
            api_version(&d)
        ))
    })
    .await;
    match r {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!(
            "the Docker daemon at {host} did not answer within 10s"
        )),
    }
}

/// The API version string a client uses in its paths (`1.41`).
pub fn api_version(docker: &Docker) -> String {
    let v = docker.client_version();
    format!("{}.{}", v.major_version, v.minor_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            DockerHost::parse("unix:///run/d.sock").unwrap(),
            DockerHost::Unix("/run/d.sock".into())
        );
        assert_eq!(
            DockerHost::parse("tcp://10.0.0.1").unwrap(),
            DockerHost::Tcp("10.0.0.1:2375".into())
        );
        assert!(DockerHost::parse("tcp://h:1").unwrap().is_remote());
        assert!(DockerHost::parse("ftp://x").is_err());
    }
}
