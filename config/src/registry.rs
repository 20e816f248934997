//! How components register: each crate that has sources or sinks keeps one table of
//! [`ComponentType`]s (a `type` name and how to decode its table), and the binary hands both
//! tables to the loader as a [`Registry`]. Adding a component is one folder plus one line in
//! one table; this crate never names a component.

use crate::load::Decoder;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// One `type` a `[sources.NAME]` or `[sinks.NAME]` table may have. `K` is the trait object the
/// registering crate stores (e.g. `dyn SinkConfig`).
pub struct ComponentType<K: ?Sized> {
    /// The `type` value, e.g. `"syslog"`.
    pub name: &'static str,
    /// Decodes the table's type-specific keys and validates them; `None` means errors were
    /// recorded through the decoder.
    pub decode: fn(&mut Decoder<'_>) -> Option<Arc<K>>,
}

/// The source and sink types one program knows.
pub struct Registry<'a, S: ?Sized, K: ?Sized> {
    pub sources: &'a [ComponentType<S>],
    pub sinks: &'a [ComponentType<K>],
}

/// The known type names of one kind, sorted (for "unknown type … (known: …)").
pub(crate) fn type_names<T: ?Sized>(types: &[ComponentType<T>]) -> Vec<&'static str> {
    let mut v: Vec<_> = types.iter().map(|t| t.name).collect();
    v.sort_unstable();
    v
}

/// A component's config struct as its table is read: decoded (by default straight from its
/// keys; a struct that shares a key group decodes it with [`Decoder::decode_with_group`]), then
/// checked beyond what serde's types express. Errors are recorded at their keys through the
/// decoder, so one pass reports them all.
pub trait ConfigTable: DeserializeOwned {
    fn decode(d: &mut Decoder<'_>) -> Option<Self> {
        d.decode()
    }

    fn validate(&self, _d: &mut Decoder<'_>) {}
}
