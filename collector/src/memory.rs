//! Hands the heap's free memory back to the kernel now and then. glibc's allocator keeps what
//! a burst freed (a catch-up over 1,000 containers' backlogs, a sink's outage drained) in its
//! arenas, so a daemon that has since gone quiet would keep its peak as its RSS;
//! `malloc_trim` returns the free pages. Elsewhere (musl, other systems) it does nothing.
//!
//! For the same reason glibc's own trimming is turned down ([`tune_allocator`]): by default
//! it hands pages back whenever 128 KiB at the top of a heap are free, and a reader's next
//! batch faults them in again: a bulk read spent a tenth of its time in page faults.

use crate::shutdown::Shutdown;
use std::time::Duration;

/// Often enough that a quiet daemon is back to its working set within seconds; a look at the
/// allocator's figures is microseconds, a trim milliseconds at most.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Runs until shutdown.
pub async fn trim_now_and_then(shutdown: Shutdown) {
    let mut trimmed_at_free = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TRIM_EVERY) => {}
            _ = shutdown.wait() => return,
        }
        let last = trimmed_at_free;
        if let Ok(free) = tokio::task::spawn_blocking(move || trim_if_freed(last)).await {
            trimmed_at_free = free;
        }
    }
}

/// Keeps freed memory in the allocator for reuse (the periodic trim returns it once the
/// burst is over): no trim below 64 MiB free at a heap's top, and the heap, not a mapping of
/// its own, for blocks up to 32 MiB (glibc's default threshold moves, and a block from a
/// mapping of its own is faulted in anew every time). Call once, before other threads start.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_allocator() {
    // SAFETY: mallopt only sets the allocator's parameters.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn tune_allocator() {}

/// Trims when at least this much more is free in the allocator than at the last trim (a
/// trim leaves the free chunks counted as free: only what was freed since is new).
const FREED_SINCE: usize = 4 << 20;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_if_freed(last: usize) -> usize {
    // SAFETY: both only walk the allocator's own lists, under its locks; any thread may call
    // them.
    let free = unsafe { libc::mallinfo2() }.fordblks;
    if free < last.saturating_add(FREED_SINCE) {
        return last.min(free);
    }
    unsafe {
        libc::malloc_trim(0);
    }
    free
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_if_freed(last: usize) -> usize {
    last
}
