//! The HTTP transport: HTTP/1.1 on hyper over TCP or TLS (the collector's one rustls setup),
//! with a small pool of idle keep-alive connections to the service endpoint, and a per-request
//! deadline. Also the adapter that lets aws-config's credential providers (container and
//! instance metadata) use the same transport instead of a second HTTP stack.

use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use logwharf_config::TlsConfig;
use rustls_pki_types::ServerName;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::Instrument;

/// Where requests go: scheme, host and port of an `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// `host[:port]` as the `Host` header carries it.
    pub authority: String,
}

impl Endpoint {
    /// Parses `http(s)://host[:port][/]`.
    pub fn parse(url: &str) -> anyhow::Result<Endpoint> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid endpoint {url:?}: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => anyhow::bail!("endpoint {url:?} must start with http:// or https://"),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow::anyhow!("endpoint {url:?} has no host"))?;
        if !matches!(uri.path(), "" | "/") {
            anyhow::bail!("endpoint {url:?} must not have a path");
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Endpoint {
            https,
            host,
            port,
            authority: authority.as_str().to_string(),
        })
    }

    /// The service's own endpoint for `region`.
    pub fn for_region(region: &str) -> Endpoint {
        let domain = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        let host = format!("logs.{region}.{domain}");
        Endpoint {
            https: true,
            authority: host.clone(),
            host,
            port: 443,
        }
    }

    /// `scheme://authority/` for building request URIs.
    pub fn url(&self) -> String {
        format!(
            "{}://{}/",
            if self.https { "https" } else { "http" },
            self.authority
        )
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.authority
        )
    }
}

/// Why a request got no HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {endpoint}: {source}")]
    Tls {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("HTTP exchange with {endpoint}: {source}")]
    Http {
        endpoint: String,
        source: hyper::Error,
    },
    #[error("no answer from {endpoint} within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
}

/// A response with its whole body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

type Sender = SendRequest<Full<Bytes>>;

/// TLS settings for one endpoint.
#[derive(Clone)]
struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

/// Connections to one endpoint.
pub struct Transport {
    endpoint: Endpoint,
    tls: Option<Tls>,
    idle: Mutex<Vec<Sender>>,
    max_idle: usize,
    timeout: Duration,
}

