//! The config loader (config/src/load.rs: `${ENV}` interpolation, TOML, decoding by `type`,
//! validation, key paths to line numbers) with every source type the program registers
//! (collector/src/sources TYPES) and the shared sink shapes (templates, encodings, sizes,
//! durations, addresses, TLS, batching).
//!
//! The sinks crate's own table (sinks/src/lib.rs TYPES) is not linked: that crate brings in
//! librdkafka and the AWS SDK, half an hour of cold build with instrumentation. Its config
//! structs are built from the same shapes this target's sink types use.
//!
//! Invariants: no panic; every error has a message and, when it has a line, a line of the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logwharf_collector::sources::SourceConfig;
use logwharf_config::address::{ForwardAddress, ForwardAuth, SyslogAddress};
use logwharf_config::{
    decode_component, BatchConfig, ByteSize, ComponentType, ConfigTable, Decoder, DurationValue,
    Encoding, Registry, Template, TlsConfig,
};
use serde::Deserialize;
use std::fmt::Debug;
use std::sync::Arc;

type AnySink = dyn Debug + Send + Sync;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct FileLike {
    path: Template,
    #[serde(default)]
    encoding: Option<Encoding>,
    #[serde(default)]
    max_size: Option<ByteSize>,
    #[serde(default)]
    idle_timeout: Option<DurationValue>,
}

impl ConfigTable for FileLike {
    fn validate(&self, d: &mut Decoder<'_>) {
        if let Some(e) = self.encoding {
            e.check(&[Encoding::Json, Encoding::Docker, Encoding::Text], d);
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SyslogLike {
    address: SyslogAddress,
    #[serde(default)]
    tag: Option<Template>,
    #[serde(default)]
    tls: Option<TlsConfig>,
    #[serde(default)]
    batch: Option<BatchConfig>,
}

impl ConfigTable for SyslogLike {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ForwardLike {
    address: ForwardAddress,
    #[serde(default)]
    auth: Option<ForwardAuth>,
    #[serde(default)]
    tag: Option<Template>,
}

impl ConfigTable for ForwardLike {}

fn sink<T: ConfigTable + Debug + Send + Sync + 'static>(
    name: &'static str,
) -> ComponentType<AnySink> {
    fn decode<T: ConfigTable + Debug + Send + Sync + 'static>(
        d: &mut Decoder<'_>,
    ) -> Option<Arc<AnySink>> {
        decode_component(d, |c: T| Arc::new(c) as Arc<AnySink>)
    }
    ComponentType {
        name,
        decode: decode::<T>,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sinks = [
        sink::<FileLike>("file"),
        sink::<SyslogLike>("syslog"),
        sink::<ForwardLike>("fluentd"),
    ];
    let registry: Registry<'_, dyn SourceConfig, AnySink> = Registry {
        sources: logwharf_collector::sources::TYPES,
        sinks: &sinks,
    };
    match logwharf_config::load_str(text, "fuzz.toml", &registry) {
        Ok(c) => assert!(!c.sources.is_empty() && !c.sinks.is_empty()),
        Err(e) => {
            let lines = text.lines().count().max(1);
            for err in &e.errors {
                assert!(
                    !err.message.is_empty(),
                    "an error without a message at {}",
                    err.path
                );
                if let Some(l) = err.line {
                    assert!(l >= 1 && l <= lines + 1, "line {l} of {lines}: {err}");
                }
            }
            let _ = e.to_string();
        }
    }
});
