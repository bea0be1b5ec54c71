//! One request to a robot: resolve the connection's secrets, build the platform's request (signed
//! now), send it, classify the answer. Used by the outbox and by `magpie flow run --send`.
//!
//! Failures are the connectors' [`Failure`] from the answer's classification to the stored send.

use std::time::{Duration, Instant};

use magpie_connectors::{
    Answer, Destination, Failure, HttpRequest, build_request, classify, redact_url, transport_failure,
};
use magpie_core::config::{ConnectionSpec, Platform};
use magpie_core::{FailureKind, OutboundMessage, Retry};
use serde_json::{Value, json};

/// The default wait for a platform's answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an answer is kept.
const MAX_RESPONSE_BYTES: usize = 4_096;

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

/// A connection that cannot be used as configured (e.g. an unset `${ENV}` secret).
pub fn config_failure(connection: &str, reason: &str) -> Failure {
    Failure::new(FailureKind::Config, Retry::No, None, format!("connection {connection:?}: {reason}"))
}

/// A request ready to go, with its masked form for traces.
#[derive(Debug, Clone)]
pub struct Prepared {
    request: HttpRequest,
    /// The URL, tokens and signature masked.
    pub masked_url: String,
    /// The body, signature masked.
    pub masked_body: Value,
    /// How many Magpie deliveries led to the message: the request says one more (`Magpie-Hops`).
    pub hops: u32,
}

/// Builds and signs the request for `msg` at `now_ms`. A message the platform cannot take is a
/// bad request.
pub fn prepare(dest: &Destination, msg: &OutboundMessage, now_ms: i64) -> Result<Prepared, Failure> {
    let request = build_request(dest, msg, now_ms)
        .map_err(|e| Failure::new(FailureKind::BadRequest, Retry::No, None, e.to_string()))?;
    let mut masked_body = request.body.clone();
    if masked_body.get("sign").is_some() {
        masked_body["sign"] = json!("***");
    }
    Ok(Prepared { masked_url: redact_url(&request.url), masked_body, request, hops: 0 })
}

/// A platform's answer to one request.
#[derive(Debug, Clone)]
pub struct Answered {
    /// The HTTP status, when an answer came.
    pub status_code: Option<u16>,
    /// The answer's body (truncated).
    pub response: Option<String>,
    /// Why it failed; `None` when delivered.
    pub failure: Option<Failure>,
    /// How long it took.
    pub duration: Duration,
}

/// Sends a prepared request, if the outbound policy lets it, and classifies the answer. The
/// client follows no redirect: one is a failure naming where it pointed.
pub async fn send(
    http: &reqwest::Client,
    egress: &crate::egress::Egress,
    platform: Platform,
    p: &Prepared,
    timeout: Duration,
) -> Answered {
    let started = Instant::now();
    if let Err(reason) = egress.check_url(&p.request.url) {
        let failure = Failure::new(FailureKind::Config, Retry::No, None, format!("outbound policy: {reason}"));
        return Answered { status_code: None, response: None, failure: Some(failure), duration: started.elapsed() };
    }
    let sent = http
        .post(&p.request.url)
        .header("content-type", "application/json; charset=utf-8")
        .header(crate::ingest::HOPS_HEADER, (p.hops + 1).to_string())
        .body(p.request.body_bytes())
        .timeout(timeout)
        .send()
        .await;
    let mut a = Answered { status_code: None, response: None, failure: None, duration: Duration::ZERO };
    match sent {
        Err(e) => {
            let text = without_url(&e);
            // The resolver refused every address of the name: a configuration fault, not a
            // network one (sending again would be refused again).
            a.failure = Some(match text.find("outbound policy:") {
                Some(i) => Failure::new(FailureKind::Config, Retry::No, None, text[i..].to_string()),
                None => transport_failure(e.is_timeout(), &text),
            });
        }
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let body = resp.bytes().await.unwrap_or_default();
            a.status_code = Some(status);
            // Kept in traces: the platform's echo of our address (WeCom's `from ip`) is masked.
            let text = String::from_utf8_lossy(&body[..body.len().min(MAX_RESPONSE_BYTES)]).into_owned();
            a.response = Some(magpie_connectors::redact_text(&text));
            if (300..400).contains(&status) {
                let to = headers.iter().find(|(k, _)| k == "location").map(|(_, v)| redact_url(v)).unwrap_or_default();
                let why = format!(
                    "the robot's address answered a redirect ({status} to {to:?}); Magpie follows no redirects: fix the webhook"
                );
                a.failure = Some(Failure::new(FailureKind::Config, Retry::No, Some(i64::from(status)), why));
            } else if let Answer::Failed(f) = classify(platform, status, &headers, &body) {
                a.failure = Some(f);
            }
        }
    }
    a.duration = started.elapsed();
    a
}

/// The failure as text for people: the platform's code and message.
pub fn describe(f: &Failure) -> String {
    match f.code {
        Some(c) => format!("{c} {}", f.message),
        None => f.message.clone(),
    }
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
