//! Each platform's checks and answers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use magpie_connectors::signing::{constant_time_eq, dingtalk_sign, feishu_sign};
use magpie_core::config::Platform;
use serde_json::{Value, json};

use crate::{Fault, Received, Robot, Simulator};

const WECOM_TEXT_MAX: usize = 2048;
const WECOM_MARKDOWN_MAX: usize = 4096;
const DINGTALK_BODY_MAX: usize = 20_000;
const FEISHU_BODY_MAX: usize = 20 * 1024;
const ONE_HOUR_MS: i64 = 3_600_000;

/// A refusal: HTTP status and body.
struct Refusal(StatusCode, Value);

fn wecom_err(code: i64, msg: &str) -> Refusal {
    let msg = format!(
        "{msg}, hint: [{}], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e={code}",
        magpie_core::now_ms()
    );
    Refusal(StatusCode::OK, json!({"errcode": code, "errmsg": msg}))
}

fn ding_err(code: i64, msg: &str) -> Refusal {
    Refusal(StatusCode::OK, json!({"errcode": code, "errmsg": msg}))
}

fn feishu_err(status: StatusCode, code: i64, msg: &str) -> Refusal {
    Refusal(status, json!({"code": code, "msg": msg, "data": {}}))
}

fn invalid_token(p: Platform, token: &str) -> Refusal {
    match p {
        Platform::Wecom => wecom_err(93000, "invalid webhook url"),
        Platform::Dingtalk if token.is_empty() => ding_err(40035, "缺少参数 access_token"),
        Platform::Dingtalk => ding_err(300005, "token is not exist"),
        Platform::Feishu | Platform::Lark => {
            feishu_err(StatusCode::OK, 19001, "param invalid: incoming webhook access token invalid")
        }
    }
}

fn rate_limited(p: Platform) -> Refusal {
    match p {
        Platform::Wecom => Refusal(StatusCode::OK, json!({"errcode": 45009, "errmsg": "api freq out of limit"})),
        Platform::Dingtalk => ding_err(130101, "send too fast, exceed 20 times per minute"),
        Platform::Feishu | Platform::Lark => feishu_err(StatusCode::BAD_REQUEST, 9499, "too many request"),
    }
}

fn busy(p: Platform) -> Refusal {
    match p {
        Platform::Wecom => Refusal(StatusCode::OK, json!({"errcode": -1, "errmsg": "system busy"})),
        Platform::Dingtalk => ding_err(-1, "系统繁忙"),
        Platform::Feishu | Platform::Lark => feishu_err(StatusCode::OK, 11232, "system busy, please retry later"),
    }
}

fn bad_request(p: Platform, what: &str) -> Refusal {
    match p {
        Platform::Wecom => wecom_err(40035, &format!("Warning: wrong json format. {what}")),
        Platform::Dingtalk => ding_err(40035, &format!("缺少参数 json: {what}")),
        Platform::Feishu | Platform::Lark => feishu_err(StatusCode::BAD_REQUEST, 9499, "Bad Request"),
    }
}

fn success(p: Platform) -> Value {
    match p {
        Platform::Wecom | Platform::Dingtalk => json!({"errcode": 0, "errmsg": "ok"}),
        Platform::Feishu | Platform::Lark => {
            json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"})
        }
    }
}

pub(crate) async fn handle(
    sim: &Simulator,
    platform: Platform,
    token: String,
    method: Method,
    raw_query: String,
    query: &HashMap<String, String>,
    body: Bytes,
) -> Response {
    match check(sim, platform, &token, &method, query, &body).await {
        Ok((msgtype, json)) => {
            sim.messages.lock().unwrap_or_else(|p| p.into_inner()).push(Received {
                platform,
                token: token.clone(),
                msgtype,
                body: json,
                query: raw_query,
                received_at: magpie_core::now_ms(),
            });
            sim.answer(platform, &token, StatusCode::OK, success(platform))
        }
        Err(Refusal(status, body)) if body.is_null() => {
            sim.answer(platform, &token, status, Value::Null);
            status.into_response()
        }
        Err(Refusal(status, body)) => sim.answer(platform, &token, status, body),
    }
}

