//! The token bucket on tokio's paused clock (sleeps advance virtual time, so the figures are
//! exact), and the label that overrides the source's limit.

use super::*;
use std::collections::BTreeMap;

fn meta(label: Option<&str>) -> Arc<ContainerMeta> {
    let mut labels = BTreeMap::new();
    if let Some(v) = label {
        labels.insert(LABEL.to_string(), v.to_string());
    }
    Arc::new(ContainerMeta {
        labels,
        ..ContainerMeta::from_id("c1")
    })
}

/// Reads `total` bytes in the limiter's blocks, sleeping whenever it says so, as the reader
/// does; returns the virtual time taken.
async fn read_all(l: &mut RateLimiter, m: &Arc<ContainerMeta>, total: u64) -> Duration {
    let start = Instant::now();
    let mut read = 0;
    while read < total {
        let block = l.update(m, Instant::now()).unwrap_or(1 << 20) as u64;
        if let Some(d) = l.delay(Instant::now()) {
            tokio::time::sleep(d).await;
            l.waited(d);
        }
        let n = block.min(total - read);
        l.spend(n, Instant::now());
        read += n;
    }
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn the_bucket_holds_one_second_and_charges_debt() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(1000, t0);
    assert_eq!(b.wait(t0), Duration::ZERO, "starts full");
    b.spend(1000, t0);
    assert_eq!(
        b.wait(t0),
        Duration::ZERO,
        "the burst is one second's worth"
    );
    b.spend(500, t0);
    assert_eq!(b.wait(t0), Duration::from_millis(500), "debt is waited for");
    tokio::time::advance(Duration::from_millis(200)).await;
    assert_eq!(b.wait(Instant::now()), Duration::from_millis(300));
    tokio::time::advance(Duration::from_secs(60)).await;
    b.spend(1001, Instant::now());
    assert_eq!(
        b.wait(Instant::now()),
        Duration::from_millis(1),
        "an idle minute still refills one second's worth only"
    );
}

#[tokio::test(start_paused = true)]
async fn a_limited_reader_takes_the_time_its_rate_implies() {
    let mut l = RateLimiter::new(Some(20_000), "s", "c1", "sink", true);
    let m = meta(None);
    // 200 kB at 20 kB/s, in reads of 5 kB (a quarter second's worth): the first 20 kB (the
    // burst) at once, the last read as soon as the debt before it is paid — 175 kB waited for.
    assert_eq!(l.update(&m, Instant::now()), Some(5000));
    let took = read_all(&mut l, &m, 200_000).await;
    assert_eq!(took, Duration::from_millis(8750));
}

#[tokio::test(start_paused = true)]
async fn an_unlimited_reader_never_waits() {
    let mut l = RateLimiter::new(None, "s", "c1", "sink", true);
    let m = meta(None);
    assert_eq!(l.update(&m, Instant::now()), None);
    assert_eq!(read_all(&mut l, &m, 100 << 20).await, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn the_label_overrides_the_source_and_a_new_record_is_looked_at_again() {
    let now = Instant::now();
    let mut l = RateLimiter::new(Some(1 << 20), "s", "c1", "sink", true);
    l.update(&meta(None), now);
    assert_eq!(l.rate(), Some(1 << 20), "the source's rate_limit");
    l.update(&meta(Some("20k")), now);
    assert_eq!(l.rate(), Some(20 << 10), "the label wins");
    l.update(&meta(Some("off")), now);
    assert_eq!(l.rate(), None, "the label lifts the source's limit");
    l.update(&meta(Some("not a rate")), now);
    assert_eq!(
        l.rate(),
        Some(1 << 20),
        "a bad label: the source's limit applies"
    );

    let mut unlimited = RateLimiter::new(None, "s", "c1", "sink", false);
    unlimited.update(&meta(Some("512k")), now);
    assert_eq!(
        unlimited.rate(),
        Some(512 << 10),
        "a label limits a container of a source without a limit"
    );
}

#[test]
fn label_values_parse_with_the_config_units() {
    let limit = |v: Option<&str>, default| container_limit(&meta(v), default);
    assert_eq!(limit(None, Some(7)), Ok(Some(7)));
    assert_eq!(limit(None, None), Ok(None));
    assert_eq!(limit(Some("1m"), None), Ok(Some(1 << 20)));
    assert_eq!(limit(Some(" 250KB "), Some(7)), Ok(Some(250 << 10)));
    assert_eq!(limit(Some("4096"), None), Ok(Some(4096)));
    for off in ["0", "off", "None", "unlimited"] {
        assert_eq!(limit(Some(off), Some(7)), Ok(None), "{off}");
    }
    for bad in ["", "fast", "1x", "-5k", "1m/s"] {
        let e = limit(Some(bad), Some(7)).unwrap_err();
        assert!(e.contains("invalid size"), "{bad}: {e}");
    }
}

#[tokio::test(start_paused = true)]
async fn waits_are_counted_in_whole_seconds_without_losing_the_fractions() {
    let mut l = RateLimiter::new(Some(1000), "s", "c1", "sink", true);
    for _ in 0..3 {
        l.waited(Duration::from_millis(400));
    }
    assert!((l.carry - 0.2).abs() < 1e-9, "1 s counted, 0.2 s carried");
}
