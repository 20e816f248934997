//! The CloudWatch Logs JSON protocol: request bodies (PutLogEvents, CreateLogGroup,
//! CreateLogStream, PutRetentionPolicy) with `X-Amz-Target: Logs_20140328.<Action>` and
//! `Content-Type: application/x-amz-json-1.1`, SigV4 signing by the `aws-sigv4` crate, and the
//! classification of answers into what the sink does next.

use super::batch::CwEvent;
use crate::encoding::{write_json_string, JsonStyle};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningError, SigningSettings};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;
use std::io::Write;
use std::time::SystemTime;

/// The service name in SigV4 credential scopes.
pub const SERVICE: &str = "logs";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The API operations the sink uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PutLogEvents,
    CreateLogGroup,
    CreateLogStream,
    PutRetentionPolicy,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::PutLogEvents => "PutLogEvents",
            Action::CreateLogGroup => "CreateLogGroup",
            Action::CreateLogStream => "CreateLogStream",
            Action::PutRetentionPolicy => "PutRetentionPolicy",
        }
    }

    /// The `X-Amz-Target` header value.
    pub fn target(self) -> &'static str {
        match self {
            Action::PutLogEvents => "Logs_20140328.PutLogEvents",
            Action::CreateLogGroup => "Logs_20140328.CreateLogGroup",
            Action::CreateLogStream => "Logs_20140328.CreateLogStream",
            Action::PutRetentionPolicy => "Logs_20140328.PutRetentionPolicy",
        }
    }
}

/// Writes `s` as a JSON string (the sinks' shared escaper).
fn json_str(out: &mut Vec<u8>, s: &str) {
    write_json_string(out, s.as_bytes(), JsonStyle::Standard);
}

/// The PutLogEvents body, encoded straight into one buffer.
pub fn put_log_events_body(
    group: &str,
    stream: &str,
    sequence_token: Option<&str>,
    events: &[CwEvent],
) -> Bytes {
    let size: usize = events.iter().map(|e| e.message.len() + 40).sum();
    let mut out = Vec::with_capacity(size + group.len() + stream.len() + 128);
    out.extend_from_slice(b"{\"logGroupName\":");
    json_str(&mut out, group);
    out.extend_from_slice(b",\"logStreamName\":");
    json_str(&mut out, stream);
    if let Some(t) = sequence_token {
        out.extend_from_slice(b",\"sequenceToken\":");
        json_str(&mut out, t);
    }
    out.extend_from_slice(b",\"logEvents\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"timestamp\":");
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{}", e.timestamp_ms);
        out.extend_from_slice(b",\"message\":");
        json_str(&mut out, e.text());
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

pub fn create_log_group_body(group: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "logGroupName": group }).to_string())
}

pub fn create_log_stream_body(group: &str, stream: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "logGroupName": group, "logStreamName": stream }).to_string())
}

pub fn put_retention_policy_body(group: &str, days: u32) -> Bytes {
    Bytes::from(serde_json::json!({ "logGroupName": group, "retentionInDays": days }).to_string())
}

/// A request could not be signed (bad header value, bad URL, unusable credentials).
#[derive(Debug, thiserror::Error)]
#[error("signing the request: {0}")]
pub struct SignError(String);

impl From<SigningError> for SignError {
    fn from(e: SigningError) -> Self {
        SignError(e.to_string())
    }
}

/// Signs requests for one region with SigV4 (`aws-sigv4`).
#[derive(Debug, Clone)]
pub struct Signer {
    region: String,
    service: String,
}

impl Signer {
    pub fn new(region: &str) -> Signer {
        Signer::for_service(region, SERVICE)
    }

    /// A signer for another service name (the published test vectors use `service`).
    pub fn for_service(region: &str, service: &str) -> Signer {
        Signer {
            region: region.to_string(),
            service: service.to_string(),
        }
    }

    /// Adds `X-Amz-Date`, `Authorization` (and `X-Amz-Security-Token` for temporary
    /// credentials) to `req`. `url` is the absolute URL the request goes to; every header
    /// already on `req` (Host included) is signed.
    pub fn sign<B>(
        &self,
        creds: &Credentials,
        url: &str,
        req: &mut http::Request<B>,
        body: &[u8],
        time: SystemTime,
    ) -> Result<(), SignError> {
        let identity = creds.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(&self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SignError(e.to_string()))?
            .into();
        let headers: Vec<(&str, &str)> = req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?)))
            .collect();
        let signable = SignableRequest::new(
            req.method().as_str(),
            url,
            headers.into_iter(),
            SignableBody::Bytes(body),
        )?;
        let (instructions, _signature) = sign(signable, &params)?.into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }
}

