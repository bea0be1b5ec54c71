//! Ingest through every binding, and the API token.

use serde_json::json;

use crate::harness::*;

#[test]
fn cloudevents_bindings_and_tencent_put_events_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), None, "server");
    let events = format!("{}/v1/buses/default/events", server.url());

    let structured = json!({"specversion": "1.0", "id": "ce-structured", "source": "cvm.cloud.tencent",
        "type": "cvm:ErrorEvent:GuestOom", "time": "2026-11-24T10:00:00Z", "data": {"instanceId": "ins-1"}});
    let (st, v) = http_send("POST", &events, "application/cloudevents+json", structured.to_string());
    assert_eq!((st, v["entries"][0]["id"].as_str()), (200, Some("ce-structured")), "{v}");

    let batch = json!([{"specversion": "1.0", "id": "ce-b1", "source": "a", "type": "t"},
        {"specversion": "1.0", "id": "ce-b2", "source": "b", "type": "t"}]);
    let (st, v) = http_send("POST", &events, "application/cloudevents-batch+json", batch.to_string());
    assert_eq!((st, v["failed_count"].as_u64()), (200, Some(0)), "{v}");

    let (st, v) = http_send(
        "POST",
        &events,
        "application/json",
        json!({"EventList": [{"Id": "tc-1", "Source": "myapp.custom", "Data": "{\"k\":\"v\"}", "Time": 1700000000000i64}]}).to_string(),
    );
    assert_eq!((st, v["entries"][0]["id"].as_str()), (200, Some("tc-1")), "{v}");

    let binary = reqwest::blocking::Client::new()
        .post(&events)
        .header("ce-specversion", "1.0")
        .header("ce-id", "ce-binary")
        .header("ce-source", "cvm.cloud.tencent")
        .header("ce-type", "cvm:ErrorEvent:DiskReadonly")
        .header("ce-time", "1700000000000")
        .header("content-type", "application/json")
        .body(r#"{"instanceId":"ins-9"}"#)
        .send()
        .unwrap();
    assert_eq!(binary.status(), 200);

    // Every one is stored as sent, with the fields the envelope adds.
    let t = trace(&server.url(), "ce-structured");
    assert_eq!(t["event"]["body"]["time"], "2026-11-24T10:00:00Z", "the producer's form is kept");
    let t = trace(&server.url(), "tc-1");
    assert_eq!(t["event"]["body"]["data"], json!({"k": "v"}));
    let t = trace(&server.url(), "ce-binary");
    assert_eq!(t["event"]["body"]["data"]["instanceId"], "ins-9");
    assert_eq!(t["event"]["body"]["time"], 1700000000000i64);
    // Sending the same id again stores nothing new.
    let (_, v) = http_send("POST", &events, "application/cloudevents+json", structured.to_string());
    assert_eq!(v["entries"][0]["duplicate"], true);
}

#[test]
fn the_api_token_is_required_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("server.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", dir.path().join("d").to_str().unwrap()])
        .env("MAGPIE_TOKEN", "s3cret")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    eventually(20, "healthz without a token", || http_get(&format!("{url}/healthz")).ok().filter(|r| r.0 == 200));
    let (st, v) = http_get(&format!("{url}/v1/buses")).unwrap();
    assert_eq!(st, 401, "{v}");
    // The CLI sends MAGPIE_TOKEN.
    let o = std::process::Command::new(BIN)
        .args(["--server", &url, "events", "send-template", "cvm:GuestReboot"])
        .env("MAGPIE_TOKEN", "s3cret")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = std::process::Command::new(BIN)
        .args(["--server", &url, "events", "send-template", "cvm:GuestReboot"])
        .env_remove("MAGPIE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));
    let _ = child.kill();
    let _ = child.wait();
}
