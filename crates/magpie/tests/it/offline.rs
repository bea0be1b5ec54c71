//! `magpie flow run` and `magpie pattern match`, which need no server.

use crate::harness::*;

#[test]
fn flow_run_prints_steps_and_the_exact_request_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("magpie.yaml");
    let sim_port = free_port();
    std::fs::write(&cfg, demo_config(sim_port)).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let o = cli(
        "http://127.0.0.1:1",
        &["flow", "run", cfg.to_str().unwrap(), "--flow", "eb-wecom", "--template", "cvm:GuestReboot"],
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("dry run"), "{out}");
    assert!(out.contains("steps[0].set-variable"), "{out}");
    assert!(out.contains("would POST http://127.0.0.1:"), "{out}");
    assert!(out.contains(r#"<font color=\"comment\">ins-abcd1234</font>"#), "{out}");
    assert!(!out.contains("693a91f6-7b2c-4bc4"), "the key is masked: {out}");
    assert!(sim_messages(&sim).is_empty(), "a dry run sends nothing");

    // With --send it really sends, through the same connector code.
    let o = cli(
        "http://127.0.0.1:1",
        &[
            "flow",
            "run",
            cfg.to_str().unwrap(),
            "--flow",
            "eb-dingtalk",
            "--template",
            "cvm:GuestOom",
            "--send",
            "--outbound-allow",
            "127.0.0.1",
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let m = sim_messages(&sim);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["platform"], "dingtalk");

    // Without --flow, a document with several flows is refused with the choices.
    let o = cli("http://127.0.0.1:1", &["flow", "run", cfg.to_str().unwrap(), "--template", "cvm:GuestOom"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("eb-wecom"), "{}", stderr(&o));
}

#[test]
fn pattern_match_counts_rules_over_events() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.json");
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &rules,
        r#"{"cvm": {"source": ["cvm.cloud.tencent"]}, "firing": {"status": ["1"]}, "none": {"source": ["x"]}}"#,
    )
    .unwrap();
    std::fs::write(
        &events,
        "{\"source\":\"cvm.cloud.tencent\",\"status\":\"1\"}\n{\"source\":\"cvm.cloud.tencent\",\"status\":\"0\"}\n{\"source\":\"clb.cloud.tencent\",\"status\":\"1\"}\n",
    )
    .unwrap();
    let o = cli(
        "http://127.0.0.1:1",
        &["pattern", "match", "--rules", rules.to_str().unwrap(), "--events", events.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v, serde_json::json!({"cvm": 2, "firing": 2, "none": 0}));
    assert!(stderr(&o).contains("events/s"));
}

#[test]
fn offline_commands_do_not_offer_server_options_and_client_commands_do() {
    let help = |args: &[&str]| {
        let o = std::process::Command::new(BIN).args(args).arg("--help").output().unwrap();
        assert!(o.status.success(), "{args:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    for offline in
        [&["pattern", "test"][..], &["pattern", "match"], &["flow", "run"], &["events", "templates"], &["robots"]]
    {
        assert!(!help(offline).contains("--server"), "{offline:?} is offline: {}", help(offline));
    }
    for online in [&["flows", "list"][..], &["apply"], &["events", "put"], &["flow", "publish"], &["silence", "add"]] {
        let h = help(online);
        assert!(h.contains("--server <URL>") && h.contains("MAGPIE_TOKEN"), "{online:?}: {h}");
    }
    assert!(help(&["serve"]).contains("--token <TOKEN>  An admin token the API and the console accept"));
    // The options work after the command too.
    let o = std::process::Command::new(BIN)
        .args(["flows", "list", "--server", "http://127.0.0.1:9", "--token", "t"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach Magpie at http://127.0.0.1:9"));
}
