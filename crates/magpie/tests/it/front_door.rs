//! The front door, tried as a hostile client and as a new user would: every class of malformed
//! input is refused with a JSON error naming the field, the good entries of a batch are stored,
//! and the server is unharmed; the rough edges of a first session (regions, times, listen-path
//! subjects, a second server on one data directory, the demo on other ports) behave.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

fn send(url: &str, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> (u16, Value) {
    let mut req = reqwest::blocking::Client::new().post(url).body(body.into());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().expect("request");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn error_path(v: &Value) -> &str {
    v["error"]["path"].as_str().unwrap_or_default()
}

/// The stored events' ids of a bus.
fn stored_ids(url: &str) -> Vec<String> {
    let v = get(&format!("{url}/v1/events?bus=default&limit=1000"));
    let items = v["events"].as_array().or(v.as_array()).cloned().unwrap_or_default();
    items.iter().filter_map(|e| e["id"].as_str().map(str::to_string)).collect()
}

#[test]
fn malformed_input_is_refused_with_the_field_and_good_entries_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), None, "server");
    let url = server.url();
    let events = format!("{url}/v1/buses/default/events");
    let ce = [("content-type", "application/cloudevents+json")];
    let good = |id: &str| json!({"specversion": "1.0", "id": id, "source": "s", "type": "t"});

    // CloudEvents, structured: each required attribute.
    for (field, event) in [
        ("specversion", json!({"id": "a", "source": "s", "type": "t"})),
        ("id", json!({"specversion": "1.0", "source": "s", "type": "t"})),
        ("id", json!({"specversion": "1.0", "id": "", "source": "s", "type": "t"})),
        ("source", json!({"specversion": "1.0", "id": "a", "type": "t"})),
        ("type", json!({"specversion": "1.0", "id": "a", "source": "s", "type": ""})),
        ("type", json!({"specversion": "1.0", "id": "a", "source": "s", "type": 5})),
        ("specversion", json!({"specversion": "0.3", "id": "a", "source": "s", "type": "t"})),
    ] {
        let (st, v) = send(&events, &ce, event.to_string());
        assert_eq!(st, 400, "{event}: {v}");
        assert_eq!(error_path(&v), field, "{event}: {v}");
    }
    let mut both = good("b1");
    both["data"] = json!({"x": 1});
    both["data_base64"] = json!("eA==");
    let (st, v) = send(&events, &ce, both.to_string());
    assert_eq!((st, error_path(&v)), (400, "data_base64"), "{v}");
    let mut bad64 = good("b2");
    bad64["data_base64"] = json!("not base64!");
    let (st, v) = send(&events, &ce, bad64.to_string());
    assert_eq!((st, error_path(&v)), (400, "data_base64"), "{v}");

    // CloudEvents, binary: a header given twice; a missing ce-type.
    let (st, v) = send(
        &events,
        &[("ce-specversion", "1.0"), ("ce-id", "x"), ("ce-id", "y"), ("ce-source", "s"), ("ce-type", "t")],
        "{}",
    );
    assert_eq!((st, error_path(&v)), (400, "ce-id"), "{v}");
    let (st, v) = send(&events, &[("ce-specversion", "1.0"), ("ce-id", "x"), ("ce-source", "s")], "{}");
    assert_eq!((st, error_path(&v)), (400, "type"), "{v}");

    // A CloudEvents batch with bad entries first, last and between: each its own error.
    let batch = json!([
        {"id": "no-specversion", "source": "s", "type": "t"},
        good("ce-good-1"),
        {"specversion": "1.0", "id": "x", "source": "s"},
        good("ce-good-2"),
        7
    ]);
    let (st, v) = send(&events, &[("content-type", "application/cloudevents-batch+json")], batch.to_string());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["failed_count"], 3, "{v}");
    assert_eq!(v["entries"][0]["error_path"], "specversion");
    assert_eq!(v["entries"][2]["error_path"], "type");
    assert_eq!(v["entries"][4]["error_code"], "InvalidEvent");

    // Envelope field types, numbers no double holds, duplicate keys — in one plain batch, with
    // good entries around them.
    let big = format!(r#"{{"source": "s", "data": {{"big": 1{}}}}}"#, "0".repeat(1000));
    let body = format!(
        "{{\"entries\": [{}, {}, {}, {}, {}, {}, {}, {big}, {}, {}, {}]}}",
        r#"{"source": "s", "id": "", "type": "t"}"#,
        r#"{"source": "s", "id": "plain-good-1"}"#,
        r#"{"source": "s", "resource": "qcs::cvm:ap-guangzhou:ins-1"}"#,
        r#"{"source": "s", "tags": {"env": 1}}"#,
        r#"{"source": "s", "time": 18446744073709551616}"#,
        r#"{"source": "s", "data": {"cpu": 1e400}}"#,
        r#"{"source": "s", "data": {"v": [1, -1e400]}}"#,
        r#"{"source": "s", "source": "other"}"#,
        r#"{"source": "s", "region": 5, "status": "1"}"#,
        r#"{"source": "s", "id": "plain-good-2"}"#,
    );
    let (st, v) = send(&events, &[("content-type", "application/json")], body);
    assert_eq!(st, 200, "{v}");
    let paths: Vec<&str> =
        v["entries"].as_array().unwrap().iter().map(|e| e["error_path"].as_str().unwrap_or("-")).collect();
    assert_eq!(
        paths,
        ["id", "-", "resource", "tags", "time", "data.cpu", "data.v[1]", "data.big", "source", "region", "-"],
        "{v}"
    );
    assert_eq!(v["failed_count"], 9);
    assert!(v["entries"][8]["error_message"].as_str().unwrap().contains("duplicate key"), "{v}");
    assert!(v["entries"][5]["error_message"].as_str().unwrap().contains("beyond the range of a double"), "{v}");

    // A lone surrogate and nesting past the parser's limit refuse only their entry.
    let deep = "[".repeat(140) + &"]".repeat(140);
    let body = format!(
        r#"[{{"source": "s", "id": "after-lone"}}, {{"source": "\ud800"}}, {{"source": "s", "data": {deep}}}, {{"source": "s", "id": "after-deep"}}]"#
    );
    let (st, v) = send(&events, &[], body);
    assert_eq!((st, v["failed_count"].as_u64()), (200, Some(2)), "{v}");
    assert_eq!(v["entries"][1]["error_path"], "source", "{v}");
    assert!(v["entries"][2]["error_path"].as_str().unwrap().starts_with("data"), "{v}");

    // Tencent's EventBusId in a single event; ce- headers without ce-specversion.
    let (st, v) = send(&events, &[], r#"{"source": "s", "EventBusId": "other"}"#);
    assert_eq!((st, error_path(&v)), (400, "EventBusId"), "{v}");
    let (st, v) = send(&events, &[("ce-id", "lost")], r#"{"source": "s"}"#);
    assert_eq!((st, error_path(&v)), (400, "ce-specversion"), "{v}");

    // A duplicate key outside the entries refuses the request.
    let (st, v) = send(&events, &[], r#"{"entries": [{"source": "s"}], "entries": []}"#);
    assert_eq!((st, error_path(&v)), (400, "entries"), "{v}");

    // Content types: JSON routes answer 415 to others, with a JSON body.
    for (route, method) in [
        (events.clone(), "POST"),
        (format!("{url}/v1/patterns/test"), "POST"),
        (format!("{url}/v1/flows/f"), "PUT"),
        (format!("{url}/v1/buses/default/rules/r"), "PUT"),
    ] {
        let (st, v) = http_send(method, &route, "text/plain", r#"{"source": "s"}"#);
        assert_eq!(st, 415, "{route}: {v}");
        assert_eq!(v["error"]["code"], "UnsupportedMediaType", "{route}: {v}");
    }
    let (st, v) = send(&events, &[("content-type", "application/x-www-form-urlencoded")], r#"{"source": "curl"}"#);
    assert_eq!(st, 200, "curl's default content type is read as JSON: {v}");

    // The pattern test route reads strictly too.
    let (st, v) = http_send(
        "POST",
        &format!("{url}/v1/patterns/test"),
        "application/json",
        r#"{"pattern": {"a": [1]}, "event": {"a": 1, "a": 2}}"#,
    );
    assert_eq!((st, error_path(&v)), (400, "event.a"), "{v}");
    let (st, v) = http_send(
        "POST",
        &format!("{url}/v1/patterns/test"),
        "application/json",
        r#"{"pattern": {"a": [{"numeric": [">", 1E-325]}]}, "event": {"a": 1}}"#,
    );
    assert_eq!(st, 400, "{v}");
    assert!(error_path(&v).starts_with("pattern.a"), "{v}");

    // Flow and configuration bodies: the field's path, in JSON and YAML.
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/flows/f"),
        "application/json",
        r#"{"steps": [{"logger": {"message": "x", "message": "y"}}]}"#,
    );
    assert_eq!((st, error_path(&v)), (400, "steps[0].logger.message"), "{v}");
    let (st, v) =
        http_send("PUT", &format!("{url}/v1/flows/f"), "application/yaml", "steps:\n  - logger: {mesage: x}\n");
    assert_eq!(st, 400, "{v}");
    assert!(error_path(&v).starts_with("steps[0]"), "{v}");
    let (st, v) = http_send("PUT", &format!("{url}/v1/flows/f"), "application/yaml", "steps: []\nsteps: []\n");
    assert_eq!(st, 400, "a YAML duplicate key: {v}");
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/buses/default/rules/tiny"),
        "application/yaml",
        "pattern: {n: [{numeric: [\">\", 1e-400]}]}\n",
    );
    assert_eq!(st, 400, "a YAML number that would round to 0: {v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("too small for a double"), "{v}");

    // Every error has a JSON body: 404, 405, a path that is not UTF-8.
    let (st, v) = http_get(&format!("{url}/v1/nothing-here")).unwrap();
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("NotFound")), "{v}");
    let (st, v) = http_send("DELETE", &format!("{url}/v1/events"), "application/json", "");
    assert_eq!((st, v["error"]["code"].as_str()), (405, Some("MethodNotAllowed")), "{v}");
    let (st, v) = http_get(&format!("{url}/v1/buses/%FF%FE")).unwrap();
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");

    // A Content-Length over the limit is refused before the body is sent.
    let mut tcp = std::net::TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        tcp,
        "POST /v1/buses/default/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
    )
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tcp.read(&mut answer).expect("an answer without sending the body");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"TooLarge\""), "{answer}");

    // Nothing else was disturbed: the good entries are stored, the server still serves.
    let ids = stored_ids(&url);
    for id in ["ce-good-1", "ce-good-2", "plain-good-1", "plain-good-2", "after-lone", "after-deep"] {
        assert!(ids.iter().any(|i| i == id), "{id} stored: {ids:?}");
    }
    assert!(!ids.iter().any(|i| i == "x" || i == "no-specversion"), "{ids:?}");
    let (st, _) = send(&events, &[], r#"{"source": "after"}"#);
    assert_eq!(st, 200);
}

