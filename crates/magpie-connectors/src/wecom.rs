//! WeCom (企业微信) group robot.

use std::time::Duration;

use magpie_core::FailureKind::*;
use magpie_core::config::MessageKind;
use serde_json::{Value, json};

use crate::{
    Answer, BuildError, Failure, HttpRequest, OutboundMessage, Retry, classify_status, content_text, truncate_utf8,
};

/// Largest text content, in bytes.
pub const MAX_TEXT_BYTES: usize = 2048;
/// Largest markdown content, in bytes.
pub const MAX_MARKDOWN_BYTES: usize = 4096;

pub(crate) fn build(url: url::Url, msg: &OutboundMessage) -> Result<HttpRequest, BuildError> {
    if !url.query_pairs().any(|(k, v)| k == "key" && !v.is_empty()) {
        return Err(BuildError::BadWebhook("a WeCom webhook needs ?key=…".into()));
    }
    let mut content = content_text(&msg.content);
    if let Some(title) = msg.title.as_deref().filter(|t| !t.is_empty())
        && msg.kind != MessageKind::Text
    {
        content = format!("# {title}\n{content}");
    }
    if content.trim().is_empty() {
        return Err(BuildError::BadMessage("the content is empty".into()));
    }
    let body = match msg.kind {
        MessageKind::Text => json!({"msgtype": "text", "text": {"content": truncate_utf8(&content, MAX_TEXT_BYTES)}}),
        MessageKind::Markdown | MessageKind::Post => {
            json!({"msgtype": "markdown", "markdown": {"content": truncate_utf8(&content, MAX_MARKDOWN_BYTES)}})
        }
    };
    Ok(HttpRequest { url: url.to_string(), body })
}

pub(crate) fn classify(status: u16, json: Option<&Value>) -> Answer {
    let Some(body) = json.filter(|v| v.get("errcode").is_some()) else {
        return Answer::Failed(
            classify_status(status).unwrap_or_else(|| Failure::new(Remote, Retry::Yes, None, "answer without errcode")),
        );
    };
    let code = body.get("errcode").and_then(Value::as_i64).unwrap_or(-1);
    let msg = body.get("errmsg").and_then(Value::as_str).unwrap_or_default().to_string();
    let f = match code {
        0 => return Answer::Delivered,
        -1 => Failure::new(Remote, Retry::Yes, Some(code), msg),
        45009 => Failure::new(RateLimited, Retry::Yes, Some(code), msg).after(Duration::from_secs(60)),
        45033 => Failure::new(RateLimited, Retry::Yes, Some(code), msg),
        93000 => Failure::new(Auth, Retry::No, Some(code), msg),
        40058 | 45002 | 40008 | 44004 | 40007 | 40004 | 40006 | 45001 | 41006 | 45008 | 45034 | 40033 => {
            Failure::new(BadRequest, Retry::No, Some(code), msg)
        }
        _ => Failure::new(Remote, Retry::Yes, Some(code), msg),
    };
    Answer::Failed(f)
}
