//! The CloudWatch Logs peer of the end-to-end tests: moto (the emulator, installed by
//! scripts/testbed) behind the strict front (tests/cloudwatch_front.py), each started on free
//! ports and stopped by pid; and `logwharf run` with a clean AWS environment.
#![allow(dead_code)]

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const SECRET: &str = "front-verifies-this-secret";

pub fn venv() -> PathBuf {
    let dir = std::env::var("TESTBED_DIR").unwrap_or_else(|_| "/var/tmp/logwharf-testbed".into());
    Path::new(&dir).join("venv-moto")
}

pub fn front_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cloudwatch_front.py")
}

/// moto present; missing, it fails under CI=true.
pub fn require_moto() -> bool {
    require(
        "moto (scripts/testbed)",
        venv().join("bin/moto_server").exists(),
    )
}

/// A process we started, killed by pid on drop.
pub struct Peer {
    pub child: Child,
}

impl Peer {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto plus the strict front in front of it.
pub struct Emulator {
    pub moto: Peer,
    _front: Peer,
    pub moto_port: u16,
    pub front_port: u16,
}

impl Emulator {
    pub fn start(t: &TestDir) -> Emulator {
        let moto_port = free_port();
        let moto = Peer {
            child: Command::new(venv().join("bin/moto_server"))
                .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(t.path().join("moto.log")).unwrap())
                .spawn()
                .expect("start moto_server"),
        };
        let front_port = free_port();
        let front = Peer {
            child: Command::new(venv().join("bin/python"))
                .arg(front_script())
                .args([
                    "serve",
                    "--port",
                    &front_port.to_string(),
                    "--upstream-port",
                    &moto_port.to_string(),
                    "--secret",
                    SECRET,
                ])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(t.path().join("front.log")).unwrap())
                .spawn()
                .expect("start the front"),
        };
        wait_port(moto_port, "moto_server");
        wait_port(front_port, "the front");
        Emulator {
            moto,
            _front: front,
            moto_port,
            front_port,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.front_port)
    }

    /// Every event of `group`, read back from moto with boto3 (per stream, oldest first).
    pub fn dump(&self, group: &str) -> Vec<Value> {
        let out = Command::new(venv().join("bin/python"))
            .arg(front_script())
            .args([
                "dump",
                "--endpoint",
                &format!("http://127.0.0.1:{}", self.moto_port),
                "--group",
                group,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Runs a boto3 snippet against moto (`c` is the logs client); returns its stdout.
    pub fn boto3(&self, code: &str) -> String {
        let script = format!(
            "import boto3, json\nc = boto3.client('logs', endpoint_url='http://127.0.0.1:{}', region_name='us-east-1', aws_access_key_id='AKIDTEST', aws_secret_access_key='x')\n{code}\n",
            self.moto_port
        );
        let out = Command::new(venv().join("bin/python"))
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn stats(&self) -> Value {
        let body = http_get(&format!("127.0.0.1:{}", self.front_port), "/_front/stats").unwrap();
        serde_json::from_str(&body).unwrap()
    }

    pub fn throttle(&self, n: u32) {
        let mut s = TcpStream::connect(("127.0.0.1", self.front_port)).unwrap();
        write!(
            s,
            "POST /_front/throttle?n={n} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }

    /// Asserts the front saw no request break a limit or a signature rule.
    pub fn assert_no_violations(&self) -> Value {
        let s = self.stats();
        assert_eq!(s["violations"], Value::Array(vec![]), "{s}");
        assert!(s["put_max_events"].as_u64().unwrap() <= 10_000);
        assert!(s["put_max_bytes"].as_u64().unwrap() <= 1_048_576);
        s
    }
}

/// Starts `logwharf run` with a clean AWS environment plus `env`.
pub fn start_logwharf(config: &Path, env: &[(&str, &str)]) -> Logwharf {
    let dir = config.parent().unwrap();
    let stderr_path = next_log_path(dir);
    let mut cmd = Command::new(bin());
    cmd.args(["run", "-c", config.to_str().unwrap()])
        .env("LOGWHARF_LOG", "info,logwharf_sinks=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    // Never reach for instance metadata from a test.
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    cmd.env("HOME", dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Logwharf {
        child: cmd.spawn().expect("spawn logwharf"),
        stderr_path,
    }
}