/// A signed request for `action` with `body`, ready for the transport (origin-form URI).
pub fn build_request(
    signer: &Signer,
    creds: &Credentials,
    authority: &str,
    url: &str,
    action: Action,
    body: Bytes,
    time: SystemTime,
) -> Result<http::Request<Full<Bytes>>, SignError> {
    let mut req = http::Request::builder()
        .method(http::Method::POST)
        .uri("/")
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
        .header("x-amz-target", action.target())
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(())
        .map_err(|e| SignError(e.to_string()))?;
    signer.sign(creds, url, &mut req, &body, time)?;
    req.headers_mut().insert(
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("logwharf/", env!("CARGO_PKG_VERSION"))),
    );
    let (parts, ()) = req.into_parts();
    Ok(http::Request::from_parts(parts, Full::new(body)))
}

/// What an error answer means for the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `ThrottlingException` (or HTTP 429): back off and resend.
    Throttling,
    /// `ServiceUnavailableException`, HTTP 5xx: back off and resend.
    Unavailable,
    /// `ResourceNotFoundException`: the group or stream does not exist.
    ResourceNotFound,
    /// `ResourceAlreadyExistsException` (creating something that exists: fine).
    AlreadyExists,
    /// `InvalidSequenceTokenException`: resend with the expected token.
    InvalidSequenceToken,
    /// `DataAlreadyAcceptedException`: the batch was already accepted.
    DataAlreadyAccepted,
    /// `InvalidParameterException`: split and resend; what still fails is counted.
    InvalidParameter,
    /// Signature, credentials or permission refused (403, `ExpiredToken…`,
    /// `UnrecognizedClient…`, `AccessDenied…`): refresh credentials and back off.
    Auth,
    /// Anything else: back off and resend (never dropped).
    Other,
}

impl ErrorKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Throttling => "throttling",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::ResourceNotFound => "resource_not_found",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InvalidSequenceToken => "invalid_sequence_token",
            ErrorKind::DataAlreadyAccepted => "data_already_accepted",
            ErrorKind::InvalidParameter => "invalid_parameter",
            ErrorKind::Auth => "auth",
            ErrorKind::Other => "other",
        }
    }
}

/// An error answer from the service.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} (HTTP {status}): {message}")]
pub struct ServiceError {
    pub status: u16,
    pub kind: ErrorKind,
    /// The exception name, e.g. `ThrottlingException`.
    pub code: String,
    pub message: String,
    /// From `InvalidSequenceTokenException` / `DataAlreadyAcceptedException`.
    pub expected_sequence_token: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(rename = "__type", default)]
    kind: Option<String>,
    #[serde(default, alias = "Message")]
    message: Option<String>,
    #[serde(rename = "expectedSequenceToken", default)]
    expected_sequence_token: Option<String>,
}

/// Classifies a non-2xx answer.
pub fn classify_error(status: u16, headers: &http::HeaderMap, body: &[u8]) -> ServiceError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let raw = parsed
        .kind
        .or_else(|| {
            headers
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    // `com.amazonaws.logs#ThrottlingException` or `ThrottlingException:http://…`.
    let code = raw
        .rsplit('#')
        .next()
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .to_string();
    let kind = match code.as_str() {
        "ThrottlingException" | "Throttling" | "TooManyRequestsException" => ErrorKind::Throttling,
        "ServiceUnavailableException" | "InternalFailure" | "ServiceUnavailable" => {
            ErrorKind::Unavailable
        }
        "ResourceNotFoundException" => ErrorKind::ResourceNotFound,
        "ResourceAlreadyExistsException" => ErrorKind::AlreadyExists,
        "InvalidSequenceTokenException" => ErrorKind::InvalidSequenceToken,
        "DataAlreadyAcceptedException" => ErrorKind::DataAlreadyAccepted,
        "InvalidParameterException" | "SerializationException" | "ValidationException" => {
            ErrorKind::InvalidParameter
        }
        "ExpiredTokenException"
        | "UnrecognizedClientException"
        | "AccessDeniedException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "MissingAuthenticationTokenException"
        | "SignatureDoesNotMatch" => ErrorKind::Auth,
        _ if status == 429 => ErrorKind::Throttling,
        _ if status >= 500 => ErrorKind::Unavailable,
        _ if status == 401 || status == 403 => ErrorKind::Auth,
        _ => ErrorKind::Other,
    };
    let message = parsed.message.unwrap_or_else(|| {
        let b = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        if b.is_empty() {
            "(no message)".into()
        } else {
            b
        }
    });
    ServiceError {
        status,
        kind,
        code: if code.is_empty() {
            format!("HTTP {status}")
        } else {
            code
        },
        message,
        expected_sequence_token: parsed.expected_sequence_token,
    }
}

/// The part of a PutLogEvents answer the sink uses.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub struct PutLogEventsResponse {
    #[serde(rename = "nextSequenceToken", default)]
    pub next_sequence_token: Option<String>,
    #[serde(rename = "rejectedLogEventsInfo", default)]
    pub rejected: Option<RejectedInfo>,
}

