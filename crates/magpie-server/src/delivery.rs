//! One delivery attempt: resolve the connection's secrets, build the platform's request, send
//! it, and classify the answer. Used by the workers and by `magpie flow run --send`.

use std::time::{Duration, Instant};

use magpie_connectors::{Answer, Destination, build_request, classify, redact_url, transport_failure};
use magpie_core::config::ConnectionSpec;
use magpie_core::{ErrorType, OutboundMessage, Retry};
use magpie_flow::SendResult;
use serde_json::{Value, json};

/// The default wait for a platform's answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an answer is kept.
const MAX_RESPONSE_BYTES: usize = 4_096;

/// What one attempt did, with secrets masked.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The URL, tokens and signature masked.
    pub url: String,
    /// The request body, signature masked (Null when no request could be built).
    pub request: Value,
    /// The HTTP status, when an answer came.
    pub status_code: Option<u16>,
    /// The answer's body (truncated).
    pub response: Option<String>,
    /// The classified outcome.
    pub result: SendResult,
    /// How long it took.
    pub duration: Duration,
}

/// The connection's destination with its `${ENV}` references resolved.
pub fn destination(conn: &ConnectionSpec, env: &dyn Fn(&str) -> Option<String>) -> Result<Destination, String> {
    let webhook = magpie_core::env::resolve(&conn.webhook, env).map_err(|r| format!("webhook: {r}"))?;
    let secret = conn
        .secret
        .as_deref()
        .map(|s| magpie_core::env::resolve(s, env))
        .transpose()
        .map_err(|r| format!("secret: {r}"))?;
    Ok(Destination { platform: conn.platform, webhook, secret, keywords: conn.keywords.clone() })
}

/// A failure of the flow's configuration (not retried).
pub fn config_failure(connection: &str, reason: &str) -> SendResult {
    SendResult::Failed {
        error_type: ErrorType::new("FLOW", "CONFIG"),
        retry: Retry::No,
        retry_after: None,
        message: format!("connection {connection:?}: {reason}"),
    }
}

/// Builds, signs and sends `msg` to `dest`, and classifies the answer.
pub async fn deliver(http: &reqwest::Client, dest: &Destination, msg: &OutboundMessage, timeout: Duration) -> Attempt {
    let ns = dest.platform.error_namespace();
    let started = Instant::now();
    let mut attempt = Attempt {
        url: redact_url(&dest.webhook),
        request: Value::Null,
        status_code: None,
        response: None,
        result: SendResult::Delivered,
        duration: Duration::ZERO,
    };
    let req = match build_request(dest, msg, magpie_core::now_ms()) {
        Ok(r) => r,
        Err(e) => {
            attempt.result = SendResult::Failed {
                error_type: ErrorType::new(ns, "BAD_REQUEST"),
                retry: Retry::No,
                retry_after: None,
                message: e.to_string(),
            };
            return attempt;
        }
    };
    attempt.url = redact_url(&req.url);
    attempt.request = masked(&req.body);
    let sent = http
        .post(&req.url)
        .header("content-type", "application/json; charset=utf-8")
        .body(req.body_bytes())
        .timeout(timeout)
        .send()
        .await;
    attempt.result = match sent {
        Err(e) => {
            let f = transport_failure(e.is_timeout(), &without_url(&e));
            SendResult::Failed {
                error_type: ErrorType::new(ns, f.kind),
                retry: f.retry,
                retry_after: None,
                message: f.message,
            }
        }
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let body = resp.bytes().await.unwrap_or_default();
            attempt.status_code = Some(status);
            attempt.response = Some(String::from_utf8_lossy(&body[..body.len().min(MAX_RESPONSE_BYTES)]).into_owned());
            match classify(dest.platform, status, &headers, &body) {
                Answer::Delivered => SendResult::Delivered,
                Answer::Failed(f) => SendResult::Failed {
                    error_type: ErrorType::new(ns, f.kind),
                    retry: f.retry,
                    retry_after: f.retry_after,
                    message: match f.code {
                        Some(c) => format!("{c} {}", f.message),
                        None => f.message,
                    },
                },
            }
        }
    };
    attempt.duration = started.elapsed();
    attempt
}

/// The request body as kept in traces: the signature masked.
fn masked(body: &Value) -> Value {
    let mut b = body.clone();
    if b.get("sign").is_some() {
        b["sign"] = json!("***");
    }
    b
}

/// A transport error's text without the URL (which holds the robot's key).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(u) = e.url() {
        text = text.replace(u.as_str(), &redact_url(u.as_str()));
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
