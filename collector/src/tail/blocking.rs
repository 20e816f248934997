//! The file sources' blocking work — a json-file reader's batch that may wait for the disk (what
//! the page cache holds is read on the async worker), a hold's look at its
//! directory, a reader's start, the daemon log reader's reads and stats — runs on tokio's
//! blocking pool, but at most [`slots`] jobs at a time for all of them together. So the
//! number of threads does not grow with the number of busy containers (without the bound,
//! every reader that found data held a pool thread: 424 threads for 1,000 containers), and
//! the semaphore, handing permits out first come first served, keeps containers' turns fair:
//! each job is one batch, then the reader queues again.
//!
//! A hold's look ([`look`]) has slots of its own: it must keep up with Docker's rotation (a
//! file that comes and goes between two looks is lost uncounted), so it never queues behind
//! the readers' batches, which under load take their time.

use std::sync::LazyLock;
use tokio::sync::Semaphore;
use tokio::task::JoinError;

/// At most this many blocking jobs of file sources at once: one per core, within 2..=8
/// (reads are mostly from the page cache; more threads than cores only add switching).
pub fn slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

static SLOTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(slots()));
static LOOK_SLOTS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(slots()));

/// Runs `f` on the blocking pool once a slot is free.
pub async fn run<R, F>(f: F) -> Result<R, JoinError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    within(&SLOTS, f).await
}

/// Runs a hold's look at its directory (a stat, now and then a listing) on the blocking pool,
/// within the looks' own [`slots`].
pub async fn look<R, F>(f: F) -> Result<R, JoinError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    within(&LOOK_SLOTS, f).await
}

async fn within<R, F>(slots: &Semaphore, f: F) -> Result<R, JoinError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    // Never closed, so acquiring cannot fail; the permit is held until the job is done (or
    // the caller gives up waiting for it: shutdown).
    let _slot = slots.acquire().await.expect("the slots are never closed");
    tokio::task::spawn_blocking(f).await
}
