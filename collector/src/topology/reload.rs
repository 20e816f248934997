//! What a reload changes: the plan that turns the running set of components into a new
//! config's ([`Plan`]), and the count of a source's unsettled batches ([`Outstanding`]) that a
//! reload waits on before the source's next instance starts from its checkpoints.
//!
//! A component is "unchanged" when its whole config (type, keys, `inputs`, `buffer`, `filter`)
//! is the same; it then keeps running untouched. A sink that changed is a new sink: a new
//! buffer, while the old instance drains what it holds. A source restarts when its own config
//! changed or when the set of sinks it feeds changed (a sink added, removed or replaced that
//! reads it): its readers hold their sinks' buffers, and a json-file source keeps one reader
//! per sink.

use crate::ack::OnDelivered;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Batches a source instance sent that some sink has not settled yet.
#[derive(Default)]
pub struct Outstanding {
    n: AtomicUsize,
    settled: Notify,
}

impl Outstanding {
    /// Counts one batch until `on_done` runs (every sink settled it, or gave it up).
    pub fn track(self: &Arc<Self>, on_done: Option<OnDelivered>) -> OnDelivered {
        self.n.fetch_add(1, Ordering::AcqRel);
        let me = self.clone();
        Box::new(move |ok| {
            if let Some(f) = on_done {
                f(ok);
            }
            if me.n.fetch_sub(1, Ordering::AcqRel) == 1 {
                me.settled.notify_waiters();
            }
        })
    }

    pub fn count(&self) -> usize {
        self.n.load(Ordering::Acquire)
    }

    /// Waits until nothing is outstanding, at most `limit`; `false` when time ran out.
    pub async fn settled(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.settled.notified();
                if self.count() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

/// A component's identity for a reload: its config as text (`Debug` of the decoded struct,
/// so formatting and comments in the file do not count as changes).
pub fn fingerprint(config: &impl std::fmt::Debug) -> String {
    format!("{config:?}")
}

/// Components by name → their fingerprints (`print` finds or computes one).
pub fn prints<'a, T: 'a>(
    components: impl IntoIterator<Item = (&'a String, &'a T)>,
    print: impl Fn(&T) -> String,
) -> BTreeMap<String, String> {
    components
        .into_iter()
        .map(|(name, c)| (name.clone(), print(c)))
        .collect()
}

/// What a reload does, by component name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub sinks_added: Vec<String>,
    pub sinks_changed: Vec<String>,
    pub sinks_removed: Vec<String>,
    pub sources_added: Vec<String>,
    pub sources_changed: Vec<String>,
    pub sources_removed: Vec<String>,
    pub sources_unchanged: Vec<String>,
}

impl Plan {
    /// `old` and `new`: each component's name and fingerprint.
    pub fn between(
        old_sinks: &BTreeMap<String, String>,
        new_sinks: &BTreeMap<String, String>,
        old_sources: &BTreeMap<String, String>,
        new_sources: &BTreeMap<String, String>,
    ) -> Plan {
        let mut p = Plan::default();
        diff(
            old_sinks,
            new_sinks,
            &mut p.sinks_added,
            &mut p.sinks_changed,
            &mut p.sinks_removed,
            &mut Vec::new(),
        );
        diff(
            old_sources,
            new_sources,
            &mut p.sources_added,
            &mut p.sources_changed,
            &mut p.sources_removed,
            &mut p.sources_unchanged,
        );
        p
    }

    pub fn is_empty(&self) -> bool {
        self.sinks_added.is_empty()
            && self.sinks_changed.is_empty()
            && self.sinks_removed.is_empty()
            && self.sources_added.is_empty()
            && self.sources_changed.is_empty()
            && self.sources_removed.is_empty()
    }
}

fn diff(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    added: &mut Vec<String>,
    changed: &mut Vec<String>,
    removed: &mut Vec<String>,
    unchanged: &mut Vec<String>,
) {
    for (name, fp) in new {
        match old.get(name) {
            None => added.push(name.clone()),
            Some(o) if o != fp => changed.push(name.clone()),
            Some(_) => unchanged.push(name.clone()),
        }
    }
    removed.extend(old.keys().filter(|n| !new.contains_key(*n)).cloned());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(items: &[(&str, &str)]) -> BTreeMap<String, String> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn names_what_was_added_changed_and_removed() {
        let p = Plan::between(
            &map(&[("a", "1"), ("b", "1"), ("c", "1")]),
            &map(&[("a", "1"), ("b", "2"), ("d", "1")]),
            &map(&[("logs", "x")]),
            &map(&[("logs", "x")]),
        );
        assert_eq!(p.sinks_added, ["d"]);
        assert_eq!(p.sinks_changed, ["b"]);
        assert_eq!(p.sinks_removed, ["c"]);
        assert_eq!(p.sources_unchanged, ["logs"]);
        assert!(!p.is_empty());
        let same = Plan::between(
            &map(&[("a", "1")]),
            &map(&[("a", "1")]),
            &map(&[]),
            &map(&[]),
        );
        assert!(same.is_empty());
    }

    #[tokio::test]
    async fn outstanding_settles_when_every_batch_is_done() {
        let o = Arc::new(Outstanding::default());
        let a = o.track(None);
        let b = o.track(None);
        assert!(!o.settled(Duration::from_millis(20)).await);
        a(true);
        assert_eq!(o.count(), 1);
        let waiter = tokio::spawn({
            let o = o.clone();
            async move { o.settled(Duration::from_secs(30)).await }
        });
        b(false);
        assert!(waiter.await.unwrap());
    }
}
