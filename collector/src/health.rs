//! What `/health` reports: the state of every supervised source and sink ([`Health`]), kept by
//! the supervisor ([`crate::supervisor`]) through one [`ComponentHealth`] handle per component.
//!
//! A component is *up* while it runs, and — after a restart — once it has proven itself: a sink
//! by delivering a batch, any component by running [`STABLE_AFTER`] without failing again. A
//! component that restarts every few seconds is therefore reported down the whole time rather
//! than flapping between up and down. The pipeline is healthy when it has started, is not
//! stopping, and every component is up (or finished: a `--once` source that has read
//! everything).

use crate::time::{format_rfc3339, Fraction};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a restarted component must run without failing to count as up again (and to have
/// its restart backoff reset).
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    Stopping,
}

/// The health of the whole pipeline; cheap to clone (shared with the API).
#[derive(Clone)]
pub struct Health(Arc<Mutex<Inner>>);

struct Inner {
    phase: Phase,
    components: BTreeMap<String, ComponentHealth>,
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

impl Health {
    pub fn new() -> Health {
        Health(Arc::new(Mutex::new(Inner {
            phase: Phase::Starting,
            components: BTreeMap::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a component (`sources.NAME` or `sinks.NAME`) and returns its handle.
    pub fn register(&self, component: &str) -> ComponentHealth {
        let h = ComponentHealth(Arc::new(Shared {
            component: component.into(),
            delivered: AtomicBool::new(false),
            state: Mutex::new(State {
                status: Status::Starting,
                restarts: 0,
                last_error: None,
                started: Instant::now(),
            }),
        }));
        self.lock().components.insert(component.into(), h.clone());
        h
    }

    /// Every component has been started.
    /// Forgets a component a reload removed.
    pub fn remove(&self, component: &str) {
        self.lock().components.remove(component);
    }

    pub fn set_running(&self) {
        let mut g = self.lock();
        if g.phase == Phase::Starting {
            g.phase = Phase::Running;
        }
    }

    /// The pipeline is stopping (shutdown, or `--once` has read everything).
    pub fn set_stopping(&self) {
        self.lock().phase = Phase::Stopping;
    }

    /// The report `/health` serves: healthy or not, and a JSON document naming every component
    /// with its state (and, for those that are not up, why).
    pub fn report(&self) -> (bool, serde_json::Value) {
        let g = self.lock();
        let mut failing = Vec::new();
        let mut components = serde_json::Map::new();
        for (name, c) in &g.components {
            let s = c.snapshot();
            if !s.up {
                failing.push(serde_json::Value::from(name.as_str()));
            }
            components.insert(name.clone(), s.to_json());
        }
        let status = match g.phase {
            Phase::Starting => "starting",
            Phase::Stopping => "stopping",
            Phase::Running if failing.is_empty() => "ok",
            Phase::Running => "failing",
        };
        let healthy = status == "ok";
        // `ok`: what earlier versions answered with alone (`{"ok":true}`).
        let doc = serde_json::json!({
            "ok": healthy,
            "status": status,
            "failing": failing,
            "components": components,
        });
        (healthy, doc)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Built, not started yet.
    Starting,
    /// Its task is running.
    Running,
    /// It failed and waits for its restart.
    Restarting,
    /// It returned normally (a `--once` source at the end of its input, a drained sink).
    Finished,
}

struct State {
    status: Status,
    restarts: u64,
    last_error: Option<(String, i64)>,
    /// When the current run began.
    started: Instant,
}

struct Shared {
    component: Arc<str>,
    /// A batch was delivered since the current run began (sinks).
    delivered: AtomicBool,
    state: Mutex<State>,
}

/// One component's entry, updated by its supervisor (and by its sink's deliveries).
#[derive(Clone)]
pub struct ComponentHealth(Arc<Shared>);

/// One component's state at one moment.
pub struct Snapshot {
    pub up: bool,
    pub state: &'static str,
    pub restarts: u64,
    pub last_error: Option<(String, i64)>,
}

impl Snapshot {
    fn to_json(&self) -> serde_json::Value {
        let mut o = serde_json::json!({ "state": self.state, "restarts": self.restarts });
        if let Some((e, at)) = &self.last_error {
            o["last_error"] = e.as_str().into();
            o["last_error_time"] = format_rfc3339(*at, Fraction::Seconds).into();
        }
        o
    }
}

impl ComponentHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `sources.NAME` or `sinks.NAME`.
    pub fn component(&self) -> &Arc<str> {
        &self.0.component
    }

    /// A run of the component begins.
    pub fn started(&self) {
        self.0.delivered.store(false, Ordering::Relaxed);
        let mut g = self.lock();
        g.status = Status::Running;
        g.started = Instant::now();
    }

    /// The sink delivered a batch: a restarted sink is up again. Cheap: called per batch.
    pub fn delivered(&self) {
        if !self.0.delivered.load(Ordering::Relaxed) {
            self.0.delivered.store(true, Ordering::Relaxed);
        }
    }

    /// The current run failed with `cause`; returns whether that run had proven itself (so
    /// the restart backoff may start over).
    pub fn failed(&self, cause: &str) -> bool {
        let mut g = self.lock();
        let proven = self.proven(&g);
        g.status = Status::Restarting;
        g.restarts += 1;
        g.last_error = Some((cause.to_string(), crate::time::now_nanos()));
        proven
    }

    /// The component returned normally and is not restarted.
    pub fn finished(&self) {
        self.lock().status = Status::Finished;
    }

    fn proven(&self, g: &State) -> bool {
        self.0.delivered.load(Ordering::Relaxed) || g.started.elapsed() >= STABLE_AFTER
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        let (up, state) = match g.status {
            Status::Starting => (false, "starting"),
            Status::Running if g.restarts == 0 || self.proven(&g) => (true, "running"),
            Status::Running => (false, "recovering"),
            Status::Restarting => (false, "restarting"),
            Status::Finished => (true, "finished"),
        };
        Snapshot {
            up,
            state,
            restarts: g.restarts,
            last_error: g.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_when_running_and_every_component_is_up() {
        let h = Health::new();
        let a = h.register("sources.a");
        let b = h.register("sinks.b");
        assert_eq!(h.report().1["status"], "starting");
        a.started();
        b.started();
        h.set_running();
        let (ok, doc) = h.report();
        assert!(ok, "{doc}");

        b.failed("disk full");
        let (ok, doc) = h.report();
        assert!(!ok);
        assert_eq!(doc["failing"], serde_json::json!(["sinks.b"]));
        assert_eq!(doc["components"]["sinks.b"]["state"], "restarting");
        assert_eq!(doc["components"]["sinks.b"]["last_error"], "disk full");

        // Restarted: still down until it delivers (or has run STABLE_AFTER).
        b.started();
        assert_eq!(h.report().1["components"]["sinks.b"]["state"], "recovering");
        b.delivered();
        let (ok, doc) = h.report();
        assert!(ok, "{doc}");
        assert_eq!(doc["components"]["sinks.b"]["restarts"], 1);

        a.finished();
        assert!(h.report().0, "a finished source is not a failure");
        h.set_stopping();
        assert_eq!(h.report().1["status"], "stopping");
    }
}
