use magpie_core::config::{MessageKind, Platform};
use serde_json::{Value, json};

use crate::*;

fn dest(platform: Platform, webhook: &str, secret: Option<&str>, keywords: &[&str]) -> Destination {
    Destination {
        platform,
        webhook: webhook.into(),
        secret: secret.map(Into::into),
        keywords: keywords.iter().map(|s| s.to_string()).collect(),
    }
}

fn msg(kind: MessageKind, title: Option<&str>, content: Value) -> OutboundMessage {
    OutboundMessage { kind, title: title.map(Into::into), content }
}

fn failure(a: Answer) -> Failure {
    match a {
        Answer::Failed(f) => f,
        Answer::Delivered => panic!("expected a failure"),
    }
}

#[test]
fn wecom_markdown_payload_and_limit() {
    let d = dest(Platform::Wecom, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-1", None, &[]);
    let r =
        build_request(&d, &msg(MessageKind::Markdown, None, json!("<font color=\"warning\">hi</font>")), 0).unwrap();
    assert_eq!(r.body, json!({"msgtype": "markdown", "markdown": {"content": "<font color=\"warning\">hi</font>"}}));
    let long = "告".repeat(3000);
    let r = build_request(&d, &msg(MessageKind::Markdown, None, json!(long)), 0).unwrap();
    assert!(r.body["markdown"]["content"].as_str().unwrap().len() <= 4096);
    let r = build_request(&d, &msg(MessageKind::Text, None, json!("plain")), 0).unwrap();
    assert_eq!(r.body, json!({"msgtype": "text", "text": {"content": "plain"}}));
    let bad = dest(Platform::Wecom, "https://qyapi.weixin.qq.com/cgi-bin/webhook/send", None, &[]);
    assert!(matches!(
        build_request(&bad, &msg(MessageKind::Text, None, json!("x")), 0),
        Err(BuildError::BadWebhook(_))
    ));
}

#[test]
fn dingtalk_signs_in_the_query_once_encoded_and_injects_keywords() {
    let d = dest(
        Platform::Dingtalk,
        "https://oapi.dingtalk.com/robot/send?access_token=tok",
        Some("SECtest123"),
        &["告警"],
    );
    let r = build_request(&d, &msg(MessageKind::Markdown, Some("CVM"), json!("#### CVM reboot")), 1_700_000_000_000)
        .unwrap();
    assert!(
        r.url.ends_with(
            "access_token=tok&timestamp=1700000000000&sign=w3RMHXzixTMdzr8OHJUmVLS4IoPJVdu%2BUt1LE48MePE%3D"
        ),
        "{}",
        r.url
    );
    assert_eq!(r.body["msgtype"], "markdown");
    assert_eq!(r.body["markdown"]["title"], "告警 CVM");
    assert_eq!(r.body["markdown"]["text"], "告警 #### CVM reboot");
    // A message already holding a keyword is left alone.
    let r = build_request(&d, &msg(MessageKind::Text, None, json!("有告警")), 1).unwrap();
    assert_eq!(r.body["text"]["content"], "有告警");
}

#[test]
fn feishu_signs_in_the_body_and_builds_posts() {
    let d = dest(Platform::Feishu, "https://open.feishu.cn/open-apis/bot/v2/hook/abc", Some("demo"), &[]);
    let r =
        build_request(&d, &msg(MessageKind::Post, Some("告警"), json!("line 1\nline 2")), 1_599_360_473_123).unwrap();
    assert_eq!(r.body["timestamp"], "1599360473");
    assert_eq!(r.body["sign"], "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8=");
    assert_eq!(r.body["msg_type"], "post");
    assert_eq!(r.body["content"]["post"]["zh_cn"]["title"], "告警");
    assert_eq!(r.body["content"]["post"]["zh_cn"]["content"][1], json!([{"tag": "text", "text": "line 2"}]));
    let r = build_request(&d, &msg(MessageKind::Text, None, json!("hi")), 0).unwrap();
    assert_eq!(r.body["content"], json!({"text": "hi"}));
}

#[test]
fn http_200_with_an_error_code_is_not_delivered() {
    assert_eq!(classify(Platform::Wecom, 200, &[], br#"{"errcode":0,"errmsg":"ok"}"#), Answer::Delivered);
    let f = failure(classify(Platform::Wecom, 200, &[], br#"{"errcode":45009,"errmsg":"api freq out of limit"}"#));
    assert_eq!((f.kind, f.retry, f.code), (FailureKind::RateLimited, Retry::Yes, Some(45009)));
    assert!(f.retry_after.is_some());
    let f = failure(classify(
        Platform::Wecom,
        200,
        &[],
        br#"{"errcode":93000,"errmsg":"invalid webhook url, from ip: 1.2.3.4, more"}"#,
    ));
    assert_eq!((f.kind, f.retry), (FailureKind::Auth, Retry::No));
    assert!(!f.message.contains("1.2.3.4"), "{}", f.message);
    let f =
        failure(classify(Platform::Dingtalk, 200, &[], br#"{"errcode":310000,"errmsg":"keywords not in content"}"#));
    assert_eq!((f.kind, f.retry), (FailureKind::Auth, Retry::No));
    let f = failure(classify(Platform::Dingtalk, 200, &[], br#"{"errcode":130101,"errmsg":"send too fast"}"#));
    assert_eq!(f.kind, FailureKind::RateLimited);
    let f =
        failure(classify(Platform::Dingtalk, 200, &[], br#"{"status":1111,"wait":5,"source":"x5","punish":"deny"}"#));
    assert_eq!((f.kind, f.retry_after), (FailureKind::RateLimited, Some(std::time::Duration::from_secs(5))));
    assert_eq!(classify(Platform::Feishu, 200, &[], br#"{"code":0,"data":{},"msg":"success"}"#), Answer::Delivered);
    assert_eq!(
        classify(Platform::Feishu, 200, &[], br#"{"Extra":null,"StatusCode":0,"StatusMessage":"success"}"#),
        Answer::Delivered
    );
    let f = failure(classify(Platform::Feishu, 400, &[], br#"{"code":9499,"msg":"too many request","data":{}}"#));
    assert_eq!(f.kind, FailureKind::RateLimited);
    let f = failure(classify(Platform::Feishu, 400, &[], br#"{"code":9499,"msg":"Bad Request","data":{}}"#));
    assert_eq!((f.kind, f.retry), (FailureKind::BadRequest, Retry::No));
    let f = failure(classify(Platform::Feishu, 200, &[], br#"{"code":19021,"msg":"sign match fail"}"#));
    assert_eq!((f.kind, f.retry), (FailureKind::Auth, Retry::Once));
    let f = failure(classify(Platform::Wecom, 502, &[("Retry-After".into(), "7".into())], b"bad gateway"));
    assert_eq!(
        (f.kind, f.retry, f.retry_after),
        (FailureKind::Remote, Retry::Yes, Some(std::time::Duration::from_secs(7)))
    );
    let f = failure(classify(Platform::Wecom, 200, &[], b"<html>"));
    assert_eq!(f.kind, FailureKind::Remote);
}
