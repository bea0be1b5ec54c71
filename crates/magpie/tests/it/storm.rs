//! A storm: 500 alerts at once to a robot that takes 5 per 2 s. Nothing is refused for rate, the
//! robot's limit holds, the first alert goes at once, digests carry the rest, and every alert is
//! told — across a SIGKILL in the middle of the storm and a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde_json::json;

use crate::harness::*;

const COUNT: usize = 500;
/// Alerts of the second wave, streamed over three seconds so the limiter binds.
const STREAM: usize = 150;

fn config(sim_port: u16) -> String {
    format!(
        r#"
connections:
  - name: storm-robot
    platform: wecom
    webhook: http://127.0.0.1:{sim_port}/cgi-bin/webhook/send?key=storm-key
    rate: 5/2s
flows:
  - name: alert
    steps:
      - try:
          steps:
            - robot:
                connection: storm-robot
                content: "<font color=\"warning\">{{{{ payload.type }}}}</font> {{{{ payload.subject }}}}"
          catch:
            - errors: [ANY]
              steps: [{{logger: {{level: ERROR, category: storm, message: "{{{{ error.code }}}}"}}}}]
rules:
  - name: all-cvm
    pattern: {{"source": ["cvm.cloud.tencent"]}}
    targets: [{{flow: alert}}]
"#
    )
}

/// The storm's alert number in an event id (`storm-xxxxxxxx-00042`) or a subject (`ins-storm00042`).
fn number(s: &str) -> Option<usize> {
    let digits: String =
        s.chars().rev().take_while(char::is_ascii_digit).collect::<Vec<_>>().into_iter().rev().collect();
    digits.parse().ok()
}

fn digest_id(content: &str) -> Option<String> {
    let at = content.find("/v1/digests/")? + "/v1/digests/".len();
    Some(content[at..].trim_end_matches(')').to_string())
}

