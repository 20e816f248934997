//! Line handling for one container, shared by all its files: each line is parsed into the
//! batch, rejoined with its partial predecessors (one assembler per stream, outliving any
//! file, so partial lines straddling a rotation are joined), capped, or passed on raw and
//! flagged when it is not a json-file record. NUL runs left by a crash are skipped.

use super::batch::BatchBuilder;
use super::parser::{LineParser, Record};
use super::partial::{Joined, PartialAssembler};
use super::position::ResumePoint;
use super::tailer::TailSettings;
use crate::event::{ContainerMeta, EventFlags, Stream};
use crate::tail::file::FileIdentity;
use std::sync::Arc;
use std::time::Instant;

/// Counted per batch, added to the metrics once per batch (no atomics per line).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub read: u64,
    pub malformed: u64,
    pub truncated: u64,
    pub skipped: u64,
}

pub(super) const SLOT_STREAMS: [Stream; 3] = [Stream::Stdout, Stream::Stderr, Stream::Unknown];

fn stream_slot(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
        Stream::Unknown => 2,
    }
}

/// Line handling shared by every file of the container: the parser, one partial assembler
/// per stream (they outlive a file, so partial lines straddling a rotation are joined).
pub(super) struct Lines {
    parser: LineParser,
    pub partials: [PartialAssembler; 3],
    meta: Arc<ContainerMeta>,
    max_line: usize,
    pub counts: Counts,
    /// The time of the last record shipped (checkpointed: where a later gap begins).
    pub last_time_ns: Option<i64>,
}

impl Lines {
    /// The metadata record the next lines carry (enrichment; set once per batch).
    pub fn set_meta(&mut self, meta: &Arc<ContainerMeta>) {
        if !Arc::ptr_eq(&self.meta, meta) {
            self.meta = meta.clone();
        }
    }

    pub fn new(meta: Arc<ContainerMeta>, s: &TailSettings) -> Lines {
        Lines {
            parser: LineParser::new(),
            partials: std::array::from_fn(|_| PartialAssembler::new(s.max_line_bytes)),
            meta,
            max_line: s.max_line_bytes,
            counts: Counts::default(),
            last_time_ns: None,
        }
    }

    /// One line (without its newline) that starts at `offset` of `file`.
    pub fn line(
        &mut self,
        line: &[u8],
        file: &Arc<FileIdentity>,
        offset: u64,
        b: &mut BatchBuilder,
        now: Instant,
    ) {
        if line.is_empty() {
            self.counts.skipped += 1; // a bare newline: nothing to ship
            return;
        }
        let mark = b.msgs.len();
        match self.parser.parse(line, &mut b.msgs) {
            Some(rec) => self.record(rec, mark, file, offset, b, now),
            None if memchr::memchr(0, line).is_some() => {
                self.line_with_nuls(line, file, offset, b, now)
            }
            None => self.malformed(line, b),
        }
    }

    /// A crash can leave NUL runs where a write was lost, and a torn line before them. Skip
    /// the NULs (counted) and take what lies between them as lines of their own: the data
    /// after a run is usually a whole record Docker wrote after restarting.
    fn line_with_nuls(
        &mut self,
        line: &[u8],
        file: &Arc<FileIdentity>,
        offset: u64,
        b: &mut BatchBuilder,
        now: Instant,
    ) {
        let mut i = 0;
        while i < line.len() {
            let seg_end = memchr::memchr(0, &line[i..]).map_or(line.len(), |k| i + k);
            if seg_end > i {
                let seg = &line[i..seg_end];
                let mark = b.msgs.len();
                match self.parser.parse(seg, &mut b.msgs) {
                    Some(rec) => self.record(rec, mark, file, offset + i as u64, b, now),
                    None => self.malformed(seg, b),
                }
            }
            let data = line[seg_end..]
                .iter()
                .position(|&c| c != 0)
                .map_or(line.len(), |k| seg_end + k);
            self.counts.skipped += (data - seg_end) as u64;
            i = data;
        }
    }

    fn record(
        &mut self,
        rec: Record,
        mark: usize,
        file: &Arc<FileIdentity>,
        offset: u64,
        b: &mut BatchBuilder,
        now: Instant,
    ) {
        let slot = stream_slot(rec.stream);
        let time_ns = match rec.time_ns {
            Some(t) => t,
            None => b.now_ns(),
        };
        if rec.complete && self.partials[slot].is_idle() {
            let mut flags = EventFlags::default();
            if b.msgs.len() - mark > self.max_line {
                b.msgs.truncate(mark + self.max_line);
                flags.insert(EventFlags::TRUNCATED);
                self.counts.truncated += 1;
            }
            b.push_from(mark, time_ns, rec.stream, flags, rec.attrs, &self.meta);
            if rec.time_ns.is_some() {
                self.last_time_ns = Some(time_ns);
            }
            return;
        }
        let joined = self.partials[slot].push(
            &b.msgs[mark..],
            rec.complete,
            time_ns,
            rec.attrs,
            || ResumePoint::at(file.clone(), offset),
            now,
        );
        b.msgs.truncate(mark);
        if let Some(j) = joined {
            self.push_joined(j, rec.stream, b);
        }
    }

    pub fn push_joined(&mut self, j: Joined, stream: Stream, b: &mut BatchBuilder) {
        if j.flags.contains(EventFlags::TRUNCATED) || j.flags.contains(EventFlags::PARTIAL) {
            self.counts.truncated += 1;
        }
        self.last_time_ns = Some(j.time_ns);
        b.push_owned(j.message, j.time_ns, stream, j.flags, j.attrs, &self.meta);
    }

    /// A line that is not a json-file record: passed on raw, flagged, counted.
    pub fn malformed(&mut self, raw: &[u8], b: &mut BatchBuilder) {
        self.counts.malformed += 1;
        let mut flags = EventFlags::MALFORMED;
        let keep = if raw.len() > self.max_line {
            flags.insert(EventFlags::TRUNCATED);
            self.counts.truncated += 1;
            self.max_line
        } else {
            raw.len()
        };
        let mark = b.msgs.len();
        b.msgs.extend_from_slice(&raw[..keep]);
        let t = b.now_ns();
        b.push_from(mark, t, Stream::Unknown, flags, None, &self.meta);
    }
}
