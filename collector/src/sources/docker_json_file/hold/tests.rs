//! The hold's accounting: what it keeps, when it lets go, and what a release costs a reader.

use super::*;
use crate::tail::file::FileIdentity;
use std::fs;
use std::path::Path;

const LIVE: &str = "c-json.log";

/// A container directory that rotates like Docker with `max-file=2`.
struct Dir {
    tmp: tempfile::TempDir,
    n: u32,
}

impl Dir {
    fn new() -> Dir {
        let d = Dir {
            tmp: tempfile::tempdir().unwrap(),
            n: 0,
        };
        d.write_live();
        d
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn write_live(&self) {
        // Distinct first lines: the fingerprint tells the files apart.
        let body = format!(
            "{{\"log\":\"file {}\\n\"}}\n{}",
            self.n,
            "x".repeat(99) + "\n"
        );
        fs::write(self.path().join(LIVE), body).unwrap();
    }

    /// Docker's rotation: `.1` deleted, live → `.1`, a new live file.
    fn rotate(&mut self) {
        let one = self.path().join(format!("{LIVE}.1"));
        let _ = fs::remove_file(&one);
        fs::rename(self.path().join(LIVE), &one).unwrap();
        self.n += 1;
        self.write_live();
    }

    fn identity_of(&self, name: &str) -> ResumePoint {
        let md = fs::metadata(self.path().join(name)).unwrap();
        let f = fs::File::open(self.path().join(name)).unwrap();
        ResumePoint {
            file: Arc::new(FileIdentity {
                seq: 0,
                name: name.into(),
                dev: md.dev(),
                ino: md.ino(),
                fp: Fingerprint::of_plain(&f, true).unwrap().unwrap(),
            }),
            offset: 0,
            time_ns: None,
        }
    }
}

fn hold(d: &Dir, sinks: usize, max: u64) -> (Arc<Hold>, Arc<HoldBudget>) {
    let budget = HoldBudget::new("test", max);
    let h = Hold::new("c", d.path().to_path_buf(), LIVE, sinks, budget.clone());
    h.refresh().unwrap();
    (h, budget)
}

fn read_all(f: &mut OpenFile) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn keeps_a_deleted_file_until_every_sink_is_past_it() {
    let mut d = Dir::new();
    let (h, budget) = hold(&d, 2, 1 << 30);
    let first = d.identity_of(LIVE);
    let first_bytes = fs::read(d.path().join(LIVE)).unwrap();
    d.rotate();
    h.refresh().unwrap();
    d.rotate(); // the first file is deleted now
    h.refresh().unwrap();
    assert_eq!(h.held_bytes(), first_bytes.len() as u64);
    assert_eq!(budget.held(), first_bytes.len() as u64);

    // A reader whose newest file is older than the deleted one gets it from the hold.
    let listed: Vec<(u64, u64)> = [format!("{LIVE}.1"), LIVE.to_string()]
        .iter()
        .map(|n| {
            let md = fs::metadata(d.path().join(n)).unwrap();
            (md.dev(), md.ino())
        })
        .collect();
    let got = h.after(
        0,
        0,
        Some(Fingerprint { crc: 1, len: 1 }),
        &listed,
        &metrics::Gauge::noop(),
    );
    assert!(
        got.is_none(),
        "an unknown file: the hold cannot say what follows it"
    );

    // One sink delivered past the first file: still held for the other.
    let second = d.identity_of(&format!("{LIVE}.1"));
    h.delivered(0, &second);
    h.refresh().unwrap();
    assert_eq!(h.held_bytes(), first_bytes.len() as u64);
    h.delivered(1, &first);
    h.refresh().unwrap();
    assert_eq!(
        h.held_bytes(),
        first_bytes.len() as u64,
        "sink 1 is still in it"
    );
    h.delivered(1, &second);
    h.refresh().unwrap();
    assert_eq!(h.held_bytes(), 0, "every sink is past it");
    assert_eq!(budget.held(), 0);
}

#[test]
fn a_reader_behind_reads_the_deleted_file_from_the_hold() {
    let mut d = Dir::new();
    let (h, _) = hold(&d, 1, 1 << 30);
    let first = d.identity_of(LIVE);
    d.rotate();
    h.refresh().unwrap();
    let second_bytes = fs::read(d.path().join(LIVE)).unwrap();
    d.rotate();
    d.rotate(); // the second file is deleted too
    h.refresh().unwrap();
    let listed: Vec<(u64, u64)> = [format!("{LIVE}.1"), LIVE.to_string()]
        .iter()
        .map(|n| {
            let md = fs::metadata(d.path().join(n)).unwrap();
            (md.dev(), md.ino())
        })
        .collect();
    let f = &first.file;
    let got = h
        .after(f.dev, f.ino, Some(f.fp), &listed, &metrics::Gauge::noop())
        .expect("the hold knows the reader's file");
    // The first file is the reader's own; the second was deleted but held; the third and
    // fourth are in the directory, where the reader's own listing finds them.
    assert_eq!(got.len(), 1);
    match got.into_iter().next().unwrap() {
        Held::Open(mut o) => assert_eq!(read_all(&mut o), second_bytes),
        Held::Released { .. } => panic!("not released: within budget"),
    }
}

#[test]
fn over_budget_the_oldest_is_released_and_a_reader_learns_its_exact_size() {
    let mut d = Dir::new();
    let (h, budget) = hold(&d, 1, 150);
    let first = d.identity_of(LIVE);
    let first_len = fs::metadata(d.path().join(LIVE)).unwrap().len();
    let mut sizes = Vec::new();
    for _ in 0..3 {
        d.rotate();
        h.refresh().unwrap();
        sizes.push(
            fs::metadata(d.path().join(format!("{LIVE}.1")))
                .unwrap()
                .len(),
        );
    }
    d.rotate();
    h.refresh().unwrap();
    // Deleted and held: the first file and the next two; each is ~120 bytes, the budget 150.
    assert!(
        first_len > 75 && first_len <= 150,
        "test files fit one per budget"
    );
    assert!(
        h.held_bytes() <= 150,
        "kept to the budget: {}",
        h.held_bytes()
    );
    assert_eq!(budget.held(), h.held_bytes());
    let listed: Vec<(u64, u64)> = [format!("{LIVE}.1"), LIVE.to_string()]
        .iter()
        .map(|n| {
            let md = fs::metadata(d.path().join(n)).unwrap();
            (md.dev(), md.ino())
        })
        .collect();
    // A reader still in the first file: the files after it that the directory lost.
    let f = &first.file;
    let got = h
        .after(f.dev, f.ino, Some(f.fp), &listed, &metrics::Gauge::noop())
        .unwrap();
    let mut released = 0;
    let mut open = 0;
    for g in got {
        match g {
            Held::Released { bytes, .. } => {
                // The first file went over budget too, but the reader holds it itself.
                assert_eq!(bytes, sizes[1], "exactly the second file's size");
                released += 1;
            }
            Held::Open(_) => open += 1,
        }
    }
    assert_eq!(
        (released, open),
        (1, 1),
        "one released, the newest deleted one held"
    );
}

#[test]
fn gz_content_size_reads_the_trailer() {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&vec![b'a'; 12345]).unwrap();
    let p = d.path().join("x.gz");
    fs::write(&p, e.finish().unwrap()).unwrap();
    let f = fs::File::open(&p).unwrap();
    assert_eq!(gz_content_size(&f).unwrap(), 12345);
}

