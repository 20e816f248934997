use super::*;
use crate::checkpoint::CheckpointStore;
use crate::event::Stream;
use crate::sink::SinkInput;
use crate::tail::file::FileIdentity;
use bytes::Bytes;

fn point(seq: u64, offset: u64) -> ResumePoint {
    ResumePoint::for_test(seq, offset)
}

/// Batch `k`: three events numbered `3k..3k+3`; delivered, it makes offset `3k+3` the
/// checkpoint.
fn batch(k: u64) -> (Vec<Event>, ResumePoint) {
    let events = (3 * k..3 * k + 3)
        .map(|i| Event::new(0, Stream::Stdout, Bytes::from(i.to_string())))
        .collect();
    (events, point(0, 3 * k + 3))
}

fn numbers(b: &Batch) -> Vec<u64> {
    b.events
        .iter()
        .map(|e| std::str::from_utf8(&e.message).unwrap().parse().unwrap())
        .collect()
}

/// The own reader of a test lane: tells where it was asked to start, and reads nothing.
struct Recorder(mpsc::UnboundedSender<Handoff>);

#[async_trait::async_trait]
impl OwnReader for Recorder {
    async fn read_from(&mut self, from: Handoff) -> Option<mpsc::Receiver<LaneItem>> {
        let _ = self.0.send(from);
        None
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    group: Arc<ReadGroup>,
    inputs: Vec<SinkInput>,
    handoffs: mpsc::UnboundedReceiver<Handoff>,
    lanes: tokio::task::JoinSet<()>,
}

/// A group of sinks `(name, buffer events)`; those in `attached` are attached from the start.
fn setup(sinks: &[(&str, u32)], attached: &[usize]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CheckpointStore::open(dir.path()).unwrap());
    let (out, inputs) = SourceOutput::for_test_sinks("src", sinks);
    let views: Vec<SourceOutput> = (0..sinks.len()).map(|i| out.only(i)).collect();
    let members = sinks
        .iter()
        .enumerate()
        .map(|(i, (name, _))| Member {
            out: views[i].clone(),
            sink: (*name).into(),
            tracker: AckTracker::new(
                store.clone(),
                format!("src/c/{name}"),
                "c".into(),
                metrics::Gauge::noop(),
                None,
            ),
            position: None,
            attached: Arc::new(AtomicBool::new(false)),
        })
        .collect();
    let group = ReadGroup::new("src".into(), "c".into(), members);
    let (tx, handoffs) = mpsc::unbounded_channel();
    let mut lanes = tokio::task::JoinSet::new();
    for (i, view) in views.iter().enumerate() {
        let rx = if attached.contains(&i) {
            group.attach(i, None)
        } else {
            group.start_detached(i, None, StartAt::Beginning)
        };
        lanes.spawn(run_lane(
            group.clone(),
            i,
            rx,
            view.clone(),
            Shutdown::new(),
            Recorder(tx.clone()),
        ));
    }
    Setup {
        _dir: dir,
        group,
        inputs,
        handoffs,
        lanes,
    }
}

fn committed(m: &Member) -> Option<u64> {
    m.tracker.committed().map(|r| r.offset)
}

#[tokio::test(start_paused = true)]
async fn every_sink_gets_each_batch_once_read_and_keeps_its_own_checkpoint() {
    let mut s = setup(&[("a", 1000), ("b", 1000)], &[0, 1]);
    for k in 0..4 {
        let (events, at) = batch(k);
        s.group
            .send(events, Some(at.clone()), Some(at))
            .await
            .unwrap();
    }
    let mut got = [Vec::new(), Vec::new()];
    for (i, input) in s.inputs.iter_mut().enumerate() {
        for _ in 0..4 {
            let (b, ack) = input.recv().await.unwrap().into_parts();
            got[i].extend(numbers(&b));
            if i == 0 {
                ack.delivered(); // b delivers nothing
            }
        }
    }
    let want: Vec<u64> = (0..12).collect();
    assert_eq!(
        got,
        [want.clone(), want],
        "both sinks have every event, in order"
    );
    assert_eq!(committed(&s.group.members()[0]), Some(12));
    assert_eq!(
        committed(&s.group.members()[1]),
        None,
        "b delivered nothing"
    );
    assert!(s.group.attached().count() == 2);
}