#[test]
fn a_storm_is_told_within_the_limit_in_digests_and_survives_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, config(sim_port)).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    // The simulated robot enforces the small window for this test (the demo's keep the real ones).
    sim_robot(&sim, json!({"platform": "wecom", "token": "storm-key", "limits": [{"count": 5, "per": "2s"}]}));
    let mut server = serve(dir.path(), Some(&cfg), "first");

    let started = magpie_core::now_ms();
    let o = cli(&server.url(), &["events", "storm", "--count", &COUNT.to_string(), "--no-watch"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    // SIGKILL while the storm is being told: the first alert is out, the rest wait for their slots.
    eventually(20, "the first message", || (!sim_messages(&sim).is_empty()).then_some(()));
    server.kill();
    let killed_at = Instant::now();
    let server = serve(dir.path(), None, "second");
    let url = server.url();
    // A second wave, streamed: ten alerts every 200 ms for three seconds.
    for batch in 0..STREAM / 10 {
        let entries: Vec<_> = (0..10)
            .map(|j| {
                let n = COUNT + batch * 10 + j;
                json!({"id": format!("storm-stream-{n:05}"), "source": "cvm.cloud.tencent",
                       "type": "cvm:ErrorEvent:PingUnreachable", "subject": format!("ins-storm{n:05}"), "status": "1"})
            })
            .collect();
        let (status, body) = http_send(
            "POST",
            &format!("{url}/v1/buses/default/events"),
            "application/json",
            json!({"entries": entries}).to_string(),
        );
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The queue drains to zero and every run ends.
    eventually(60, "the outbox to empty", || {
        let o = get(&format!("{url}/v1/connections/storm-robot/outbox"));
        (o["depth"] == 0).then_some(())
    });
    let ids: Vec<String> = {
        let mut v = Vec::new();
        let mut cursor: Option<i64> = None;
        loop {
            let q = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
            let page = get(&format!("{url}/v1/events?bus=default&limit=1000{q}"));
            v.extend(page["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()));
            match page["next_cursor"].as_i64() {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        v
    };
    assert_eq!(ids.len(), COUNT + STREAM, "every alert was stored");

    let messages = sim_messages(&sim);
    let answers = sim_answers(&sim);
    // 1. Magpie caused no rate-limit answer.
    assert!(
        answers.iter().all(|a| a["answer"]["errcode"] == 0),
        "refusals: {:?}",
        answers.iter().filter(|a| a["answer"]["errcode"] != 0).collect::<Vec<_>>()
    );
    // 2. At most 5 messages in any 2 s.
    let times: Vec<i64> = messages.iter().map(|m| m["received_at"].as_i64().unwrap()).collect();
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..].iter().take_while(|u| **u < t + 2_000).count();
        assert!(in_window <= 5, "{in_window} messages within 2 s from {t}: {times:?}");
    }
    // 3. The first within 1 s of the storm.
    assert!(times[0] - started < 1_000, "first message {} ms after the storm began", times[0] - started);
    // 4. Every alert told: alone (as the flow rendered it) or folded into a digest.
    let mut told: BTreeSet<usize> = BTreeSet::new();
    let mut digests = 0;
    for m in &messages {
        let content = m["body"]["markdown"]["content"].as_str().unwrap();
        match digest_id(content) {
            Some(d) => {
                digests += 1;
                let dg = get(&format!("{url}/v1/digests/{d}"));
                assert_eq!(dg["connection"], "storm-robot");
                let events = dg["events"].as_array().unwrap();
                assert!(content.contains(&format!("Magpie 告警汇总：{} 条", events.len())), "{content}");
                assert!(content.len() <= 4096);
                told.extend(events.iter().filter_map(|e| number(e.as_str().unwrap())));
            }
            None => {
                assert!(
                    content.starts_with("<font color=\"warning\">cvm:ErrorEvent:PingUnreachable</font> ins-storm"),
                    "{content}"
                );
                told.extend(number(content));
            }
        }
    }
    let want: BTreeSet<usize> = (0..COUNT + STREAM).collect();
    assert_eq!(told, want, "missing: {:?}", want.difference(&told).collect::<Vec<_>>());
    assert!(
        digests >= 2 && messages.len() < 40,
        "{} messages for {} alerts ({digests} digests)",
        messages.len(),
        COUNT + STREAM
    );
    // The streamed wave kept the robot busy at its limit: several messages within some 2 s.
    let busiest = (0..times.len()).map(|i| times[i..].iter().take_while(|u| **u < times[i] + 2_000).count()).max();
    assert!(busiest >= Some(3), "the limiter was exercised: {times:?}");

    // The trace of a folded alert names its digest.
    let folded = ids
        .iter()
        .find_map(|id| {
            let t = trace(&url, id);
            let step = t["runs"][0]["steps"].as_array()?.iter().find(|s| s["kind"] == "robot")?.clone();
            (step["detail"]["delivery"] == "folded").then(|| (id.clone(), step))
        })
        .expect("a folded alert");
    let dg = get(&format!("{url}/v1/digests/{}", folded.1["detail"]["digest_id"].as_str().unwrap()));
    assert!(dg["events"].as_array().unwrap().iter().any(|e| e == folded.0.as_str()));
    let content = dg["message"]["content"].as_str().unwrap();
    let (shown, total) = (content.matches("ins-storm").count(), dg["events"].as_array().unwrap().len());
    if shown < total {
        assert!(content.contains(&format!("另有 {} 条未展开", total - shown)), "{content}");
    }
    let o = cli(&url, &["events", "trace", &folded.0]);
    assert!(stdout(&o).contains("folded into digest"), "{}", stdout(&o));

    // Metrics tell the storm.
    let m = metrics(&url);
    let by_name: BTreeMap<&str, usize> = m.iter().fold(BTreeMap::new(), |mut acc, (n, _, _)| {
        *acc.entry(n.as_str()).or_default() += 1;
        acc
    });
    for series in [
        "magpie_sends_total",
        "magpie_folded_alerts_total",
        "magpie_digests_total",
        "magpie_outbox_depth",
        "magpie_event_to_robot_seconds_bucket",
        "magpie_event_to_robot_seconds_count",
        "magpie_flow_runs_total",
    ] {
        assert!(by_name.contains_key(series), "/metrics lacks {series}: {by_name:?}");
    }
    assert_eq!(metric_sum(&m, "magpie_outbox_depth", &[("connection", "storm-robot")]), 0.0);
    assert!(metric_sum(&m, "magpie_folded_alerts_total", &[("connection", "storm-robot")]) >= 1.0);
    let le_inf = m
        .iter()
        .find(|(n, l, _)| {
            n == "magpie_event_to_robot_seconds_bucket" && l.get("le").map(String::as_str) == Some("+Inf")
        })
        .map(|(_, _, v)| *v);
    assert!(le_inf.is_some_and(|v| v >= 1.0), "a latency histogram with buckets");
    eprintln!(
        "storm told in {} messages ({digests} digests); {:?} after the SIGKILL",
        messages.len(),
        killed_at.elapsed()
    );
}

/// The platform counts a request when it arrives. When the first one is slow to arrive (a new
/// connection to a distant platform), the next must still be spaced from its arrival, not from
/// when Magpie planned it: Feishu's 5 per second leaves no room for that mistake.
#[test]
fn a_slow_connection_set_up_does_not_make_magpie_exceed_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let proxy = slow_proxy(sim_port, std::time::Duration::from_millis(300));
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
connections:
  - name: fs-far
    platform: feishu
    webhook: http://127.0.0.1:{proxy}/open-apis/bot/v2/hook/far-token
flows:
  - name: to-feishu
    steps:
      - robot: {{connection: fs-far, message: text, content: "{{{{ payload.subject }}}}"}}
rules:
  - name: all-cvm
    pattern: {{"source": ["cvm.cloud.tencent"]}}
    targets: [{{flow: to-feishu}}]
"#
        ),
    )
    .unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();
    let mut ids = Vec::new();
    for i in 0..10 {
        let id = format!("far-{i}");
        let (status, body) = http_send(
            "POST",
            &format!("{url}/v1/buses/default/events"),
            "application/json",
            json!({"id": id, "source": "cvm.cloud.tencent", "type": "cvm:ErrorEvent:PingUnreachable", "subject": format!("ins-far{i}")}).to_string(),
        );
        assert_eq!(status, 200, "{body}");
        ids.push(id);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for id in &ids {
        let t = settled_trace(&url, id, 1);
        assert_eq!(t["runs"][0]["status"], "done", "{t}");
    }
    let refused: Vec<_> = sim_answers(&sim).into_iter().filter(|a| a["answer"]["code"] != 0).collect();
    assert!(refused.is_empty(), "Magpie caused rate-limit answers: {refused:?}");
    let times: Vec<i64> = sim_messages(&sim).iter().map(|m| m["received_at"].as_i64().unwrap()).collect();
    for (i, t) in times.iter().enumerate() {
        assert!(times[i..].iter().take_while(|u| **u < t + 1_000).count() <= 5, "{times:?}");
    }
}