impl Transport {
    /// A transport to `endpoint`; no connection is made until the first request.
    pub fn new(
        endpoint: Endpoint,
        tls: &TlsConfig,
        max_idle: usize,
        timeout: Duration,
    ) -> anyhow::Result<Transport> {
        let tls = if endpoint.https {
            Some(Tls {
                connector: TlsConnector::from(logwharf_collector::tls::client_config(tls)?),
                name: logwharf_collector::tls::server_name(tls, &endpoint.host)?,
            })
        } else {
            None
        };
        Ok(Transport {
            endpoint,
            tls,
            idle: Mutex::new(Vec::new()),
            max_idle,
            timeout,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `req` on an idle connection or a new one, and reads the whole response, within the
    /// transport's timeout.
    pub async fn send(&self, req: http::Request<Full<Bytes>>) -> Result<Response, TransportError> {
        let endpoint = self.endpoint.to_string();
        match tokio::time::timeout(self.timeout, self.exchange(req)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::Timeout {
                endpoint,
                timeout: self.timeout,
            }),
        }
    }

    async fn exchange(&self, req: http::Request<Full<Bytes>>) -> Result<Response, TransportError> {
        let idle = self.take_idle();
        let mut sender = match idle {
            Some(s) => s,
            None => connect(&self.endpoint, self.tls.as_ref()).await?,
        };
        let resp = exchange_on(&mut sender, req, &self.endpoint).await?;
        self.put_idle(sender);
        Ok(resp)
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(s) = idle.pop() {
            if s.is_ready() && !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, s: Sender) {
        if s.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.max_idle {
                idle.push(s);
            }
        }
    }
}

async fn exchange_on(
    sender: &mut Sender,
    req: http::Request<Full<Bytes>>,
    endpoint: &Endpoint,
) -> Result<Response, TransportError> {
    let http_err = |source| TransportError::Http {
        endpoint: endpoint.to_string(),
        source,
    };
    sender.ready().await.map_err(http_err)?;
    let resp = sender.send_request(req).await.map_err(http_err)?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(http_err)?.to_bytes();
    Ok(Response {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Opens one HTTP/1.1 connection (the connection task runs until either side closes it).
async fn connect(endpoint: &Endpoint, tls: Option<&Tls>) -> Result<Sender, TransportError> {
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|source| TransportError::Connect {
            endpoint: endpoint.to_string(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    match tls {
        Some(tls) => {
            let stream = tls
                .connector
                .connect(tls.name.clone(), tcp)
                .await
                .map_err(|source| TransportError::Tls {
                    endpoint: endpoint.to_string(),
                    source,
                })?;
            handshake(stream, endpoint).await
        }
        None => handshake(tcp, endpoint).await,
    }
}

/// HTTP/1.1 over `io` (plain or TLS); the connection task runs until either side closes it.
async fn handshake<S>(io: S, endpoint: &Endpoint) -> Result<Sender, TransportError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|source| TransportError::Http {
            endpoint: endpoint.to_string(),
            source,
        })?;
    tokio::spawn(
        async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
        }
        .in_current_span(),
    );
    Ok(sender)
}

/// aws-config's credential providers (container and instance metadata endpoints) send their
/// few requests through this: one connection per request, the same rustls setup.
pub fn credentials_http_client() -> SharedHttpClient {
    aws_smithy_runtime_api::client::http::http_client_fn(
        |settings: &HttpConnectorSettings, _: &RuntimeComponents| {
            let timeout = settings.connect_timeout().unwrap_or(Duration::from_secs(2))
                + settings.read_timeout().unwrap_or(Duration::from_secs(5));
            SharedHttpConnector::new(MetadataConnector { timeout })
        },
    )
}

#[derive(Debug)]
struct MetadataConnector {
    timeout: Duration,
}

impl HttpConnector for MetadataConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let timeout = self.timeout;
        HttpConnectorFuture::new(async move {
            let req = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::other(Box::new(e), None))?;
            let (parts, body) = req.into_parts();
            let body = Bytes::copy_from_slice(body.bytes().unwrap_or(&[]));
            let endpoint = Endpoint::parse(&format!(
                "{}://{}",
                parts.uri.scheme_str().unwrap_or("http"),
                parts
                    .uri
                    .authority()
                    .map(|a| a.as_str())
                    .unwrap_or("localhost")
            ))
            .map_err(|e| ConnectorError::other(e.into(), None))?;
            let transport = Transport::new(endpoint, &TlsConfig::default(), 0, timeout)
                .map_err(|e| ConnectorError::other(e.into(), None))?;
            let mut req = http::Request::from_parts(parts, Full::new(body));
            if !req.headers().contains_key(http::header::HOST) {
                if let Ok(v) = http::HeaderValue::from_str(&transport.endpoint().authority) {
                    req.headers_mut().insert(http::header::HOST, v);
                }
            }
            // Requests on a fresh connection carry the path only.
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            *req.uri_mut() = path
                .parse()
                .map_err(|e: http::uri::InvalidUri| ConnectorError::other(e.into(), None))?;
            match transport.send(req).await {
                Ok(r) => {
                    let mut b = http::Response::builder().status(r.status);
                    for (k, v) in &r.headers {
                        b = b.header(k, v);
                    }
                    let resp = b
                        .body(SdkBody::from(r.body))
                        .map_err(|e| ConnectorError::other(e.into(), None))?;
                    HttpResponse::try_from(resp).map_err(|e| ConnectorError::other(e.into(), None))
                }
                Err(e @ TransportError::Timeout { .. }) => Err(ConnectorError::timeout(e.into())),
                Err(e) => Err(ConnectorError::io(e.into())),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let e = Endpoint::parse("http://127.0.0.1:15000").unwrap();
        assert_eq!(
            (e.https, e.host.as_str(), e.port, e.authority.as_str()),
            (false, "127.0.0.1", 15000, "127.0.0.1:15000")
        );
        assert_eq!(e.url(), "http://127.0.0.1:15000/");
        let e = Endpoint::parse("https://logs.example.com/").unwrap();
        assert_eq!((e.https, e.port), (true, 443));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://x/path").is_err());
        assert_eq!(
            Endpoint::for_region("eu-west-1").to_string(),
            "https://logs.eu-west-1.amazonaws.com"
        );
    }
}
