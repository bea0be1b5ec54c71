//! The adapters against the senders' recorded payloads (crates/magpie/tests/fixtures/sources,
//! from ../shared/reference/sources.md) and their bad variants.

use serde_json::{Value, json};

use super::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../magpie/tests/fixtures/sources/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect(&path)).expect(name)
}

fn run(source: Source, body: &Value) -> Result<Vec<Value>, ApiError> {
    events(source, body.to_string().as_bytes(), &SourceOptions::default(), 1_714_557_600_000)
}

fn refused(source: Source, body: &Value) -> (String, String) {
    let e = run(source, body).expect_err("refused");
    (e.path.clone().unwrap_or_default(), e.message)
}

#[test]
fn alertmanager_alerts_become_events() {
    let e = &run(Source::Alertmanager, &fixture("alertmanager-firing.json")).unwrap()[0];
    assert_eq!(e["source"], "prometheus.alertmanager");
    assert_eq!((e["type"].as_str(), e["subject"].as_str()), (Some("HighCPU"), Some("10.0.0.5:9100")));
    assert_eq!((e["status"].as_str(), e["time"].as_i64()), (Some("1"), Some(1_714_557_600_000)));
    assert_eq!(e["fingerprint"], "b0d9f2c3a1e4f567");
    assert_eq!(e["data"]["receiver"], "magpie");
    assert_eq!(e["data"]["generatorURL"], "http://prom:9090/graph?g0.expr=cpu");
    assert_eq!(e["data"]["groupLabels"]["alertname"], "HighCPU");
    // The same notification retried has the same id; a resolved one another.
    let again = &run(Source::Alertmanager, &fixture("alertmanager-firing.json")).unwrap()[0];
    assert_eq!(e["id"], again["id"]);
    let mut resolved = fixture("alertmanager-firing.json");
    resolved["alerts"][0]["status"] = json!("resolved");
    resolved["alerts"][0]["endsAt"] = json!("2024-05-01T10:20:00Z");
    let r = &run(Source::Alertmanager, &resolved).unwrap()[0];
    assert_eq!((r["status"].as_str(), r["time"].as_i64()), (Some("0"), Some(1_714_558_800_000)));
    assert_ne!(r["id"], e["id"]);
}

#[test]
fn grafana_keeps_its_extras() {
    let e = &run(Source::Grafana, &fixture("grafana-firing.json")).unwrap()[0];
    assert_eq!((e["source"].as_str(), e["subject"].as_str()), (Some("grafana"), Some("web-1")));
    assert_eq!(e["data"]["values"]["B"], 97);
    assert_eq!(e["data"]["dashboardURL"], "https://grafana/d/abc");
    assert_eq!(e["data"]["title"], "[FIRING:1] HighCPU");
    let r = &run(Source::Grafana, &fixture("grafana-resolved.json")).unwrap()[0];
    // No instance label: the fingerprint names the subject.
    assert_eq!((r["status"].as_str(), r["subject"].as_str()), (Some("0"), Some("57c6d9296de2ad39")));
    assert_eq!(r["data"]["state"], "ok");
    assert_eq!(r["data"]["silenceURL"], "https://grafana/alerting/silence/new?alertmanager=grafana");
}