#[derive(Debug, Default, Deserialize, PartialEq, Eq, Clone, Copy)]
pub struct RejectedInfo {
    #[serde(rename = "tooNewLogEventStartIndex", default)]
    pub too_new_start: Option<i64>,
    #[serde(rename = "tooOldLogEventEndIndex", default)]
    pub too_old_end: Option<i64>,
    #[serde(rename = "expiredLogEventEndIndex", default)]
    pub expired_end: Option<i64>,
}

/// Events refused inside an accepted batch, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RejectedCounts {
    pub too_old: usize,
    pub too_new: usize,
    pub expired: usize,
}

impl RejectedCounts {
    pub fn total(&self) -> usize {
        self.too_old + self.too_new + self.expired
    }
}

impl RejectedInfo {
    /// Counts each of `n` events under one reason: expired first (the service's order), then
    /// too old, then too new.
    pub fn counts(&self, n: usize) -> RejectedCounts {
        let n = n as i64;
        let clamp = |v: i64| v.clamp(0, n) as usize;
        let expired = self.expired_end.map(|e| clamp(e + 1)).unwrap_or(0);
        let old_end = self.too_old_end.map(|e| clamp(e + 1)).unwrap_or(0);
        let too_old = old_end.saturating_sub(expired);
        let new_start = self.too_new_start.map(clamp).unwrap_or(n as usize);
        let too_new = (n as usize).saturating_sub(new_start.max(expired.max(old_end)));
        RejectedCounts {
            too_old,
            too_new,
            expired,
        }
    }
}

