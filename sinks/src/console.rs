//! `type = "console"`: every event to stdout, one line each, in the configured encoding
//! (`json` by default; `text`, `docker`, `raw`). The default sink when no config exists.
//!
//! Each batch is encoded into one buffer and written with one `write_all` on a locked stdout
//! (on the blocking pool, so a slow reader of our stdout never stalls the runtime); the batch
//! is acknowledged only after that write succeeded. When the reader goes away (broken pipe) the
//! sink stops and leaves what it holds unacknowledged, so nothing is checkpointed past it.

use crate::encoding::Encoder;
use anyhow::Context;
use logwharf_collector::metrics as m;
use logwharf_collector::{Sink, SinkInput};
use logwharf_config::sink::ConsoleConfig;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// Where the console sink writes: the process's stdout, or (in tests) any writer.
#[derive(Clone)]
pub enum ConsoleOutput {
    Stdout,
    Writer(Arc<Mutex<dyn Write + Send>>),
}

impl ConsoleOutput {
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            ConsoleOutput::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            ConsoleOutput::Writer(w) => {
                let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
                w.write_all(buf)?;
                w.flush()
            }
        }
    }
}

pub struct ConsoleSink {
    name: String,
    encoder: Encoder,
    output: ConsoleOutput,
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
        }
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
            let output = self.output.clone();
            let (returned, result) = tokio::task::spawn_blocking(move || {
                let r = output.write_all(&buf);
                (buf, r)
            })
            .await
            .context("console writer task")?;
            buf = returned;
            match result {
                Ok(()) => {
                    events.increment(batch.len() as u64);
                    bytes.increment(buf.len() as u64);
                    ack.delivered();
                }
                Err(e) => {
                    let kind = if e.kind() == io::ErrorKind::BrokenPipe {
                        "broken_pipe"
                    } else {
                        "write"
                    };
                    metrics::counter!(m::SINK_ERRORS, "sink" => self.name.clone(), "kind" => kind)
                        .increment(1);
                    tracing::error!(sink = %self.name, error = %e, "cannot write to stdout; the console sink stops and leaves its events unacknowledged");
                    drop(ack);
                    return Err(e)
                        .with_context(|| format!("sink {:?}: writing to stdout", self.name));
                }
            }
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
        assert!(format!("{err:#}").contains("writing to stdout"), "{err:#}");
        assert_eq!(r1.try_recv(), Ok(false));
        // The second batch is still queued; once the queue goes, it is not delivered either.
        drop(tx);
        assert_eq!(r2.try_recv(), Ok(false));
    }
}
