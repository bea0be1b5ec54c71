//! The archive: events listed with filters, replayed through today's rules (dry run and real, the
//! runs marked as replays), and removed by the retention sweep — except what still has work.

use serde_json::json;

use crate::harness::*;

fn config(sim_port: u16) -> String {
    format!(
        r#"
buses:
  - name: ops
    retention: 4s
connections:
  - name: ops-robot
    platform: wecom
    webhook: http://127.0.0.1:{sim_port}/cgi-bin/webhook/send?key=ops-key
    rate: unlimited
flows:
  - name: to-ops
    steps:
      - try:
          steps:
            - robot: {{connection: ops-robot, content: "{{{{ payload.type }}}} {{{{ payload.subject }}}}"}}
          catch:
            - errors: [ANY]
              steps: [{{logger: {{message: "{{{{ error.code }}}}"}}}}]
rules:
  - name: ops-all
    bus: ops
    pattern: {{"source": [{{"prefix": "app."}}]}}
    targets: [{{flow: to-ops}}]
"#
    )
}

fn put(url: &str, events: serde_json::Value) {
    let (status, body) = http_send(
        "POST",
        &format!("{url}/v1/buses/ops/events"),
        "application/json",
        json!({"entries": events}).to_string(),
    );
    assert_eq!((status, body["failed_count"].as_u64()), (200, Some(0)), "{body}");
}

#[test]
fn events_are_listed_replayed_and_swept_after_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, config(sim_port)).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    sim_robot(&sim, json!({"platform": "wecom", "token": "ops-key", "limits": []}));
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();

    put(
        &url,
        json!([
            {"id": "a-1", "source": "app.billing", "type": "app:Error", "subject": "svc-1"},
            {"id": "a-2", "source": "app.billing", "type": "app:Error", "subject": "svc-2"},
            {"id": "a-3", "source": "app.shop", "type": "app:Slow", "subject": "svc-3"},
            {"id": "x-1", "source": "other", "type": "x", "subject": "nobody"},
        ]),
    );
    eventually(20, "three deliveries", || (sim_messages(&sim).len() == 3).then_some(()));

    // Listing, newest first, with filters.
    let o = cli(&url, &["events", "list", "--bus", "ops", "--json"]);
    let ids: Vec<String> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["x-1", "a-3", "a-2", "a-1"]);
    let o = cli(&url, &["events", "list", "--bus", "ops", "--type", "app:Error", "--since", "1h"]);
    let out = stdout(&o);
    assert!(out.contains("a-1") && out.contains("a-2") && !out.contains("a-3"), "{out}");
    let page = get(&format!("{url}/v1/events?bus=ops&subject=svc-3"));
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    let page = get(&format!("{url}/v1/events?bus=ops&limit=2"));
    let next = page["next_cursor"].as_i64().expect("a cursor");
    let rest = get(&format!("{url}/v1/events?bus=ops&limit=2&cursor={next}"));
    assert_eq!(rest["events"][0]["id"], "a-2");
    let (status, body) = http_get(&format!("{url}/v1/events?bus=nope")).unwrap();
    assert_eq!(status, 404, "{body}");
    let all = get(&format!("{url}/v1/events?bus=ops&since=300000000y"));
    assert_eq!(all["events"].as_array().unwrap().len(), 4, "further back than the epoch is everything");
    let (status, body) = http_get(&format!("{url}/v1/events?limit=0")).unwrap();
    assert_eq!((status, body["error"]["path"].as_str()), (400, Some("limit")));

    // A dry run prints what would be sent and sends nothing.
    let o = cli(&url, &["events", "replay", "--bus", "ops", "--since", "1h", "--dry-run"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().filter(|l| l.starts_with("would send  event")).count(), 3, "{out}");
    assert!(out.contains("event a-3  rule ops-all → flow to-ops → ops-robot: app:Slow svc-3"), "{out}");
    assert!(out.contains("4 events, 3 matched") && out.contains("nothing was sent"), "{out}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(sim_messages(&sim).len(), 3);
    // Only one rule, and a rule that does not exist.
    let o = cli(&url, &["events", "replay", "--bus", "ops", "--since", "1h", "--rule", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // A real replay: through today's rules, into the flows, marked in the traces.
    let o = cli(&url, &["events", "replay", "--bus", "ops", "--since", "1h"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("3 flow runs started"), "{}", stdout(&o));
    eventually(20, "three more deliveries", || (sim_messages(&sim).len() == 6).then_some(()));
    let t = settled_trace(&url, "a-1", 2);
    let runs = t["runs"].as_array().unwrap();
    assert!(runs[0]["replay"].is_null());
    let replay = runs[1]["replay"].as_str().expect("the second run is a replay");
    assert!(replay.starts_with("rp-"));
    let o = cli(&url, &["events", "trace", "a-1"]);
    assert!(stdout(&o).contains(&format!("(replay {replay})")), "{}", stdout(&o));

    // One event whose message cannot be delivered: its dead letter keeps it past the retention.
    sim_script(&sim, "ops-key", json!(["auth"]));
    put(&url, json!([{"id": "kept", "source": "app.billing", "type": "app:Error", "subject": "svc-9"}]));
    settled_trace(&url, "kept", 1);

    // The retention (4 s) passes: the sweep removes the others with their traces.
    eventually(30, "the sweep", || {
        let page = get(&format!("{url}/v1/events?bus=ops"));
        (page["events"].as_array()?.len() == 1).then_some(())
    });
    let (status, _) = http_get(&format!("{url}/v1/events/a-1/trace")).unwrap();
    assert_eq!(status, 404, "swept with its runs");
    // Well past its own retention, the undelivered event is still there.
    let kept_at = trace(&url, "kept")["event"]["received_at"].as_i64().unwrap();
    while magpie_core::now_ms() < kept_at + 6_000 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(get(&format!("{url}/v1/events?bus=ops"))["events"][0]["id"], "kept");
    assert_eq!(trace(&url, "kept")["runs"][0]["dead_letters"].as_array().unwrap().len(), 1);
    // The default bus keeps its 7 days.
    let id = send_template(&url, "cvm:GuestReboot");
    assert_eq!(trace(&url, &id)["event"]["id"], id.as_str());
    let m = metrics(&url);
    assert!(metric_sum(&m, "magpie_swept_events_total", &[("bus", "ops")]) >= 4.0);
    assert!(metric_sum(&m, "magpie_replayed_events_total", &[]) >= 4.0);
}