/// Parses a 2xx PutLogEvents body (an empty or odd body counts as "all accepted").
pub fn parse_put_response(body: &[u8]) -> PutLogEventsResponse {
    serde_json::from_slice(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        )
    }

    fn vector_time() -> SystemTime {
        // 2015-08-30T12:36:00Z, the test suite's timestamp.
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160)
    }

    /// Signs one request of AWS's published SigV4 test suite and returns its Authorization.
    fn sign_vector(
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        creds: &Credentials,
    ) -> http::Request<()> {
        let mut b = http::Request::builder().method(method).uri(path_and_query);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut req = b.body(()).unwrap();
        let url = format!("https://example.amazonaws.com{path_and_query}");
        Signer::for_service("us-east-1", "service")
            .sign(creds, &url, &mut req, body, vector_time())
            .unwrap();
        req
    }

    fn auth(req: &http::Request<()>) -> &str {
        req.headers()["authorization"].to_str().unwrap()
    }

    const SCOPE: &str =
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

    // Expected values from AWS's published SigV4 test suite (`aws-sig-v4-test-suite`, as
    // shipped in the aws-sigv4 crate's `aws-signing-test-suite/v4`).
    #[test]
    fn sigv4_test_suite_get_vanilla() {
        let r = sign_vector(
            "GET",
            "/",
            &[("host", "example.amazonaws.com")],
            b"",
            &creds(),
        );
        assert_eq!(
            auth(&r),
            format!("{SCOPE}, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        );
        assert_eq!(r.headers()["x-amz-date"], "20150830T123600Z");
    }

    #[test]
    fn sigv4_test_suite_post_vanilla() {
        let r = sign_vector(
            "POST",
            "/",
            &[("host", "example.amazonaws.com")],
            b"",
            &creds(),
        );
        assert_eq!(
            auth(&r),
            format!("{SCOPE}, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
        );
    }

    #[test]
    fn sigv4_test_suite_get_vanilla_query_order_key_case() {
        let r = sign_vector(
            "GET",
            "/?Param2=value2&Param1=value1",
            &[("host", "example.amazonaws.com")],
            b"",
            &creds(),
        );
        assert_eq!(
            auth(&r),
            format!("{SCOPE}, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
        );
    }

    #[test]
    fn sigv4_test_suite_post_header_key_sort() {
        let r = sign_vector(
            "POST",
            "/",
            &[("host", "example.amazonaws.com"), ("my-header1", "value1")],
            b"",
            &creds(),
        );
        assert_eq!(
            auth(&r),
            format!("{SCOPE}, SignedHeaders=host;my-header1;x-amz-date, Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c")
        );
    }

    #[test]
    fn sigv4_test_suite_get_header_value_trim() {
        let r = sign_vector(
            "GET",
            "/",
            &[
                ("host", "example.amazonaws.com"),
                ("my-header1", " value1"),
                ("my-header2", " \"a   b   c\""),
            ],
            b"",
            &creds(),
        );
        assert_eq!(
            auth(&r),
            format!("{SCOPE}, SignedHeaders=host;my-header1;my-header2;x-amz-date, Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736")
        );
    }

    #[test]
    fn sigv4_test_suite_get_vanilla_with_session_token() {
        let c = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267".into()),
            None,
            "test",
        );
        let r = sign_vector("GET", "/", &[("host", "example.amazonaws.com")], b"", &c);
        assert_eq!(
            auth(&r),
            format!("{SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8")
        );
        assert!(r.headers().contains_key("x-amz-security-token"));
    }

    #[test]
    fn requests_carry_the_json_protocol_headers_and_a_signature() {
        let body = put_log_events_body(
            "g",
            "s",
            None,
            &[CwEvent {
                timestamp_ms: 5,
                message: Bytes::from_static(b"he said \"hi\"\n"),
                origin: None,
            }],
        );
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"logGroupName":"g","logStreamName":"s","logEvents":[{"timestamp":5,"message":"he said \"hi\"\n"}]}"#
        );
        let req = build_request(
            &Signer::new("us-east-1"),
            &creds(),
            "127.0.0.1:1",
            "http://127.0.0.1:1/",
            Action::PutLogEvents,
            body,
            vector_time(),
        )
        .unwrap();
        let h = req.headers();
        assert_eq!(h["x-amz-target"], "Logs_20140328.PutLogEvents");
        assert_eq!(h["content-type"], "application/x-amz-json-1.1");
        let a = h["authorization"].to_str().unwrap();
        assert!(a.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/logs/aws4_request, SignedHeaders=content-length;content-type;host;x-amz-date;x-amz-target, Signature="
        ), "{a}");
        assert!(!a.contains("wJalr"));
    }

    #[test]
    fn errors_are_classified_as_the_service_defines_them() {
        let h = http::HeaderMap::new();
        let c = |status, body: &str| classify_error(status, &h, body.as_bytes());
        assert_eq!(
            c(
                400,
                r#"{"__type":"com.amazonaws.logs#ThrottlingException","message":"Rate exceeded"}"#
            )
            .kind,
            ErrorKind::Throttling
        );
        assert_eq!(c(400, r#"{"__type":"ResourceNotFoundException","message":"The specified log group does not exist."}"#).kind, ErrorKind::ResourceNotFound);
        assert_eq!(c(503, "").kind, ErrorKind::Unavailable);
        assert_eq!(c(500, "<html>").kind, ErrorKind::Unavailable);
        let e = c(
            400,
            r#"{"__type":"InvalidSequenceTokenException","message":"x","expectedSequenceToken":"49"}"#,
        );
        assert_eq!(
            (e.kind, e.expected_sequence_token.as_deref()),
            (ErrorKind::InvalidSequenceToken, Some("49"))
        );
        assert_eq!(
            c(
                400,
                r#"{"__type":"InvalidParameterException","message":"x"}"#
            )
            .kind,
            ErrorKind::InvalidParameter
        );
        assert_eq!(
            c(403, r#"{"__type":"ExpiredTokenException"}"#).kind,
            ErrorKind::Auth
        );
        assert_eq!(c(418, "").kind, ErrorKind::Other);
        let mut h2 = http::HeaderMap::new();
        h2.insert(
            "x-amzn-errortype",
            "ThrottlingException:http://x/".parse().unwrap(),
        );
        assert_eq!(classify_error(400, &h2, b"").kind, ErrorKind::Throttling);
    }

    #[test]
    fn rejected_events_are_counted_per_reason() {
        let r = parse_put_response(
            br#"{"nextSequenceToken":"1","rejectedLogEventsInfo":{"tooOldLogEventEndIndex":2,"expiredLogEventEndIndex":0,"tooNewLogEventStartIndex":8}}"#,
        );
        assert_eq!(r.next_sequence_token.as_deref(), Some("1"));
        let c = r.rejected.unwrap().counts(10);
        assert_eq!(
            c,
            RejectedCounts {
                expired: 1,
                too_old: 2,
                too_new: 2
            }
        );
        assert_eq!(parse_put_response(b"{}").rejected, None);
    }
}
