//! Retries with backoff in the outbox, each attempt in the trace, dead letters when they run out,
//! the catch still running; a robot refusing for rate pauses its connection, which recovers.

use serde_json::json;

use crate::harness::*;

#[test]
fn retryable_failures_are_retried_then_dead_lettered_and_the_catch_runs() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, wecom_config(sim_port, "retry-key", 3)).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();

    // Three failures: the attempts run out, the message is a dead letter, the catch logs ERROR.
    sim_script(&sim, "retry-key", json!(["busy", "http500", "busy"]));
    let id = send_template(&url, "cvm:GuestReboot");
    let t = settled_trace(&url, &id, 1);
    let run = &t["runs"][0];
    assert_eq!(run["status"], "delivery_failed", "caught, but not delivered: not plain done: {run}");
    assert_eq!(run["runs"], 2, "the run parks while the outbox retries (no worker held), then goes on once");
    let attempts = run["attempts"].as_array().unwrap();
    let types: Vec<&str> = attempts.iter().map(|a| a["error_type"].as_str().unwrap_or("")).collect();
    assert_eq!(types, ["WECOM:REMOTE", "WECOM:REMOTE", "WECOM:REMOTE"]);
    assert_eq!(attempts.iter().map(|a| a["attempt"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(attempts[1]["status_code"], 500);
    assert!(
        attempts[0]["response"].as_str().unwrap().contains("\"errcode\":-1"),
        "HTTP 200 with errcode -1 is a failure"
    );
    let gap = attempts[2]["started_at"].as_i64().unwrap() - attempts[1]["started_at"].as_i64().unwrap();
    assert!(gap >= 40, "backoff between attempts: {gap} ms");
    let steps = run["steps"].as_array().unwrap();
    let robot = steps.iter().find(|s| s["kind"] == "robot").unwrap();
    assert_eq!((robot["status"].as_str(), robot["detail"]["delivery"].as_str()), (Some("error"), Some("failed")));
    let logger = steps.iter().find(|s| s["kind"] == "logger").expect("the catch ran");
    assert_eq!(logger["detail"]["level"], "ERROR");
    assert_eq!(logger["detail"]["category"], "ebtest");
    assert!(logger["detail"]["message"].as_str().unwrap().starts_with("WECOM:REMOTE"), "{logger}");
    assert_eq!(steps.iter().find(|s| s["kind"] == "try").unwrap()["status"], "caught");
    let log = server.log_text();
    assert!(log.lines().any(|l| l.contains("ERROR") && l.contains("ebtest") && l.contains(&id)), "server log:\n{log}");
    assert_eq!(sim_messages(&sim).len(), 0);
    // Every message that could not be delivered is a dead letter, caught or not.
    let letters = get(&format!("{url}/v1/dead-letters"))["dead_letters"].as_array().cloned().unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["event_id"], id.as_str());
    assert_eq!(letters[0]["error_type"], "WECOM:REMOTE");
    assert_eq!(letters[0]["caught"], true);
    assert_eq!(letters[0]["connection"], "wecom-test");
    let m = metrics(&url);
    assert_eq!(metric_sum(&m, "magpie_flow_runs_total", &[("outcome", "delivery_failed")]), 1.0, "counted apart");
    assert_eq!(metric_sum(&m, "magpie_flow_runs_total", &[("outcome", "done")]), 0.0);
    assert_eq!(metric_sum(&m, "magpie_dead_letters_total", &[("error_type", "WECOM:REMOTE")]), 1.0);
    assert_eq!(metric_sum(&m, "magpie_sends_total", &[("connection", "wecom-test"), ("outcome", "failed")]), 3.0);

    // One failure, then success: delivered on the second attempt, nothing logged.
    sim_script(&sim, "retry-key", json!(["http500"]));
    let id = send_template(&url, "cvm:GuestOom");
    let t = settled_trace(&url, &id, 1);
    let run = &t["runs"][0];
    assert_eq!(run["status"], "done");
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
    sim_script(&sim, "auth-key", json!(["auth"]));
    let id = send_template(&server.url(), "cvm:DiskReadonly");
    let t = settled_trace(&server.url(), &id, 1);
    let attempts = t["runs"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "93000 invalid webhook url is not retried");
    assert_eq!(attempts[0]["error_type"], "WECOM:AUTH");
    assert!(!attempts[0]["error"].as_str().unwrap().contains("127.0.0.1"), "the echoed IP is redacted");
    let logger = t["runs"][0]["steps"].as_array().unwrap().iter().find(|s| s["kind"] == "logger").cloned().unwrap();
    assert!(logger["detail"]["message"].as_str().unwrap().starts_with("WECOM:AUTH"));
    assert_eq!(t["runs"][0]["dead_letters"][0]["error_type"], "WECOM:AUTH");
}

#[test]
fn a_robot_refusing_for_rate_pauses_the_connection_which_then_recovers_without_using_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    // One attempt only: a rate-limit refusal must not use it up. A short penalty for the test.
    std::fs::write(&cfg, wecom_config_with(sim_port, "shared-key", 1, "    penalty: 1500ms")).unwrap();
    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), Some(&cfg), "server");
    let url = server.url();
    // Another sender used the robot's minute: its next answer is 45009.
    sim_script(&sim, "shared-key", json!(["rate_limited"]));
    let id = send_template(&url, "cvm:PingUnreachable");
    let outbox = eventually(5, "the connection to pause", || {
        let o = get(&format!("{url}/v1/connections/wecom-test/outbox"));
        o["paused_until"].is_number().then_some(o)
    });
    assert!(outbox["pause_reason"].as_str().unwrap().contains("45009"), "{outbox}");
    assert_eq!(outbox["depth"], 1, "the message waits at the head of the queue");
    let m = metrics(&url);
    assert_eq!(metric_sum(&m, "magpie_connection_paused", &[("connection", "wecom-test")]), 1.0);
    let t = settled_trace(&url, &id, 1);
    let run = &t["runs"][0];
    assert_eq!(run["status"], "done", "{run}");
    let attempts = run["attempts"].as_array().unwrap();
    let outcomes: Vec<&str> = attempts.iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["rate_limited", "delivered"], "the trace says the connection was refused for rate");
    let gap = attempts[1]["started_at"].as_i64().unwrap() - attempts[0]["started_at"].as_i64().unwrap();
    assert!(gap >= 1_400, "paused for the penalty before sending again: {gap} ms");
    assert_eq!(run["deliveries"][0]["attempts"], 0, "waiting for a penalty uses up no attempt");
    assert_eq!(sim_messages(&sim).len(), 1);
    let outbox = get(&format!("{url}/v1/connections/wecom-test/outbox"));
    assert!(outbox["paused_until"].is_null() && outbox["depth"] == 0 && outbox["sent"] == 1, "{outbox}");
    let m = metrics(&url);
    assert_eq!(metric_sum(&m, "magpie_connection_pauses_total", &[("connection", "wecom-test")]), 1.0);
    assert_eq!(metric_sum(&m, "magpie_sends_total", &[("outcome", "rate_limited")]), 1.0);
    // Only the answer the robot was scripted to give was a refusal: Magpie caused none.
    let refused = sim_answers(&sim).iter().filter(|a| a["answer"]["errcode"] == 45009).count();
    assert_eq!(refused, 1);
}
