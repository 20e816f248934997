//! Shared harness for the end-to-end tests: runs the real `logwharf` binary, talks to the real
//! peers that `scripts/testbed` installs and starts (dockerd, rsyslog, …).
//!
//! A test whose peer is missing FAILS when `CI=true`; elsewhere it skips with a loud message
//! (run `scripts/testbed` to get the peers).
//!
//! Tests wait for conditions, never for time: a started logwharf is waited for until it
//! listens ([`wait_port`]), logs what it is ready for ([`Logwharf::wait_log`]) or shows a
//! metric ([`Logwharf::wait_metric`]); every deadline ([`PATIENCE`] where nothing more
//! specific applies) only caps a hang. Ports come from [`free_port`], which never hands one
//! out twice in a process, so parallel tests cannot race for one.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_logwharf"))
}

pub fn in_ci() -> bool {
    matches!(std::env::var("CI").as_deref(), Ok("true") | Ok("1"))
}

/// Returns true when `peer` is usable. When it is not: panics in CI, skips loudly elsewhere.
pub fn require(peer: &str, available: bool) -> bool {
    if available {
        return true;
    }
    if in_ci() {
        panic!("peer {peer} is missing (CI=true): scripts/testbed should have started it");
    }
    eprintln!("\n*** SKIPPED: peer {peer} is missing; run scripts/testbed first ***\n");
    false
}

/// How long a test waits for something it expects before it fails: a cap for a hang, not a
/// timing expectation (a loaded 2-core machine takes its time).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A loopback port free for TCP and UDP, handed out once per process, below the kernel's
/// ephemeral range (see `logwharf_collector::testing`).
pub use logwharf_collector::testing::free_port;

/// Waits until something accepts TCP connections on 127.0.0.1:`port`; panics naming `what`.
pub fn wait_port(port: u16, what: &str) {
    assert!(
        wait_until(PATIENCE, || TcpStream::connect(("127.0.0.1", port)).is_ok()),
        "{what} did not listen on {port} within {PATIENCE:?}"
    );
}

/// Polls `cond` every 50 ms until it is true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temporary directory for one test: config, data_dir and outputs; and the port of the
/// `[api]` endpoint that [`TestDir::config`] puts in a config without one.
pub struct TestDir {
    pub dir: tempfile::TempDir,
    api_port: u16,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix(&format!("lw-{name}-"))
                .tempdir()
                .unwrap(),
            api_port: free_port(),
        }
    }

    /// `127.0.0.1:PORT` of the `[api]` endpoint [`TestDir::config`] adds.
    pub fn api_addr(&self) -> String {
        format!("127.0.0.1:{}", self.api_port)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `logwharf.toml` with `{dir}` replaced by this directory, and returns its path.
    /// `data_dir` is prepended and `api.address` ([`TestDir::api_addr`]) appended unless the
    /// text sets them.
    pub fn config(&self, text: &str) -> PathBuf {
        let mut full = String::new();
        if !text.contains("data_dir") {
            full.push_str("data_dir = \"{dir}/data\"\n");
        }
        full.push_str(text);
        // Appended, so that the text's own top-level keys stay outside this table.
        if !text.contains("[api]") {
            full.push_str(&format!("\n[api]\naddress = \"{}\"\n", self.api_addr()));
        }
        let p = self.path().join("logwharf.toml");
        std::fs::write(&p, full.replace("{dir}", self.path().to_str().unwrap())).unwrap();
        p
    }
}

/// A running logwharf process; killed (SIGKILL) when dropped.
pub struct Logwharf {
    pub child: Child,
    pub stderr_path: PathBuf,
}

/// The first `<dir>/logwharf-<n>.log` that does not exist yet: each start of logwharf in a
/// test keeps its own stderr, so a restart's log does not overwrite the first run's.
pub fn next_log_path(dir: &Path) -> PathBuf {
    (0..)
        .map(|n| dir.join(format!("logwharf-{n}.log")))
        .find(|p| !p.exists())
        .unwrap()
}

