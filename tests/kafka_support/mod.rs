//! The Kafka side of tests/kafka.rs: a real tansu broker per test (installed by
//! `scripts/testbed`, started here on a free loopback port with in-memory storage, stopped by
//! pid), topics created with `tansu topic create`, and a consumer on rdkafka (Debian's kcat
//! links a librdkafka too old for tansu).
#![allow(dead_code)]

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tansu binary: `$TANSU`, else `~/.cargo/bin/tansu`, else `tansu` on the PATH.
pub fn tansu_bin() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TANSU").map(PathBuf::from),
        std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/tansu")),
        Some(PathBuf::from("tansu")),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `require("tansu", …)`: the binary, or `None` (a skip; a failure under CI=true).
pub fn require_tansu() -> Option<PathBuf> {
    let bin = tansu_bin();
    if crate::common::require("tansu (scripts/testbed)", bin.is_some()) {
        bin
    } else {
        None
    }
}

/// One tansu broker process with in-memory storage.
pub struct Tansu {
    bin: PathBuf,
    pub port: u16,
    /// The port clients are told to use (a TLS front's), when not `port`.
    advertised: Option<u16>,
    dir: PathBuf,
    child: Option<Child>,
    starts: usize,
}

impl Tansu {
    /// Starts a broker on a free port; its log goes to `dir/tansu-N.log`.
    pub fn start(bin: &Path, dir: &Path) -> Tansu {
        Tansu::start_advertising(bin, dir, None)
    }

    /// As [`Tansu::start`], telling clients (in metadata) to connect to `advertised`, where
    /// a [`TlsFront`] forwards to this broker.
    pub fn start_advertising(bin: &Path, dir: &Path, advertised: Option<u16>) -> Tansu {
        let mut t = Tansu {
            bin: bin.to_path_buf(),
            advertised,
            port: crate::common::free_port(),
            dir: dir.to_path_buf(),
            child: None,
            starts: 0,
        };
        t.spawn();
        t
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// `host:port` for the sink's `brokers` and the consumer.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = self.dir.join(format!("tansu-{}.log", self.starts));
        self.starts += 1;
        let child = Command::new(&self.bin)
            .args(["broker", "--listener-url", &self.url()])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{}", self.advertised.unwrap_or(self.port)),
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let up = crate::common::wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(up, "tansu did not listen on {}", self.port);
    }

    /// `tansu topic create NAME --partitions N`.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.bin)
            .args(["topic", "create", name, "--broker", &self.url()])
            .args(["--partitions", &partitions.to_string()])
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILL, by pid.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (an empty broker: storage is in memory).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// CPU seconds (user + system) the broker process has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        self.child
            .as_ref()
            .map(|c| cpu_seconds(c.id() as i32))
            .unwrap_or(0.0)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TLS terminator (socat with OpenSSL) in front of a broker: tansu 0.6.0's own TLS cannot
/// be switched on (its `--cert` and `--key` options exclude each other). The broker
/// advertises this front's port, so every connection a client makes goes through TLS.
pub struct TlsFront {
    pub port: u16,
    child: Child,
}

impl TlsFront {
    /// Listens on `port` with `certs`/srv.crt and srv.key (see `make_certs`), forwarding
    /// every connection to the broker on `to`.
    pub fn start(port: u16, to: u16, certs: &Path) -> TlsFront {
        let c = certs.display();
        let child = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={c}/srv.crt,key={c}/srv.key,verify=0"
            ))
            .arg(format!("TCP:127.0.0.1:{to}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn socat");
        let up = crate::common::wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "socat did not listen on {port}");
        TlsFront { port, child }
    }

    /// True when `socat` runs (scripts/testbed installs it).
    pub fn available() -> bool {
        crate::common::command_runs("socat", "-V")
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds of a live process, from /proc/PID/stat.
pub fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f
        .get(11..13)
        .map(|v| v.iter().filter_map(|x| x.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// One consumed message.
#[derive(Debug, Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Record {
    fn from_message(m: &BorrowedMessage<'_>) -> Record {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        let v = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_string(), v.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Record {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).unwrap_or_else(|e| {
            panic!(
                "value is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.value)
            )
        })
    }
}

/// A consumer of every partition of `topics` from the beginning, polled on its own thread
/// into a shared list until dropped.
pub struct Collector {
    records: Arc<Mutex<Vec<Record>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    pub fn start(brokers: &str, topics: &[&str]) -> Collector {
        Collector::start_with(brokers, topics, &[])
    }

    /// As [`Collector::start`], with extra librdkafka properties (TLS, say).
    pub fn start_with(brokers: &str, topics: &[&str], extra: &[(&str, &str)]) -> Collector {
        let mut config = ClientConfig::new();
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let consumer: BaseConsumer = config
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("lw-test-{}", std::process::id()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50")
            .create()
            .expect("create the test consumer");
        let mut tpl = TopicPartitionList::new();
        for t in topics {
            let md = consumer
                .fetch_metadata(Some(t), Duration::from_secs(10))
                .expect("topic metadata");
            let n = md
                .topics()
                .first()
                .map(|t| t.partitions().len())
                .unwrap_or(0);
            assert!(n > 0, "topic {t} has no partitions");
            for p in 0..n as i32 {
                tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
            }
        }
        consumer.assign(&tpl).expect("assign");
        let records = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let records = records.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                        records.lock().unwrap().push(Record::from_message(&m));
                    }
                }
            })
        };
        Collector {
            records,
            stop,
            thread: Some(thread),
        }
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// Waits until at least `n` messages arrived (false after `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        crate::common::wait_until(timeout, || self.len() >= n)
    }

    /// Waits until no message arrived for `quiet`.
    pub fn wait_quiet(&self, quiet: Duration, timeout: Duration) {
        let end = Instant::now() + timeout;
        let mut last = self.len();
        let mut since = Instant::now();
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
            let n = self.len();
            if n != last {
                last = n;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }

    /// Stops consuming and returns everything received.
    pub fn finish(mut self) -> Vec<Record> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.records.lock().unwrap())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
