//! Flow drafts and publishing (seed step 7, 发布集成流) through the API and the CLI: a saved flow is
//! a draft until published, rules target published flows only, a run finishes on the version it
//! started on, rollback, `apply --draft` and `apply --dry-run`, and the everyday object commands.

use serde_json::{Value, json};

use crate::harness::*;

fn config(sim_port: u16, second: &str) -> String {
    format!(
        r#"
connections:
  - name: wecom-v
    platform: wecom
    webhook: http://127.0.0.1:{sim_port}/cgi-bin/webhook/send?key=ver-key
    timeout: 2s
flows:
  - name: two-steps
    steps:
      - robot:
          connection: wecom-v
          content: "first {{{{ payload.subject }}}}"
          retry: {{attempts: 30, backoff: 200ms, max_backoff: 400ms}}
      - robot:
          connection: wecom-v
          content: "{second} {{{{ payload.subject }}}}"
rules:
  - name: all-app
    pattern: {{"source": ["app.versions"]}}
    targets: [{{flow: two-steps}}]
"#
    )
}

/// The flow of [`config`] as JSON, with `second` as its second message.
fn flow_json(sim_port: u16, second: &str) -> Value {
    let doc: Value = serde_saphyr::from_str(&config(sim_port, second)).unwrap();
    doc["flows"][0].clone()
}

