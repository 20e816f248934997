//! The metadata service against a mock Docker daemon on a unix socket (a unit test: the real
//! daemon cannot be made to send a malformed events stream). The test steps the mock (its
//! second events stream waits for the test's go) instead of racing the service's reconnect.

use super::service::{MetadataService, State};
use logwharf_config::docker::EnrichOptions;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const ID: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";

struct Mock {
    events_calls: AtomicUsize,
    renamed: std::sync::atomic::AtomicBool,
    /// The second events stream (the one with the rename) waits for this.
    rename_go: tokio::sync::Notify,
}

fn inspect(name: &str) -> String {
    format!(
        r#"{{"Id":"{ID}","Name":"/{name}","Image":"sha256:abc","State":{{"Running":true}},"Config":{{"Image":"busybox","Labels":{{"com.docker.compose.service":"web"}},"Env":["A=1"]}},"HostConfig":{{"LogConfig":{{"Type":"json-file"}}}}}}"#
    )
}

async fn respond(s: &mut UnixStream, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await
}

async fn serve(mut s: UnixStream, mock: Arc<Mock>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let mut tmp = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        if path.contains("/events") {
            let call = mock.events_calls.fetch_add(1, Ordering::SeqCst);
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await?;
            let line = if call == 0 {
                // Not JSON: the stream is broken.
                "{\"Type\":\"container\",\"Action\":\"start\",\"Actor\":{\"ID\":12}} garbage\n"
                    .to_string()
            } else {
                mock.rename_go.notified().await;
                mock.renamed.store(true, Ordering::SeqCst);
                format!("{{\"Type\":\"container\",\"Action\":\"rename\",\"Actor\":{{\"ID\":\"{ID}\",\"Attributes\":{{\"name\":\"web2\"}}}},\"time\":1}}\n")
            };
            s.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes())
                .await?;
            // Keep the stream open (as dockerd does) until the client goes away.
            let mut sink = [0u8; 64];
            while s.read(&mut sink).await? > 0 {}
            return Ok(());
        } else if path.contains("/containers/json") {
            respond(&mut s, &format!(r#"[{{"Id":"{ID}"}}]"#)).await?;
        } else if path.contains(&format!("/containers/{ID}/json")) {
            let name = if mock.renamed.load(Ordering::SeqCst) {
                "web2"
            } else {
                "web"
            };
            respond(&mut s, &inspect(name)).await?;
        } else if path.contains("/version") {
            respond(
                &mut s,
                r#"{"Version":"mock","ApiVersion":"1.41","MinAPIVersion":"1.12"}"#,
            )
            .await?;
        } else if path.contains("/_ping") {
            respond(&mut s, "OK").await?;
        } else {
            let body = r#"{"message":"not found"}"#;
            let head = format!("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
            s.write_all(head.as_bytes()).await?;
            s.write_all(body.as_bytes()).await?;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_stream_reconnects_and_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("docker.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mock = Arc::new(Mock {
        events_calls: AtomicUsize::new(0),
        renamed: Default::default(),
        rename_go: tokio::sync::Notify::new(),
    });
    let m = mock.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s, m.clone()));
        }
    });
    let svc = MetadataService::start(EnrichOptions {
        host: Some(format!("unix://{}", sock.display())),
        ..Default::default()
    })
    .unwrap();
    // True also when the garbage already broke the first stream: the first listing is done.
    assert!(
        svc.wait_ready(Duration::from_secs(60)).await,
        "{:?}",
        svc.state()
    );
    let first = svc.get(ID).expect("listed at start");
    assert_eq!(first.name.as_deref(), Some("web"));
    assert_eq!(first.compose_service.as_deref(), Some("web"));
    assert!(
        first.env.is_empty(),
        "env is never copied without a selection"
    );
    // The garbage on the first events stream makes it reconnect; the second stream's rename
    // (sent only now, so that the first record was read before it) is applied.
    mock.rename_go.notify_one();
    let ok = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if svc.get(ID).and_then(|m| m.name.clone()).as_deref() == Some("web2") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "rename not applied; state {:?}", svc.state());
    assert!(mock.events_calls.load(Ordering::SeqCst) >= 2);
    assert_eq!(svc.state(), State::Ready);
    // A new record for the renamed container; the old Arc is untouched.
    assert_eq!(first.name.as_deref(), Some("web"));
}

#[tokio::test]
async fn absent_daemon_is_unreachable_not_fatal() {
    let svc = MetadataService::start(EnrichOptions {
        host: Some("unix:///nonexistent/docker.sock".into()),
        ..Default::default()
    })
    .unwrap();
    // Returns as soon as the connection fails; the deadline only caps a hang.
    assert!(!svc.wait_ready(Duration::from_secs(60)).await);
    assert!(matches!(svc.state(), State::Unreachable(m) if m.contains("/nonexistent/docker.sock")));
    assert!(svc.wait_for("x", Duration::from_secs(5)).await.is_none());
}
