//! Listening sockets for every receiver — the `fluent` and `syslog` sources and the metrics API
//! — so that they share one bind per address kind, one rule for unix socket files left behind
//! ([`remove_stale_socket`]) and one accept loop that backs off on errors instead of spinning
//! ([`Listener::accept`]: EMFILE, ENFILE, ENOBUFS… last until connections close, so retrying
//! at once only burns a core).

use crate::backoff::Backoff;
use anyhow::Context;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A bound stream socket.
pub struct Listener {
    kind: Kind,
    /// Who listens (`sources.NAME`, `api`), for logs.
    owner: String,
    backoff: Backoff,
    errors: Option<metrics::Counter>,
}

enum Kind {
    Tcp(TcpListener),
    /// Removes its socket file when dropped.
    Unix(UnixListener, PathBuf),
}

/// An accepted connection.
pub enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    /// Listens on `host:port` (`host` a name or an address; port 0 picks one).
    pub async fn tcp(owner: &str, host: &str, port: u16) -> anyhow::Result<Listener> {
        let l = TcpListener::bind((host, port))
            .await
            .with_context(|| format!("{owner}: listening on {host}:{port}"))?;
        Ok(Listener::new(owner, Kind::Tcp(l)))
    }

    /// Listens on the unix socket `path`, replacing a stale socket file there (see
    /// [`remove_stale_socket`]).
    pub fn unix(owner: &str, path: &Path) -> anyhow::Result<Listener> {
        remove_stale_socket(path)
            .with_context(|| format!("{owner}: listening on unix://{}", path.display()))?;
        let l = UnixListener::bind(path)
            .with_context(|| format!("{owner}: listening on unix://{}", path.display()))?;
        Ok(Listener::new(owner, Kind::Unix(l, path.to_path_buf())))
    }

    fn new(owner: &str, kind: Kind) -> Listener {
        Listener {
            kind,
            owner: owner.to_string(),
            backoff: Backoff::new(Duration::from_millis(10), Duration::from_secs(1)),
            errors: None,
        }
    }

    /// Counts accept errors in `counter` (e.g. a source's `kind="accept"` errors).
    pub fn count_errors(mut self, counter: metrics::Counter) -> Listener {
        self.errors = Some(counter);
        self
    }

    /// The bound address (`127.0.0.1:24224`, `unix:///run/x.sock`).
    pub fn local_addr(&self) -> String {
        match &self.kind {
            Kind::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string()),
            Kind::Unix(_, p) => format!("unix://{}", p.display()),
        }
    }

    /// The next connection and its peer (`ip:port`, `unix:PATH` or `unix:pid=N`). Accept
    /// errors are counted, logged (the first of a run of them at warn level) and waited out
    /// with backoff (10 ms doubling to 1 s); cancel-safe.
    pub async fn accept(&mut self) -> (Accepted, String) {
        loop {
            let r = match &self.kind {
                Kind::Tcp(l) => l
                    .accept()
                    .await
                    .map(|(s, a)| (Accepted::Tcp(s), a.to_string())),
                Kind::Unix(l, _) => l.accept().await.map(|(s, a)| {
                    let peer = unix_peer(&s, &a);
                    (Accepted::Unix(s), peer)
                }),
            };
            match r {
                Ok(a) => {
                    self.backoff.reset();
                    return a;
                }
                Err(e) => self.accept_failed(e).await,
            }
        }
    }

    async fn accept_failed(&mut self, e: io::Error) {
        if let Some(c) = &self.errors {
            c.increment(1);
        }
        let delay = self.backoff.next_delay();
        if self.backoff.attempts() == 1 {
            tracing::warn!(owner = %self.owner, error = %e, retry_in = ?delay, "accept failed; backing off until it succeeds again");
        } else {
            tracing::debug!(owner = %self.owner, error = %e, retry_in = ?delay, "accept failed again");
        }
        tokio::time::sleep(delay).await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Kind::Unix(_, path) = &self.kind {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn unix_peer(s: &UnixStream, a: &tokio::net::unix::SocketAddr) -> String {
    match a.as_pathname() {
        Some(p) => format!("unix:{}", p.display()),
        None => match s.peer_cred() {
            Ok(c) => format!("unix:pid={}", c.pid().unwrap_or(0)),
            Err(_) => "unix".to_string(),
        },
    }
}

/// The one rule for a unix socket path about to be bound (stream or datagram): nothing there
/// is fine; a socket file nobody listens on (left by a run that was killed) is removed; a
/// socket something still listens on, or any other kind of file, is refused with an error
/// naming it — never replaced.
pub fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    anyhow::ensure!(
        md.file_type().is_socket(),
        "{} exists and is not a socket; refusing to replace it",
        path.display()
    );
    anyhow::ensure!(
        !socket_is_live(path),
        "another process is listening on {}",
        path.display()
    );
    std::fs::remove_file(path)
        .with_context(|| format!("removing the stale socket {}", path.display()))
}

/// Something answers on the socket file (as a stream or as a datagram socket).
fn socket_is_live(path: &Path) -> bool {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return true;
    }
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|d| d.connect(path))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_socket_is_replaced_a_live_one_or_a_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        // Stale: bound, then its owner went away (the file stays).
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let mut l = Listener::unix("test", &path).expect("stale socket replaced");

        let e = Listener::unix("test", &path)
            .err()
            .expect("live socket kept");
        assert!(
            format!("{e:#}").contains("another process is listening"),
            "{e:#}"
        );

        let _client = UnixStream::connect(&path).await.unwrap();
        let (_, peer) = l.accept().await;
        assert!(peer.starts_with("unix"), "{peer}");
        drop(l);
        assert!(
            !path.exists(),
            "the socket file is removed with its listener"
        );

        std::fs::write(&path, b"not a socket").unwrap();
        let e = Listener::unix("test", &path)
            .err()
            .expect("regular file kept");
        assert!(format!("{e:#}").contains("is not a socket"), "{e:#}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a socket");
    }
}
