//! At-least-once: events acknowledged before a SIGKILL are delivered after the restart.

use crate::harness::*;

#[test]
fn acknowledged_events_are_delivered_after_sigkill_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sim_port = free_port();
    let cfg = dir.path().join("magpie.yaml");
    std::fs::write(&cfg, wecom_config(sim_port, "crash-key", 50)).unwrap();

    // The robot is unreachable: events are acknowledged, but cannot be delivered yet.
    let mut server = serve(dir.path(), Some(&cfg), "first");
    let url = server.url();
    let ids: Vec<String> =
        ["cvm:GuestReboot", "cvm:GuestOom", "cvm:DiskReadonly"].iter().map(|t| send_template(&url, t)).collect();
    eventually(20, "a failed delivery attempt", || {
        let t = trace(&url, &ids[0]);
        let failed = |a: &serde_json::Value| a["error_type"] == "WECOM:CONNECTIVITY";
        (t["runs"][0]["attempts"].as_array().is_some_and(|a| a.iter().any(failed))).then_some(())
    });
    server.kill();

    let sim = robots(dir.path(), &cfg, sim_port);
    let server = serve(dir.path(), None, "second");
    let messages = eventually(30, "three deliveries after the restart", || {
        let m = sim_messages(&sim);
        (m.len() >= 3).then_some(m)
    });
    assert_eq!(messages.len(), 3, "each acknowledged event delivered once");
    for id in &ids {
        let t = settled_trace(&server.url(), id, 1);
        let run = &t["runs"][0];
        assert_eq!(run["status"], "done");
        let attempts = run["attempts"].as_array().unwrap();
        assert_eq!(attempts.last().unwrap()["outcome"], "delivered");
        // Before the restart, attempts failed (or one was in flight when the process was killed).
        let before = &attempts[..attempts.len() - 1];
        assert!(
            before.iter().all(|a| a["error_type"] == "WECOM:CONNECTIVITY" || a["outcome"] == "interrupted"),
            "{attempts:?}"
        );
    }
}
