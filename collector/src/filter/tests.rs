use super::*;
use bytes::Bytes;
use std::collections::BTreeMap;

fn container(name: &str, image: &str, labels: &[(&str, &str)]) -> Arc<ContainerMeta> {
    let mut m = ContainerMeta::from_id(format!("{name}-id"));
    m.name = Some(name.into());
    m.image_name = Some(image.into());
    m.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    Arc::new(m)
}

fn event(c: Option<&Arc<ContainerMeta>>, stream: Stream, msg: &'static str) -> Event {
    let mut e = Event::new(0, stream, Bytes::from_static(msg.as_bytes()));
    e.container = c.cloned();
    e
}

fn filter(sink: &str, json: &str) -> SinkFilter {
    let config: FilterConfig = serde_json::from_str(json).unwrap();
    SinkFilter::new(sink.into(), &config).unwrap()
}

fn kept(f: &SinkFilter, events: &[Event]) -> Vec<String> {
    match select(f, events) {
        None => events
            .iter()
            .map(|e| String::from_utf8_lossy(&e.message).into())
            .collect(),
        Some(v) => v
            .iter()
            .map(|e| String::from_utf8_lossy(&e.message).into())
            .collect(),
    }
}

#[test]
fn an_empty_filter_takes_everything_without_a_copy() {
    let f = filter("s", "{}");
    let web = container("web-1", "nginx:1", &[]);
    let events = vec![
        event(Some(&web), Stream::Stdout, "a"),
        event(None, Stream::Unknown, "b"),
    ];
    assert!(select(&f, &events).is_none());
}

#[test]
fn names_images_labels_and_streams() {
    let web = container("web-1", "nginx:1.27", &[("tier", "front")]);
    let db = container("db", "postgres:16", &[("tier", "back")]);
    let events = vec![
        event(Some(&web), Stream::Stdout, "web-out"),
        event(Some(&db), Stream::Stdout, "db-out"),
        event(Some(&web), Stream::Stderr, "web-err"),
        event(None, Stream::Unknown, "host"),
    ];
    assert_eq!(
        kept(&filter("s", r#"{"containers": ["web-*"]}"#), &events),
        ["web-out", "web-err"]
    );
    assert_eq!(
        kept(
            &filter("s", r#"{"exclude_containers": ["web-*"]}"#),
            &events
        ),
        ["db-out", "host"]
    );
    assert_eq!(
        kept(&filter("s", r#"{"images": ["postgres:*"]}"#), &events),
        ["db-out"]
    );
    assert_eq!(
        kept(&filter("s", r#"{"labels": {"tier": "f*"}}"#), &events),
        ["web-out", "web-err"]
    );
    assert_eq!(
        kept(&filter("s", r#"{"streams": ["stderr"]}"#), &events),
        ["web-err"]
    );
}

#[test]
fn the_sinks_label_limits_a_container_to_the_sinks_it_names() {
    let only_archive = container("a", "x", &[(SINKS_LABEL, "archive, central")]);
    let any = container("b", "x", &[]);
    let events = vec![
        event(Some(&only_archive), Stream::Stdout, "a"),
        event(Some(&any), Stream::Stdout, "b"),
    ];
    assert_eq!(kept(&filter("archive", "{}"), &events), ["a", "b"]);
    assert_eq!(kept(&filter("central", "{}"), &events), ["a", "b"]);
    assert_eq!(kept(&filter("console", "{}"), &events), ["b"]);
}
