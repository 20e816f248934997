//! The one TLS setup (rustls, ring provider) for every client (sinks) and server (receiving
//! sources): PEM files in, rustls configs out, with errors that name the file.

use logwharf_config::TlsConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("reading certificates from {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("parsing certificates in {}: {e}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no PEM certificate in {}",
        path.display()
    );
    Ok(certs)
}

fn key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| anyhow::anyhow!("reading the private key from {}: {e}", path.display()))
}

fn roots(tls: &TlsConfig) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(ca) => {
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| anyhow::anyhow!("bad CA certificate in {}: {e}", ca.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    Ok(roots)
}

/// A client config: verifies the server against `ca_file` (or the system roots) unless
/// `verify = false`; presents `crt_file`/`key_file` when both are set.
pub fn client_config(tls: &TlsConfig) -> anyhow::Result<Arc<ClientConfig>> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = if tls.verify {
        builder.with_root_certificates(roots(tls)?)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    };
    let config = match (&tls.crt_file, &tls.key_file) {
        (Some(c), Some(k)) => builder.with_client_auth_cert(certs(c)?, key(k)?)?,
        (None, None) => builder.with_no_client_auth(),
        _ => anyhow::bail!("tls: crt_file and key_file must be set together"),
    };
    Ok(Arc::new(config))
}

/// A server config from `crt_file` and `key_file`; with `ca_file`, clients must present a
/// certificate signed by it.
pub fn server_config(tls: &TlsConfig) -> anyhow::Result<Arc<ServerConfig>> {
    let (Some(c), Some(k)) = (&tls.crt_file, &tls.key_file) else {
        anyhow::bail!("tls: a listener needs crt_file and key_file");
    };
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match &tls.ca_file {
        Some(_) if tls.verify => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(tls)?),
                provider(),
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(builder.with_single_cert(certs(c)?, key(k)?)?))
}

/// The name to check the server's certificate against.
pub fn server_name(tls: &TlsConfig, host: &str) -> anyhow::Result<ServerName<'static>> {
    let name = tls.server_name.as_deref().unwrap_or(host).to_string();
    ServerName::try_from(name.clone())
        .map_err(|e| anyhow::anyhow!("invalid TLS server name {name:?}: {e}"))
}

/// `verify = false`: accept any certificate (signatures are still checked).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
