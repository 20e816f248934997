//! A private rsyslogd for the end-to-end tests (tests/syslog.rs, tests/trust.rs): each test
//! starts its own instance on its own loopback port, one output file per facility with one
//! line per message (`facility.severity app-name msg`, control characters escaped by rsyslog),
//! and stops it by pid.

use super::{command_runs, require, wait_until};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private rsyslogd: imtcp + imudp on `127.0.0.1:port`, `out/<facility>.log` with lines
/// `facility.severity app-name msg`.
pub struct Rsyslog {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl Rsyslog {
    pub fn available() -> bool {
        command_runs("rsyslogd", "-v")
    }

    pub fn require() -> bool {
        require("rsyslogd (scripts/testbed)", Self::available())
    }

    /// Starts on `port`.
    pub fn start(dir: &Path, port: u16) -> Rsyslog {
        Self::start_with(dir, port, "", "")
    }

    /// Also listens with TLS (gtls, anonymous clients) on `tls_port`, with the server
    /// certificate made by [`make_certs`] in `certs`.
    pub fn start_tls(dir: &Path, port: u16, tls_port: u16, certs: &Path) -> Rsyslog {
        let c = certs.display();
        Self::start_with(
            dir,
            port,
            &format!(
                r#"global(DefaultNetstreamDriverCAFile="{c}/ca.crt" DefaultNetstreamDriverCertFile="{c}/srv.crt" DefaultNetstreamDriverKeyFile="{c}/srv.key")
"#
            ),
            &format!(
                r#"input(type="imtcp" address="127.0.0.1" port="{tls_port}" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"#
            ),
        )
    }

    pub fn start_with(dir: &Path, port: u16, globals: &str, inputs: &str) -> Rsyslog {
        let dir = dir.join("rsyslog");
        std::fs::create_dir_all(dir.join("work")).unwrap();
        std::fs::create_dir_all(dir.join("out")).unwrap();
        let d = dir.display();
        let conf = format!(
            r#"global(workDirectory="{d}/work" maxMessageSize="64k")
{globals}module(load="imtcp")
module(load="imudp")
input(type="imtcp" address="127.0.0.1" port="{port}")
input(type="imudp" address="127.0.0.1" port="{port}" rcvbufSize="8m")
{inputs}template(name="perfac" type="string" string="{d}/out/%syslogfacility-text%.log")
template(name="line" type="string" string="%syslogfacility-text%.%syslogseverity-text% %app-name% %msg%\n")
action(type="omfile" dynaFile="perfac" template="line")
"#
        );
        std::fs::write(dir.join("rsyslog.conf"), conf).unwrap();
        let mut r = Rsyslog {
            dir,
            port,
            child: None,
        };
        r.launch();
        r
    }

    pub fn launch(&mut self) {
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(self.dir.join("rsyslog.conf"))
            .arg("-i")
            .arg(self.dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("rsyslogd.err")).unwrap())
            .spawn()
            .expect("start rsyslogd");
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_until(Duration::from_secs(60), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "rsyslogd did not listen on {port}: {}",
            std::fs::read_to_string(self.dir.join("rsyslogd.err")).unwrap_or_default()
        );
    }

    /// SIGTERM by pid, and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    pub fn file(&self, facility: &str) -> PathBuf {
        self.dir.join("out").join(format!("{facility}.log"))
    }

    /// The lines of one facility's file, split into (facility.severity, app-name, msg).
    pub fn lines(&self, facility: &str) -> Vec<(String, String, Vec<u8>)> {
        let data = std::fs::read(self.file(facility)).unwrap_or_default();
        data.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut parts = l.splitn(3, |&b| b == b' ');
                let fs = String::from_utf8_lossy(parts.next().unwrap_or(b"")).into_owned();
                let app = String::from_utf8_lossy(parts.next().unwrap_or(b"")).into_owned();
                let mut msg = parts.next().unwrap_or(b"").to_vec();
                // rsyslog's %msg% keeps the space after an RFC 3164 tag.
                if msg.first() == Some(&b' ') {
                    msg.remove(0);
                }
                (fs, app, msg)
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.stop();
    }
}
