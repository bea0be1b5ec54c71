//! Feishu (飞书) and Lark custom bots.

use std::time::Duration;

use magpie_core::FailureKind::*;
use magpie_core::config::MessageKind;
use serde_json::{Value, json};

use crate::signing::feishu_sign;
use crate::{
    Answer, BuildError, Destination, Failure, HttpRequest, OutboundMessage, Retry, classify_status, content_text,
    ensure_keyword, truncate_utf8,
};

/// Largest request body, in bytes.
pub const MAX_BODY_BYTES: usize = 20_000;

pub(crate) fn build(
    url: url::Url,
    dest: &Destination,
    msg: &OutboundMessage,
    now_ms: i64,
) -> Result<HttpRequest, BuildError> {
    if !url.path().contains("/hook/") || url.path().ends_with("/hook/") {
        return Err(BuildError::BadWebhook("a Feishu/Lark webhook ends in /open-apis/bot/v2/hook/<token>".into()));
    }
    let mut body = match msg.kind {
        MessageKind::Text => {
            let text = ensure_keyword(&content_text(&msg.content), &dest.keywords);
            if text.trim().is_empty() {
                return Err(BuildError::BadMessage("the content is empty".into()));
            }
            json!({"msg_type": "text", "content": {"text": truncate_utf8(&text, MAX_BODY_BYTES - 1_000)}})
        }
        MessageKind::Post | MessageKind::Markdown => {
            let paragraphs = paragraphs(&msg.content, msg.kind == MessageKind::Markdown)?;
            let title = msg.title.clone().unwrap_or_default();
            let has_keyword = dest.keywords.is_empty()
                || dest
                    .keywords
                    .iter()
                    .any(|k| title.contains(k.as_str()) || paragraphs.to_string().contains(k.as_str()));
            let title = if has_keyword { title } else { ensure_keyword(&title, &dest.keywords).trim_end().to_string() };
            json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": title, "content": paragraphs}}}})
        }
    };
    if serde_json::to_vec(&body).map(|b| b.len()).unwrap_or(0) > MAX_BODY_BYTES {
        return Err(BuildError::BadMessage(format!("the message is larger than Feishu's {MAX_BODY_BYTES} bytes")));
    }
    if let Some(secret) = &dest.secret {
        let ts = now_ms.div_euclid(1000);
        body["timestamp"] = Value::String(ts.to_string());
        body["sign"] = Value::String(feishu_sign(secret, ts));
    }
    Ok(HttpRequest { url: url.to_string(), body })
}

/// Post paragraphs: an array given as is, or text split into lines (markdown marks removed).
fn paragraphs(content: &Value, from_markdown: bool) -> Result<Value, BuildError> {
    match content {
        Value::Array(items) => {
            if items.iter().all(Value::is_array) {
                Ok(content.clone())
            } else {
                Err(BuildError::BadMessage("post content must be an array of paragraphs (arrays of tags)".into()))
            }
        }
        other => {
            let text = content_text(other);
            if text.trim().is_empty() {
                return Err(BuildError::BadMessage("the content is empty".into()));
            }
            let lines: Vec<Value> = text
                .lines()
                .map(|l| if from_markdown { plain_line(l) } else { l.to_string() })
                .map(|l| json!([{"tag": "text", "text": l}]))
                .collect();
            Ok(Value::Array(lines))
        }
    }
}

/// A markdown line as plain text: leading `#`/`>` marks and `**` removed.
fn plain_line(l: &str) -> String {
    l.trim_start().trim_start_matches(['#', '>']).trim_start().replace("**", "")
}

pub(crate) fn classify(status: u16, json: Option<&Value>, reset: Option<&str>) -> Answer {
    let Some(body) = json else {
        return Answer::Failed(classify_status(status).unwrap_or_else(|| Failure::new(Remote, Retry::Yes, None, "")));
    };
    let code = body.get("code").and_then(Value::as_i64).or_else(|| body.get("StatusCode").and_then(Value::as_i64));
    let Some(code) = code else {
        return Answer::Failed(
            classify_status(status).unwrap_or_else(|| Failure::new(Remote, Retry::Yes, None, "answer without code")),
        );
    };
    let msg =
        body.get("msg").or_else(|| body.get("StatusMessage")).and_then(Value::as_str).unwrap_or_default().to_string();
    let f = match code {
        0 if (200..300).contains(&status) => return Answer::Delivered,
        0 => classify_status(status).unwrap_or_else(|| Failure::new(Remote, Retry::Yes, Some(0), msg.clone())),
        9499 if msg.to_lowercase().contains("too many request") => {
            Failure::new(RateLimited, Retry::Yes, Some(code), msg)
        }
        9499 => Failure::new(BadRequest, Retry::No, Some(code), msg),
        11232 => Failure::new(RateLimited, Retry::Yes, Some(code), msg),
        99991400 => {
            let wait = reset.and_then(|r| r.trim().parse::<u64>().ok()).unwrap_or(1);
            Failure::new(RateLimited, Retry::Yes, Some(code), msg).after(Duration::from_secs(wait.max(1)))
        }
        19001 | 19022 | 19024 => Failure::new(Auth, Retry::No, Some(code), msg),
        19021 => Failure::new(Auth, Retry::Once, Some(code), msg),
        19036 => Failure::new(BadRequest, Retry::No, Some(code), msg),
        _ => Failure::new(Remote, Retry::Yes, Some(code), msg),
    };
    Answer::Failed(f)
}
