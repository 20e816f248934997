//! `type = "console"`: every event to stdout, one line each, in the configured encoding
//! (`json` by default; `text`, `docker`, `raw`). The default sink when no config exists.
//!
//! Each batch is encoded into one buffer and written with one `write_all` on a locked stdout
//! (on the blocking pool, so a slow reader of our stdout never stalls the runtime); the batch
//! is acknowledged only after that write succeeded. When the reader goes away (broken pipe) the
//! sink fails at once, leaving what it holds unacknowledged (its supervisor restarts it with
//! those batches), so nothing is checkpointed past it; other write errors are retried with
//! backoff from the byte where the write stopped, and fail the sink the same way once the
//! retries are spent.

pub mod config;

use crate::encoding::Encoder;
use crate::file::rotation::write_counted;
use crate::file::RetryPolicy;
use anyhow::Context;
pub use config::ConsoleConfig;
use logwharf_collector::metrics as m;
use logwharf_collector::{Sink, SinkInput};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// Where the console sink writes: the process's stdout, or (in tests) any writer.
#[derive(Clone)]
pub enum ConsoleOutput {
    Stdout,
    Writer(Arc<Mutex<dyn Write + Send>>),
}

impl ConsoleOutput {
    /// Writes `buf` and flushes; how many bytes went out, even on failure.
    fn write(&self, buf: &[u8]) -> (usize, io::Result<()>) {
        fn go(w: &mut dyn Write, buf: &[u8]) -> (usize, io::Result<()>) {
            match write_counted(w, buf) {
                (n, Ok(())) => (n, w.flush()),
                r => r,
            }
        }
        match self {
            ConsoleOutput::Stdout => go(&mut io::stdout().lock(), buf),
            ConsoleOutput::Writer(w) => go(&mut *w.lock().unwrap_or_else(|p| p.into_inner()), buf),
        }
    }
}

pub struct ConsoleSink {
    name: String,
    encoder: Encoder,
    output: ConsoleOutput,
    retry: RetryPolicy,
}

impl ConsoleSink {
    pub fn new(name: &str, config: &ConsoleConfig) -> ConsoleSink {
        ConsoleSink::with_output(name, config, ConsoleOutput::Stdout)
    }

