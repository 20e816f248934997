//! Shared pieces of logwharf's fuzz targets (fuzz_targets/*.rs, one per decoder; see the
//! README's "Fuzzing" section and scripts/fuzz).
//!
//! The sinks crate links librdkafka and the AWS SDK, whose cold build with instrumentation
//! would take half an hour, so the two sinks modules a target needs (value confinement and the
//! render rule, both plain functions over logwharf-collector/-config types) are compiled here
//! from their own source files instead of through that crate.

// At the crate root, as `render.rs` reaches `confine.rs` as `super::confine`.
#[path = "../../sinks/src/util/confine.rs"]
pub mod confine;
#[path = "../../sinks/src/util/render.rs"]
pub mod render;

/// The trust boundary's promise for what a peer sent (collector/src/untrusted.rs): a
/// container id is empty or Docker's 64-hex form, a name has no control characters.
pub fn assert_trusted_container(c: &logwharf_collector::event::ContainerMeta) {
    assert!(
        c.id.is_empty() || logwharf_collector::untrusted::is_container_id(c.id.as_bytes()),
        "id {:?}",
        c.id
    );
    if let Some(n) = &c.name {
        assert!(!n.chars().any(char::is_control), "name {n:?}");
    }
}

/// Splits a fuzz input into a few control bytes and the data after them (zeros when short).
pub fn split_control<const N: usize>(data: &[u8]) -> ([u8; N], &[u8]) {
    let mut c = [0u8; N];
    let n = data.len().min(N);
    c[..n].copy_from_slice(&data[..n]);
    (c, &data[n..])
}

/// Cuts `data` into chunks whose sizes come from `sizes` (cycled; 0 is read as 1), the way a
/// socket delivers a stream in reads of unpredictable size.
pub fn chunks<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let s = sizes.get(i % sizes.len().max(1)).copied().unwrap_or(255);
        let n = (s as usize).max(1).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
        i += 1;
    }
    out
}
