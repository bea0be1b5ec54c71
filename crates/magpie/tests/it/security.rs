//! Tokens and roles through the real binary: every route of README's route → role table, for
//! every role, no token and a wrong token; the weaker forms senders may use; the console's
//! roles; tokens created on the server; and the audit log of every kind of change.

use std::time::Duration;

use magpie_core::auth::hash_token;
use serde_json::{Value, json};

use crate::harness::*;

const TOKENS: [(&str, &str); 4] = [
    ("admin", "mgp_admin_0000"),
    ("operator", "mgp_oper_0000"),
    ("ingest", "mgp_ingest_0000"),
    ("viewer", "mgp_view_0000"),
];

fn token_of(role: &str) -> &'static str {
    TOKENS.iter().find(|(r, _)| *r == role).map(|(_, t)| *t).unwrap_or("")
}

/// A configuration with a token per role (unlimited, so the matrix is not rate limited), a
/// slow ingest token, a listen path and a robot on the simulator.
fn config(sim_port: u16) -> String {
    let mut tokens = String::new();
    for (role, token) in TOKENS {
        tokens.push_str(&format!(
            "    - {{name: {role}-token, role: {role}, hash: \"{}\", rate: unlimited}}\n",
            hash_token(token)
        ));
    }
    tokens.push_str(&format!(
        "    - {{name: slow-sender, role: ingest, hash: \"{}\", rate: 2/s}}\n",
        hash_token("mgp_slow")
    ));
    let extra = "flows:\n  - name: spare\n    steps:\n      - logger: {message: spare}\n  - name: listen\n    trigger: {type: eventbridge, path: listen}\n    steps:\n      - logger: {message: heard}\n";
    format!("auth:\n  tokens:\n{tokens}{}", wecom_config(sim_port, "sec-key-1", 1).replace("flows:\n", extra))
}

fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut r = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.header("content-type", "application/json").body(b.to_string());
    }
    let resp = r.send().expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)), headers)
}

/// README's route table: `(method, path, roles that may)`.
fn readme_routes() -> Vec<(String, String, Vec<String>)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let start = text.find("### Tokens and roles").expect("README's Security section");
    let mut out = Vec::new();
    let table = text[start..].split("| Route | Who may |").nth(1).expect("the route table");
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some((m, p)) = cells[1].trim_matches('`').split_once(' ') else { continue };
        let who = cells[2];
        let roles = if who.starts_with("anyone") {
            vec!["*".to_string()]
        } else {
            who.split(", ").map(str::to_string).collect()
        };
        out.push((m.to_string(), p.to_string(), roles));
    }
    out
}

/// A concrete path for a route, naming objects that do not exist, and a body that is refused:
/// an allowed request reaches its handler and changes nothing.
fn concrete(path: &str) -> String {
    path.replace("{bus}", "nobus")
        .replace("{source}", "alertmanager")
        .replace("{*path}", "nohook")
        .replace("{rule}", "norule")
        .replace("{flow}", "noflow")
        .replace("{name}", "noname")
        .replace("{id}", "noid")
}

