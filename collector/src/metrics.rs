//! Metric names, in one place so that dashboards and the README agree with the code. Every
//! counter is labelled by component (`source` or `sink` name); losses and drops are also
//! labelled by container, which none of the anchors report.

/// Events a source emitted into the pipeline.
pub const SOURCE_EVENTS: &str = "logwharf_source_events_total";
/// Message bytes a source emitted.
pub const SOURCE_BYTES: &str = "logwharf_source_bytes_total";
/// Raw bytes a source read from its input (files, sockets).
pub const SOURCE_READ_BYTES: &str = "logwharf_source_read_bytes_total";
/// Lines that did not parse and were passed on raw (labels: source, container).
pub const MALFORMED_LINES: &str = "logwharf_malformed_lines_total";
/// Partial lines cut at the size cap or shipped without their end (labels: source, container).
pub const PARTIAL_TRUNCATED: &str = "logwharf_partial_lines_truncated_total";
/// Bytes skipped to resynchronise after garbage (NUL runs, torn writes).
pub const SKIPPED_BYTES: &str = "logwharf_skipped_bytes_total";
/// Bytes of a container's log one sink never got (labels: source, container, sink, `reason`:
/// `rotated_away` — Docker deleted the file before logwharf could open it, or it was released
/// over `hold_max_bytes` before that sink read it; `truncated` — the live file was cut below
/// what that sink had read; `deleted_while_stopped` — Docker rotated the sink's checkpointed
/// file away and deleted it while logwharf was not running: the bytes known lost, a lower
/// bound unless the warning says "exactly").
pub const LOST_BYTES: &str = "logwharf_lost_bytes_total";
/// Times lines of a container were lost for one sink (labels as `logwharf_lost_bytes_total`):
/// each is one warning, and counts even when the bytes cannot be known.
pub const LOST_GAPS: &str = "logwharf_lost_gaps_total";
/// Bytes of files Docker deleted that a json-file source still holds open because some sink
/// has not delivered them yet (gauge; label: source).
pub const HELD_BYTES: &str = "logwharf_held_bytes";
/// Bytes written to a file but not yet acknowledged (gauge; labels: source, container).
pub const CHECKPOINT_LAG_BYTES: &str = "logwharf_checkpoint_lag_bytes";
/// Input a receiving source refused or could not read (labels: source, `kind`). fluent:
/// garbage, truncated, too_large, gzip, decompressed_too_large, auth, tls (each closes the
/// offending connection only), accept, too_many_partials (a connection's oldest open partial
/// line shipped early); syslog: frame_too_large, bad_octet_count, incomplete_frame,
/// invalid_utf8, malformed, timeout, read, accept, too_many_connections, tls_handshake;
/// docker_json_file: bad_label (a `logwharf.rate_limit` label that is not a rate).
pub const SOURCE_ERRORS: &str = "logwharf_source_errors_total";
/// Datagrams a UDP receiver lost (labels: source, `reason`: `pipeline_full`, or
/// `receive_buffer` when the kernel dropped them before they were read).
pub const SOURCE_DROPPED: &str = "logwharf_source_dropped_events_total";
/// Open client connections of a receiving source (gauge).
pub const SOURCE_CONNECTIONS: &str = "logwharf_source_connections";
/// Seconds a json-file reader waited before reading on because its container is over its
/// `rate_limit` (labels: source, container, sink; counted in whole seconds).
pub const RATE_LIMITED_SECONDS: &str = "logwharf_rate_limited_seconds_total";
/// Files currently tailed (gauge).
pub const FILES_WATCHED: &str = "logwharf_files_watched";
/// Files found truncated or rewritten in place and read again from the start (copytruncate,
/// Docker with `max-file=1`; labels: source, container).
pub const FILES_REWRITTEN: &str = "logwharf_files_rewritten_total";

