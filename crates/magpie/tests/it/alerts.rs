//! Alert sources and the alert lifecycle through the real binary: the real Alertmanager posting
//! to Magpie, Grafana and Tencent Cloud Monitor's recorded payloads, dedup with a repeat
//! interval, recovery pairing, unpaired recoveries, silences.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/sources/{name}", env!("CARGO_MANIFEST_DIR"))).expect(name)
}

fn wecom_texts(sim: &Proc) -> Vec<String> {
    sim_messages(sim)
        .iter()
        .filter(|m| m["platform"] == "wecom")
        .filter_map(|m| m["body"]["markdown"]["content"].as_str().map(str::to_string))
        .collect()
}

/// The Alertmanager binary: Debian's `prometheus-alertmanager` or upstream's `alertmanager`.
fn alertmanager_binary() -> Option<String> {
    ["prometheus-alertmanager", "alertmanager"].iter().find_map(|b| {
        let ok = Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
        ok.then(|| b.to_string())
    })
}

#[test]
fn alertmanager_alerts_reach_the_robots_firing_then_resolved_and_paired() {
    let Some(am_bin) = alertmanager_binary() else {
        if std::env::var("MAGPIE_REQUIRE_SERVICES").as_deref() == Ok("1") {
            panic!("Alertmanager (prometheus-alertmanager) is required (MAGPIE_REQUIRE_SERVICES=1) but not installed");
        }
        eprintln!("SKIPPED: Alertmanager is not installed (apt-get install prometheus-alertmanager)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/alertmanager");
    // The example configurations as they are, moved to this test's ports.
    let cfg = dir.path().join("magpie.yaml");
    let text = std::fs::read_to_string(format!("{examples}/magpie.yaml")).unwrap();
    std::fs::write(&cfg, text.replace("127.0.0.1:7481", &format!("127.0.0.1:{sim_port}"))).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();
    let am_port = free_port();
    let am_cfg = dir.path().join("alertmanager.yml");
    let text = std::fs::read_to_string(format!("{examples}/alertmanager.yml")).unwrap();
    let text = text
        .replace("127.0.0.1:7480", &format!("127.0.0.1:{}", server.port))
        .replace("group_wait: 10s", "group_wait: 1s")
        .replace("group_interval: 1m", "group_interval: 1s");
    std::fs::write(&am_cfg, text).unwrap();
    let am_log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
    let mut am = Command::new(&am_bin)
        .arg(format!("--config.file={}", am_cfg.display()))
        .arg(format!("--storage.path={}", dir.path().join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(am_log)
        .spawn()
        .expect("starting Alertmanager");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let am_api = format!("http://127.0.0.1:{am_port}/api/v2/alerts");
    eventually(20, "Alertmanager to answer", || http_get(&format!("http://127.0.0.1:{am_port}/-/ready")).ok());
    let _ = am.try_wait();
    let _am = Kill(am);

    // An alert that began 12 minutes ago, posted to Alertmanager's own API.
    let now = std::time::SystemTime::now();
    let rfc = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let starts = rfc(now - Duration::from_secs(12 * 60));
    let labels = json!({"alertname": "HostDown", "instance": "10.0.0.5:9100", "severity": "critical"});
    let firing = json!([{"labels": labels, "annotations": {"summary": "host 10.0.0.5 is down"}, "startsAt": starts}]);
    let (st, v) = http_send("POST", &am_api, "application/json", firing.to_string());
    assert_eq!(st, 200, "{v}");
    let first = eventually(30, "the firing alert on the WeCom robot", || wecom_texts(&sim).into_iter().next());
    assert!(first.contains("收到告警信息") && first.contains("HostDown") && first.contains("10.0.0.5:9100"), "{first}");
    assert!(first.contains("host 10.0.0.5 is down"), "the annotation's summary: {first}");

    // Resolved in Alertmanager: its resolved notification pairs with the firing alert.
    let ended = json!([{"labels": labels, "annotations": {"summary": "host 10.0.0.5 is down"}, "startsAt": starts, "endsAt": rfc(now)}]);
    let (st, v) = http_send("POST", &am_api, "application/json", ended.to_string());
    assert_eq!(st, 200, "{v}");
    let second = eventually(30, "the resolved alert on the WeCom robot", || wecom_texts(&sim).into_iter().nth(1));
    assert!(second.contains("已恢复 · 持续 12 分钟"), "paired, with its duration: {second}");
    assert!(second.contains(r#"<font color="info">"#), "green: {second}");
    // Alertmanager re-sends the group while it changes: the firing alert was told once.
    let texts = wecom_texts(&sim);
    assert_eq!(texts.iter().filter(|t| t.contains("收到告警信息")).count(), 1, "{texts:?}");
    let all = sim_messages(&sim);
    assert!(
        all.iter().any(|m| m["platform"] == "dingtalk") && all.iter().any(|m| m["platform"] == "feishu"),
        "{all:?}"
    );

    // The pairing is in the trace of the resolved event.
    let alerts = get(&format!("{url}/v1/alerts?state=resolved"));
    let a = &alerts["alerts"][0];
    assert_eq!((a["rule"].as_str(), a["fired_count"].as_i64().map(|n| n >= 1)), (Some("prometheus"), Some(true)));
    assert!(a["key"].as_str().unwrap().starts_with("prometheus.alertmanager/HostDown/10.0.0.5:9100/"), "{a}");
    let id = a["last_event_id"].as_str().unwrap();
    let t = settled_trace(&url, id, 3);
    assert_eq!(t["event"]["body"]["source"], "prometheus.alertmanager");
    assert_eq!(t["alerts"][0]["notice"], "resolved", "{t}");
    let run = &t["runs"][0];
    assert_eq!((run["alert"]["paired"].as_bool(), run["alert"]["duration_s"].as_i64()), (Some(true), Some(720)), "{t}");
    let o = cli(&url, &["events", "trace", id]);
    assert!(stdout(&o).contains("alert resolved: resolved, fired"), "{}", stdout(&o));
}

fn source_post(url: &str, bus: &str, source: &str, body: &str) -> (u16, Value) {
    http_send("POST", &format!("{url}/v1/buses/{bus}/sources/{source}"), "application/json", body)
}

#[test]
fn grafana_and_tencent_monitor_payloads_are_taken_as_sent_and_bad_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), None, "server");
    let url = server.url();

    let (st, v) = source_post(&url, "default", "grafana", &fixture("grafana-firing.json"));
    assert_eq!(st, 200, "{v}");
    let id = v["entries"][0]["id"].as_str().unwrap().to_string();
    let e = &trace(&url, &id)["event"]["body"];
    assert_eq!(
        (e["source"].as_str(), e["type"].as_str(), e["status"].as_str()),
        (Some("grafana"), Some("HighCPU"), Some("1"))
    );
    assert_eq!(e["data"]["values"]["B"], 97);
    assert_eq!(e["data"]["panelURL"], "https://grafana/d/abc?viewPanel=2");
    let (st, v) = source_post(&url, "default", "grafana", &fixture("grafana-resolved.json"));
    assert_eq!(st, 200, "{v}");

    let (st, v) = source_post(&url, "default", "tencent-monitor", &fixture("tencent-metric-firing.json"));
    assert_eq!(st, 200, "{v}");
    let id = v["entries"][0]["id"].as_str().unwrap().to_string();
    let e = &trace(&url, &id)["event"]["body"];
    assert_eq!((e["source"].as_str(), e["subject"].as_str()), (Some("monitor.cloud.tencent"), Some("ins-o9p3rg3m")));
    assert_eq!((e["region"].as_str(), e["time"].as_i64()), (Some("ap-guangzhou"), Some(1_489_014_000_000)));
    assert_eq!(e["data"]["alarmPolicyInfo"]["policyId"], "policy-n4exeh88");
    // Cloud Monitor retries (up to 3 times): the same alarm is stored once.
    let (st, v) = source_post(&url, "default", "tencent-monitor", &fixture("tencent-metric-firing.json"));
    assert_eq!((st, v["entries"][0]["duplicate"].as_bool()), (200, Some(true)), "{v}");
    // Cloud Monitor names no content type; its URL check has no body.
    let (st, v) = http_send("POST", &format!("{url}/v1/buses/default/sources/tencent-monitor"), "text/plain", "");
    assert_eq!((st, v["entries"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    let (st, v) = http_send(
        "POST",
        &format!("{url}/v1/buses/default/sources/tencent-monitor?tz=%2B00:00"),
        "text/plain",
        fixture("tencent-event-firing.json"),
    );
    assert_eq!(st, 200, "{v}");
    let e = &trace(&url, v["entries"][0]["id"].as_str().unwrap())["event"]["body"];
    assert_eq!((e["type"].as_str(), e["time"].as_i64()), (Some("ping_unreachable"), Some(1_714_586_400_000)));

    let before = get(&format!("{url}/v1/events?limit=1000"))["events"].as_array().unwrap().len();
    let refused = |source: &str, body: &str, status: u16, path: &str| {
        let (st, v) = source_post(&url, "default", source, body);
        assert_eq!(st, status, "{source} {body}: {v}");
        assert_eq!(v["error"]["path"], path, "{source}: {v}");
    };
    let mut two = serde_json::from_str::<Value>(&fixture("alertmanager-firing.json")).unwrap();
    let mut bad = two["alerts"][0].clone();
    bad["startsAt"] = json!("not a time");
    two["alerts"].as_array_mut().unwrap().push(bad);
    // One bad alert of a batch refuses the batch: nothing is stored, none is lost silently.
    refused("alertmanager", &two.to_string(), 400, "alerts[1].startsAt");
    refused("alertmanager", r#"{"entries": [{"source": "x"}]}"#, 400, "alerts");
    refused("alertmanager", &fixture("grafana-firing.json"), 400, "version");
    refused("grafana", r#"{"version": "1", "alerts": [{"status": "pending"}]}"#, 400, "alerts[0].status");
    refused("tencent-monitor", r#"{"alarmStatus": "1"}"#, 400, "alarmObjInfo");
    refused(
        "tencent-monitor",
        &fixture("tencent-metric-firing.json").replace("2017-03-09 07:00:00", "soon"),
        400,
        "firstOccurTime",
    );
    refused("tencent-monitor", r#"{"alarmStatus": "1", "alarmStatus": "0"}"#, 400, "alarmStatus");
    let (st, v) = http_send(
        "POST",
        &format!("{url}/v1/buses/default/sources/tencent-monitor?tz=CST"),
        "application/json",
        fixture("tencent-metric-firing.json"),
    );
    assert_eq!((st, v["error"]["path"].as_str()), (400, Some("tz")), "{v}");
    let (st, v) = http_send("POST", &format!("{url}/v1/buses/default/sources/alertmanager"), "text/plain", "x");
    assert_eq!(st, 415, "{v}");
    let (st, v) = source_post(&url, "default", "zabbix", "{}");
    assert_eq!(st, 404, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("alertmanager"), "{v}");
    let (st, _) = source_post(&url, "nope", "alertmanager", &fixture("alertmanager-firing.json"));
    assert_eq!(st, 404);
    let after = get(&format!("{url}/v1/events?limit=1000"))["events"].as_array().unwrap().len();
    assert_eq!(before, after, "refused requests store nothing");
}

fn lifecycle_config(dir: &Path, sim_port: u16) -> std::path::PathBuf {
    let cfg = dir.join("magpie.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
connections:
  - name: wecom-alerts
    platform: wecom
    webhook: http://127.0.0.1:{sim_port}/cgi-bin/webhook/send?key=alerts
flows:
  - name: tell
    steps:
      - robot:
          connection: wecom-alerts
          content: "{{{{ vars.alert.notice }}}} {{{{ payload.subject }}}} x{{{{ vars.alert.fired_count }}}} {{% if vars.alert.paired %}}paired{{% else %}}unpaired{{% endif %}} d={{{{ vars.alert.duration_s if vars.alert.duration_s is not none else '-' }}}}"
rules:
  - name: cvm-alerts
    pattern: {{"source": ["cvm.cloud.tencent"]}}
    alert: {{repeat_interval: 3s}}
    targets: [{{flow: tell}}]
"#
        ),
    )
    .unwrap();
    cfg
}

fn put(url: &str, subject: &str, status: &str, time_ms: i64) -> String {
    let ev = json!({"source": "cvm.cloud.tencent", "type": "cvm:ErrorEvent:PingUnreachable", "subject": subject,
                    "status": status, "time": time_ms, "data": {}});
    let (st, v) = http_send("POST", &format!("{url}/v1/buses/default/events"), "application/json", ev.to_string());
    assert_eq!(st, 200, "{v}");
    v["entries"][0]["id"].as_str().unwrap().to_string()
}

/// Waits until the router has processed an event and returns its trace.
fn routed(url: &str, id: &str) -> Value {
    eventually(10, "the event to be routed", || {
        let t = trace(url, id);
        (t["routed"] == true).then_some(t)
    })
}

#[test]
fn alerts_are_deduplicated_paired_and_silenced_and_told_once_after_the_silence() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = lifecycle_config(dir.path(), sim_port);
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();
    let t0 = magpie_core::now_ms() - 600_000;

    let first = put(&url, "ins-a", "1", t0);
    settled_trace(&url, &first, 1);
    // Firing again within the repeat interval: counted, not told.
    let again = put(&url, "ins-a", "1", t0 + 60_000);
    let t = routed(&url, &again);
    assert_eq!(t["runs"].as_array().map(Vec::len), Some(0), "{t}");
    assert_eq!(
        (t["alerts"][0]["outcome"].as_str(), t["alerts"][0]["fired_count"].as_i64()),
        (Some("deduplicated"), Some(2))
    );
    let o = cli(&url, &["events", "trace", &again]);
    assert!(stdout(&o).contains("deduplicated: already firing"), "{}", stdout(&o));
    // After the repeat interval it is told again, with how many times it fired.
    std::thread::sleep(Duration::from_millis(3_100));
    let third = put(&url, "ins-a", "1", t0 + 120_000);
    settled_trace(&url, &third, 1);
    // The recovery pairs, 12 minutes after the first firing.
    let resolved = put(&url, "ins-a", "0", t0 + 720_000);
    settled_trace(&url, &resolved, 1);
    // A recovery of nothing that fired is delivered, marked unpaired.
    let lone = put(&url, "ins-b", "0", t0);
    settled_trace(&url, &lone, 1);
    let texts = eventually(10, "four messages", || Some(wecom_texts(&sim)).filter(|t| t.len() >= 4));
    assert_eq!(
        texts,
        vec![
            "firing ins-a x1 paired d=0".to_string(),
            "repeat ins-a x3 paired d=120".to_string(),
            "resolved ins-a x3 paired d=720".to_string(),
            "unpaired ins-b x0 unpaired d=-".to_string(),
        ]
    );
    let o = cli(&url, &["alerts", "--state", "resolved"]);
    assert!(
        o.status.success() && stdout(&o).contains("cvm.cloud.tencent/cvm:ErrorEvent:PingUnreachable/ins-a"),
        "{}",
        stdout(&o)
    );
    let o = cli(&url, &["alerts"]);
    assert!(stdout(&o).contains("no firing alerts"), "{}", stdout(&o));

    // A silence on ins-c and ins-d; ins-d fired (and was told) before it.
    let d_fired = put(&url, "ins-d", "1", t0);
    settled_trace(&url, &d_fired, 1);
    let pattern = dir.path().join("maintenance.json");
    std::fs::write(&pattern, r#"{"subject": ["ins-c", "ins-d"]}"#).unwrap();
    let p = pattern.to_str().unwrap();
    let o = cli(
        &url,
        &["silence", "add", "--pattern", p, "--for", "1h", "--comment", "kernel upgrade", "--created-by", "ops"],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let sid = stdout(&o).split_whitespace().nth(1).unwrap().to_string();
    assert!(sid.starts_with("sil-"), "{}", stdout(&o));
    let o = cli(&url, &["silence", "list"]);
    assert!(
        stdout(&o).contains(&sid) && stdout(&o).contains("kernel upgrade") && stdout(&o).contains("active"),
        "{}",
        stdout(&o)
    );
    let quiet = put(&url, "ins-c", "1", t0 + 1_000);
    let t = routed(&url, &quiet);
    assert_eq!(t["silenced_by"].as_str(), Some(sid.as_str()), "{t}");
    assert_eq!(t["runs"].as_array().map(Vec::len), Some(0));
    assert!(stdout(&cli(&url, &["events", "trace", &quiet])).contains(&format!("silenced by {sid}")));
    // A recovery during the silence resolves quietly.
    let d_resolved = put(&url, "ins-d", "0", t0 + 2_000);
    assert_eq!(routed(&url, &d_resolved)["runs"].as_array().map(Vec::len), Some(0));
    let o = cli(&url, &["alerts", "--json"]);
    let firing: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(firing.as_array().map(Vec::len), Some(1), "{firing}");
    assert_eq!(
        (firing[0]["key"].as_str().map(|k| k.ends_with("ins-c")), firing[0]["silenced_by"].as_str()),
        (Some(true), Some(sid.as_str()))
    );
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(wecom_texts(&sim).len(), 5, "nothing told during the silence");

    // The silence ends: ins-c, still firing, is told once.
    let o = cli(&url, &["silence", "expire", &sid]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let texts = eventually(10, "the alert told after the silence", || Some(wecom_texts(&sim)).filter(|t| t.len() >= 6));
    assert_eq!(texts[5], "silence_ended ins-c x1 paired d=0");
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(wecom_texts(&sim).len(), 6, "told once");
    let o = cli(&url, &["silence", "list"]);
    assert!(stdout(&o).contains("no silences"), "{}", stdout(&o));
    let all = get(&format!("{url}/v1/silences?all=true"));
    assert_eq!(all["silences"][0]["status"], "expired");
    // Bad silences name the field.
    let (st, v) = http_send(
        "POST",
        &format!("{url}/v1/silences"),
        "application/json",
        r#"{"pattern": {"a": [{"nope": 1}]}, "duration": "1h", "comment": "x"}"#,
    );
    assert!(st == 400 && v["error"]["path"].as_str().is_some_and(|p| p.starts_with("pattern.a")), "{v}");
    let (st, v) = http_send(
        "POST",
        &format!("{url}/v1/silences"),
        "application/json",
        r#"{"pattern": {"source": ["x"]}, "comment": "x"}"#,
    );
    assert_eq!((st, v["error"]["path"].as_str()), (400, Some("duration")), "{v}");
    let (st, v) = http_send(
        "POST",
        &format!("{url}/v1/silences"),
        "application/json",
        r#"{"pattern": {"source": ["x"]}, "duration": "1h", "comment": " "}"#,
    );
    assert_eq!((st, v["error"]["path"].as_str()), (400, Some("comment")), "{v}");
    let (st, _) = http_send("DELETE", &format!("{url}/v1/silences/sil-nope"), "application/json", "");
    assert_eq!(st, 404);
}