#[test]
fn tencent_monitor_alarms_become_events() {
    let e = &run(Source::TencentMonitor, &fixture("tencent-metric-firing.json")).unwrap()[0];
    assert_eq!(e["source"], "monitor.cloud.tencent");
    assert_eq!((e["type"].as_str(), e["subject"].as_str()), (Some("cpu_usage"), Some("ins-o9p3rg3m")));
    assert_eq!((e["status"].as_str(), e["region"].as_str()), (Some("1"), Some("ap-guangzhou")));
    // 2017-03-09 07:00:00 at +08:00.
    assert_eq!(e["time"].as_i64(), Some(1_489_014_000_000));
    assert_eq!(e["data"]["sessionId"], "vuRH4ZlxBJSMNJHvNZhls9HY");
    let r = &run(Source::TencentMonitor, &fixture("tencent-metric-resolved.json")).unwrap()[0];
    assert_eq!((r["status"].as_str(), r["time"].as_i64()), (Some("0"), Some(1_489_017_000_000)));
    let ev = &run(Source::TencentMonitor, &fixture("tencent-event-firing.json")).unwrap()[0];
    assert_eq!((ev["type"].as_str(), ev["status"].as_str()), (Some("ping_unreachable"), Some("1")));
    assert_eq!(ev["region"], "ap-shanghai");
    let utc = events(
        Source::TencentMonitor,
        fixture("tencent-metric-firing.json").to_string().as_bytes(),
        &SourceOptions { tz: Some("+00:00".into()) },
        0,
    )
    .unwrap();
    assert_eq!(utc[0]["time"].as_i64(), Some(1_489_042_800_000));
    // The console's URL check: no body, no alert.
    assert!(events(Source::TencentMonitor, b"", &SourceOptions::default(), 0).unwrap().is_empty());
}

#[test]
fn bad_and_foreign_payloads_name_the_field() {
    let put_events = json!({"entries": [{"source": "x", "type": "y"}]});
    assert_eq!(refused(Source::Alertmanager, &put_events).0, "alerts");
    assert_eq!(refused(Source::Grafana, &put_events).0, "alerts");
    assert_eq!(refused(Source::TencentMonitor, &put_events).0, "alarmStatus");
    // Grafana's body at Alertmanager's route is told by its version.
    assert_eq!(refused(Source::Alertmanager, &fixture("grafana-firing.json")).0, "version");
    let mut bad = fixture("alertmanager-firing.json");
    bad["alerts"][0]["status"] = json!("on fire");
    assert_eq!(refused(Source::Alertmanager, &bad).0, "alerts[0].status");
    let mut bad = fixture("alertmanager-firing.json");
    bad["alerts"][0]["startsAt"] = json!("yesterday");
    assert_eq!(refused(Source::Alertmanager, &bad).0, "alerts[0].startsAt");
    let mut bad = fixture("alertmanager-firing.json");
    bad["alerts"][0]["labels"]["instance"] = json!(5);
    assert_eq!(refused(Source::Alertmanager, &bad).0, "alerts[0].labels.instance");
    let mut bad = fixture("alertmanager-firing.json");
    bad["alerts"][0]["status"] = json!("resolved");
    assert_eq!(refused(Source::Alertmanager, &bad).0, "alerts[0].endsAt");
    let mut bad = fixture("grafana-resolved.json");
    bad["alerts"][0]["values"] = json!("x");
    assert!(run(Source::Grafana, &bad).is_ok(), "extras are kept as sent, not checked");
    bad["alerts"] = json!({"0": {}});
    assert_eq!(refused(Source::Grafana, &bad).0, "alerts");
    let mut bad = fixture("tencent-metric-firing.json");
    bad["alarmStatus"] = json!("2");
    assert_eq!(refused(Source::TencentMonitor, &bad).0, "alarmStatus");
    let mut bad = fixture("tencent-metric-firing.json");
    bad["firstOccurTime"] = json!("09/03/2017 07:00");
    assert_eq!(refused(Source::TencentMonitor, &bad).0, "firstOccurTime");
    let mut bad = fixture("tencent-metric-firing.json");
    bad["alarmPolicyInfo"]["conditions"].as_object_mut().unwrap().remove("metricName");
    assert_eq!(refused(Source::TencentMonitor, &bad).0, "alarmPolicyInfo.conditions.metricName");
    let mut bad = fixture("tencent-event-firing.json");
    bad["alarmType"] = json!("log");
    assert_eq!(refused(Source::TencentMonitor, &bad).0, "alarmType");
    // Strict JSON: a duplicate key is refused with its path.
    let dup = br#"{"version":"4","alerts":[],"alerts":[]}"#;
    let e = events(Source::Alertmanager, dup, &SourceOptions::default(), 0).unwrap_err();
    assert_eq!(e.path.as_deref(), Some("alerts"));
    assert!(events(Source::Alertmanager, b"{", &SourceOptions::default(), 0).is_err());
}