/// Events a sink delivered.
pub const SINK_EVENTS: &str = "logwharf_sink_events_total";
/// Bytes a sink wrote (encoded).
pub const SINK_BYTES: &str = "logwharf_sink_bytes_total";
/// Events a sink cut at a size limit (syslog UDP datagram cap).
pub const SINK_TRUNCATED: &str = "logwharf_sink_truncated_events_total";
/// Bytes a sink wrote again after a connection loss (syslog resend window).
pub const SINK_RESENT_BYTES: &str = "logwharf_sink_resent_bytes_total";
/// Sink errors (label `kind`).
pub const SINK_ERRORS: &str = "logwharf_sink_errors_total";
/// Sink retries after a transient error.
pub const SINK_RETRIES: &str = "logwharf_sink_retries_total";
/// Times a sink found its client's send queue full and waited (backpressure; label `sink`).
pub const SINK_BACKPRESSURE: &str = "logwharf_sink_backpressure_total";
/// Times a sink replaced its client after a fatal client error (label `sink`).
pub const SINK_CLIENT_RESTARTS: &str = "logwharf_sink_client_restarts_total";
/// Events handed to a sink's client and not yet delivered or refused (gauge; label `sink`).
pub const SINK_INFLIGHT_EVENTS: &str = "logwharf_sink_inflight_events";
/// Events dropped because a `when_full = "drop_newest"` buffer was full (labels: sink, container).
pub const BUFFER_DROPPED: &str = "logwharf_buffer_dropped_events_total";
/// Events waiting in a sink's buffer (gauge; disk buffers: written and not yet delivered).
pub const BUFFER_EVENTS: &str = "logwharf_buffer_events";
/// Bytes of a disk buffer's segment files (gauge; label `sink`).
pub const BUFFER_BYTES: &str = "logwharf_buffer_bytes";
/// Damaged regions of a disk buffer skipped on reading: each is one or more records that
/// failed their checksum or framing, up to the next valid record (label `sink`).
pub const BUFFER_CORRUPT_RECORDS: &str = "logwharf_buffer_corrupt_records_total";
/// Batches a disk buffer could not write (disk full, I/O error; label `sink`): not
/// acknowledged to their source.
pub const BUFFER_WRITE_ERRORS: &str = "logwharf_buffer_write_errors_total";
/// Events a sink's filter (or a container's `logwharf.sinks` label) kept from it, by `sink`;
/// settled for that sink, not lost.
pub const SINK_FILTERED_EVENTS: &str = "logwharf_sink_filtered_events_total";
/// Checkpoint file writes that failed.
pub const CHECKPOINT_WRITE_ERRORS: &str = "logwharf_checkpoint_write_errors_total";
/// Events a sink's peer refused for good, counted instead of retried (labels: sink, `reason`,
/// e.g. CloudWatch's `too_old`, `too_new`, `expired`, `invalid_parameter`, `empty`).
pub const SINK_REJECTED_EVENTS: &str = "logwharf_sink_rejected_events_total";
/// Events a sink refused for good and wrote to its dead-letter file (labels: sink, `reason`:
/// the sink's refusal, e.g. `message_too_large`, `invalid_topic`, `too_old`, `datagram_truncated`).
pub const DEAD_LETTER_EVENTS: &str = "logwharf_dead_letter_events_total";
/// Refused events that could not be written to the dead-letter file (labels: sink, `reason`:
/// `full` — the file is at its `max_size` — or `error`, a write error); still counted as
/// refused by the sink.
pub const DEAD_LETTER_DROPPED: &str = "logwharf_dead_letter_dropped_events_total";
/// Rendered template values a sink changed to fit its destination's character set or length
/// (label: sink; sinks/src/util/confine.rs).
pub const SINK_CONFINED_VALUES: &str = "logwharf_sink_confined_values_total";
/// Messages over a sink's per-event size limit (labels: sink, `action` = `split` | `truncate`).
pub const SINK_OVERSIZE_EVENTS: &str = "logwharf_sink_oversize_events_total";
/// Requests a sink sent (labels: sink, `outcome` = `ok` or an error kind).
pub const SINK_REQUESTS: &str = "logwharf_sink_requests_total";

/// Times the supervisor restarted a source or sink whose task returned an error or panicked
/// (label `component` = `sources.NAME` or `sinks.NAME`; present at 0 from the start).
pub const COMPONENT_RESTARTS: &str = "logwharf_component_restarts_total";

