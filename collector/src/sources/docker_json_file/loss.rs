//! Lines a sink will never get: found, counted and told — never silent.
//!
//! A container's lines can be gone before a sink got them in three ways. Each is counted per
//! container and sink, in `logwharf_lost_bytes_total{reason}` (the bytes known lost) and
//! `logwharf_lost_gaps_total{reason}` (how many times it happened), and told in one warning
//! naming the container, the sink and the bytes:
//! - `rotated_away`: while logwharf ran, Docker deleted a rotated file before this sink read
//!   it (it vanished before it could be opened, or the hold released it over
//!   `hold_max_bytes`). Its size was seen: the count is exact.
//! - `truncated`: the live file was cut in place (copytruncate, `truncate -s 0`) below what
//!   this sink's reader had seen of it. Exactly the bytes it saw past its read position; what
//!   was written and cut between two of its looks nobody saw.
//! - `deleted_while_stopped`: at startup the sink's checkpointed file is gone — Docker rotated
//!   it away and deleted it while logwharf was not running. [`StoppedGap`] says how much of
//!   that is knowable.

use super::position::SavedPosition;
use super::rotation::RotationLimits;
use crate::metrics::{self as m, LabelValue, LazyCounter};
use crate::time::{format_rfc3339, Fraction};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why lines were lost (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    RotatedAway = 0,
    Truncated = 1,
    DeletedWhileStopped = 2,
}

impl LossReason {
    pub const ALL: [LossReason; 3] = [
        LossReason::RotatedAway,
        LossReason::Truncated,
        LossReason::DeletedWhileStopped,
    ];

    pub fn label(self) -> &'static str {
        match self {
            LossReason::RotatedAway => "rotated_away",
            LossReason::Truncated => "truncated",
            LossReason::DeletedWhileStopped => "deleted_while_stopped",
        }
    }
}

/// What one reader counted, by reason (tests read it; the metrics get the same figures).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LossTotals {
    pub bytes: [u64; 3],
    pub gaps: [u64; 3],
}

impl LossTotals {
    pub fn bytes(&self, r: LossReason) -> u64 {
        self.bytes[r as usize]
    }

    pub fn gaps(&self, r: LossReason) -> u64 {
        self.gaps[r as usize]
    }
}

/// One container reader's loss counters: of its sink, or of every sink attached to the
/// container's shared reader ([`LossCounters::shared`]) at the time of the loss.
pub struct LossCounters {
    sinks: Vec<SinkLoss>,
    pub totals: LossTotals,
}

struct SinkLoss {
    bytes: [LazyCounter; 3],
    gaps: [LazyCounter; 3],
    /// Whether the sink reads through this reader now (`None`: always).
    attached: Option<Arc<AtomicBool>>,
}

impl SinkLoss {
    fn new(
        source: &str,
        container: &str,
        sink: &str,
        attached: Option<Arc<AtomicBool>>,
    ) -> SinkLoss {
        let (source, container, sink) = (
            LabelValue::Shared(source.into()),
            LabelValue::Shared(container.into()),
            LabelValue::Shared(sink.into()),
        );
        let counter = |name: &'static str, r: LossReason| {
            LazyCounter::new(
                name,
                vec![
                    ("source", source.clone()),
                    ("container", container.clone()),
                    ("sink", sink.clone()),
                    ("reason", LabelValue::Static(r.label())),
                ],
            )
        };
        SinkLoss {
            bytes: LossReason::ALL.map(|r| counter(m::LOST_BYTES, r)),
            gaps: LossReason::ALL.map(|r| counter(m::LOST_GAPS, r)),
            attached,
        }
    }
}

impl LossCounters {
    pub fn new(source: &str, container: &str, sink: &str) -> LossCounters {
        LossCounters {
            sinks: vec![SinkLoss::new(source, container, sink, None)],
            totals: LossTotals::default(),
        }
    }

    /// The counters of a reader shared by several sinks: a loss counts for the sinks
    /// attached to it at the time.
    pub fn shared(
        source: &str,
        container: &str,
        sinks: &[(Arc<str>, Arc<AtomicBool>)],
    ) -> LossCounters {
        LossCounters {
            sinks: sinks
                .iter()
                .map(|(name, a)| SinkLoss::new(source, container, name, Some(a.clone())))
                .collect(),
            totals: LossTotals::default(),
        }
    }

