//! One configured `[sources.NAME]`: its `type` beside the source's own config struct (which
//! lives with its code in the collector crate).

use std::sync::Arc;

/// A configured source: the `type` it was declared with and its config `S` (the registering
/// crate's trait object). Derefs to `S`, so callers use the config directly.
#[derive(Debug)]
pub struct SourceOuter<S: ?Sized> {
    /// The source's `type` (names its tracing span and its metrics).
    pub type_name: &'static str,
    pub inner: Arc<S>,
}

impl<S: ?Sized> Clone for SourceOuter<S> {
    fn clone(&self) -> Self {
        SourceOuter {
            type_name: self.type_name,
            inner: self.inner.clone(),
        }
    }
}

impl<S: ?Sized> std::ops::Deref for SourceOuter<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.inner
    }
}
