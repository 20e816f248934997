//! A container's record as a reader holds it: the shared `Arc<ContainerMeta>` from the
//! [`MetadataService`], re-checked only when the service's generation moved (one atomic load
//! per batch, no lock), so a rename or a record that arrives late reaches the next batch. A
//! container the service does not know (yet, or at all: no daemon, `enrich = false`) gets a
//! record with the id only — lines are never held waiting for metadata.

use super::MetadataService;
use crate::event::ContainerMeta;
use std::sync::Arc;
use std::time::Duration;

pub struct MetaHandle {
    service: Option<Arc<MetadataService>>,
    meta: Arc<ContainerMeta>,
    known: bool,
    seen: u64,
}

impl MetaHandle {
    /// The record of `id` as the service knows it now (or the id alone).
    pub fn new(service: Option<Arc<MetadataService>>, id: &str) -> MetaHandle {
        let mut h = MetaHandle {
            meta: Arc::new(ContainerMeta::from_id(id)),
            known: false,
            seen: u64::MAX,
            service,
        };
        h.refresh();
        h
    }

    /// Waits at most `timeout` for the service to learn the container (a directory seen before
    /// its `create` event), then goes on with whatever is known.
    pub async fn wait_known(&mut self, timeout: Duration) {
        if self.known {
            return;
        }
        if let Some(s) = &self.service {
            if let Some(m) = s.wait_for(&self.meta.id, timeout).await {
                self.meta = m;
                self.known = true;
                self.seen = s.generation();
            }
        }
    }

    /// The record to attach to this batch's events.
    pub fn current(&mut self) -> &Arc<ContainerMeta> {
        self.refresh();
        &self.meta
    }

    /// True once the service had a record for the container.
    pub fn is_known(&self) -> bool {
        self.known
    }

    fn refresh(&mut self) {
        let Some(s) = &self.service else { return };
        let g = s.generation();
        if g == self.seen {
            return;
        }
        self.seen = g;
        if let Some(m) = s.get(&self.meta.id) {
            if !Arc::ptr_eq(&m, &self.meta) {
                self.meta = m;
            }
            self.known = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_service_the_id_alone() {
        let mut h = MetaHandle::new(None, "abc");
        assert_eq!(h.current().id, "abc");
        assert!(h.current().name.is_none());
        assert!(!h.is_known());
    }
}