    pub fn noop() -> LossCounters {
        LossCounters {
            sinks: Vec::new(),
            totals: LossTotals::default(),
        }
    }

    /// One gap of `bytes` bytes known lost.
    pub fn gap(&mut self, r: LossReason, bytes: u64) {
        let i = r as usize;
        for s in &self.sinks {
            if s.attached
                .as_ref()
                .is_none_or(|a| a.load(Ordering::Acquire))
            {
                s.gaps[i].increment(1);
                s.bytes[i].increment(bytes);
            }
        }
        self.totals.gaps[i] += 1;
        self.totals.bytes[i] += bytes;
    }
}

/// What a restart can know of the lines Docker deleted while logwharf was not running, from
/// the sink's checkpoint (the file, the offset, the size last seen, whether that size was
/// final, the files after it logwharf knew of, the last line's time), the files present now
/// and Docker's rotation limits.
///
/// Lost for sure: the rest of the checkpointed file after the offset, and every file after it
/// that logwharf knew of and that is gone too. A file whose size was seen final (rotated)
/// counts exactly; the newest one seen was still growing, and Docker rotated it only once it
/// reached `max-size`, so it counts `max(size seen, max-size)` — less than one record short of
/// its real size. When the oldest file present is one logwharf knew of, nothing else can be
/// missing and the count is exact. Otherwise Docker may also have created and deleted whole
/// files that nobody saw: their number is unknowable (nothing records it), so they are not
/// counted, and the warning says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedGap {
    /// Bytes known lost.
    pub bytes: u64,
    /// `bytes` is the whole loss.
    pub exact: bool,
    /// Files known deleted after the checkpointed one.
    pub later_gone: usize,
    /// The checkpointed file and offset (for the warning).
    pub file: String,
    pub offset: u64,
    /// The time of the last line the sink got.
    pub from_ns: Option<i64>,
}

impl StoppedGap {
    /// `present`: the fingerprints of the files the container has now.
    pub fn assess(
        saved: &SavedPosition,
        present: &[crate::tail::fingerprint::Fingerprint],
        limits: RotationLimits,
    ) -> StoppedGap {
        let surviving = saved
            .later
            .iter()
            .position(|l| present.contains(&l.fingerprint()));
        let gone = &saved.later[..surviving.unwrap_or(saved.later.len())];
        let rotated_at = limits.max_size.unwrap_or(0);
        let at_least = |size: u64, complete: bool| {
            if complete {
                size
            } else {
                size.max(rotated_at)
            }
        };
        let own = saved.size.unwrap_or(saved.offset).max(saved.offset);
        let mut bytes = at_least(own, saved.complete) - saved.offset;
        bytes += gone
            .iter()
            .map(|l| at_least(l.size, l.complete))
            .sum::<u64>();
        StoppedGap {
            bytes,
            exact: surviving.is_some() && saved.complete && gone.iter().all(|l| l.complete),
            later_gone: gone.len(),
            file: saved.file.clone(),
            offset: saved.offset,
            from_ns: saved.time_ns,
        }
    }

