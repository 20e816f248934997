//! inotify watches on Docker's container root and on each container's directory, read by the
//! source's task (no thread of its own: the inotify descriptor is polled by the runtime).
//!
//! Two queues with narrow masks: name changes (`IN_CREATE`, `IN_DELETE`, `IN_MOVED_*`: Docker
//! rotated, so the hold looks too; on the root, containers that come and go), read at once,
//! and writes (`IN_MODIFY`: wake the readers), read once per batching window. Neither reports
//! opens, reads or closes: our own readers and holds open those files all the time, and every
//! such event woke the process for nothing. Events the kernel dropped (its queue overflowed)
//! come out as [`Change::Lost`]: the source then looks everywhere.

use inotify::{EventMask, Inotify, WatchMask};
use std::collections::HashMap;
use std::ffi::c_int;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

/// What an inotify event means to the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A container directory came or went, or the root itself was moved or deleted.
    Root,
    /// A container's log files were written to.
    Written(Arc<str>),
    /// A container's directory gained, lost or renamed a file (Docker rotated), or is gone.
    Files(Arc<str>),
    /// Events were lost: every container may have changed.
    Lost,
}

enum Target {
    Root,
    Container(Arc<str>),
}

/// Which queue [`Watcher::next`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    Names,
    Writes,
}

/// Name changes: read as soon as they come (a hold must open a rotated file before Docker
/// deletes it, which at full speed is milliseconds later).
const ROOT_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR);
const NAMES_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::ONLYDIR);
/// Writes: read once per batching window (the kernel folds a container's repeated writes
/// into one queued event meanwhile), so that many containers' writes wake their readers
/// together.
const WRITES_MASK: WatchMask = WatchMask::MODIFY.union(WatchMask::ONLYDIR);

