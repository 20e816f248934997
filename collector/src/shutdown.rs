//! The shutdown signal every task watches: cancelled on SIGTERM/SIGINT (or when `--once`
//! finishes), after which sources stop reading and the runtime drains the sinks.

use tokio_util::sync::CancellationToken;

#[derive(Clone, Default, Debug)]
pub struct Shutdown(CancellationToken);

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown(CancellationToken::new())
    }

    /// A signal of its own that the parent's also triggers: stops one component (a reload)
    /// without stopping the rest.
    pub fn child(&self) -> Shutdown {
        Shutdown(self.0.child_token())
    }

    pub fn trigger(&self) {
        self.0.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Resolves once shutdown has been triggered.
    pub async fn wait(&self) {
        self.0.cancelled().await
    }
}
