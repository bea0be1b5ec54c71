//! Dead letters: caught and uncaught delivery failures are listed, shown with their attempts,
//! redriven after the fault is cleared and delivered once; a redrive that fails again comes back
//! with both histories.

use serde_json::{Value, json};

use crate::harness::*;

fn config(sim_port: u16) -> String {
    format!(
        r#"
connections:
  - name: wecom-dl
    platform: wecom
    webhook: http://127.0.0.1:{sim_port}/cgi-bin/webhook/send?key=dl-key
    rate: unlimited
flows:
  - name: caught-flow
    steps:
      - try:
          steps:
            - robot: {{connection: wecom-dl, content: "caught {{{{ payload.subject }}}}"}}
          catch:
            - errors: [ANY]
              steps: [{{logger: {{level: ERROR, category: ebtest, message: "{{{{ error.code }}}}"}}}}]
  - name: bare-flow
    steps:
      - robot: {{connection: wecom-dl, content: "bare {{{{ payload.subject }}}}"}}
      - logger: {{message: "after the send"}}
rules:
  - name: all-cvm
    pattern: {{"source": ["cvm.cloud.tencent"]}}
    targets: [{{flow: caught-flow}}, {{flow: bare-flow}}]
"#
    )
}

fn letters(url: &str, query: &str) -> Vec<Value> {
    get(&format!("{url}/v1/dead-letters{query}"))["dead_letters"].as_array().cloned().unwrap_or_default()
}

#[test]
fn uncaught_and_caught_failures_are_dead_letters_that_redrive_once_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, config(sim_port)).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();

    // The robot's key is wrong (93000) for both messages of this event.
    sim_script(&sim, "dl-key", json!(["auth", "auth"]));
    let id = send_template(&url, "cvm:GuestOom");
    let t = settled_trace(&url, &id, 2);
    let status_of = |t: &Value, flow: &str| {
        t["runs"].as_array().unwrap().iter().find(|r| r["flow"] == flow).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status_of(&t, "caught-flow"), "delivery_failed");
    assert_eq!(status_of(&t, "bare-flow"), "failed", "no catch: the run stopped at the send");
    let all = letters(&url, "");
    assert_eq!(all.len(), 2, "{all:?}");
    let bare = letters(&url, "?flow=bare-flow");
    assert_eq!(bare.len(), 1);
    assert_eq!((bare[0]["caught"].as_bool(), bare[0]["step"].as_str()), (Some(false), Some("steps[0].robot")));
    assert_eq!(letters(&url, "?error_type=AUTH").len(), 2);
    assert_eq!(letters(&url, "?error_type=WECOM:TIMEOUT").len(), 0);
    assert_eq!(letters(&url, "?connection=wecom-dl&since=1h").len(), 2);
    let (status, body) = http_get(&format!("{url}/v1/dead-letters?since=someday")).unwrap();
    assert_eq!((status, body["error"]["path"].as_str()), (400, Some("since")), "{body}");

    // The CLI lists and shows them.
    let o = cli(&url, &["dead-letters", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("caught-flow") && out.contains("bare-flow") && out.contains("WECOM:AUTH"), "{out}");
    assert!(out.contains("(run stopped)"), "{out}");
    let bare_id = bare[0]["id"].as_i64().unwrap();
    let o = cli(&url, &["dead-letters", "show", &bare_id.to_string()]);
    let out = stdout(&o);
    assert!(out.contains("attempt 1") && out.contains("93000"), "every attempt with the robot's answer: {out}");
    assert!(out.contains(&id), "{out}");

    // The fault is cleared (the script is used up): redrive everything, delivered once each.
    let o = cli(&url, &["dead-letters", "redrive", "--all"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("redriven 2"), "{}", stdout(&o));
    let messages = eventually(20, "two deliveries after the redrive", || {
        let m = sim_messages(&sim);
        (m.len() >= 2).then_some(m)
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(sim_messages(&sim).len(), 2, "delivered once each: {messages:?}");
    let t = eventually(20, "both runs done", || {
        let t = trace(&url, &id);
        t["runs"].as_array()?.iter().all(|r| r["status"] == "done").then_some(t)
    });
    let bare_run = t["runs"].as_array().unwrap().iter().find(|r| r["flow"] == "bare-flow").unwrap().clone();
    let steps = bare_run["steps"].as_array().unwrap();
    assert!(steps.iter().any(|s| s["kind"] == "logger"), "the stopped run resumed after its send: {steps:?}");
    assert_eq!(steps.iter().filter(|s| s["kind"] == "robot").count(), 1);
    assert!(letters(&url, "").is_empty(), "redriven letters leave the list");
    assert_eq!(letters(&url, "?all=true").len(), 2, "but are kept");
    let o = cli(&url, &["dead-letters", "redrive", &bare_id.to_string()]);
    assert_eq!(o.status.code(), Some(1), "already redriven: {}", stdout(&o));

    // A redrive that fails again comes back as a new letter with both histories.
    sim_script(&sim, "dl-key", json!(["auth", "auth"]));
    let id2 = send_template(&url, "cvm:DiskReadonly");
    settled_trace(&url, &id2, 2);
    let first = letters(&url, "?flow=caught-flow");
    assert_eq!(first.len(), 1);
    let bare2 = letters(&url, "?flow=bare-flow")[0]["id"].as_i64().unwrap();
    sim_script(&sim, "dl-key", json!(["auth"]));
    let (status, body) = http_send(
        "POST",
        &format!("{url}/v1/dead-letters/redrive"),
        "application/json",
        json!({"ids": [first[0]["id"]]}).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let again = eventually(20, "the letter to come back", || {
        let l = letters(&url, "?flow=caught-flow");
        (l.len() == 1 && l[0]["id"] != first[0]["id"]).then(|| l[0].clone())
    });
    assert_eq!(again["previous"], first[0]["id"]);
    let d = get(&format!("{url}/v1/dead-letters/{}", again["id"]));
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(d["history"].as_array().unwrap().len(), 1);
    assert_eq!(d["history"][0]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(d["event"]["id"], id2.as_str());
    // Bad redrive requests are refused with the field at fault.
    let (status, body) =
        http_send("POST", &format!("{url}/v1/dead-letters/redrive"), "application/json", "{}".to_string());
    assert_eq!((status, body["error"]["path"].as_str()), (400, Some("ids")), "{body}");
    let (status, _) = http_send(
        "POST",
        &format!("{url}/v1/dead-letters/redrive"),
        "application/json",
        json!({"ids": [bare2], "flow": "x"}).to_string(),
    );
    assert_eq!(status, 400);
    let (status, _) = http_get(&format!("{url}/v1/dead-letters/999999")).unwrap();
    assert_eq!(status, 404);
    let many: Vec<i64> = (1..=1_001).collect();
    let (status, body) = http_send(
        "POST",
        &format!("{url}/v1/dead-letters/redrive"),
        "application/json",
        json!({"ids": many}).to_string(),
    );
    assert_eq!((status, body["error"]["path"].as_str()), (400, Some("ids")), "a huge redrive is refused: {body}");
}
