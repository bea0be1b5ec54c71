//! Robot connectors: build each platform's exact request (payload, signing, keywords, size limits)
//! and classify its answer. No I/O happens here: the caller sends the [`HttpRequest`] and hands
//! the answer back to [`classify`].
//!
//! Rule one of every platform: HTTP 200 does not mean delivered. WeCom and DingTalk answer
//! failures with HTTP 200 and `errcode != 0`, Feishu/Lark with `code != 0`.

pub mod digest;
mod dingtalk;
mod feishu;
mod redact;
pub mod signing;
mod text;
mod wecom;

use std::time::Duration;

use magpie_core::config::Platform;
use serde_json::Value;

pub use magpie_core::{FailureKind, OutboundMessage, Retry};
pub use redact::{redact_text, redact_url};
pub use text::truncate_utf8;

/// A destination with its secrets resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    /// The platform.
    pub platform: Platform,
    /// The webhook URL.
    pub webhook: String,
    /// Signing secret.
    pub secret: Option<String>,
    /// Keywords: a message must contain one.
    pub keywords: Vec<String>,
}

/// An HTTP request ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequest {
    /// The URL, including signing query parameters.
    pub url: String,
    /// The JSON body.
    pub body: Value,
}

impl HttpRequest {
    /// The body as bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).unwrap_or_default()
    }
}

/// Why a request could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The webhook URL is not usable.
    #[error("invalid webhook URL: {0}")]
    BadWebhook(String),
    /// The message content has the wrong shape.
    #[error("invalid message: {0}")]
    BadMessage(String),
}

/// The platform's answer, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The platform accepted the message.
    Delivered,
    /// The platform refused or failed.
    Failed(Failure),
}

/// A classified failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The error kind.
    pub kind: FailureKind,
    /// Whether to retry.
    pub retry: Retry,
    /// The platform's hint of how long to wait.
    pub retry_after: Option<Duration>,
    /// The platform's error code, when it gave one.
    pub code: Option<i64>,
    /// A description for people (the platform's message, with addresses redacted).
    pub message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: FailureKind, retry: Retry, code: Option<i64>, message: impl Into<String>) -> Self {
        Self { kind, retry, retry_after: None, code, message: message.into() }
    }

    pub(crate) fn after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }
}

/// The error type of a failure on `platform` (`WECOM:RATE_LIMITED`).
pub fn error_type(platform: Platform, kind: FailureKind) -> magpie_core::ErrorType {
    kind.in_namespace(platform.error_namespace())
}

/// Builds the request for `msg` to `dest` at `now_ms` (signing included).
pub fn build_request(dest: &Destination, msg: &OutboundMessage, now_ms: i64) -> Result<HttpRequest, BuildError> {
    let url = url::Url::parse(&dest.webhook).map_err(|e| BuildError::BadWebhook(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BuildError::BadWebhook(format!("scheme {:?} is not http or https", url.scheme())));
    }
    match dest.platform {
        Platform::Wecom => wecom::build(url, msg),
        Platform::Dingtalk => dingtalk::build(url, dest, msg, now_ms),
        Platform::Feishu | Platform::Lark => feishu::build(url, dest, msg, now_ms),
    }
}

/// Classifies the platform's answer to a request.
pub fn classify(platform: Platform, status: u16, headers: &[(String, String)], body: &[u8]) -> Answer {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let retry_after = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    let answer = match platform {
        Platform::Wecom => wecom::classify(status, json.as_ref()),
        Platform::Dingtalk => dingtalk::classify(status, json.as_ref()),
        Platform::Feishu | Platform::Lark => feishu::classify(status, json.as_ref(), header("x-ogw-ratelimit-reset")),
    };
    match answer {
        Answer::Failed(mut f) => {
            if f.retry_after.is_none() {
                f.retry_after = retry_after;
            }
            if json.is_none() && f.message.is_empty() {
                f.message = format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]));
            }
            f.message = redact::redact_text(&f.message);
            Answer::Failed(f)
        }
        ok => ok,
    }
}

/// The failure of a request that got no answer: connection refused, DNS, TLS, or a timeout.
pub fn transport_failure(timed_out: bool, message: &str) -> Failure {
    if timed_out {
        Failure::new(FailureKind::Timeout, Retry::Yes, None, format!("no answer in time: {message}"))
    } else {
        Failure::new(FailureKind::Connectivity, Retry::Yes, None, format!("could not reach the platform: {message}"))
    }
}

/// Generic classification of HTTP statuses when the body says nothing more.
pub(crate) fn classify_status(status: u16) -> Option<Failure> {
    use magpie_core::FailureKind::*;
    match status {
        200..=299 => None,
        429 => Some(Failure::new(RateLimited, Retry::Yes, None, format!("HTTP {status}"))),
        401 | 403 | 404 => Some(Failure::new(Auth, Retry::No, None, format!("HTTP {status}"))),
        400..=499 => Some(Failure::new(BadRequest, Retry::No, None, format!("HTTP {status}"))),
        _ => Some(Failure::new(Remote, Retry::Yes, None, format!("HTTP {status}"))),
    }
}

/// Puts the first keyword in front of `text` when it contains none of them.
pub(crate) fn ensure_keyword(text: &str, keywords: &[String]) -> String {
    match keywords.first() {
        Some(first) if !keywords.iter().any(|k| text.contains(k.as_str())) => format!("{first} {text}"),
        _ => text.to_string(),
    }
}

/// Renders a content value as text: strings as they are, anything else as JSON.
pub(crate) fn content_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
