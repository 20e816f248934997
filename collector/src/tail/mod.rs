//! Following log files: the machinery the file-reading sources share — `docker_json_file`
//! (Docker's json-file logs) and `docker_daemon` in file mode (dockerd's own log).
//!
//! - [`blocking`]: the bounded blocking pool every read, stat and directory listing of these
//!   sources runs on, so that no blocking syscall holds a runtime thread;
//! - [`fingerprint`]: which file is this, by the CRC32 of its first line (across renames,
//!   compression, inode reuse and copytruncate);
//! - [`siblings`]: a log file and its rotated `.N` / `.N.gz` siblings, listed oldest first;
//! - [`file`]: [`file::OpenFile`], one of them held open and read by `pread` (gzip
//!   decompressed), and [`file::FileIdentity`], which file it is to a reader's positions.
//!
//! What is particular to a source stays with it: the json-file hold, loss accounting,
//! partial-line joining, parser and checkpoint format in `sources/docker_json_file/`; the
//! daemon's logfmt lines and its checkpoint in `sources/docker_daemon/`.

pub mod blocking;
pub mod file;
pub mod fingerprint;
pub mod siblings;
