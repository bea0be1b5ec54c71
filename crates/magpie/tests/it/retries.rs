//! Retries with backoff, each attempt in the trace, and the catch when they run out.

use serde_json::{Value, json};

use crate::harness::*;

fn script(sim: &Proc, key: &str, answers: Value) {
    let (status, body) = http_send(
        "POST",
        &format!("{}/_sim/faults", sim.url()),
        "application/json",
        json!({"platform": "wecom", "token": key, "answers": answers}).to_string(),
    );
    assert_eq!(status, 204, "{body}");
}

#[test]
fn rate_limits_and_errors_are_retried_then_caught_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, wecom_config(sim_port, "retry-key", 3)).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();

    // Three failures: retries run out and the catch logs ERROR.
    script(&sim, "retry-key", json!(["rate_limited", "busy", "rate_limited"]));
    let id = send_template(&url, "cvm:GuestReboot");
    let t = settled_trace(&url, &id, 1);
    let run = &t["runs"][0];
    assert_eq!(run["status"], "done", "the error was caught, so the flow completed: {run}");
    assert_eq!(run["runs"], 3, "one run per attempt: retries are rescheduled jobs, not sleeps");
    let attempts = run["attempts"].as_array().unwrap();
    let types: Vec<&str> = attempts.iter().map(|a| a["error_type"].as_str().unwrap_or("")).collect();
    assert_eq!(types, ["WECOM:RATE_LIMITED", "WECOM:REMOTE", "WECOM:RATE_LIMITED"]);
    assert!(attempts.iter().all(|a| a["status_code"] == 200), "failures came as HTTP 200 with errcode != 0");
    assert!(attempts[0]["response"].as_str().unwrap().contains("45009"));
    let steps = run["steps"].as_array().unwrap();
    let robot = steps.iter().find(|s| s["kind"] == "robot").unwrap();
    assert_eq!(robot["status"], "error");
    let logger = steps.iter().find(|s| s["kind"] == "logger").expect("the catch ran");
    assert_eq!(logger["detail"]["level"], "ERROR");
    assert_eq!(logger["detail"]["category"], "ebtest");
    assert!(logger["detail"]["message"].as_str().unwrap().starts_with("WECOM:RATE_LIMITED"), "{logger}");
    let tr = steps.iter().find(|s| s["kind"] == "try").unwrap();
    assert_eq!(tr["status"], "caught");
    let log = server.log_text();
    assert!(log.lines().any(|l| l.contains("ERROR") && l.contains("ebtest") && l.contains(&id)), "server log:\n{log}");
    assert_eq!(sim_messages(&sim).len(), 0);

    // One failure, then success: delivered on the second attempt, nothing logged.
    script(&sim, "retry-key", json!(["http500"]));
    let id = send_template(&url, "cvm:GuestOom");
    let t = settled_trace(&url, &id, 1);
    let run = &t["runs"][0];
    let outcomes: Vec<&str> =
        run["attempts"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["failed", "delivered"]);
    assert_eq!(run["attempts"][0]["status_code"], 500);
    assert!(!run["steps"].as_array().unwrap().iter().any(|s| s["kind"] == "logger"));
    assert_eq!(sim_messages(&sim).len(), 1);
}

#[test]
fn non_retryable_errors_reach_the_catch_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, wecom_config(sim_port, "auth-key", 5)).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    script(&sim, "auth-key", json!(["auth"]));
    let id = send_template(&server.url(), "cvm:DiskReadonly");
    let t = settled_trace(&server.url(), &id, 1);
    let attempts = t["runs"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "93000 invalid webhook url is not retried");
    assert_eq!(attempts[0]["error_type"], "WECOM:AUTH");
    assert!(!attempts[0]["error"].as_str().unwrap().contains("127.0.0.1"), "the echoed IP is redacted");
    let logger = t["runs"][0]["steps"].as_array().unwrap().iter().find(|s| s["kind"] == "logger").cloned().unwrap();
    assert!(logger["detail"]["message"].as_str().unwrap().starts_with("WECOM:AUTH"));
}
