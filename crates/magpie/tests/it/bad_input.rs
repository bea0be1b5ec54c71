//! Bad input is refused with the field and the reason, and nothing else is disturbed.

use serde_json::{Value, json};

use crate::harness::*;

fn error_message(v: &Value) -> String {
    v["error"]["message"].as_str().unwrap_or_default().to_string()
}

#[test]
fn bad_input_is_refused_clearly_and_disturbs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, wecom_config(sim_port, "bad-key", 2)).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();
    let events = format!("{url}/v1/buses/default/events");
    let config_before = get(&format!("{url}/v1/config"));

    // Malformed JSON.
    let (st, v) = http_send("POST", &events, "application/json", "{\"source\": ");
    assert_eq!(st, 400);
    assert!(error_message(&v).contains("not valid JSON"), "{v}");

    // An event over the 256 KiB limit.
    let big = json!({"source": "cvm.cloud.tencent", "data": {"blob": "x".repeat(300 * 1024)}});
    let (st, v) = http_send("POST", &events, "application/json", big.to_string());
    assert_eq!(st, 413);
    assert_eq!(v["entries"][0]["error_code"], "EventTooLarge", "{v}");

    // A batch: bad entries are refused one by one, good ones stored (PutEvents semantics).
    let batch = json!({"entries": [
        {"source": "cvm.cloud.tencent", "type": "cvm:ErrorEvent:GuestOom", "subject": "ins-ok"},
        {"type": "no source"},
        {"source": "x", "time": "yesterday"},
        {"source": "x", "subject": 42}
    ]});
    let (st, v) = http_send("POST", &events, "application/json", batch.to_string());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["failed_count"], 3);
    assert!(v["entries"][0]["id"].is_string());
    assert_eq!(v["entries"][1]["error_message"], "source: required field is missing or empty");
    assert!(v["entries"][2]["error_message"].as_str().unwrap().starts_with("time: "));
    assert_eq!(v["entries"][3]["error_message"], "subject: expected a string, got a number");

    // An unknown bus.
    let (st, v) = http_send("POST", &format!("{url}/v1/buses/nope/events"), "application/json", r#"{"source":"a"}"#);
    assert_eq!(st, 404);
    assert!(error_message(&v).contains("nope"));

    // An invalid pattern, over the API: the path of the fault and the reason.
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/buses/default/rules/bad-rule"),
        "application/json",
        json!({"pattern": {"data": {"cpu": [{"numeric": [90, ">"]}]}}, "targets": [{"flow": "to-wecom"}]}).to_string(),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["path"], "pattern.data.cpu[0].numeric", "a PUT's paths are in its own body");
    assert!(error_message(&v).contains("expected an operator such as \">\" before 90"), "{v}");
    let (st, v) = http_send(
        "POST",
        &format!("{url}/v1/patterns/test"),
        "application/json",
        json!({"pattern": {"a": []}, "event": {}}).to_string(),
    );
    assert_eq!((st, v["error"]["path"].as_str()), (400, Some("pattern.a")));

    // An invalid flow in YAML, through `magpie apply`: the field path, exit code 2.
    let bad_flow = dir.path().join("bad-flow.yaml");
    std::fs::write(&bad_flow, "flows:\n  - name: f2\n    steps:\n      - logger: {message: hi, colour: red}\n")
        .unwrap();
    let o = cli(&url, &["apply", "-f", bad_flow.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("flows[0].steps[0].logger.colour"), "{}", stderr(&o));
    // The same sent straight to the API.
    let (st, v) = http_send("POST", &format!("{url}/v1/apply"), "application/yaml", std::fs::read(&bad_flow).unwrap());
    assert_eq!((st, v["error"]["path"].as_str()), (400, Some("flows[0].steps[0].logger.colour")), "{v}");
    // A flow whose Python does not parse, and one naming a missing connection.
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/flows/f3"),
        "application/json",
        json!({"steps": [{"set-payload": {"value": "def dw_process(msg):\nreturn 1"}}]}).to_string(),
    );
    assert_eq!(st, 400);
    assert!(v["error"]["path"].as_str().unwrap().starts_with("steps[0].set-payload.value"), "{v}");
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/flows/f4"),
        "application/json",
        json!({"steps": [{"robot": {"connection": "ghost", "content": "x"}}]}).to_string(),
    );
    assert_eq!((st, v["error"]["path"].as_str()), (400, Some("steps[0].robot.connection")), "{v}");

    // A connection whose secret is an unset environment variable.
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/connections/ding"),
        "application/json",
        json!({"platform": "dingtalk", "webhook": "https://oapi.dingtalk.com/robot/send?access_token=${MAGPIE_TEST_UNSET_TOKEN}"}).to_string(),
    );
    assert_eq!(st, 400);
    assert_eq!(v["error"]["path"], "webhook");
    assert!(error_message(&v).contains("environment variable MAGPIE_TEST_UNSET_TOKEN is not set"), "{v}");

    // Deleting a flow a rule still targets is refused.
    let (st, _) = http_send("DELETE", &format!("{url}/v1/flows/to-wecom"), "application/json", "");
    assert_eq!(st, 409);

    // Nothing else was disturbed: same configuration, and events still flow.
    assert_eq!(get(&format!("{url}/v1/config")), config_before);
    let id = send_template(&url, "cvm:GuestReboot");
    let t = settled_trace(&url, &id, 1);
    assert_eq!(t["runs"][0]["status"], "done");
    assert!(sim_messages(&sim).iter().any(|m| m["body"].to_string().contains("ins-abcd1234")));
}

#[test]
fn connection_secrets_never_appear_in_answers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, demo_config(free_port())).unwrap();
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();
    for path in ["/v1/connections", "/v1/connections/dingtalk-ops", "/v1/config"] {
        let text = get(&format!("{url}{path}")).to_string();
        assert!(!text.contains("SEC3b9f6c1e2d4a5b7c8e9f0a1b2c3d4"), "{path}: {text}");
        assert!(!text.contains("5f1d3b0c8a7e4f2d9b6c1a0e3f8d7c6b5a4e"), "{path}: {text}");
        assert!(!text.contains("feishu-demo-secret"), "{path}: {text}");
    }
    // Sending the redacted form back keeps the stored secrets.
    let c = get(&format!("{url}/v1/connections/dingtalk-ops"));
    let (st, _) = http_send("PUT", &format!("{url}/v1/connections/dingtalk-ops"), "application/json", c.to_string());
    assert_eq!(st, 200);
    let log = server.log_text();
    assert!(!log.contains("SEC3b9f6c1e2d4a5b7c8e9f0a1b2c3d4"), "secrets in the log");
}

#[test]
fn pattern_test_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.json");
    let e = dir.path().join("e.json");
    std::fs::write(&e, r#"{"source": "cvm.cloud.tencent", "status": "1"}"#).unwrap();
    let run = |pattern: &str| {
        std::fs::write(&p, pattern).unwrap();
        cli(
            "http://127.0.0.1:1",
            &["pattern", "test", "--pattern", p.to_str().unwrap(), "--event", e.to_str().unwrap()],
        )
    };
    assert_eq!(run(r#"{"source": ["cvm.cloud.tencent"]}"#).status.code(), Some(0));
    assert_eq!(run(r#"{"status": [{"anything-but": "1"}]}"#).status.code(), Some(1));
    let o = run(r#"{"status": [{"nope": 1}]}"#);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("status[0].nope: unknown operator"), "{}", stderr(&o));
    assert_eq!(run("{not json").status.code(), Some(2));
}