#[test]
fn facts_give_the_checkpoint_what_a_restart_needs_to_count_deleted_files() {
    let mut d = Dir::new();
    let (h, _) = hold(&d, 1, 1 << 30);
    let first = d.identity_of(LIVE);
    let f = |r: &ResumePoint| h.facts(r.file.dev, r.file.ino, Some(r.file.fp)).unwrap();
    let dir = d.path().to_path_buf();
    let size = |name: &str| fs::metadata(dir.join(name)).unwrap().len();
    let first_size = size(LIVE);
    let facts = f(&first);
    assert_eq!(
        facts,
        FileFacts {
            size: first_size,
            complete: false,
            later: vec![]
        },
        "the live file: its size so far"
    );
    // The live file grows: the next look sees it, and says it changed.
    append(&d.path().join(LIVE), b"{\"log\":\"more\\n\"}\n");
    assert!(h.refresh().unwrap());
    assert!(!h.refresh().unwrap(), "nothing new");
    let first_size = size(LIVE);
    assert_eq!(f(&first).size, first_size);
    // Rotated twice while the sink stays in the first file: it is final, and the files
    // after it are known with their sizes and fingerprints.
    d.rotate();
    assert!(h.refresh().unwrap());
    let second = d.identity_of(LIVE);
    d.rotate(); // the first file is deleted: only the hold has it
    assert!(h.refresh().unwrap());
    let second_size = size(&format!("{LIVE}.1"));
    let third = d.identity_of(LIVE);
    let facts = f(&first);
    assert_eq!((facts.size, facts.complete), (first_size, true));
    let later: Vec<(u32, u64, bool)> = facts
        .later
        .iter()
        .map(|l| (l.fp, l.size, l.complete))
        .collect();
    assert_eq!(
        later,
        vec![
            (second.file.fp.crc, second_size, true),
            (third.file.fp.crc, size(LIVE), false)
        ]
    );
    assert!(h.facts(0, 0, None).is_none(), "a file the hold never saw");
}

fn append(p: &Path, bytes: &[u8]) {
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(p)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}