#[tokio::test(start_paused = true)]
async fn a_sink_without_room_is_detached_where_its_last_batch_ended_and_the_others_keep_flowing() {
    // b's buffer takes 10 events (a reader's share: 5); nobody reads it.
    let mut s = setup(&[("a", 1000), ("b", 10)], &[0, 1]);
    let start = tokio::time::Instant::now();
    for k in 0..20 {
        let (events, at) = batch(k);
        s.group
            .send(events, Some(at.clone()), Some(at))
            .await
            .unwrap();
        let (b, ack) = s.inputs[0].recv().await.unwrap().into_parts();
        assert_eq!(numbers(&b), (3 * k..3 * k + 3).collect::<Vec<_>>());
        ack.delivered();
    }
    // a had room all along: the group never waited for b.
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(
        s.group.attached().map(|m| &*m.sink).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(committed(&s.group.members()[0]), Some(60));
    // b got the batches its buffer and lane had room for, and starts on its own after them.
    let mut got_b = Vec::new();
    while let Some(sb) = s.inputs[1].try_recv() {
        let (b, ack) = sb.into_parts();
        got_b.extend(numbers(&b));
        ack.delivered();
    }
    // Its lane forwards what it holds as the buffer frees up.
    loop {
        tokio::task::yield_now().await;
        match s.inputs[1].try_recv() {
            Some(sb) => {
                let (b, ack) = sb.into_parts();
                got_b.extend(numbers(&b));
                ack.delivered();
            }
            None if s.handoffs.is_empty() => tokio::time::sleep(Duration::from_millis(1)).await,
            None => break,
        }
    }
    let handoff = s.handoffs.recv().await.unwrap();
    assert!(!got_b.is_empty() && got_b.len() < 60, "{got_b:?}");
    assert_eq!(got_b, (0..got_b.len() as u64).collect::<Vec<_>>());
    assert_eq!(
        handoff.saved.map(|p| p.offset),
        Some(got_b.len() as u64),
        "b's own reader starts right after the last event the group gave it"
    );
    assert_eq!(committed(&s.group.members()[1]), Some(got_b.len() as u64));
    s.group.close();
    while s.lanes.join_next().await.is_some() {}
}

#[tokio::test(start_paused = true)]
async fn with_every_sink_full_the_group_waits_and_detaches_nobody() {
    let mut s = setup(&[("a", 6), ("b", 6)], &[0, 1]);
    let group = s.group.clone();
    let sender = tokio::spawn(async move {
        for k in 0..10 {
            let (events, at) = batch(k);
            group
                .send(events, Some(at.clone()), Some(at))
                .await
                .unwrap();
        }
    });
    tokio::time::sleep(10 * DETACH_AFTER).await;
    assert!(!sender.is_finished(), "backpressure: both sinks are full");
    assert_eq!(s.group.attached().count(), 2, "nobody is detached");
    // Both drain: everything arrives at both.
    let mut got = [Vec::new(), Vec::new()];
    while got[0].len() < 30 || got[1].len() < 30 {
        for (i, input) in s.inputs.iter_mut().enumerate() {
            if let Some(sb) = input.try_recv() {
                let (b, ack) = sb.into_parts();
                got[i].extend(numbers(&b));
                ack.delivered();
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sender.await.unwrap();
    assert_eq!(got[0], (0..30).collect::<Vec<_>>());
    assert_eq!(got[1], got[0]);
}

#[tokio::test(start_paused = true)]
async fn a_detached_reader_joins_only_where_the_groups_next_batch_starts() {
    let mut s = setup(&[("a", 1000), ("b", 1000)], &[0]);
    assert!(s.handoffs.recv().await.is_some(), "b starts on its own");
    let (events, at) = batch(0);
    s.group
        .send(events, Some(at.clone()), Some(at))
        .await
        .unwrap();
    assert!(s.group.join(1, &point(0, 2)).is_none(), "another offset");
    let elsewhere = ResumePoint {
        file: Arc::new(FileIdentity {
            ino: 9,
            ..(*point(0, 3).file).clone()
        }),
        ..point(0, 3)
    };
    assert!(s.group.join(1, &elsewhere).is_none(), "another file");
    // The same place, numbered by another reader (seq is per reader): joins.
    let mut rx = s.group.join(1, &point(7, 3)).expect("joins");
    let (events, at) = batch(1);
    s.group.send(events, Some(at.clone()), None).await.unwrap();
    let item = rx.recv().await.unwrap();
    assert_eq!(numbers(&item.batch), [3, 4, 5]);
    item.done.unwrap()(true);
    assert_eq!(committed(&s.group.members()[1]), Some(6));
    // The group holds something back for multiline merging (no join point), or has ended:
    // nobody joins.
    s.group.detach(1, false);
    assert!(s.group.join(1, &point(0, 6)).is_none());
    s.group.close();
    assert!(s.group.join(1, &point(0, 6)).is_none());
    for input in &mut s.inputs {
        while input.try_recv().is_some() {}
    }
}

#[tokio::test(start_paused = true)]
async fn with_every_sink_full_one_that_stays_full_is_detached_once_another_moves() {
    let mut s = setup(&[("a", 6), ("b", 6)], &[0, 1]);
    let group = s.group.clone();
    let sender = tokio::spawn(async move {
        for k in 0..10 {
            let (events, at) = batch(k);
            group
                .send(events, Some(at.clone()), Some(at))
                .await
                .unwrap();
        }
    });
    tokio::time::sleep(10 * DETACH_AFTER).await;
    assert_eq!(s.group.attached().count(), 2, "both full: the group waits");
    // a drains, b stays stuck.
    let mut got = Vec::new();
    while got.len() < 30 {
        if let Some(sb) = s.inputs[0].try_recv() {
            let (b, ack) = sb.into_parts();
            got.extend(numbers(&b));
            ack.delivered();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    sender.await.unwrap();
    assert_eq!(got, (0..30).collect::<Vec<_>>());
    assert_eq!(
        s.group.attached().map(|m| &*m.sink).collect::<Vec<_>>(),
        ["a"]
    );
}
