//! The acceptance story: the seed scenario end to end.

use magpie_connectors::signing::{dingtalk_sign, feishu_sign};
use serde_json::Value;

use crate::harness::*;

const CVM_TEMPLATES: [&str; 6] = [
    "cvm:GuestReboot",
    "cvm:PingUnreachable",
    "cvm:PingUnreachable:recovered",
    "cvm:GuestCoreError",
    "cvm:GuestOom",
    "cvm:DiskReadonly",
];

#[test]
fn every_cvm_template_reaches_the_three_robots_formatted_and_signed() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, demo_config(sim_port)).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();

    let mut sent = Vec::new();
    for name in CVM_TEMPLATES {
        // Spaced as a person would send them: each message alone in its slot, none folded (the
        // demo robots keep the platforms' real limits; Feishu takes 5 per second).
        std::thread::sleep(std::time::Duration::from_millis(400));
        let id = send_template(&url, name);
        let event = trace(&url, &id)["event"]["body"].clone();
        sent.push((id, event));
    }
    // A CLB event matches no rule: nothing is sent for it.
    let clb = send_template(&url, "clb:RsPortStatusChange");

    let messages = eventually(20, "18 robot messages", || {
        let m = sim_messages(&sim);
        (m.len() >= 18).then_some(m)
    });
    assert_eq!(messages.len(), 18, "three messages per CVM event, none for CLB");

    let dt_secret = "SEC3b9f6c1e2d4a5b7c8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2";
    for (id, event) in &sent {
        let (subject, region, typ) =
            (event["subject"].as_str().unwrap(), event["region"].as_str().unwrap(), event["type"].as_str().unwrap());
        let of = |platform: &str| -> Vec<&Value> {
            messages
                .iter()
                .filter(|m| {
                    m["platform"] == platform
                        && m["body"].to_string().contains(subject)
                        && m["body"].to_string().contains(typ)
                })
                .collect()
        };
        // WeCom: the seed's step-6 markdown, font colours included.
        let wecom = of("wecom");
        assert!(!wecom.is_empty(), "WeCom message for {id}");
        let content = wecom[0]["body"]["markdown"]["content"].as_str().unwrap();
        assert!(content.starts_with("<font color=\"warning\"> 收到告警信息，请及时处理 </font>"), "{content}");
        assert!(content.contains(&format!("> 实例 ID:<font color=\"comment\">{subject}</font>")), "{content}");
        assert!(content.contains(&format!("> 地域:<font color=\"comment\">{region}</font>")), "{content}");
        assert!(content.contains(&format!("> 事件名称:<font color=\"comment\">{typ}</font>")), "{content}");

        // DingTalk: markdown with the keyword, signed in the query with a valid signature.
        let ding = of("dingtalk");
        assert!(!ding.is_empty(), "DingTalk message for {id}");
        let md = &ding[0]["body"]["markdown"];
        assert!(md["title"].as_str().unwrap().contains("告警"));
        let text = md["text"].as_str().unwrap();
        assert!(text.contains(subject) && text.contains(region) && text.contains(typ), "{text}");
        let query: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(ding[0]["query"].as_str().unwrap().as_bytes()).into_owned().collect();
        let ts: i64 = query["timestamp"].parse().unwrap();
        assert_eq!(query["sign"], dingtalk_sign(dt_secret, ts), "DingTalk signature");

        // Feishu: a post with the same three facts, signed in the body.
        let fs = of("feishu");
        assert!(!fs.is_empty(), "Feishu message for {id}");
        let body = &fs[0]["body"];
        assert_eq!(body["msg_type"], "post");
        let post = body["content"]["post"]["zh_cn"].to_string();
        assert!(post.contains(region), "{post}");
        let ts: i64 = body["timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(body["sign"].as_str().unwrap(), feishu_sign("feishu-demo-secret", ts), "Feishu signature");
    }

    // The trace: rule matched, three flow runs, their steps and attempts with the robots' answers.
    let t = settled_trace(&url, &sent[0].0, 3);
    assert_eq!(t["rules_matched"], serde_json::json!(["EBqw1"]));
    let mut flows: Vec<&str> = t["runs"].as_array().unwrap().iter().map(|r| r["flow"].as_str().unwrap()).collect();
    flows.sort();
    assert_eq!(flows, ["eb-dingtalk", "eb-feishu", "eb-wecom"]);
    for run in t["runs"].as_array().unwrap() {
        assert_eq!(run["status"], "done", "{run}");
        let kinds: Vec<(&str, &str)> = run["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["kind"].as_str().unwrap(), s["status"].as_str().unwrap()))
            .collect();
        assert_eq!(kinds, [("set-variable", "ok"), ("try", "ok"), ("robot", "ok")]);
        let attempts = run["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0]["outcome"], "delivered");
        assert_eq!(attempts[0]["status_code"], 200);
        assert!(
            attempts[0]["response"].as_str().unwrap().contains("\"errcode\":0")
                || attempts[0]["response"].as_str().unwrap().contains("\"code\":0")
        );
        assert!(!attempts[0]["url"].as_str().unwrap().contains("693a91f6-7b2c"), "secrets are masked in traces");
    }
    // The CLI shows the same.
    let o = cli(&url, &["events", "trace", &sent[0].0]);
    let text = stdout(&o);
    assert!(o.status.success());
    assert!(text.contains("rules matched: EBqw1"), "{text}");
    assert_eq!(text.matches("attempt 1 →").count(), 3, "{text}");
    let t = eventually(10, "the CLB event routed", || Some(trace(&url, &clb)).filter(|t| t["routed"] == true));
    assert_eq!(t["rules_matched"], serde_json::json!([]));
    assert!(t["runs"].as_array().unwrap().is_empty());
}

#[test]
fn configuration_events_and_traces_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, demo_config(sim_port)).unwrap();
    let _sim = robots(dir.path(), &cfg, sim_port);
    let mut server = serve(dir.path(), Some(&cfg), "first");
    let id = send_template(&server.url(), "cvm:GuestReboot");
    let before = settled_trace(&server.url(), &id, 3);
    server.stop();

    // Restarted without --config: everything comes from the store.
    let server = serve(dir.path(), None, "second");
    let url = server.url();
    let flows = get(&format!("{url}/v1/flows"));
    assert_eq!(flows.as_array().unwrap().len(), 3);
    let rule = get(&format!("{url}/v1/buses/default/rules/EBqw1"));
    assert_eq!(rule["targets"].as_array().unwrap().len(), 3);
    let after = trace(&url, &id);
    assert_eq!(after, before, "the trace is unchanged");
    // And it still works.
    let id2 = send_template(&url, "cvm:GuestOom");
    let t = settled_trace(&url, &id2, 3);
    assert!(t["runs"].as_array().unwrap().iter().all(|r| r["status"] == "done"));
}