fn put_event(url: &str, subject: &str) -> String {
    let (st, v) = http_send(
        "POST",
        &format!("{url}/v1/buses/default/events"),
        "application/json",
        json!({"source": "app.versions", "type": "deploy", "subject": subject, "data": {}}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    v["entries"][0]["id"].as_str().or(v["id"].as_str()).unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

fn contents(sim: &Proc) -> Vec<String> {
    sim_messages(sim).iter().filter_map(|m| m["body"]["markdown"]["content"].as_str().map(str::to_string)).collect()
}

#[test]
fn drafts_are_published_runs_keep_their_version_and_rollback_restores() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, config(sim_port, "v1 second")).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), None, "server");
    let url = server.url();

    // `magpie apply` publishes (config as code).
    let o = cli(&url, &["apply", "-f", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let heads = get(&format!("{url}/v1/flow-versions"));
    assert_eq!(heads[0]["name"], "two-steps");
    assert_eq!((heads[0]["live"].clone(), heads[0]["draft"].clone()), (json!(1), Value::Null), "{heads}");

    // A run starts on v1 and is held at its first message (the robot is busy for a while).
    sim_script(&sim, "ver-key", json!(["busy", "busy", "busy", "busy", "busy", "busy", "busy", "busy"]));
    let held = put_event(&url, "ins-held");
    eventually(10, "the held run's first attempt", || (!sim_answers(&sim).is_empty()).then_some(()));

    // Saving writes a draft; what runs is unchanged.
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/flows/two-steps"),
        "application/json",
        flow_json(sim_port, "v2 second").to_string(),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!((v["live"].clone(), v["draft"].clone()), (json!(1), json!(2)), "{v}");
    let live = get(&format!("{url}/v1/flows/two-steps"));
    assert_eq!(live["steps"][1]["robot"]["content"], "v1 second {{ payload.subject }}", "{live}");
    let draft = get(&format!("{url}/v1/flows/two-steps?version=draft"));
    assert_eq!(draft["steps"][1]["robot"]["content"], "v2 second {{ payload.subject }}", "{draft}");

    // The diff of draft against live, from the CLI: exit 1 when they differ.
    let o = cli(&url, &["flow", "diff", "two-steps"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{text}{}", stderr(&o));
    assert!(text.contains("--- two-steps v1") && text.contains("+++ two-steps v2"), "{text}");
    assert!(text.lines().any(|l| l.starts_with('-') && l.contains("v1 second")), "{text}");
    assert!(text.lines().any(|l| l.starts_with('+') && l.contains("v2 second")), "{text}");

    // Only published flows can be rule targets.
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/flows/only-draft"),
        "application/yaml",
        "steps:\n  - logger: {message: hi}\n",
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["live"], Value::Null, "{v}");
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/buses/default/rules/to-draft"),
        "application/json",
        json!({"pattern": {"source": ["x"]}, "targets": [{"flow": "only-draft"}]}).to_string(),
    );
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["path"], "targets[0].flow", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("not been published"), "{v}");

    // Publish: new runs take v2; the held run finishes on v1.
    let o = cli(&url, &["flow", "publish", "two-steps"]);
    assert!(o.status.success() && stdout(&o).contains("v2 is live"), "{}{}", stdout(&o), stderr(&o));
    let t = settled_trace(&url, &held, 1);
    assert_eq!(t["runs"][0]["flow_version"], 1, "{t}");
    let fresh = put_event(&url, "ins-fresh");
    let t = settled_trace(&url, &fresh, 1);
    assert_eq!(t["runs"][0]["flow_version"], 2, "{t}");
    let got = contents(&sim);
    assert!(got.contains(&"v1 second ins-held".to_string()), "the held run stayed on v1: {got:?}");
    assert!(got.contains(&"v2 second ins-fresh".to_string()), "{got:?}");
    assert!(!got.iter().any(|c| c == "v2 second ins-held"), "{got:?}");
    // Nothing to publish now.
    let o = cli(&url, &["flow", "publish", "two-steps"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("no draft to publish"), "{}", stderr(&o));

    // Rollback to v1; v2 stays in the history.
    let o = cli(&url, &["flow", "rollback", "two-steps", "--to", "1"]);
    assert!(o.status.success() && stdout(&o).contains("v1 is live"), "{}{}", stdout(&o), stderr(&o));
    let back = put_event(&url, "ins-back");
    let t = settled_trace(&url, &back, 1);
    assert_eq!(t["runs"][0]["flow_version"], 1, "{t}");
    assert!(contents(&sim).contains(&"v1 second ins-back".to_string()), "{:?}", contents(&sim));
    let o = cli(&url, &["flow", "versions", "two-steps", "--json"]);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let states: Vec<(Value, Value, Value)> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["version"].clone(), x["live"].clone(), x["draft"].clone()))
        .collect();
    assert_eq!(states, [(json!(1), json!(true), json!(false)), (json!(2), json!(false), json!(false))]);
    let (st, v) = http_send("POST", &format!("{url}/v1/flows/two-steps/rollback"), "application/json", "{}");
    assert_eq!((st, v["error"]["path"].as_str()), (400, Some("version")), "{v}");
    let (st, _) =
        http_send("POST", &format!("{url}/v1/flows/two-steps/rollback"), "application/json", r#"{"version": 7}"#);
    assert_eq!(st, 404);

    // apply --draft saves the file's flows as drafts; --dry-run shows a diff and changes nothing.
    let changed = dir.path().join("changed.yaml");
    std::fs::write(&changed, config(sim_port, "v3 second").replace("app.versions", "app.changed")).unwrap();
    let o = cli(&url, &["apply", "-f", changed.to_str().unwrap(), "--dry-run"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}{}", stderr(&o));
    assert!(text.contains("0 to create, 2 to change, 1 unchanged; nothing was applied"), "{text}");
    assert!(text.contains("change    rule all-app (bus default)"), "{text}");
    assert!(text.contains("unchanged connection wecom-v"), "{text}");
    assert!(text.lines().any(|l| l.starts_with('+') && l.contains("app.changed")), "{text}");
    let rule = get(&format!("{url}/v1/buses/default/rules/all-app"));
    assert_eq!(rule["pattern"]["source"], json!(["app.versions"]), "a dry run applies nothing");
    let o = cli(&url, &["apply", "-f", changed.to_str().unwrap(), "--draft"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let heads = get(&format!("{url}/v1/flow-versions"));
    let h = heads.as_array().unwrap().iter().find(|h| h["name"] == "two-steps").unwrap().clone();
    assert_eq!((h["live"].clone(), h["draft"].clone()), (json!(1), json!(3)), "{heads}");

    // A changed webhook key shows in a dry run as changed, never in clear.
    let rekeyed = dir.path().join("rekeyed.yaml");
    std::fs::write(&rekeyed, config(sim_port, "v1 second").replace("key=ver-key", "key=ver-kez")).unwrap();
    let o = cli(&url, &["apply", "-f", rekeyed.to_str().unwrap(), "--dry-run"]);
    let text = stdout(&o);
    assert!(text.contains("change    connection wecom-v"), "{text}");
    assert!(text.contains("<changed, not shown>") && !text.contains("ver-kez"), "{text}");
    // A masked webhook sent back with another host is refused, not stored.
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/connections/wecom-v"),
        "application/json",
        json!({"platform": "wecom", "webhook": "http://127.0.0.1:1/cgi-bin/webhook/send?key=ver-***"}).to_string(),
    );
    assert_eq!((st, v["error"]["path"].as_str()), (400, Some("webhook")), "{v}");
    // A browser page of another site cannot write (CSRF); the same origin and non-browsers can.
    let http = reqwest::blocking::Client::new();
    let post = |headers: &[(&str, String)]| {
        let mut r = http
            .post(format!("{url}/v1/buses"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(r#"{"name": "csrf-bus"}"#);
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r.send().unwrap().status().as_u16()
    };
    assert_eq!(post(&[("origin", "http://evil.example".into())]), 403);
    assert_eq!(post(&[("sec-fetch-site", "cross-site".into())]), 403);
    let own = url.trim_start_matches("http://").to_string();
    assert_eq!(post(&[("origin", format!("http://{own}"))]), 201);
    assert_eq!(get(&format!("{url}/v1/buses/csrf-bus"))["name"], "csrf-bus");

    // The object commands: lists as JSON when piped, names in errors.
    let o = cli(&url, &["flows", "list"]);
    let flows: Value = serde_json::from_str(&stdout(&o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    let names: Vec<&str> = flows.as_array().unwrap().iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(names, ["two-steps", "only-draft"], "{flows}");
    assert_eq!(flows[0]["versions"], json!({"live": 1, "draft": 3}));
    let o = cli(&url, &["connections", "get", "wecom-v"]);
    let c: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(!stdout(&o).contains("ver-key"), "secrets are masked: {}", stdout(&o));
    assert_eq!(c["platform"], "wecom");
    let o = cli(&url, &["flows", "delete", "two-steps"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("rule \"all-app\""), "the error names the rule: {}", stderr(&o));
    let o = cli(&url, &["connections", "delete", "wecom-v"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("flow \"two-steps\""), "the error names the flow: {}", stderr(&o));
    let o = cli(&url, &["rules", "delete", "all-app"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(&url, &["rules", "list", "--json"]);
    assert_eq!(stdout(&o).trim(), "[]");
    let o = cli(&url, &["flows", "delete", "two-steps"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(&url, &["flows", "delete", "only-draft"]);
    assert!(o.status.success(), "a draft-only flow can be deleted: {}", stderr(&o));
    assert_eq!(get(&format!("{url}/v1/flow-versions")), json!([]));
    let o = cli(&url, &["buses", "get", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no bus \"nope\""), "{}", stderr(&o));
}