fn register(inotify: Inotify) -> io::Result<AsyncFd<Inotify>> {
    // SAFETY: the `Inotify` owns its descriptor and closes it only when dropped, which the
    // `AsyncFd` owning it does after deregistering; nothing else closes or replaces it.
    unsafe { AsyncFd::register_with_interest(inotify, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// An inotify descriptor, waited on through the runtime, or (a busy queue) read now and
/// then without being woken: epoll wakes a waiter at every event queued, not only at the
/// first one, so a queue read once per window is taken off the runtime's epoll meanwhile.
enum Fd {
    Waited(AsyncFd<Inotify>),
    Read(Inotify),
    /// Only between the two (never across an await).
    Moving,
}

impl Fd {
    fn inotify(&self) -> Option<&Inotify> {
        match self {
            Fd::Waited(fd) => Some(fd.get_ref()),
            Fd::Read(fd) => Some(fd),
            Fd::Moving => None,
        }
    }
}

/// One inotify instance and what its watch descriptors stand for.
struct Instance {
    fd: Fd,
    /// After events, stop waiting on the descriptor until a read finds nothing (writes).
    read_while_busy: bool,
    targets: HashMap<c_int, Target>,
    by_dir: HashMap<PathBuf, inotify::WatchDescriptor>,
}

enum Outcome {
    Read,
    Empty,
    Failed(io::Error),
}

impl Instance {
    fn new(read_while_busy: bool) -> io::Result<Instance> {
        Ok(Instance {
            fd: Fd::Waited(register(Inotify::init()?)?),
            read_while_busy,
            targets: HashMap::new(),
            by_dir: HashMap::new(),
        })
    }

    fn add(&mut self, dir: &Path, mask: WatchMask, target: Target) -> io::Result<()> {
        let Some(fd) = self.fd.inotify() else {
            return Err(io::Error::other("inotify is gone"));
        };
        let wd = fd.watches().add(dir, mask)?;
        self.targets.insert(wd.get_watch_descriptor_id(), target);
        self.by_dir.insert(dir.to_path_buf(), wd);
        Ok(())
    }

    fn remove(&mut self, dir: &Path) {
        if let Some(wd) = self.by_dir.remove(dir) {
            self.targets.remove(&wd.get_watch_descriptor_id());
            if let Some(fd) = self.fd.inotify() {
                let _ = fd.watches().remove(wd); // already gone with the directory
            }
        }
    }

    /// Waits for events, then appends what they mean to `out`; an error only if inotify
    /// itself failed.
    async fn next(&mut self, buf: &mut [u8], out: &mut Vec<Change>) -> io::Result<()> {
        loop {
            let targets = &mut self.targets;
            let outcome = match &mut self.fd {
                Fd::Read(fd) => match drain(fd, buf, targets, out) {
                    Ok(()) => Outcome::Read,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Outcome::Empty,
                    Err(e) => Outcome::Failed(e),
                },
                Fd::Waited(fd) => {
                    let mut guard = fd.readable_mut().await?;
                    match guard.try_io(|fd| drain(fd.get_mut(), buf, targets, out)) {
                        Ok(Ok(())) => Outcome::Read,
                        Ok(Err(e)) => Outcome::Failed(e),
                        Err(_would_block) => continue,
                    }
                }
                Fd::Moving => return Err(io::Error::other("inotify is gone")),
            };
            // Synchronous from here on: the future may be dropped at any await, never here.
            match (outcome, std::mem::replace(&mut self.fd, Fd::Moving)) {
                (Outcome::Read, Fd::Waited(fd)) if self.read_while_busy => {
                    self.fd = Fd::Read(fd.into_inner());
                    return Ok(());
                }
                (Outcome::Empty, Fd::Read(fd)) => {
                    self.fd = Fd::Waited(register(fd)?); // quiet again: wait for the next event
                }
                (outcome, fd) => {
                    self.fd = fd;
                    if let Outcome::Failed(e) = outcome {
                        tracing::warn!(error = %e, "reading inotify events failed; looking everywhere");
                        out.push(Change::Lost);
                    }
                    return Ok(());
                }
            }
        }
    }
}

/// The watches of one source: a queue for name changes and one for writes. Without inotify
/// (disabled for `--once`, limits reached, a filesystem without it) it is a no-op and the
/// periodic rescan and the readers' polls carry on alone.
pub struct Watcher {
    queues: Option<(Instance, Instance)>,
    names_buf: Vec<u8>,
    writes_buf: Vec<u8>,
    /// The writes queue's changes, until appended (each select branch has its own).
    scratch: Vec<Change>,
    warned: bool,
}

impl Watcher {
    pub fn new(enabled: bool) -> Watcher {
        let queues = if enabled {
            match Instance::new(false).and_then(|n| Ok((n, Instance::new(true)?))) {
                Ok(q) => Some(q),
                Err(e) => {
                    tracing::warn!(error = %e, "inotify is unavailable; finding containers and new lines by polling only");
                    None
                }
            }
        } else {
            None
        };
        Watcher {
            queues,
            names_buf: vec![0; 4096],
            writes_buf: vec![0; 16 * 1024],
            scratch: Vec::new(),
            warned: false,
        }
    }

    /// Watches Docker's container root (not recursively); whether it is watched.
    pub fn watch_root(&mut self, root: &Path) -> bool {
        if self.watches(root) {
            return true;
        }
        let Some((names, _)) = self.queues.as_mut() else {
            return false;
        };
        let added = names.add(root, ROOT_MASK, Target::Root);
        self.added(root, added)
    }

    /// Watches a container's directory; whether it is watched.
    pub fn watch_container(&mut self, dir: &Path, id: &str) -> bool {
        if self.watches(dir) {
            return true;
        }
        let Some((names, writes)) = self.queues.as_mut() else {
            return false;
        };
        let id: Arc<str> = id.into();
        let added = names
            .add(dir, NAMES_MASK, Target::Container(id.clone()))
            .and_then(|()| writes.add(dir, WRITES_MASK, Target::Container(id)));
        if added.is_err() {
            names.remove(dir);
        }
        self.added(dir, added)
    }

    fn added(&mut self, dir: &Path, added: io::Result<()>) -> bool {
        match added {
            Ok(()) => true,
            Err(e) => {
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch with inotify (raise fs.inotify.max_user_watches?); relying on polling there");
                }
                false
            }
        }
    }

    /// Whether `dir` is watched.
    pub fn watches(&self, dir: &Path) -> bool {
        self.queues
            .as_ref()
            .is_some_and(|(names, _)| names.by_dir.contains_key(dir))
    }

    /// Forgets a directory's watches (it is gone, or no longer of interest).
    pub fn forget(&mut self, dir: &Path) {
        if let Some((names, writes)) = self.queues.as_mut() {
            names.remove(dir);
            writes.remove(dir);
        }
    }

    /// Waits for events — name changes at once, writes not before `writes_from` — then
    /// appends what they mean to `out` (every event of that queue by now, in order, a
    /// container once per run of events), and says which queue it read. Never resolves
    /// without inotify.
    pub async fn next(
        &mut self,
        out: &mut Vec<Change>,
        writes_from: tokio::time::Instant,
    ) -> Queue {
        let Some((names, writes)) = self.queues.as_mut() else {
            return std::future::pending().await;
        };
        let scratch = &mut self.scratch;
        let (read, result) = tokio::select! {
            r = names.next(&mut self.names_buf, out) => (Queue::Names, r),
            r = async {
                tokio::time::sleep_until(writes_from).await;
                writes.next(&mut self.writes_buf, scratch).await
            } => (Queue::Writes, r),
        };
        out.append(&mut self.scratch);
        if let Err(e) = result {
            tracing::warn!(error = %e, "inotify failed; polling only from now on");
            out.push(Change::Lost);
            self.queues = None;
        }
        read
    }
}

/// Reads until the queue is empty; `WouldBlock` only if it was empty from the start.
fn drain(
    inotify: &mut Inotify,
    buf: &mut [u8],
    targets: &mut HashMap<c_int, Target>,
    out: &mut Vec<Change>,
) -> io::Result<()> {
    let mut read_any = false;
    loop {
        let events = match inotify.read_events(buf) {
            Ok(events) => events,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && read_any => return Ok(()),
            Err(e) => return Err(e),
        };
        read_any = true;
        for ev in events {
            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                out.push(Change::Lost);
                continue;
            }
            let id = ev.wd.get_watch_descriptor_id();
            let change = match targets.get(&id) {
                None => continue,
                Some(Target::Root) => Change::Root,
                Some(Target::Container(c)) if ev.mask.contains(EventMask::MODIFY) => {
                    Change::Written(c.clone())
                }
                Some(Target::Container(c)) => Change::Files(c.clone()),
            };
            if ev.mask.contains(EventMask::IGNORED) {
                targets.remove(&id); // the directory is gone; the root's event says so too
            }
            if out.last() != Some(&change) {
                out.push(change);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn changes(w: &mut Watcher) -> (Queue, Vec<Change>) {
        let mut out = Vec::new();
        let now = tokio::time::Instant::now();
        let q = tokio::time::timeout(Duration::from_secs(5), w.next(&mut out, now))
            .await
            .expect("an inotify event");
        (q, out)
    }

    #[tokio::test]
    async fn writes_and_renames_are_told_apart_and_opens_are_not_reported() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("abc");
        std::fs::create_dir(&dir).unwrap();
        let log = dir.join("abc-json.log");
        std::fs::write(&log, "x").unwrap();
        let mut w = Watcher::new(true);
        assert!(w.watch_root(root.path()));
        assert!(w.watch_container(&dir, "abc"));
        // Reading the file (open, read, close) is not an event of ours.
        std::fs::read(&log).unwrap();
        std::fs::read_dir(&dir).unwrap().for_each(drop);
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"y").unwrap();
        f.write_all(b"z").unwrap();
        assert_eq!(
            changes(&mut w).await,
            (Queue::Writes, vec![Change::Written("abc".into())])
        );
        std::fs::rename(&log, dir.join("abc-json.log.1")).unwrap();
        assert_eq!(
            changes(&mut w).await,
            (Queue::Names, vec![Change::Files("abc".into())])
        );
        std::fs::create_dir(root.path().join("def")).unwrap();
        assert_eq!(changes(&mut w).await, (Queue::Names, vec![Change::Root]));
    }

    #[tokio::test]
    async fn without_inotify_nothing_is_watched() {
        let root = tempfile::tempdir().unwrap();
        let mut w = Watcher::new(false);
        assert!(!w.watch_root(root.path()));
        let mut out = Vec::new();
        let now = tokio::time::Instant::now();
        let waited = tokio::time::timeout(Duration::from_millis(50), w.next(&mut out, now)).await;
        assert!(waited.is_err() && out.is_empty());
    }
}