async fn check(
    sim: &Simulator,
    p: Platform,
    token: &str,
    method: &Method,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(String, Value), Refusal> {
    if method != Method::POST {
        return Err(match p {
            Platform::Dingtalk => ding_err(43002, "需要POST请求"),
            Platform::Wecom => wecom_err(43002, "require POST method"),
            _ => feishu_err(StatusCode::BAD_REQUEST, 9499, "Bad Request"),
        });
    }
    let Some(robot) = sim.robot(p, token) else { return Err(invalid_token(p, token)) };
    match sim.next_fault(p, token) {
        None => {}
        Some(Fault::RateLimited) => return Err(rate_limited(p)),
        Some(Fault::Busy) => return Err(busy(p)),
        Some(Fault::Auth) => return Err(invalid_token(p, token)),
        Some(Fault::Http500) => return Err(Refusal(StatusCode::INTERNAL_SERVER_ERROR, Value::Null)),
        Some(Fault::Timeout) => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return Err(busy(p));
        }
    }
    if sim.admit(p, token, Instant::now()).is_err() {
        return Err(rate_limited(p));
    }
    match p {
        Platform::Wecom => wecom(body),
        Platform::Dingtalk => dingtalk(&robot, query, body),
        Platform::Feishu | Platform::Lark => feishu(&robot, body),
    }
}

fn parse(p: Platform, body: &[u8]) -> Result<serde_json::Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(bad_request(p, "the body must be a JSON object")),
        Err(e) => Err(bad_request(p, &e.to_string())),
    }
}

fn str_field<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

fn wecom(body: &[u8]) -> Result<(String, Value), Refusal> {
    let o = parse(Platform::Wecom, body)?;
    let msgtype = o.get("msgtype").and_then(Value::as_str).unwrap_or_default().to_string();
    let part = o.get(&msgtype).cloned().unwrap_or(Value::Null);
    match msgtype.as_str() {
        "text" => {
            let content = str_field(&part, "content").unwrap_or_default();
            if content.is_empty() {
                return Err(wecom_err(44004, "text content empty"));
            }
            if content.len() > WECOM_TEXT_MAX {
                return Err(wecom_err(45002, "content size over limit, text.content exceed max length 2048"));
            }
        }
        "markdown" | "markdown_v2" => {
            let content = str_field(&part, "content").unwrap_or_default();
            if content.is_empty() {
                return Err(wecom_err(44004, &format!("{msgtype} content empty")));
            }
            if content.len() > WECOM_MARKDOWN_MAX {
                return Err(wecom_err(
                    40058,
                    &format!("{msgtype}.content exceed max length 4096. Invalid input invalid Request Parameter"),
                ));
            }
        }
        "image" | "news" | "file" | "voice" | "template_card" => {
            if !part.is_object() {
                return Err(wecom_err(40035, &format!("missing {msgtype} object")));
            }
        }
        _ => return Err(wecom_err(40008, "invalid message type")),
    }
    Ok((msgtype, Value::Object(o)))
}

fn dingtalk(robot: &Robot, query: &HashMap<String, String>, body: &[u8]) -> Result<(String, Value), Refusal> {
    if let Some(secret) = &robot.secret {
        let (Some(ts), Some(sign)) = (query.get("timestamp"), query.get("sign")) else {
            return Err(ding_err(
                310000,
                "description:机器人发送签名不匹配;solution:请确认签名和生成签名的时间戳必须都放在调用的网址中，请确认机器人的密钥加密和填写正确;",
            ));
        };
        let Ok(ts_ms) = ts.parse::<i64>() else { return Err(ding_err(310000, "invalid timestamp")) };
        if (magpie_core::now_ms() - ts_ms).abs() > ONE_HOUR_MS {
            return Err(ding_err(
                310000,
                "description:机器人发送签名过期;solution:签名生成时间和发送时间请保持在 timestampms 以内;",
            ));
        }
        if !constant_time_eq(sign, &dingtalk_sign(secret, ts_ms)) {
            return Err(ding_err(
                310000,
                "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
            ));
        }
    }
    if body.len() > DINGTALK_BODY_MAX {
        return Err(ding_err(460101, "message too long, exceed 20000 bytes"));
    }
    let o = parse(Platform::Dingtalk, body)?;
    let msgtype = o.get("msgtype").and_then(Value::as_str).unwrap_or_default().to_string();
    let part = o.get(&msgtype).cloned().unwrap_or(Value::Null);
    let searchable = match msgtype.as_str() {
        "text" => {
            let content = str_field(&part, "content").unwrap_or_default();
            if content.is_empty() {
                return Err(ding_err(400105, "text.content is required"));
            }
            content.to_string()
        }
        "markdown" => {
            let (Some(title), Some(text)) = (str_field(&part, "title"), str_field(&part, "text")) else {
                return Err(ding_err(400105, "markdown.title and markdown.text are required"));
            };
            if title.is_empty() || text.is_empty() {
                return Err(ding_err(400105, "markdown.title and markdown.text must not be empty"));
            }
            format!("{title}\n{text}")
        }
        "link" => {
            for f in ["text", "title", "messageUrl"] {
                if str_field(&part, f).is_none() {
                    return Err(ding_err(400105, &format!("link.{f} is required")));
                }
            }
            part.to_string()
        }
        "actionCard" | "feedCard" => {
            if !part.is_object() {
                return Err(ding_err(400105, &format!("missing {msgtype} object")));
            }
            part.to_string()
        }
        _ => return Err(ding_err(400105, "不支持的消息类型")),
    };
    if !robot.keywords.is_empty() && !robot.keywords.iter().any(|k| searchable.contains(k.as_str())) {
        return Err(ding_err(
            310000,
            "keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
        ));
    }
    Ok((msgtype, Value::Object(o)))
}

