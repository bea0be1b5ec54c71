use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use magpie_connectors::signing::{dingtalk_sign, feishu_sign, url_encode};
use magpie_core::config::Platform;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{Fault, Robot, Simulator, app};

fn sim() -> Arc<Simulator> {
    let s = Simulator::new();
    s.register(Robot {
        platform: Platform::Wecom,
        token: "wk".into(),
        secret: None,
        keywords: vec![],
        limits: None,
        penalty: None,
    });
    s.register(Robot {
        platform: Platform::Dingtalk,
        token: "dt".into(),
        secret: Some("SECabc".into()),
        keywords: vec!["告警".into()],
        limits: None,
        penalty: None,
    });
    s.register(Robot {
        platform: Platform::Feishu,
        token: "fs".into(),
        secret: Some("fsecret".into()),
        keywords: vec![],
        limits: None,
        penalty: None,
    });
    s
}

async fn post(sim: &Arc<Simulator>, uri: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(uri).header("content-type", "application/json").body(Body::from(body.to_string())).unwrap();
    let resp = app(sim.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn wecom_rules() {
    let s = sim();
    let (st, b) =
        post(&s, "/cgi-bin/webhook/send?key=wk", json!({"msgtype": "markdown", "markdown": {"content": "hi"}})).await;
    assert_eq!((st, b["errcode"].as_i64()), (StatusCode::OK, Some(0)));
    let (_, b) =
        post(&s, "/cgi-bin/webhook/send?key=nope", json!({"msgtype": "text", "text": {"content": "hi"}})).await;
    assert_eq!(b["errcode"], 93000);
    let (st, b) = post(
        &s,
        "/cgi-bin/webhook/send?key=wk",
        json!({"msgtype": "markdown", "markdown": {"content": "x".repeat(4097)}}),
    )
    .await;
    assert_eq!((st, b["errcode"].as_i64()), (StatusCode::OK, Some(40058)), "HTTP 200 with an error code");
    let (_, b) = post(&s, "/cgi-bin/webhook/send?key=wk", json!({"msgtype": "bogus"})).await;
    assert_eq!(b["errcode"], 40008);
    assert_eq!(s.messages().len(), 1);
    assert_eq!(s.messages()[0].msgtype, "markdown");
}

#[tokio::test]
async fn wecom_rate_limit_is_20_per_minute() {
    let s = sim();
    for i in 0..17 {
        let (_, b) =
            post(&s, "/cgi-bin/webhook/send?key=wk", json!({"msgtype": "text", "text": {"content": format!("{i}")}}))
                .await;
        assert_eq!(b["errcode"], 0, "message {i}");
    }
    // 20 sends fit in the minute: three of these five pass, the last two are refused.
    let mut refused = 0;
    for _ in 0..5 {
        let (_, b) =
            post(&s, "/cgi-bin/webhook/send?key=wk", json!({"msgtype": "text", "text": {"content": "x"}})).await;
        if b["errcode"] == 45009 {
            refused += 1;
        }
    }
    assert_eq!(refused, 2, "sends 21 and 22 of the minute are refused");
}

#[tokio::test]
async fn tests_can_register_robots_with_small_windows_or_none() {
    let s = sim();
    let (st, _) = post(
        &s,
        "/_sim/robots",
        json!({"platform": "wecom", "token": "small", "limits": [{"count": 2, "per": "300ms"}]}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = post(&s, "/_sim/robots", json!({"platform": "wecom", "token": "free", "limits": []})).await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, _) = post(
        &s,
        "/_sim/robots",
        json!({"platform": "dingtalk", "token": "dpen", "limits": [{"count": 1, "per": "100ms"}], "penalty": "400ms"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, b) = post(&s, "/_sim/robots", json!({"platform": "wecom", "token": "x", "limit": []})).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "a misspelt field is refused: {b}");
    let text = json!({"msgtype": "text", "text": {"content": "x"}});
    let code = |b: Value| b["errcode"].as_i64().unwrap();
    assert_eq!(code(post(&s, "/cgi-bin/webhook/send?key=small", text.clone()).await.1), 0);
    assert_eq!(code(post(&s, "/cgi-bin/webhook/send?key=small", text.clone()).await.1), 0);
    assert_eq!(code(post(&s, "/cgi-bin/webhook/send?key=small", text.clone()).await.1), 45009);
    tokio::time::sleep(std::time::Duration::from_millis(320)).await;
    assert_eq!(code(post(&s, "/cgi-bin/webhook/send?key=small", text.clone()).await.1), 0, "the window moved");
    for _ in 0..30 {
        assert_eq!(code(post(&s, "/cgi-bin/webhook/send?key=free", text.clone()).await.1), 0);
    }
    let md = json!({"msgtype": "text", "text": {"content": "x"}});
    assert_eq!(code(post(&s, "/robot/send?access_token=dpen", md.clone()).await.1), 0);
    assert_eq!(code(post(&s, "/robot/send?access_token=dpen", md.clone()).await.1), 130101);
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    assert_eq!(code(post(&s, "/robot/send?access_token=dpen", md.clone()).await.1), 130101, "still punished");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(code(post(&s, "/robot/send?access_token=dpen", md).await.1), 0, "the penalty ended");
}

#[tokio::test]
async fn dingtalk_signature_window_and_keywords() {
    let s = sim();
    let now = magpie_core::now_ms();
    let good = |ts: i64| {
        format!("/robot/send?access_token=dt&timestamp={ts}&sign={}", url_encode(&dingtalk_sign("SECabc", ts)))
    };
    let msg = json!({"msgtype": "markdown", "markdown": {"title": "告警", "text": "CVM 重启"}});
    let (_, b) = post(&s, &good(now), msg.clone()).await;
    assert_eq!(b["errcode"], 0, "{b}");
    let (_, b) = post(&s, &good(now - 2 * 3_600_000), msg.clone()).await;
    assert_eq!(b["errcode"], 310000);
    assert!(b["errmsg"].as_str().unwrap().contains("签名过期"));
    let unencoded = format!("/robot/send?access_token=dt&timestamp={now}&sign={}", dingtalk_sign("SECabc", now));
    let (_, b) = post(&s, &unencoded, msg.clone()).await;
    let sign = dingtalk_sign("SECabc", now);
    if sign.contains('+') {
        assert_eq!(b["errcode"], 310000, "an unencoded '+' turns into a space");
    }
    let twice = format!("/robot/send?access_token=dt&timestamp={now}&sign={}", url_encode(&url_encode(&sign)));
    let (_, b) = post(&s, &twice, msg.clone()).await;
    assert_eq!(b["errcode"], 310000, "double encoding does not match");
    let (_, b) = post(&s, "/robot/send?access_token=dt", msg.clone()).await;
    assert_eq!(b["errcode"], 310000);
    let (_, b) = post(&s, &good(now), json!({"msgtype": "text", "text": {"content": "no keyword"}})).await;
    assert_eq!(
        (b["errcode"].as_i64(), b["errmsg"].as_str().map(|m| m.starts_with("keywords not in content"))),
        (Some(310000), Some(true))
    );
    let (_, b) = post(&s, "/robot/send?access_token=zz", msg).await;
    assert_eq!(b["errcode"], 300005);
    let (_, b) = post(&s, "/robot/send", json!({})).await;
    assert_eq!(b["errcode"], 40035);
}

#[tokio::test]
async fn feishu_signature_in_the_body() {
    let s = sim();
    let ts = magpie_core::now_ms() / 1000;
    let body = |ts: i64, sign: String| {
        json!({"timestamp": ts.to_string(), "sign": sign, "msg_type": "post",
        "content": {"post": {"zh_cn": {"title": "告警", "content": [[{"tag": "text", "text": "x"}]]}}}})
    };
    let (st, b) = post(&s, "/open-apis/bot/v2/hook/fs", body(ts, feishu_sign("fsecret", ts))).await;
    assert_eq!((st, b["code"].as_i64()), (StatusCode::OK, Some(0)), "{b}");
    let (_, b) = post(&s, "/open-apis/bot/v2/hook/fs", body(ts, feishu_sign("wrong", ts))).await;
    assert_eq!(b["code"], 19021);
    let (_, b) = post(&s, "/open-apis/bot/v2/hook/fs", body(ts - 7200, feishu_sign("fsecret", ts - 7200))).await;
    assert_eq!(b["code"], 19021);
    let (st, b) = post(
        &s,
        "/open-apis/bot/v2/hook/fs",
        json!({"timestamp": ts.to_string(), "sign": feishu_sign("fsecret", ts), "msg_type": "post", "content": {}}),
    )
    .await;
    assert_eq!((st, b["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(9499)));
    let (_, b) =
        post(&s, "/open-apis/bot/v2/hook/unknown", json!({"msg_type": "text", "content": {"text": "x"}})).await;
    assert_eq!(b["code"], 19001);
}

#[tokio::test]
async fn scripted_faults_come_first() {
    let s = sim();
    assert!(s.script(Platform::Wecom, "wk", &[Fault::RateLimited, Fault::Busy]));
    let m = json!({"msgtype": "text", "text": {"content": "x"}});
    let (_, b) = post(&s, "/cgi-bin/webhook/send?key=wk", m.clone()).await;
    assert_eq!(b["errcode"], 45009);
    let (_, b) = post(&s, "/cgi-bin/webhook/send?key=wk", m.clone()).await;
    assert_eq!(b["errcode"], -1);
    let (_, b) = post(&s, "/cgi-bin/webhook/send?key=wk", m).await;
    assert_eq!(b["errcode"], 0);
    assert_eq!(s.answered().len(), 3);
}
