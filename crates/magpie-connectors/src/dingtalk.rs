//! DingTalk (钉钉) custom robot.

use std::time::Duration;

use magpie_core::FailureKind::*;
use magpie_core::config::MessageKind;
use serde_json::{Value, json};

use crate::signing::{dingtalk_sign, url_encode};
use crate::{
    Answer, BuildError, Destination, Failure, HttpRequest, OutboundMessage, Retry, classify_status, content_text,
    ensure_keyword, truncate_utf8,
};

/// Largest request body, in bytes.
pub const MAX_BODY_BYTES: usize = 20_000;

pub(crate) fn build(
    mut url: url::Url,
    dest: &Destination,
    msg: &OutboundMessage,
    now_ms: i64,
) -> Result<HttpRequest, BuildError> {
    if !url.query_pairs().any(|(k, v)| k == "access_token" && !v.is_empty()) {
        return Err(BuildError::BadWebhook("a DingTalk webhook needs ?access_token=…".into()));
    }
    let content = ensure_keyword(&content_text(&msg.content), &dest.keywords);
    if content.trim().is_empty() {
        return Err(BuildError::BadMessage("the content is empty".into()));
    }
    // Room for the envelope and the title; JSON escaping can grow text, so leave a margin.
    let content = truncate_utf8(&content, MAX_BODY_BYTES - 1_000);
    let body = match msg.kind {
        MessageKind::Text => json!({"msgtype": "text", "text": {"content": content}}),
        MessageKind::Markdown | MessageKind::Post => {
            let title = msg.title.clone().filter(|t| !t.trim().is_empty()).unwrap_or_else(|| title_from(&content));
            let title = truncate_utf8(&ensure_keyword(&title, &dest.keywords), 256);
            json!({"msgtype": "markdown", "markdown": {"title": title, "text": content}})
        }
    };
    if let Some(secret) = &dest.secret {
        let sign = dingtalk_sign(secret, now_ms);
        // Strip any stale signature, then add a fresh one, URL-encoded exactly once.
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "timestamp" && k != "sign")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut query: Vec<String> = kept.iter().map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v))).collect();
        query.push(format!("timestamp={now_ms}"));
        query.push(format!("sign={}", url_encode(&sign)));
        url.set_query(Some(&query.join("&")));
    }
    Ok(HttpRequest { url: url.to_string(), body })
}

/// A title for the conversation list: the first non-empty line, without markdown marks.
fn title_from(content: &str) -> String {
    let line = content.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("Magpie");
    let plain: String = line.trim_start_matches(['#', '>', ' ']).replace("**", "");
    let plain = strip_tags(&plain);
    plain.chars().take(64).collect()
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

pub(crate) fn classify(status: u16, json: Option<&Value>) -> Answer {
    let Some(body) = json else {
        return Answer::Failed(classify_status(status).unwrap_or_else(|| Failure::new(Remote, Retry::Yes, None, "")));
    };
    // Anti-abuse throttle replies may come without errcode: {"status":1111,"wait":5,"punish":"deny"}.
    if body.get("punish").is_some() || (body.get("wait").is_some() && body.get("errcode").is_none()) {
        let wait = body.get("wait").and_then(Value::as_u64).unwrap_or(60);
        return Answer::Failed(
            Failure::new(
                RateLimited,
                Retry::Yes,
                body.get("errcode").and_then(Value::as_i64),
                "throttled (anti-abuse)",
            )
            .after(Duration::from_secs(wait.max(1))),
        );
    }
    let Some(code) = body.get("errcode").and_then(Value::as_i64) else {
        return Answer::Failed(
            classify_status(status).unwrap_or_else(|| Failure::new(Remote, Retry::Yes, None, "answer without errcode")),
        );
    };
    let msg = body.get("errmsg").and_then(Value::as_str).unwrap_or_default().to_string();
    let f = match code {
        0 => return Answer::Delivered,
        -1 => Failure::new(Remote, Retry::Yes, Some(code), msg),
        310000 => {
            let lower = msg.to_lowercase();
            if lower.contains("invalid timestamp") || msg.contains("签名过期") {
                Failure::new(Auth, Retry::Once, Some(code), msg)
            } else {
                Failure::new(Auth, Retry::No, Some(code), msg)
            }
        }
        300001 | 300005 | 40035 | 400013 | 400101 | 400102 | 400106 => Failure::new(Auth, Retry::No, Some(code), msg),
        // The robot is then throttled for 10 minutes: the connection's penalty, not a hint of 60 s.
        130101 | 410100 => Failure::new(RateLimited, Retry::Yes, Some(code), msg),
        460101 | 101002 | 43002 | 400105 => Failure::new(BadRequest, Retry::No, Some(code), msg),
        _ => Failure::new(Remote, Retry::Yes, Some(code), msg),
    };
    Answer::Failed(f)
}
