//! Listen paths (监听路径): `POST /hooks/{path}` starts a flow with the request body.

use serde_json::json;

use crate::harness::*;

#[test]
fn a_listen_path_starts_its_flow_with_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"
connections:
  - name: wecom-hook
    platform: wecom
    webhook: http://127.0.0.1:{sim_port}/cgi-bin/webhook/send?key=hook-key
flows:
  - name: from-http
    trigger: {{type: eventbridge, path: ebtest/wecom}}
    steps:
      - robot:
          connection: wecom-hook
          content: "{{{{ payload.subject }}}} via {{{{ attrs.path }}}} ({{{{ attrs.headers['x-source'] }}}})"
"#
        ),
    )
    .unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();

    let r = reqwest::blocking::Client::new()
        .post(format!("{url}/hooks/ebtest/wecom"))
        .header("content-type", "application/json")
        .header("x-source", "eb")
        .header("authorization", "Bearer not-stored")
        .header("x-api-key", "not-stored-key")
        .header("x-gitlab-token", "not-stored-token")
        .header("x-hub-signature-256", "sha256=not-stored-signature")
        .body(json!({"subject": "ins-hook1"}).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: serde_json::Value = r.json().unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["flow"], "from-http");

    let t = settled_trace(&url, &id, 1);
    assert_eq!(t["runs"][0]["status"], "done", "{t}");
    assert_eq!(t["runs"][0]["rule"], "(listen path)");
    assert!(!t.to_string().contains("not-stored"), "credentials are not stored: {t}");
    assert_eq!(t["event"]["body"]["hook"]["headers"]["x-source"], "eb", "other headers are");

    // The data directory and the database are the owner's only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let data = dir.path().join("data");
        assert_eq!(mode(&data), 0o700, "the data dir");
        for f in ["magpie.db", "magpie.db-wal", "magpie.lock"] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
    }
    let m = sim_messages(&sim);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["body"]["markdown"]["content"], "ins-hook1 via ebtest/wecom (eb)");

    // No flow on that path.
    let (st, v) = http_send("POST", &format!("{url}/hooks/nope"), "application/json", "{}");
    assert_eq!(st, 404, "{v}");
    // A second flow cannot take the same path.
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/flows/other"),
        "application/json",
        json!({"trigger": {"path": "ebtest/wecom"}, "steps": [{"logger": {"message": "x"}}]}).to_string(),
    );
    assert_eq!(st, 409, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("already the listen path"), "{v}");
    // Nor a malformed one.
    let (st, v) = http_send(
        "PUT",
        &format!("{url}/v1/flows/other"),
        "application/json",
        json!({"trigger": {"path": "../etc"}, "steps": [{"logger": {"message": "x"}}]}).to_string(),
    );
    assert_eq!((st, v["error"]["path"].as_str()), (400, Some("trigger.path")), "{v}");
}