#[test]
fn regions_times_subjects_and_a_locked_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    let wecom = wecom_config(sim_port, "fd-key", 1).replace(
        "{{ vars.body.type }}</font> {{ vars.body.subject }}",
        "{{ payload.time }}</font> {{ payload.region }}",
    );
    let config = format!(
        "buses:\n  - name: default\n    region: ap-shanghai\n{}\n",
        wecom.replace(
            "flows:\n  - name: to-wecom\n",
            "flows:\n  - name: to-wecom\n    trigger: {path: fd-hook, subject: \"host {{ payload.host }}\"}\n"
        )
    );
    std::fs::write(&cfg, &config).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve_with(dir.path(), Some(&cfg), "server", &["--region", "ap-beijing"]);
    let url = server.url();
    let events = format!("{url}/v1/buses/default/events");

    // Tencent's EventList: no region in the entries; the bus's fills it. EventBusId is checked.
    let (st, v) = send(
        &events,
        &[],
        json!({"EventBusId": "default", "EventList": [{"Source": "cvm.cloud.tencent", "Type": "cvm:ErrorEvent:GuestReboot", "Subject": "ins-1", "Data": "{}", "Time": 1700000000000i64}]}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let id = v["entries"][0]["id"].as_str().unwrap().to_string();
    let (st, v) =
        send(&events, &[], json!({"EventBusId": "other", "EventList": [{"Source": "cvm.cloud.tencent"}]}).to_string());
    assert_eq!((st, error_path(&v)), (400, "EventBusId"), "{v}");

    // A CloudEvent with an RFC 3339 time: the flow sees milliseconds, the stored event the original.
    let (st, v) = send(
        &events,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "fd-ce-1"),
            ("ce-source", "cvm.cloud.tencent"),
            ("ce-type", "cvm:ErrorEvent:PingUnreachable"),
            ("ce-time", "2023-11-14T22:13:20Z"),
            ("ce-region", "ap-chengdu"),
            ("content-type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(st, 200, "{v}");
    // The same instant with an offset.
    let (st, v) = send(
        &events,
        &[("content-type", "application/cloudevents+json")],
        json!({"specversion": "1.0", "id": "fd-ce-2", "source": "cvm.cloud.tencent", "type": "t",
            "time": "2023-11-15T06:13:20+08:00", "region": "ap-offset"})
        .to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let msgs = eventually(15, "three messages", || {
        let m = sim_messages(&sim);
        (m.len() >= 3).then_some(m)
    });
    let contents: Vec<String> = msgs.iter().map(|m| m.to_string()).collect();
    assert!(contents.iter().any(|c| c.contains("1700000000000</font> ap-shanghai")), "bus region filled: {contents:?}");
    assert!(
        contents.iter().any(|c| c.contains("1700000000000</font> ap-chengdu")),
        "time in ms, own region kept: {contents:?}"
    );
    let stored = get(&format!("{url}/v1/events?bus=default"));
    let text = stored.to_string();
    assert!(text.contains("2023-11-14T22:13:20Z"), "the stored event keeps the producer's time: {text}");
    assert!(trace(&url, &id).to_string().contains("ap-shanghai"));

    // A listen path's events have a subject.
    let (st, v) =
        send(&format!("{url}/hooks/fd-hook"), &[("content-type", "application/json")], r#"{"host": "web-1"}"#);
    assert_eq!(st, 202, "{v}");
    let hook_event = get(&format!("{url}/v1/events?bus=_hooks"));
    assert!(hook_event.to_string().contains("host web-1"), "{hook_event}");
    let (st, v) =
        send(&format!("{url}/hooks/fd-hook"), &[("content-type", "application/json")], r#"{"host": 1, "host": 2}"#);
    assert_eq!((st, error_path(&v)), (400, "host"), "{v}");

    // A second server on the same data directory refuses to start, and says why.
    let data = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_magpie"))
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another Magpie"), "{err}");
    assert!(get(&format!("{url}/healthz")).is_null() || http_get(&format!("{url}/healthz")).is_ok());
}

#[test]
fn the_readme_cloudevent_reaches_all_three_demo_robots_on_other_ports() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let sim_port = free_port();
    let mut demo = std::process::Command::new(env!("CARGO_BIN_EXE_magpie"))
        .args([
            "serve",
            "--demo",
            "--listen",
            &format!("127.0.0.1:{api}"),
            "--robots-listen",
            &format!("127.0.0.1:{sim_port}"),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{api}");
    eventually(30, "the demo server", || http_get(&format!("{url}/healthz")).ok());
    // The README's command, pointed at this server.
    let (st, v) = send(
        &format!("{url}/v1/buses/default/events"),
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "e-1"),
            ("ce-source", "cvm.cloud.tencent"),
            ("ce-type", "cvm:ErrorEvent:DiskReadonly"),
            ("ce-subject", "ins-9"),
            ("content-type", "application/json"),
        ],
        r#"{"instanceId":"ins-9"}"#,
    );
    assert_eq!(st, 200, "{v}");
    let msgs = eventually(20, "three robot messages", || {
        let (_, m) = http_get(&format!("http://127.0.0.1:{sim_port}/_sim/messages")).ok()?;
        let m = m.as_array()?.clone();
        (m.len() >= 3).then_some(m)
    });
    let platforms: std::collections::BTreeSet<String> =
        msgs.iter().filter_map(|m| m["platform"].as_str().map(str::to_string)).collect();
    assert_eq!(platforms.len(), 3, "{msgs:?}");
    assert!(msgs.iter().all(|m| m.to_string().contains("ap-guangzhou")), "the demo bus's region: {msgs:?}");
    // A listen path's stored request is named after its flow.
    let (st, v) = send(&format!("{url}/hooks/ebtestwecom"), &[], r#"{"source": "x"}"#);
    assert_eq!(st, 202, "{v}");
    let hooks = get(&format!("{url}/v1/events?bus=_hooks"));
    assert_eq!(hooks["events"][0]["body"]["subject"], "eb-wecom", "{hooks}");
    let _ = demo.kill();
    let mut err = String::new();
    if let Some(mut e) = demo.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let _ = demo.wait();
    assert!(err.contains(&format!("magpie --server http://127.0.0.1:{api} events send-template")), "{err}");
}

#[test]
fn the_cli_reads_files_as_strictly_as_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), None, "server");
    let url = server.url();
    let dup = dir.path().join("dup.json");
    std::fs::write(&dup, r#"{"source": "a", "source": "b"}"#).unwrap();
    let pattern = dir.path().join("p.json");
    std::fs::write(&pattern, r#"{"source": ["a"]}"#).unwrap();
    let o = cli(&url, &["pattern", "test", "--pattern", pattern.to_str().unwrap(), "--event", dup.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("source: duplicate key"), "{}", stderr(&o));
    // `events put` sends the file's text as it is: the server refuses the entry with a duplicate
    // key (not the last of its two values) and keeps the others, in every file form.
    let o = cli(&url, &["events", "put", dup.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(format!("{}{}", stdout(&o), stderr(&o)).contains("duplicate key"), "{}{}", stdout(&o), stderr(&o));
    let lines = dir.path().join("events.jsonl");
    std::fs::write(
        &lines,
        "{\"source\": \"x\", \"data\": \"\\ud800\"}\n{\"source\": \"cli-ok\", \"id\": \"cli-ok\"}\n",
    )
    .unwrap();
    let o = cli(&url, &["events", "put", lines.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "one refused: {}{}", stdout(&o), stderr(&o));
    let v = get(&format!("{url}/v1/events?bus=default"));
    let ids: Vec<&str> = v["events"].as_array().unwrap().iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, ["cli-ok"], "{v}");
}
