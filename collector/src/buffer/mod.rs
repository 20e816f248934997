//! Sink buffers other than the bounded memory buffer (which lives in [`crate::topology`]): the
//! crash-safe [`disk`] buffer. Either way the sink reads its [`crate::SinkInput`].

pub mod disk;
