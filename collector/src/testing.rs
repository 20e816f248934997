//! Helpers for the workspace's tests (unit tests of the sink crate, the end-to-end tests in
//! tests/): nothing in the pipeline uses them.
//!
//! [`free_port`] hands out loopback ports that a test binds later (or lets a child process
//! bind), so that parallel tests cannot race for one: each port is handed out once per
//! process, it is free for TCP and UDP when handed out, and it lies below the kernel's
//! ephemeral range, so that no outgoing connection (of any process) and no `bind(…:0)` can be
//! given it between the hand-out and the bind.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::{TcpListener, UdpSocket};
use std::sync::Mutex;

/// Ports handed out by this process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// The lowest port considered (above the well-known and most registered services).
const LOWEST: u16 = 10_000;

/// A loopback port that is free for TCP and UDP now and was never handed out by this process.
/// Panics when none is left (thousands of ports: only a runaway loop gets there).
pub fn free_port() -> u16 {
    let (low, high) = candidate_range();
    let span = u32::from(high - low) + 1;
    // A different start per process, so that concurrent test processes seldom probe the
    // same ports in the same order.
    let start = (RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u32;
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let used = guard.get_or_insert_with(HashSet::new);
    for i in 0..span {
        let port = low + ((start + i) % span) as u16;
        if !used.contains(&port) && is_free(port) {
            used.insert(port);
            return port;
        }
    }
    panic!("no free loopback port left in {low}..={high}");
}

/// Ports below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`, 32768 by
/// default), which the kernel never picks on its own.
fn candidate_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > LOWEST + 1_000 {
        (LOWEST, ephemeral_low - 1)
    } else {
        // An unusual range reaching down here: every port, the hand-out rule still holds.
        (LOWEST, u16::MAX)
    }
}

fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_handed_out_once_and_are_bindable() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        let (low, high) = candidate_range();
        assert!(ports.iter().all(|p| (low..=high).contains(p)));
        for p in &ports[..5] {
            TcpListener::bind(("127.0.0.1", *p)).unwrap();
        }
    }
}