#[test]
fn every_route_answers_every_role_as_the_readme_says() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, config(sim_port)).unwrap();
    let server = serve(dir.path(), Some(&cfg), "server");
    let routes = readme_routes();
    assert!(routes.len() >= 50, "README lists {} routes", routes.len());
    let mut checked = 0;
    for (method, path, roles) in &routes {
        let url = format!("{}{}", server.url(), concrete(path));
        let body = (method != "GET" && method != "DELETE").then_some("[]");
        let public = roles == &["*"];
        // No token, and a token that is not one.
        for token in [None, Some("mgp_wrong")] {
            let (status, v, _) = request(method, &url, token, body);
            if public {
                assert!(status != 401 && status != 403, "{method} {path} without a token: {status} {v}");
            } else {
                assert_eq!(status, 401, "{method} {path} with {token:?}: {v}");
                assert!(v["error"]["message"].is_string(), "a JSON error: {v}");
            }
        }
        for (role, token) in TOKENS {
            let (status, v, _) = request(method, &url, Some(token), body);
            let may = public || roles.iter().any(|r| r == role);
            if may {
                assert!(status != 401 && status != 403, "{method} {path} as {role}: {status} {v}");
            } else {
                assert_eq!(status, 403, "{method} {path} as {role}: {v}");
                let msg = v["error"]["message"].as_str().unwrap_or_default();
                assert!(msg.contains(&format!("{role}-token")) && msg.contains(role), "{msg}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 200);
}

#[test]
fn senders_may_use_basic_auth_or_a_query_token_only_where_documented_and_ingest_is_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, config(sim_port)).unwrap();
    let server = serve(dir.path(), Some(&cfg), "server");
    let client = reqwest::blocking::Client::new();
    let hook = format!("{}/hooks/listen", server.url());
    // Basic auth: the token as password, or as the user name.
    let r = client.post(&hook).basic_auth("alertmanager", Some(token_of("ingest"))).body("{}").send().unwrap();
    assert_eq!(r.status(), 202);
    let r = client.post(&hook).basic_auth(token_of("ingest"), None::<&str>).body("{}").send().unwrap();
    assert_eq!(r.status(), 202);
    let r = client.post(format!("{hook}?token={}", token_of("ingest"))).body("{}").send().unwrap();
    assert_eq!(r.status(), 202);
    let source = format!("{}/v1/buses/default/sources/tencent-monitor?token={}", server.url(), token_of("ingest"));
    assert_eq!(client.post(&source).body("").send().unwrap().status(), 200, "Cloud Monitor's URL check");
    // Not on the other routes.
    let r = client.get(format!("{}/v1/buses?token={}", server.url(), token_of("admin"))).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = client.get(format!("{}/v1/buses", server.url())).basic_auth("x", Some(token_of("admin"))).send().unwrap();
    assert_eq!(r.status(), 401);
    // A stored listen-path request keeps no token (nor the Authorization header).
    let events =
        request("GET", &format!("{}/v1/events?bus=_hooks&limit=10", server.url()), Some(token_of("viewer")), None).1;
    assert!(!events.to_string().contains("mgp_ingest_0000"), "{events}");

    // The slow sender (2/s) is held to its rate; others are served meanwhile.
    let put = format!("{}/v1/buses/default/events", server.url());
    let event = json!({"source": "x.test", "type": "t", "subject": "s"}).to_string();
    let mut refused = None;
    for _ in 0..6 {
        let (status, v, headers) = request("POST", &put, Some("mgp_slow"), Some(&event));
        if status == 429 {
            refused = Some((v, headers));
            break;
        }
        assert_eq!(status, 200, "{v}");
    }
    let (v, headers) = refused.expect("the slow sender was refused for rate");
    assert!(v["error"]["message"].as_str().unwrap().contains("slow-sender"), "{v}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(request("POST", &put, Some(token_of("ingest")), Some(&event)).0, 200, "another token is served");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(request("POST", &put, Some("mgp_slow"), Some(&event)).0, 200, "after Retry-After");
}

#[test]
fn tokens_made_on_the_server_work_at_once_are_revoked_at_once_and_every_change_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, config(sim_port)).unwrap();
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();
    let admin = token_of("admin");
    let op = token_of("operator");

    // The CLI makes a token offline: printed once, with the hash for magpie.yaml.
    let o = std::process::Command::new(BIN).args(["token", "create", "grafana", "--role", "ingest"]).output().unwrap();
    assert!(o.status.success());
    let printed = stdout(&o).trim().to_string();
    assert!(printed.starts_with("mgp_"), "{printed}");
    assert!(stderr(&o).contains(&hash_token(&printed)) && !stderr(&o).contains(&printed));

    // On the server.
    let o = std::process::Command::new(BIN)
        .args(["--server", &url, "--token", admin, "token", "create", "bot", "--role", "operator", "--on-server"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let bot = stdout(&o).trim().to_string();
    let bus = json!({"name": "ops", "description": "by the bot"}).to_string();
    assert_eq!(request("PUT", &format!("{url}/v1/buses/ops"), Some(&bot), Some(&bus)).0, 200);
    let (status, v, _) =
        request("POST", &format!("{url}/v1/tokens"), Some(op), Some(r#"{"name": "x", "role": "admin"}"#));
    assert_eq!(status, 403, "an operator cannot make tokens: {v}");
    let (status, v, _) =
        request("POST", &format!("{url}/v1/tokens"), Some(admin), Some(r#"{"name": "admin-token", "role": "viewer"}"#));
    assert_eq!(status, 409, "{v}");
    let (status, v, _) =
        request("POST", &format!("{url}/v1/tokens"), Some(admin), Some(r#"{"name": "y", "role": "root"}"#));
    assert_eq!(status, 400, "{v}");
    let listed = request("GET", &format!("{url}/v1/tokens"), Some(admin), None).1;
    assert!(listed.to_string().contains("\"bot\"") && !listed.to_string().contains("sha256"), "{listed}");
    let o = std::process::Command::new(BIN)
        .args(["--server", &url, "--token", admin, "token", "revoke", "bot"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(request("GET", &format!("{url}/v1/buses"), Some(&bot), None).0, 401, "revoked at once");

    // One change of each kind, by the operator.
    let conn = json!({"platform": "wecom", "webhook": format!("http://127.0.0.1:{sim_port}/cgi-bin/webhook/send?key=audit-secret-key")}).to_string();
    assert_eq!(request("PUT", &format!("{url}/v1/connections/audited"), Some(op), Some(&conn)).0, 200);
    assert_eq!(request("DELETE", &format!("{url}/v1/connections/audited"), Some(op), None).0, 204);
    let flow = json!({"steps": [{"logger": {"message": "v2"}}]}).to_string();
    assert_eq!(request("PUT", &format!("{url}/v1/flows/spare"), Some(op), Some(&flow)).0, 200);
    assert_eq!(request("POST", &format!("{url}/v1/flows/spare/publish"), Some(op), Some("{}")).0, 200);
    assert_eq!(request("POST", &format!("{url}/v1/flows/spare/rollback"), Some(op), Some(r#"{"version": 1}"#)).0, 200);
    let silence = json!({"pattern": {"source": ["x"]}, "duration": "1h", "comment": "maintenance"}).to_string();
    let (status, s, _) = request("POST", &format!("{url}/v1/silences"), Some(op), Some(&silence));
    assert_eq!(status, 201, "{s}");
    let sid = s["id"].as_str().unwrap().to_string();
    assert_eq!(request("DELETE", &format!("{url}/v1/silences/{sid}"), Some(op), None).0, 200);
    let replay = json!({"bus": "default", "since": "1h"}).to_string();
    assert_eq!(request("POST", &format!("{url}/v1/events/replay"), Some(op), Some(&replay)).0, 200);
    // A failed delivery becomes a dead letter to redrive (nothing listens on the simulator's port).
    let id = send_template_as(&url, op, "cvm:GuestReboot");
    let letter = eventually(30, "a dead letter", || {
        let v = request("GET", &format!("{url}/v1/dead-letters"), Some(op), None).1;
        v["dead_letters"].as_array().and_then(|a| a.iter().find(|l| l["event_id"] == id.as_str())).cloned()
    });
    let redrive = json!({"ids": [letter["id"]]}).to_string();
    assert_eq!(request("POST", &format!("{url}/v1/dead-letters/redrive"), Some(op), Some(&redrive)).0, 200);

    let log = request("GET", &format!("{url}/v1/audit?limit=100"), Some(admin), None).1;
    let entries = log["entries"].as_array().unwrap();
    let has = |who: &str, action: &str, target: &str| {
        entries
            .iter()
            .any(|e| e["who"] == who && e["action"] == action && e["target"].as_str().unwrap_or("").starts_with(target))
    };
    for (who, action, target) in [
        ("magpie.yaml", "put", "connection wecom-test"),
        ("admin-token", "create", "token bot"),
        ("admin-token", "delete", "token bot"),
        ("bot", "put", "bus ops"),
        ("operator-token", "put", "connection audited"),
        ("operator-token", "delete", "connection audited"),
        ("operator-token", "draft", "flow spare"),
        ("operator-token", "publish", "flow spare"),
        ("operator-token", "create", "silence sil-"),
        ("operator-token", "expire", "silence sil-"),
        ("operator-token", "replay", "replay "),
        ("operator-token", "redrive", "dead-letters"),
    ] {
        assert!(has(who, action, target), "no audit entry {who} {action} {target} in {log}");
    }
    let created = entries.iter().find(|e| e["target"] == "connection audited" && e["action"] == "put").unwrap();
    assert!(created["before"].is_null() && created["after"]["webhook"].as_str().unwrap().contains("key=audi***"));
    let published: Vec<&Value> =
        entries.iter().filter(|e| e["target"] == "flow spare" && e["action"] == "publish").collect();
    assert_eq!(published[0]["after"], json!({"version": 1}), "the rollback, newest first");
    assert_eq!(published[1]["before"], json!({"version": 1}));
    assert!(!log.to_string().contains("audit-secret-key"), "no secret in the audit log");
    // The CLI shows it; a viewer may not read it.
    let o = std::process::Command::new(BIN)
        .args(["--server", &url, "--token", admin, "audit", "--target", "connection"])
        .output()
        .unwrap();
    assert!(stdout(&o).contains("operator-token") && stdout(&o).contains("connection audited"), "{}", stdout(&o));
    assert_eq!(request("GET", &format!("{url}/v1/audit"), Some(token_of("viewer")), None).0, 403);
}

fn send_template_as(url: &str, token: &str, name: &str) -> String {
    let o = std::process::Command::new(BIN)
        .args(["--server", url, "--token", token, "events", "send-template", name])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).lines().find_map(|l| l.strip_prefix("accepted ")).unwrap().trim().to_string()
}

#[test]
fn the_console_lets_a_viewer_read_refuses_its_changes_and_an_ingest_token() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, config(sim_port)).unwrap();
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();
    let host = url.trim_start_matches("http://").to_string();
    let client = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = |token: &str| {
        client
            .post(format!("{url}/console/login"))
            .header("origin", format!("http://{host}"))
            .form(&[("token", token), ("next", "/console/buses")])
            .send()
            .unwrap()
    };
    assert_eq!(login(token_of("ingest")).status(), 403);
    assert_eq!(login("mgp_wrong").status(), 401);
    let r = login(token_of("viewer"));
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = client.get(format!("{url}/console/buses")).header("cookie", &cookie).send().unwrap();
    assert_eq!(page.status(), 200);
    let toggle = client
        .post(format!("{url}/console/rules/default/all-cvm/toggle"))
        .header("cookie", &cookie)
        .header("origin", format!("http://{host}"))
        .send()
        .unwrap();
    assert_eq!(toggle.status(), 403);
    assert!(toggle.text().unwrap().contains("viewer"));
    let check = client
        .post(format!("{url}/console/patterns/check"))
        .header("cookie", &cookie)
        .header("origin", format!("http://{host}"))
        .form(&[("pattern", r#"{"source": ["x"]}"#)])
        .send()
        .unwrap();
    assert_eq!(check.status(), 200, "checking a pattern changes nothing");
    let rule = request("GET", &format!("{url}/v1/buses/default/rules/all-cvm"), Some(token_of("viewer")), None).1;
    assert_eq!(rule["enabled"], true);
}
