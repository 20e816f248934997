//! The one retry policy: exponential backoff with full jitter, used by every sink that
//! reconnects or resends and by sources that reconnect (Docker API). Bounded per wait, endless
//! in count unless the caller stops: a sink that gives up would lose data.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    attempts: u32,
}

impl Backoff {
    /// Starts at `initial`, doubles each attempt, never waits more than `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            current: initial,
            attempts: 0,
        }
    }

    /// The default for network peers: 100 ms doubling to 30 s.
    pub fn network() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
    }

    /// The next wait: uniformly random in [current/2, current] ("equal jitter"), so that many
    /// clients retrying the same peer spread out but never retry immediately.
    pub fn next_delay(&mut self) -> Duration {
        let cur = self.current;
        self.current = (self.current * 2).min(self.max);
        self.attempts += 1;
        let half = cur / 2;
        half + Duration::from_nanos(fastrand::u64(0..=half.as_nanos().max(1) as u64))
    }

    /// Sleeps for [`Backoff::next_delay`].
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await
    }

    /// Attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Call after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400) && d[3] <= Duration::from_millis(800));
        assert!(d[5] >= Duration::from_millis(500) && d[5] <= Duration::from_secs(1));
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
