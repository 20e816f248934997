//! The librdkafka client settings the `kafka` sink and the `kafka` source share: bootstrap
//! brokers, TLS (librdkafka's built-in OpenSSL, not rustls) and `librdkafka_options`, and the
//! check of a whole configuration before a client is made. The config shapes themselves are
//! in logwharf_config::kafka.

use anyhow::Context as _;
use logwharf_config::kafka::LibrdkafkaOptions;
use logwharf_config::TlsConfig;
use rdkafka::error::KafkaError;
use rdkafka::ClientConfig;

/// A client config with `bootstrap.servers`, `client.id` and, with `tls`, the `ssl.*`
/// properties set. The caller adds its own keys, then [`apply_options`].
pub fn base_config(brokers: &[String], tls: Option<&TlsConfig>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers.join(","))
        .set("client.id", "logwharf");
    if let Some(tls) = tls {
        let path = |p: &std::path::Path| p.display().to_string();
        c.set("security.protocol", "ssl").set(
            "ssl.ca.location",
            // librdkafka's OpenSSL is built in, so it does not know where Debian (or any
            // system) keeps its roots: `probe` looks in the usual places.
            tls.ca_file.as_deref().map(path).unwrap_or("probe".into()),
        );
        if let Some(crt) = &tls.crt_file {
            c.set("ssl.certificate.location", path(crt));
        }
        if let Some(key) = &tls.key_file {
            c.set("ssl.key.location", path(key));
        }
        if !tls.verify {
            c.set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        }
    }
    c
}

/// Applies `librdkafka_options` last, so they override every key set before.
pub fn apply_options(c: &mut ClientConfig, options: &LibrdkafkaOptions) {
    for (k, v) in &options.0 {
        c.set(k, v);
    }
}

/// Checks every property with librdkafka, without creating a client. The error names the
/// property but never echoes a value librdkafka might quote, so secrets stay out of logs.
pub fn check(config: &ClientConfig) -> anyhow::Result<()> {
    match config.create_native_config() {
        Ok(_) => Ok(()),
        Err(KafkaError::ClientConfig(_, desc, key, _)) => {
            let secret = ["password", "secret", "key", "token", "jaas"]
                .iter()
                .any(|s| key.contains(s));
            if secret {
                anyhow::bail!("librdkafka refuses the value of property {key:?}");
            }
            anyhow::bail!("librdkafka property {key:?}: {desc}")
        }
        Err(e) => Err(e).context("checking the librdkafka configuration"),
    }
}
