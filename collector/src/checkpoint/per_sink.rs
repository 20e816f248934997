//! Checkpoint keys of sources that keep one position per (input, sink) — a container's log
//! read once per sink, so that sinks progress independently — and the upgrade from the single
//! per-input key that versions before per-sink positions wrote.
//!
//! Keys: `<source>/<input>` (the old form; still used when no sink reads the source) and
//! `<source>/<input>/<sink>`. The old value meant "every sink has delivered up to here", so it
//! becomes the starting position of every sink that has none of its own: nothing is shipped
//! twice or skipped because the format changed.

use super::CheckpointStore;
use std::sync::Arc;

/// The key of an input's position as versions before per-sink positions wrote it.
pub fn input_key(source: &str, input: &str) -> String {
    format!("{source}/{input}")
}

/// The key of one sink's position in an input.
pub fn sink_key(source: &str, input: &str, sink: &str) -> String {
    format!("{source}/{input}/{sink}")
}

/// Upgrade: carries `<source>/<input>` over to every sink's key that is not set yet, then
/// removes it. Returns whether there was an old key. A crash between the steps leaves both;
/// the next call finishes the job (set keys are never overwritten).
pub fn carry_over(store: &CheckpointStore, source: &str, input: &str, sinks: &[Arc<str>]) -> bool {
    if sinks.is_empty() {
        return false;
    }
    let old = input_key(source, input);
    let Some(v) = store.get(&old) else {
        return false;
    };
    for sink in sinks {
        let key = sink_key(source, input, sink);
        if store.get(&key).is_none() {
            store.set(&key, v.clone());
        }
    }
    store.remove(&old);
    tracing::info!(
        source,
        input,
        sinks = sinks.len(),
        "carried the checkpoint over to every sink's own position"
    );
    true
}

/// Forgets every position of an input (its old key and every sink's).
pub fn remove_input(store: &CheckpointStore, source: &str, input: &str) {
    store.remove(&input_key(source, input));
    for (key, _) in store.with_prefix(&format!("{}/", input_key(source, input))) {
        store.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn store() -> (tempfile::TempDir, CheckpointStore) {
        let d = tempfile::tempdir().unwrap();
        let s = CheckpointStore::open(d.path()).unwrap();
        (d, s)
    }

    #[test]
    fn the_old_key_becomes_every_sinks_position_once() {
        let (_d, s) = store();
        s.set("src/abc", json!({"pos": 1}));
        // One sink already has its own (a crash after a partial upgrade): kept.
        s.set("src/abc/b", json!({"pos": 7}));
        let sinks: Vec<Arc<str>> = vec!["a".into(), "b".into()];
        assert!(carry_over(&s, "src", "abc", &sinks));
        assert_eq!(s.get("src/abc/a"), Some(json!({"pos": 1})));
        assert_eq!(s.get("src/abc/b"), Some(json!({"pos": 7})));
        assert_eq!(s.get("src/abc"), None);
        assert!(
            !carry_over(&s, "src", "abc", &sinks),
            "nothing left to carry"
        );
        assert_eq!(s.get("src/abc/a"), Some(json!({"pos": 1})));
    }

    #[test]
    fn without_sinks_the_old_key_stays() {
        let (_d, s) = store();
        s.set("src/abc", json!(1));
        assert!(!carry_over(&s, "src", "abc", &[]));
        assert_eq!(s.get("src/abc"), Some(json!(1)));
    }

    #[test]
    fn remove_input_forgets_only_that_input() {
        let (_d, s) = store();
        for k in [
            "src/abc",
            "src/abc/a",
            "src/abc/b",
            "src/abcd/a",
            "other/abc/a",
        ] {
            s.set(k, json!(1));
        }
        remove_input(&s, "src", "abc");
        let left: Vec<String> = [
            "src/abc",
            "src/abc/a",
            "src/abc/b",
            "src/abcd/a",
            "other/abc/a",
        ]
        .into_iter()
        .filter(|k| s.get(k).is_some())
        .map(String::from)
        .collect();
        assert_eq!(left, vec!["src/abcd/a", "other/abc/a"]);
    }
}