    /// The one warning of this gap; `to_ns`: the time of the first line found after it.
    pub fn warn(&self, container: &str, sink: &str, to_ns: Option<i64>) {
        let time = |t: Option<i64>| {
            t.map_or_else(
                || "unknown".to_string(),
                |ns| format_rfc3339(ns, Fraction::NanosTrimmed),
            )
        };
        let (from, to) = (time(self.from_ns), time(to_ns));
        let bytes = self.bytes;
        if self.exact {
            tracing::warn!(
                container = %container, sink = %sink, from = %from, to = %to, bytes, file = %self.file, offset = self.offset,
                "lines lost while logwharf was not running: Docker rotated and deleted the checkpointed log file before this sink had read it; exactly {bytes} bytes of log between {from} and {to} are gone for this sink"
            );
        } else {
            tracing::warn!(
                container = %container, sink = %sink, from = %from, to = %to, bytes, file = %self.file, offset = self.offset,
                "lines lost while logwharf was not running: Docker rotated and deleted the checkpointed log file before this sink had read it; at least {bytes} bytes of log between {from} and {to} are gone for this sink (rotated files Docker created and deleted meanwhile, unseen, are not counted: their number is unknowable; keep logwharf running, or raise max-size/max-file)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::docker_json_file::position::LaterFile;
    use crate::tail::fingerprint::Fingerprint;

    fn saved(
        offset: u64,
        size: Option<u64>,
        complete: bool,
        later: Vec<LaterFile>,
    ) -> SavedPosition {
        SavedPosition {
            file: "c-json.log".into(),
            fp: 1,
            fp_len: 60,
            offset,
            size,
            complete,
            time_ns: Some(5),
            later,
            ..SavedPosition::default()
        }
    }

    fn later(fp: u32, size: u64, complete: bool) -> LaterFile {
        LaterFile {
            fp,
            fp_len: 60,
            size,
            complete,
        }
    }

    fn fp(crc: u32) -> Fingerprint {
        Fingerprint { crc, len: 60 }
    }

    const M: RotationLimits = RotationLimits {
        max_size: Some(10_000),
        max_file: Some(2),
    };

    #[test]
    fn the_live_file_deleted_unseen_counts_up_to_max_size_at_least() {
        // Caught up at 4,000 of a live file: Docker filled it to 10,000 (or a record more)
        // before rotating it; what came after it is unknowable.
        let g = StoppedGap::assess(&saved(4_000, Some(4_000), false, vec![]), &[fp(9)], M);
        assert_eq!((g.bytes, g.exact, g.later_gone), (6_000, false, 0));
        assert_eq!(g.from_ns, Some(5));
        // Seen past max-size already (the last record overshoots): what was seen counts.
        let g = StoppedGap::assess(&saved(4_000, Some(10_050), false, vec![]), &[fp(9)], M);
        assert_eq!(g.bytes, 6_050);
        // Without Docker's limits only what was seen counts.
        let g = StoppedGap::assess(
            &saved(4_000, Some(7_000), false, vec![]),
            &[fp(9)],
            RotationLimits::default(),
        );
        assert_eq!(g.bytes, 3_000);
        // A checkpoint of an earlier version (no size): the offset is all that was seen.
        let g = StoppedGap::assess(&saved(4_000, None, false, vec![]), &[fp(9)], M);
        assert_eq!(g.bytes, 6_000);
    }

    #[test]
    fn files_known_after_the_checkpoint_make_the_count_exact_when_one_survives() {
        let chain = vec![
            later(2, 10_040, true),
            later(3, 10_020, true),
            later(4, 3_000, false),
        ];
        // The oldest file present is one logwharf knew: nothing unseen in between.
        let g = StoppedGap::assess(
            &saved(1_000, Some(10_070), true, chain.clone()),
            &[fp(3), fp(4)],
            M,
        );
        assert_eq!(g.bytes, 9_070 + 10_040);
        assert!(g.exact);
        assert_eq!(g.later_gone, 1);
        // None survives: all of them are gone, the newest one filled to max-size at least,
        // and unseen files may follow.
        let g = StoppedGap::assess(&saved(1_000, Some(10_070), true, chain), &[fp(8)], M);
        assert_eq!(g.bytes, 9_070 + 10_040 + 10_020 + 10_000);
        assert!(!g.exact);
        assert_eq!(g.later_gone, 3);
    }

    #[test]
    fn counters_add_up_per_reason() {
        let mut c = LossCounters::noop();
        c.gap(LossReason::Truncated, 10);
        c.gap(LossReason::Truncated, 5);
        c.gap(LossReason::DeletedWhileStopped, 0);
        assert_eq!(c.totals.bytes(LossReason::Truncated), 15);
        assert_eq!(c.totals.gaps(LossReason::Truncated), 2);
        assert_eq!(c.totals.gaps(LossReason::DeletedWhileStopped), 1);
        assert_eq!(c.totals.bytes(LossReason::RotatedAway), 0);
    }
}
