//! Routing isolation: each bus routes on its own, and one bus's rules are capped in cost.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// A rule of nothing but unanchored wildcards on `subject`: as costly as a rule may be.
fn heavy_rule(i: usize) -> Value {
    let leaves: Vec<Value> = (0..900).map(|j| json!({"wildcard": format!("*x{i}-{j}*y*z*")})).collect();
    json!({"name": format!("heavy-{i}"), "bus": "heavy", "pattern": {"subject": leaves}, "targets": [{"flow": "noop"}]})
}

fn light_rule(bus: &str) -> Value {
    json!({"name": format!("light-{bus}"), "bus": bus, "pattern": {"source": ["light"]}, "targets": [{"flow": "noop"}]})
}

fn put_batch(url: &str, bus: &str, events: Vec<Value>) -> Vec<String> {
    let (st, v) = http_send(
        "POST",
        &format!("{url}/v1/buses/{bus}/events"),
        "application/json",
        json!({"entries": events}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    v["entries"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_bus_with_costly_rules_and_a_backlog_holds_no_other_bus() {
    let dir = tempfile::tempdir().unwrap();
    let light: Vec<String> = (1..=4).map(|i| format!("light-{i}")).collect();
    let mut buses = vec![json!({"name": "heavy"})];
    buses.extend(light.iter().map(|b| json!({"name": b})));
    let mut rules: Vec<Value> = (0..10).map(heavy_rule).collect();
    rules.extend(light.iter().map(|b| light_rule(b)));
    let doc = json!({"buses": buses, "flows": [{"name": "noop", "steps": [{"set-variable": {"name": "a", "value": 1}}]}],
                     "rules": rules});
    let cfg = dir.path().join("magpie.json");
    std::fs::write(&cfg, doc.to_string()).unwrap();
    let server = serve(dir.path(), Some(&cfg), "routing");
    let url = server.url();
    // A backlog on the heavy bus: every event is tested against 9,000 wildcards.
    let subject = "a".repeat(2_000);
    let mut heavy = Vec::new();
    for _ in 0..10 {
        let batch = (0..100).map(|_| json!({"source": "heavy", "type": "t", "subject": subject})).collect();
        heavy.extend(put_batch(&url, "heavy", batch));
    }
    // Each light bus routes at once, while the heavy one is still at its backlog.
    for bus in &light {
        let started = Instant::now();
        let id = put_batch(&url, bus, vec![json!({"source": "light", "type": "t", "subject": "s"})]).remove(0);
        eventually(10, "the light event to be routed", || {
            (trace(&url, &id)["rules_matched"] == json!([format!("light-{bus}")])).then_some(())
        });
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{bus}: routed after {took:?}");
    }
    let last = trace(&url, heavy.last().unwrap());
    assert_eq!(last["routed"], false, "the heavy backlog was still being routed: the test measured something");
}

#[test]
fn rules_that_would_cost_a_bus_too_much_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), None, "costly");
    let url = server.url();
    let mut rules: Vec<Value> = (0..12).map(heavy_rule).collect();
    for r in &mut rules {
        r["bus"] = json!("default");
    }
    let doc =
        json!({"flows": [{"name": "noop", "steps": [{"set-variable": {"name": "a", "value": 1}}]}], "rules": rules});
    let (st, v) = http_send("POST", &format!("{url}/v1/apply"), "application/json", doc.to_string());
    assert_eq!(st, 400, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("rules[0].pattern") && text.contains("bus \\\"default\\\"") && text.contains("100000"),
        "{text}"
    );
    assert_eq!(get(&format!("{url}/v1/flows")), json!([]), "nothing was applied");
}
