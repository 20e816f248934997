//! The config shapes the `kafka` sink and the `kafka` source share: `brokers` (a list, or one
//! comma-separated string), `tls` (checked for what librdkafka can do) and
//! `librdkafka_options` (passed through; `Debug` shows the keys only, so a password never
//! reaches a log). The librdkafka properties they become are set in one place too
//! (logwharf_collector::kafka).

use crate::{Decoder, TlsConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// `brokers = ["host:port", …]` or `brokers = "host:port,host:port"`.
pub fn deserialize_brokers<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        One(String),
    }
    let list = match Raw::deserialize(d).map_err(|_| {
        serde::de::Error::custom(
            "expected a list of \"host:port\" strings (or one comma-separated string)",
        )
    })? {
        Raw::List(l) => l,
        Raw::One(s) => s.split(',').map(str::to_string).collect(),
    };
    Ok(list
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Checks `brokers`, `tls` and `librdkafka_options` of a kafka component (`who`: "sink" or
/// "source", for the messages).
pub fn validate_client(
    d: &mut Decoder<'_>,
    who: &str,
    brokers: &[String],
    tls: Option<&TlsConfig>,
    options: &LibrdkafkaOptions,
) {
    if brokers.is_empty() {
        d.error(
            &["brokers"],
            "names no broker (expected e.g. [\"kafka1:9092\"])",
        );
    }
    for (i, b) in brokers.iter().enumerate() {
        let port_ok = b
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            d.error(
                &["brokers", &i.to_string()],
                format!("invalid broker {b:?} (expected \"host:port\")"),
            );
        }
    }
    if let Some(tls) = tls {
        if tls.server_name.is_some() {
            d.error(
                &["tls", "server_name"],
                format!("is not supported by the kafka {who}: librdkafka verifies each broker's advertised host name"),
            );
        }
        if tls.crt_file.is_some() != tls.key_file.is_some() {
            d.error(&["tls"], "crt_file and key_file go together");
        }
    }
    for k in options.0.keys() {
        if k.is_empty() || k.contains(char::is_whitespace) {
            d.error(
                &["librdkafka_options"],
                format!("invalid property name {k:?}"),
            );
        }
    }
}

/// `librdkafka_options`: passed to librdkafka as they are. Values may be strings, integers,
/// floats or booleans. `Debug` shows the keys only, so a password never reaches a log.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LibrdkafkaOptions(pub BTreeMap<String, String>);

impl fmt::Debug for LibrdkafkaOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl<'de> Deserialize<'de> for LibrdkafkaOptions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Value {
            S(String),
            I(i64),
            F(f64),
            B(bool),
        }
        let raw = BTreeMap::<String, Value>::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a table of librdkafka properties with string, number or boolean values",
            )
        })?;
        Ok(LibrdkafkaOptions(
            raw.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::S(s) => s,
                        Value::I(i) => i.to_string(),
                        Value::F(f) => f.to_string(),
                        Value::B(b) => b.to_string(),
                    };
                    (k, v)
                })
                .collect(),
        ))
    }
}