impl Logwharf {
    /// Starts `logwharf run -c CONFIG [extra…]`, stderr to `<dir>/logwharf-<n>.log`.
    pub fn start(config: &Path, extra: &[&str]) -> Logwharf {
        let dir = config.parent().unwrap();
        let stderr_path = next_log_path(dir);
        let child = Command::new(bin())
            .args(["run", "-c", config.to_str().unwrap()])
            .args(extra)
            .env("LOGWHARF_LOG", "info,logwharf_collector=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn logwharf");
        Logwharf { child, stderr_path }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        self.wait(Duration::from_secs(60))
    }

    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            if Instant::now() > end {
                panic!(
                    "logwharf did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until the log holds `needle` at least `n` times (what logwharf says when it is
    /// ready for something: "connected to the Docker daemon", …). Panics with the log when it
    /// exits first or [`PATIENCE`] passes.
    pub fn wait_log(&mut self, needle: &str, n: usize) {
        self.poll(
            Duration::from_millis(50),
            &format!("logging {needle:?}"),
            |lw| {
                if lw.log().matches(needle).count() >= n {
                    Ok(())
                } else {
                    Err(format!(
                        "logwharf did not log {needle:?} {n} time(s) within {PATIENCE:?}"
                    ))
                }
            },
        )
    }

    /// Waits until the metrics at `api` (`host:port`) show `name` (summed over the series
    /// with every label of `labels`) at `min` or more; returns that metrics text. Panics with
    /// the log when logwharf exits first or [`PATIENCE`] passes.
    pub fn wait_metric(&mut self, api: &str, name: &str, labels: &[&str], min: f64) -> String {
        self.poll(
            Duration::from_millis(100),
            &format!("{name} reached {min}"),
            |_| {
                let text = http_get(api, "/metrics").unwrap_or_default();
                if metric(&text, name, labels) >= min {
                    Ok(text)
                } else {
                    Err(format!(
                        "{name}{labels:?} did not reach {min} within {PATIENCE:?}:\n{text}\nlog"
                    ))
                }
            },
        )
    }

    /// Calls `probe` every `every` until it returns `Ok`. Panics with the log when logwharf
    /// exits first ("before {what}"), or with the probe's last `Err` when [`PATIENCE`] passes.
    fn poll<T>(
        &mut self,
        every: Duration,
        what: &str,
        mut probe: impl FnMut(&Self) -> Result<T, String>,
    ) -> T {
        let end = Instant::now() + PATIENCE;
        loop {
            let why = match probe(self) {
                Ok(v) => return v,
                Err(why) => why,
            };
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("logwharf exited ({st}) before {what}:\n{}", self.log());
            }
            assert!(Instant::now() < end, "{why}:\n{}", self.log());
            std::thread::sleep(every);
        }
    }
}

impl Drop for Logwharf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `logwharf run --once -c CONFIG` to completion; panics unless it exits 0.
pub fn run_once(config: &Path) -> String {
    let mut lw = Logwharf::start(config, &["--once"]);
    let code = lw.wait(Duration::from_secs(300));
    let log = lw.log();
    assert_eq!(code, Some(0), "logwharf --once failed:\n{log}");
    log
}

/// GET http://addr/path, returning the status code and the body.
pub fn http_get_status(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// GET http://addr/path, returning the body.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// The value of a Prometheus counter line that starts with `prefix` (name plus labels),
/// summed over all matching series.
pub fn metric(text: &str, name: &str, label_filter: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| label_filter.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads a file of JSON lines (missing file: empty). A last line without its newline is
/// one a running sink is still writing (a write of a large batch is not atomic with respect
/// to this read): it is left for the next look. Every complete line must parse; a line that
/// never completes shows as missing in the caller's count.
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = match std::fs::read(path) {
        Ok(b) => {
            String::from_utf8(b).unwrap_or_else(|e| panic!("{}: not UTF-8: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Appends json-file lines `line N` (stdout, a distinct time each) for N in `range` to `log`,
/// as Docker would (for tests on a fake Docker root).
pub fn append_json_lines(log: &Path, range: std::ops::Range<u32>) {
    let mut text = String::new();
    for n in range {
        text.push_str(&format!(
            "{{\"log\":\"line {n}\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-25T13:04:22.{n:09}Z\"}}\n"
        ));
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}

/// `logwharf import-daemon-json` on `daemon_json` (the file's text, written into `dir`):
/// the generated config, narrowed to the containers `ids` (the testbed's dockerd holds the
/// other tests' containers too). Panics when the command fails.
pub fn import_daemon_json(dir: &Path, daemon_json: &str, ids: &[&str]) -> String {
    let file = dir.join("daemon.json");
    std::fs::write(&file, daemon_json).unwrap();
    let out = Command::new(bin())
        .arg("import-daemon-json")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import-daemon-json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let include: Vec<String> = ids.iter().map(|id| format!("\"{id}*\"")).collect();
    let mine = text.replace(
        "type = \"docker_json_file\"\n",
        &format!(
            "type = \"docker_json_file\"\ninclude = [{}]\n",
            include.join(", ")
        ),
    );
    assert_ne!(mine, text, "no docker_json_file source in:\n{text}");
    mine
}

pub fn count_lines(path: &Path) -> usize {
    std::fs::read(path)
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// The real Docker daemon of the testbed.
pub mod rsyslog;

pub mod docker {
    use super::*;

    pub const IMAGE: &str = "logwharf-busybox:latest";
    pub const ROOT: &str = "/var/lib/docker/containers";
    /// What logwharf logs once its metadata service listed the containers and follows the
    /// events (every container started after it is seen; sources have started): the
    /// readiness the Docker tests wait for with [`Logwharf::wait_log`].
    pub const CONNECTED: &str = "connected to the Docker daemon";

    /// True when dockerd answers and the busybox image exists.
    pub fn available() -> bool {
        Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// `require("dockerd", available())`.
    pub fn require() -> bool {
        super::require("dockerd (scripts/testbed)", available())
    }

    fn docker(args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .output()
            .expect("run docker");
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A container created (not started) from the busybox image, removed on drop.
    pub struct Container {
        pub id: String,
        pub name: String,
    }

    impl Container {
        /// `docker create --network none --name NAME OPTS… IMAGE sh -c SCRIPT`.
        pub fn create(name: &str, opts: &[&str], script: &str) -> Container {
            let _ = Command::new("docker")
                .args(["rm", "-f", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let mut args = vec!["create", "--network", "none", "--name", name];
            args.extend_from_slice(opts);
            args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
            let id = docker(&args);
            Container {
                id,
                name: name.to_string(),
            }
        }

        pub fn start(&self) {
            docker(&["start", &self.id]);
        }

        /// Waits for the container to exit; returns its exit code.
        pub fn wait(&self) -> i32 {
            docker(&["wait", &self.id]).parse().unwrap_or(-1)
        }

        pub fn dir(&self) -> PathBuf {
            Path::new(ROOT).join(&self.id)
        }
    }

    impl Drop for Container {
        fn drop(&mut self) {
            let _ = Command::new("docker")
                .args(["rm", "-f", &self.id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Runs the `openssl` command in `dir`; panics when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(st.success(), "openssl {args:?} failed");
}

/// CA and a server certificate for 127.0.0.1 in `dir`: ca.crt, srv.crt, srv.key.
pub fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=logwharf-test-ca",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}

/// True when `program arg` runs and succeeds (a tool scripts/testbed installs is there).
pub fn command_runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True when the `openssl` command runs.
pub fn has_openssl() -> bool {
    command_runs("openssl", "version")
}
