//! `logwharf check [-c FILE] [--repair]`: verifies what logwharf keeps in `data_dir` — the
//! checkpoint store ([`checkpoints`]) and, once they exist, the disk buffers — and prints each
//! problem on one line naming the file and the offset. Exit status: 0 clean (or everything
//! found was repaired), 1 problems remain, 2 the check cannot run (bad config, unreadable
//! `data_dir`, or `--repair` while a daemon holds the `data_dir` lock).
//!
//! Plain `check` only reads, so it runs beside a daemon (whose positions move meanwhile: a
//! finding can be one the daemon is about to fix itself). `--repair` takes the `data_dir` lock
//! first ([`logwharf_collector::lock`]), so it never edits what a running daemon uses.
//!
//! A checker is one entry of [`CHECKERS`]: it prints its findings with [`Findings::report`]
//! and, when asked to, repairs them.

mod checkpoints;

use logwharf_collector::lock::{DataDirLock, LockError};
use logwharf_collector::Config;
use std::path::Path;
use std::process::ExitCode;

/// One checker of a part of `data_dir`.
pub type Checker = fn(&Config, repair: bool, out: &mut Findings) -> anyhow::Result<()>;

/// Every checker, run in this order.
pub const CHECKERS: &[(&str, Checker)] = &[
    ("checkpoints", checkpoints::check),
    ("disk buffers", disk_buffers),
];

/// Every disk buffer under `<data_dir>/buffers/`: each record's checksum and framing, torn
/// tails, the ack file (`logwharf_collector::buffer::disk::check`; `--repair` cuts torn
/// tails and rewrites segments without their damaged records).
fn disk_buffers(config: &Config, repair: bool, out: &mut Findings) -> anyhow::Result<()> {
    for p in logwharf_collector::buffer::disk::check_all(&config.data_dir, repair) {
        let place = format!("{}:{}", p.file.display(), p.offset);
        out.report(&place, &p.what, p.repaired.then_some("fixed"));
    }
    Ok(())
}

/// What the checkers found: printed as they go, counted for the exit status.
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: usize,
    pub repaired: usize,
}

impl Findings {
    /// Prints one problem: `WHERE: WHAT`, and what `--repair` did about it (`repaired`), if
    /// anything. `place` names the file and offset (`/path/file:4096`).
    pub fn report(&mut self, place: &str, what: &str, repaired: Option<&str>) {
        self.problems += 1;
        match repaired {
            Some(r) => {
                self.repaired += 1;
                println!("{place}: {what} — repaired: {r}");
            }
            None => println!("{place}: {what}"),
        }
    }
}

/// Runs every checker on the config's `data_dir`.
pub fn run(config: &Config, origin: &str, repair: bool) -> ExitCode {
    let dir = &config.data_dir;
    let _lock = if repair {
        match DataDirLock::acquire(dir) {
            Ok(l) => Some(l),
            Err(e @ LockError::Held { .. }) => {
                eprintln!("logwharf check --repair: {e}: stop it first (plain `logwharf check` runs beside it)");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("logwharf check: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        if let Some(pid) = DataDirLock::holder(dir) {
            eprintln!(
                "logwharf check: a logwharf (pid {}) is running on {}: checking read-only, its positions may move meanwhile",
                pid.as_deref().unwrap_or("unknown"),
                dir.display()
            );
        }
        None
    };
    if !dir.exists() {
        println!(
            "{}: does not exist: nothing to check ({origin})",
            dir.display()
        );
        return ExitCode::SUCCESS;
    }
    let mut findings = Findings::default();
    let mut failed = false;
    for (name, checker) in CHECKERS {
        if let Err(e) = checker(config, repair, &mut findings) {
            eprintln!("logwharf check: {name}: cannot check: {e:#}");
            failed = true;
        }
    }
    summary(dir, &findings, repair);
    if failed {
        ExitCode::from(2)
    } else if findings.problems > findings.repaired {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn summary(dir: &Path, f: &Findings, repair: bool) {
    let dir = dir.display();
    match (f.problems, repair) {
        (0, _) => println!("{dir}: clean"),
        (n, false) => println!(
            "{dir}: {n} problem{} found (`logwharf check --repair` fixes what can be fixed)",
            if n == 1 { "" } else { "s" }
        ),
        (n, true) => println!(
            "{dir}: {n} problem{} found, {} repaired",
            if n == 1 { "" } else { "s" },
            f.repaired
        ),
    }
}
