//! Container events from Docker's `/events` stream, reduced to what logwharf acts on.

use bollard::models::{EventMessage, EventMessageTypeEnum};

/// The container lifecycle actions logwharf follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Create,
    Start,
    Die,
    Destroy,
    Rename,
    Oom,
    Kill,
}

impl EventKind {
    /// The `/events` filter values, in Docker's words.
    pub const ALL: [&'static str; 7] =
        ["create", "start", "die", "destroy", "rename", "oom", "kill"];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Create => "create",
            EventKind::Start => "start",
            EventKind::Die => "die",
            EventKind::Destroy => "destroy",
            EventKind::Rename => "rename",
            EventKind::Oom => "oom",
            EventKind::Kill => "kill",
        }
    }

    fn from_action(a: &str) -> Option<EventKind> {
        Some(match a {
            "create" => EventKind::Create,
            "start" => EventKind::Start,
            "die" => EventKind::Die,
            "destroy" => EventKind::Destroy,
            "rename" => EventKind::Rename,
            "oom" => EventKind::Oom,
            "kill" => EventKind::Kill,
            _ => return None,
        })
    }
}

/// One container event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub kind: EventKind,
    /// Full container id.
    pub id: String,
    /// Nanoseconds since the epoch (the daemon's clock).
    pub time_ns: i64,
    /// `die`: the exit code.
    pub exit_code: Option<i64>,
    /// `kill`: the signal number.
    pub signal: Option<String>,
    /// The container's name at the time of the event (after a rename: the new one).
    pub name: Option<String>,
}

/// A container event logwharf follows, or `None` (another type or action, or no id).
pub fn parse_event(m: &EventMessage) -> Option<ContainerEvent> {
    if !matches!(m.typ, Some(EventMessageTypeEnum::CONTAINER) | None) {
        return None;
    }
    let kind = EventKind::from_action(m.action.as_deref()?)?;
    let actor = m.actor.as_ref()?;
    let id = actor.id.as_deref().filter(|s| !s.is_empty())?.to_string();
    let attr = |k: &str| actor.attributes.as_ref().and_then(|a| a.get(k)).cloned();
    let time_ns = m
        .time_nano
        .or_else(|| m.time.map(|s| s.saturating_mul(1_000_000_000)))
        .unwrap_or_else(crate::time::now_nanos);
    Some(ContainerEvent {
        kind,
        id,
        time_ns,
        exit_code: attr("exitCode").and_then(|c| c.parse().ok()),
        signal: attr("signal"),
        name: attr("name").map(|n| n.trim_start_matches('/').to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_die_event() {
        // As Docker 20.10 writes it on /events.
        let raw = r#"{"status":"die","id":"4f1b","from":"logwharf-busybox","Type":"container","Action":"die","Actor":{"ID":"4f1b","Attributes":{"exitCode":"3","image":"logwharf-busybox","name":"web"}},"scope":"local","time":1795611862,"timeNano":1795611862901652423}"#;
        let m: EventMessage = serde_json::from_str(raw).unwrap();
        let e = parse_event(&m).unwrap();
        assert_eq!(e.kind, EventKind::Die);
        assert_eq!(e.id, "4f1b");
        assert_eq!(e.exit_code, Some(3));
        assert_eq!(e.name.as_deref(), Some("web"));
        assert_eq!(e.time_ns, 1_795_611_862_901_652_423);
    }

    #[test]
    fn ignores_other_events() {
        let raw = r#"{"Type":"container","Action":"exec_start: sh","Actor":{"ID":"4f1b"}}"#;
        assert!(parse_event(&serde_json::from_str(raw).unwrap()).is_none());
        let raw = r#"{"Type":"network","Action":"connect","Actor":{"ID":"n"}}"#;
        assert!(parse_event(&serde_json::from_str(raw).unwrap()).is_none());
        let raw = r#"{"Type":"container","Action":"start","Actor":{}}"#;
        assert!(parse_event(&serde_json::from_str(raw).unwrap()).is_none());
    }
}