    pub fn with_output(name: &str, config: &ConsoleConfig, output: ConsoleOutput) -> ConsoleSink {
        ConsoleSink {
            name: name.to_string(),
            encoder: Encoder::new(config.encoding),
            output,
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> ConsoleSink {
        self.retry = retry;
        self
    }

    fn count_error(&self, e: &io::Error) {
        let kind = if e.kind() == io::ErrorKind::BrokenPipe {
            "broken_pipe"
        } else {
            "write"
        };
        metrics::counter!(m::SINK_ERRORS, "sink" => self.name.clone(), "kind" => kind).increment(1);
    }
}

#[async_trait::async_trait]
impl Sink for ConsoleSink {
    async fn run(self: Box<Self>, mut input: SinkInput) -> anyhow::Result<()> {
        let events = metrics::counter!(m::SINK_EVENTS, "sink" => self.name.clone());
        let bytes = metrics::counter!(m::SINK_BYTES, "sink" => self.name.clone());
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        while let Some(sb) = input.recv().await {
            let (batch, ack) = sb.into_parts();
            buf.clear();
            for event in &batch.events {
                self.encoder.encode_line(&batch.source, event, &mut buf);
            }
            let mut written = 0;
            let mut attempt = 0;
            let mut backoff = self.retry.backoff();
            loop {
                let output = self.output.clone();
                let (returned, n, result) = tokio::task::spawn_blocking(move || {
                    let (n, r) = output.write(&buf[written..]);
                    (buf, n, r)
                })
                .await
                .context("console writer task")?;
                buf = returned;
                written += n;
                let Err(e) = result else { break };
                self.count_error(&e);
                if e.kind() == io::ErrorKind::BrokenPipe {
                    // The runtime logs the returned error (once) at error level.
                    drop(ack);
                    return Err(e).with_context(|| {
                        format!(
                            "sink {:?}: stdout is closed (broken pipe); the sink stops, its events unacknowledged",
                            self.name
                        )
                    });
                }
                if attempt >= self.retry.retries {
                    // The supervisor restarts the sink with this batch (and logs why).
                    return Err(e).with_context(|| {
                        format!(
                            "sink {:?}: stdout write failed {} times",
                            self.name,
                            attempt + 1
                        )
                    });
                }
                let delay = backoff.next_delay();
                tracing::warn!(sink = %self.name, error = %e, retry_in = ?delay, "stdout write failed; retrying");
                metrics::counter!(m::SINK_RETRIES, "sink" => self.name.clone()).increment(1);
                logwharf_collector::status::global()
                    .sink(&self.name)
                    .retrying(&format!("writing to stdout: {e}"));
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            events.increment(batch.len() as u64);
            bytes.increment(buf.len() as u64);
            ack.delivered();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use logwharf_collector::{AckToken, Batch, Event, SinkBatch, Stream};
    use logwharf_config::Encoding;
    use std::sync::mpsc;

    fn batch(msgs: &[&str]) -> Batch {
        Batch {
            source: "src".into(),
            events: msgs
                .iter()
                .map(|m| Event::new(0, Stream::Stdout, Bytes::copy_from_slice(m.as_bytes())))
                .collect(),
        }
    }

    fn token() -> (AckToken, mpsc::Receiver<bool>) {
        let (tx, rx) = mpsc::channel();
        (
            AckToken::new(Some(Box::new(move |ok| tx.send(ok).unwrap()))),
            rx,
        )
    }

    #[tokio::test]
    async fn writes_each_batch_and_acknowledges() {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let cfg = ConsoleConfig {
            encoding: Encoding::Raw,
        };
        let sink = ConsoleSink::with_output("c", &cfg, ConsoleOutput::Writer(out.clone()));
        let (tx, input) = SinkInput::for_test("c");
        let (t1, r1) = token();
        let (t2, r2) = token();
        tx.send(SinkBatch::detached(batch(&["a", "b"]), t1))
            .unwrap();
        tx.send(SinkBatch::detached(batch(&["c"]), t2)).unwrap();
        drop(tx);
        Box::new(sink).run(input).await.unwrap();
        assert_eq!(r1.try_recv(), Ok(true));
        assert_eq!(r2.try_recv(), Ok(true));
        assert_eq!(&*out.lock().unwrap(), b"a\nb\nc\n");
    }

    #[tokio::test]
    async fn json_is_the_default() {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = ConsoleSink::with_output(
            "c",
            &ConsoleConfig::default(),
            ConsoleOutput::Writer(out.clone()),
        );
        let (tx, input) = SinkInput::for_test("c");
        let (t, r) = token();
        tx.send(SinkBatch::detached(batch(&["x"]), t)).unwrap();
        drop(tx);
        Box::new(sink).run(input).await.unwrap();
        assert_eq!(r.try_recv(), Ok(true));
        assert_eq!(
            String::from_utf8(out.lock().unwrap().clone()).unwrap(),
            "{\"time\":\"1970-01-01T00:00:00.000000000Z\",\"stream\":\"stdout\",\"message\":\"x\",\"source\":\"src\"}\n"
        );
    }

    struct BrokenPipe;
    impl Write for BrokenPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Fails once after accepting `ok` bytes, then works.
    struct FailsOnce {
        ok: usize,
        failed: bool,
        out: Vec<u8>,
    }
    impl Write for FailsOnce {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !self.failed && self.out.len() + buf.len() > self.ok {
                self.failed = true;
                let k = self.ok - self.out.len();
                if k == 0 {
                    return Err(io::Error::other("EAGAIN-ish"));
                }
                self.out.extend_from_slice(&buf[..k]);
                return Ok(k);
            }
            self.out.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_without_repeating_bytes() {
        let out = Arc::new(Mutex::new(FailsOnce {
            ok: 3,
            failed: false,
            out: Vec::new(),
        }));
        let cfg = ConsoleConfig {
            encoding: Encoding::Raw,
        };
        let sink = ConsoleSink::with_output("c", &cfg, ConsoleOutput::Writer(out.clone()))
            .with_retry(RetryPolicy {
                retries: 2,
                initial_backoff: std::time::Duration::from_millis(1),
                max_backoff: std::time::Duration::from_millis(1),
            });
        let (tx, input) = SinkInput::for_test("c");
        let (t, r) = token();
        tx.send(SinkBatch::detached(batch(&["abcd", "ef"]), t))
            .unwrap();
        drop(tx);
        Box::new(sink).run(input).await.unwrap();
        assert_eq!(r.try_recv(), Ok(true));
        let w = out.lock().unwrap();
        assert!(w.failed);
        assert_eq!(w.out, b"abcd\nef\n");
    }

    #[tokio::test]
    async fn broken_pipe_stops_without_acknowledging() {
        let sink = ConsoleSink::with_output(
            "c",
            &ConsoleConfig::default(),
            ConsoleOutput::Writer(Arc::new(Mutex::new(BrokenPipe))),
        );
        let (tx, input) = SinkInput::for_test("c");
        let (t1, r1) = token();
        let (t2, r2) = token();
        tx.send(SinkBatch::detached(batch(&["a"]), t1)).unwrap();
        tx.send(SinkBatch::detached(batch(&["b"]), t2)).unwrap();
        let err = Box::new(sink).run(input).await.unwrap_err();
        assert!(format!("{err:#}").contains("broken pipe"), "{err:#}");
        assert_eq!(r1.try_recv(), Ok(false));
        // The second batch is still queued; once the queue goes, it is not delivered either.
        drop(tx);
        assert_eq!(r2.try_recv(), Ok(false));
    }
}