fn feishu(robot: &Robot, body: &[u8]) -> Result<(String, Value), Refusal> {
    let p = robot.platform;
    if body.len() > FEISHU_BODY_MAX {
        return Err(feishu_err(StatusCode::BAD_REQUEST, 9499, "Bad Request"));
    }
    let o = parse(p, body)?;
    if let Some(secret) = &robot.secret {
        let fail = || {
            feishu_err(StatusCode::OK, 19021, "sign match fail or timestamp is not within one hour from current time")
        };
        let ts = match o.get("timestamp") {
            Some(Value::String(s)) => s.parse::<i64>().map_err(|_| fail())?,
            Some(Value::Number(n)) => n.as_i64().ok_or_else(fail)?,
            _ => return Err(fail()),
        };
        let sign = o.get("sign").and_then(Value::as_str).ok_or_else(fail)?;
        if (magpie_core::now_ms() / 1000 - ts).abs() > ONE_HOUR_MS / 1000
            || !constant_time_eq(sign, &feishu_sign(secret, ts))
        {
            return Err(fail());
        }
    }
    let msgtype = o.get("msg_type").and_then(Value::as_str).unwrap_or_default().to_string();
    let bad = || feishu_err(StatusCode::BAD_REQUEST, 9499, "Bad Request");
    let mut texts = Vec::new();
    match msgtype.as_str() {
        "text" => {
            let text = o.get("content").and_then(|c| str_field(c, "text")).ok_or_else(bad)?;
            if text.is_empty() {
                return Err(bad());
            }
            texts.push(text.to_string());
        }
        "post" => {
            let locales = o.get("content").and_then(|c| c.get("post")).and_then(Value::as_object).ok_or_else(bad)?;
            if locales.is_empty() {
                return Err(bad());
            }
            for locale in locales.values() {
                if let Some(t) = str_field(locale, "title") {
                    texts.push(t.to_string());
                }
                let paragraphs = locale.get("content").and_then(Value::as_array).ok_or_else(bad)?;
                for para in paragraphs {
                    for node in para.as_array().ok_or_else(bad)? {
                        match str_field(node, "tag") {
                            Some("text") => texts.push(str_field(node, "text").ok_or_else(bad)?.to_string()),
                            Some("a") => {
                                texts.push(str_field(node, "text").ok_or_else(bad)?.to_string());
                                let href = str_field(node, "href").ok_or_else(bad)?;
                                if !(href.starts_with("http://") || href.starts_with("https://")) {
                                    return Err(bad());
                                }
                            }
                            Some("at") => {
                                str_field(node, "user_id").ok_or_else(bad)?;
                            }
                            Some("img") => {
                                str_field(node, "image_key").ok_or_else(bad)?;
                            }
                            _ => return Err(bad()),
                        }
                    }
                }
            }
        }
        "interactive" => {
            let card = o.get("card").filter(|c| c.is_object()).ok_or_else(bad)?;
            texts.push(card.to_string());
        }
        "image" | "share_chat" => {
            o.get("content").filter(|c| c.is_object()).ok_or_else(bad)?;
        }
        _ => return Err(bad()),
    }
    if !robot.keywords.is_empty() && !robot.keywords.iter().any(|k| texts.iter().any(|t| t.contains(k.as_str()))) {
        return Err(feishu_err(StatusCode::OK, 19024, "Key Words Not Found"));
    }
    Ok((msgtype, Value::Object(o)))
}