/// Reconnections to the Docker daemon (label: host).
pub const DOCKER_RECONNECTS: &str = "logwharf_docker_reconnects_total";
/// Docker API log streams (re)attached (labels: source, sink, reason =
/// start|watchdog|error|eof|backpressure).
pub const DOCKER_STREAM_ATTACHES: &str = "logwharf_docker_stream_attaches_total";
/// Docker API log frames that could not be parsed and were passed on raw (labels: source, container).
pub const DOCKER_BAD_FRAMES: &str = "logwharf_docker_bad_frames_total";
/// Lines skipped after a re-attach because the cursor shows they were already read (labels:
/// source, sink).
pub const DOCKER_REPLAY_SKIPPED: &str = "logwharf_docker_replay_skipped_total";
/// Re-attached Docker API streams that no longer had the line at their cursor (labels: source,
/// container, sink): Docker rotated it away before that sink's stream read past it, and lines
/// after it may be gone too — how many, the API cannot say (no offsets, no sizes).
pub const DOCKER_STREAM_GAPS: &str = "logwharf_docker_stream_gaps_total";
/// Events merged into a preceding multiline event (label: source).
pub const MULTILINE_MERGED: &str = "logwharf_multiline_merged_lines_total";

/// Messages of the partitions a `kafka` source owns that the group has not committed yet
/// (gauge; labels: source, topic, partition; from librdkafka's statistics, 0 once the
/// partition moved to another member).
pub const KAFKA_CONSUMER_LAG: &str = "logwharf_kafka_consumer_lag";
/// Offset commits a `kafka` source made (labels: source, `result` = `ok` | `error`).
pub const KAFKA_COMMITS: &str = "logwharf_kafka_commits_total";
/// Partitions assigned to or revoked from a `kafka` source by its group (labels: source,
/// `kind` = `assign` | `revoke` | `error`).
pub const KAFKA_REBALANCES: &str = "logwharf_kafka_rebalances_total";
/// Kafka messages that did not decode and were passed on raw, flagged malformed (labels:
/// source, topic, `kind` = `invalid_json` | `no_message` | `invalid_time` |
/// `invalid_docker_line`).
pub const KAFKA_DECODE_ERRORS: &str = "logwharf_kafka_decode_errors_total";
/// Messages a `kafka` source had sent into the pipeline from a partition it gave up before
/// every sink delivered them: the partition's next owner reads them again (label: source).
pub const KAFKA_UNSETTLED_ON_REVOKE: &str = "logwharf_kafka_unsettled_batches_on_revoke_total";
/// Offsets between the group's committed offset and the first message an assignment read
/// (labels: source, topic, partition): deleted by retention before they were read, compacted
/// away, transaction markers, or not returned by the broker. Read from the committed offset
/// once per partition and assignment.
pub const KAFKA_SKIPPED_OFFSETS: &str = "logwharf_kafka_skipped_offsets_total";

/// A per-container counter that joins the exported metrics at its first increment. The rare
/// ones (losses, malformed lines, rate limiting) would otherwise be a dozen series per
/// container that stay at zero: with 1,000 containers, most of the recorder's memory and of
/// every scrape. Absent reads as zero in Prometheus' sums, as in the tests'.
pub struct LazyCounter(Option<Box<LazyInner>>);

struct LazyInner {
    name: &'static str,
    labels: Vec<(&'static str, LabelValue)>,
    counter: std::sync::OnceLock<metrics::Counter>,
}

/// A label's value, kept until the counter registers: shared by a container's counters.
#[derive(Clone)]
pub enum LabelValue {
    Static(&'static str),
    Shared(std::sync::Arc<str>),
}

impl LazyCounter {
    pub fn new(name: &'static str, labels: Vec<(&'static str, LabelValue)>) -> Self {
        LazyCounter(Some(Box::new(LazyInner {
            name,
            labels,
            counter: std::sync::OnceLock::new(),
        })))
    }

    pub fn noop() -> Self {
        LazyCounter(None)
    }

    pub fn increment(&self, n: u64) {
        let Some(inner) = self.0.as_ref().filter(|_| n > 0) else {
            return;
        };
        inner
            .counter
            .get_or_init(|| {
                let labels: Vec<metrics::Label> = inner
                    .labels
                    .iter()
                    .map(|(k, v)| match v {
                        LabelValue::Static(v) => metrics::Label::new(*k, *v),
                        LabelValue::Shared(v) => metrics::Label::new(*k, v.to_string()),
                    })
                    .collect();
                metrics::counter!(inner.name, labels)
            })
            .increment(n);
    }
}
