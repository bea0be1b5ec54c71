//! Hostile expressions through the real binary: each costs its own run (a `FLOW:EXPRESSION`
//! error the flow's catch sees), never the server; code that would run at load is refused when
//! saved; a job the process keeps dying in ends as `FLOW:POISON`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// Slow but frugal Starlark: a few ticks and a fixed heap, seconds of work.
const SLOW: &str = "def dw_process(msg):\n  big = 'a' * 10000000\n  n = 0\n  for i in range(1000000):\n    if 'b' in big:\n      n += 1\n  return n";

/// (name, expression, what the error must say)
fn hostile() -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    vec![
        ("huge-list", "def dw_process(msg):\n  return len([0] * 2000000000)", &["memory"]),
        ("huge-string", "def dw_process(msg):\n  return len('x' * 2000000000)", &["memory"]),
        (
            "big-integer",
            "def dw_process(msg):\n  x = 1 << 60\n  for i in range(40):\n    x = x * x\n  return 1",
            &["memory", "Heap", "time limit"],
        ),
        ("endless-loop", "def dw_process(msg):\n  for i in range(2000000000):\n    pass\n  return 1", &["ticks"]),
        ("slow-loop", SLOW, &["time limit"]),
        (
            "nested-template-loops",
            "{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}{% endfor %}{% endfor %}",
            &["fuel"],
        ),
        ("giant-template", "{% for a in range(100) %}{{ 'x' * 100000 }}{% endfor %}", &["larger than"]),
    ]
}

fn flow(name: &str, value: &str) -> Value {
    json!({"name": name, "steps": [
        {"try": {
            "steps": [{"set-variable": {"name": "x", "value": value}}],
            "catch": [{"errors": ["FLOW:EXPRESSION"], "steps": [
                {"set-variable": {"name": "caught", "value": "{{ error.code }} {{ error.desc }}"}},
                {"logger": {"level": "WARN", "category": "hostile", "message": "{{ error.code }}"}}
            ]}]
        }},
        {"set-variable": {"name": "after", "value": "the flow went on"}}
    ]})
}

fn config(cases: &[(&str, &str)]) -> String {
    let flows: Vec<Value> = cases.iter().map(|(n, v)| flow(n, v)).collect();
    let rules: Vec<Value> = cases
        .iter()
        .map(|(n, _)| json!({"name": format!("r-{n}"), "pattern": {"source": ["hostile"], "type": [n]}, "targets": [{"flow": n}]}))
        .collect();
    json!({"flows": flows, "rules": rules}).to_string()
}

fn put(url: &str, ty: &str) -> String {
    let (st, v) = http_send(
        "POST",
        &format!("{url}/v1/buses/default/events"),
        "application/json",
        json!({"source": "hostile", "type": ty, "subject": "x"}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    v["id"].as_str().or_else(|| v["entries"][0]["id"].as_str()).unwrap_or_else(|| panic!("no id: {v}")).to_string()
}

/// Polls `/healthz` until stopped; the slowest answer.
fn watch_health(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let ok = http_get(&format!("{url}/healthz")).is_ok_and(|r| r.0 == 200);
            assert!(ok, "/healthz answers");
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        worst
    })
}

/// The event's first flow run, once it has ended (`also` runs at every poll).
fn ended_run(url: &str, id: &str, secs: u64, mut also: impl FnMut()) -> Value {
    eventually(secs, &format!("the run of {id} to end"), || {
        also();
        let run = trace(url, id)["runs"].as_array()?.first()?.clone();
        (run["status"] == "done" || run["status"] == "failed").then_some(run)
    })
}

fn step<'a>(run: &'a Value, kind: &str, name: &str) -> Option<&'a Value> {
    run["steps"].as_array()?.iter().find(|s| s["kind"] == kind && s["detail"]["name"] == name)
}

#[test]
fn hostile_expressions_cost_their_run_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cases = hostile();
    let cfg = dir.path().join("magpie.json");
    std::fs::write(&cfg, config(&cases.iter().map(|(n, v, _)| (*n, *v)).collect::<Vec<_>>())).unwrap();
    let server = serve_with(dir.path(), Some(&cfg), "hostile", &["--expression-processes", "2"]);
    let url = server.url();
    let stop = Arc::new(AtomicBool::new(false));
    let health = watch_health(url.clone(), stop.clone());
    let mut peak_rss = 0;
    // Every case, and six more slow loops on top, so the sandboxes stay busy for a while.
    let mut ids: Vec<(String, &str, &[&str])> = cases.iter().map(|(n, _, want)| (put(&url, n), *n, *want)).collect();
    ids.extend((0..6).map(|_| (put(&url, "slow-loop"), "slow-loop", &["time limit"][..])));
    let started = Instant::now();
    for (id, name, want) in &ids {
        let t = ended_run(&url, id, 60, || peak_rss = peak_rss.max(rss_bytes(server.child.id()).unwrap_or(0)));
        assert_eq!(t["status"], "done", "{name}: the catch handled the error: {t:#}");
        let caught = step(&t, "set-variable", "caught").unwrap_or_else(|| panic!("{name}: no catch step: {t:#}"));
        let text = caught["detail"]["value"].as_str().unwrap();
        assert!(text.starts_with("FLOW:EXPRESSION "), "{name}: {text}");
        assert!(want.iter().any(|w| text.contains(w)), "{name}: {text} (wanted one of {want:?})");
        assert!(step(&t, "set-variable", "after").is_some(), "{name}: the flow went on after the catch");
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let worst = health.join().unwrap();
    assert!(worst < Duration::from_millis(500), "/healthz took {worst:?} at worst while the runs went on");
    assert!(peak_rss < 300 << 20, "the server's memory stayed bounded: peak {} MiB", peak_rss >> 20);
    // Nine two-second loops on two processes: about ten seconds, not more.
    assert!(elapsed < Duration::from_secs(40), "{elapsed:?}");
    // The server still runs flows normally.
    let quick = put(&url, "no-rule-matches-this");
    assert!(trace(&url, &quick)["runs"].as_array().is_some_and(|r| r.is_empty()));
}

#[test]
fn code_that_would_run_at_load_is_refused_when_saved() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), None, "refuse");
    let url = server.url();
    let code = "def dw_process(msg):\n  return 1\ntotal = 0\nfor i in range(4000000000):\n  total += i\n";
    let doc = json!({"flows": [flow("top-level", code)]}).to_string();
    let file = dir.path().join("flow.json");
    std::fs::write(&file, &doc).unwrap();
    let o = cli(&url, &["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("flows[0].steps[0].try.steps[0].set-variable.value"), "{err}");
    assert!(err.contains("line 4") && err.contains("`for` loop"), "{err}");
    let (st, v) = http_send("POST", &format!("{url}/v1/apply"), "application/json", doc);
    assert_eq!(st, 400, "{v}");
    assert_eq!(get(&format!("{url}/v1/flows")), json!([]), "nothing was saved");
    // Deeply nested code is checked on a thread with a stack for it, and too long code is refused:
    // saving never takes the server down.
    let deep = format!("def dw_process(msg):\n    return {}1{}", "(".repeat(3000), ")".repeat(3000));
    let long = format!("def dw_process(msg):\n    return 1{}", "+1".repeat(100_000));
    let nested = format!("X = {}1{}\ndef dw_process(msg):\n    return 1", "[".repeat(20_000), "]".repeat(20_000));
    // Long chains in templates recurse in the template parser as nesting does.
    let dashes = format!("{{{{ {}1 }}}}", "-".repeat(20_000));
    let sum = format!("{{{{ 1{} }}}}", "+1".repeat(10_000));
    let attrs = format!("{{{{ payload{} }}}}", ".a".repeat(16_000));
    let longest = format!("{{{{ {}1 }}}}", "-".repeat(65_000));
    // Some(accepted), or None: either, as long as the answer is a clear one.
    for (name, code, accepted) in [
        ("deep-parens", &deep, Some(true)),
        ("long-sum", &long, Some(false)),
        ("nested-list", &nested, Some(true)),
        ("dash-chain", &dashes, None),
        ("sum-chain", &sum, None),
        ("attr-chain", &attrs, None),
        ("longest-chain", &longest, None),
    ] {
        let doc = json!({"flows": [flow(name, code)]}).to_string();
        let (st, v) = http_send("POST", &format!("{url}/v1/apply"), "application/json", doc);
        assert!(st == 200 || st == 400, "{name}: {st} {v}");
        if let Some(accepted) = accepted {
            assert_eq!(st == 200, accepted, "{name}: {st} {v}");
        }
        if accepted == Some(false) {
            assert!(v.to_string().contains("more than the 64 KiB"), "{name}: {v}");
        }
        assert_eq!(http_get(&format!("{url}/healthz")).unwrap().0, 200, "{name}: the server lives");
    }
}

#[test]
fn variables_that_add_up_are_stopped_and_traces_stay_small() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("magpie.json");
    let fat = "def dw_process(msg):\n  return 'a' * 1000000";
    // The sixth step, the first to see more than 4 MiB, is a template the server renders itself
    // (a lookup): the message budget holds there too.
    let value = |i: usize| if i == 5 { "{{ payload.subject }}" } else { fat };
    let steps: Vec<Value> =
        (0..8).map(|i| json!({"set-variable": {"name": format!("v{i}"), "value": value(i)}})).collect();
    let doc = json!({"flows": [{"name": "fat", "steps": [{"try": {"steps": steps, "catch": [{"errors": ["FLOW:EXPRESSION"], "steps": [
            {"remove-variable": {"name": "v0"}},
            {"set-variable": {"name": "caught", "value": "{{ error.desc }}"}}]}]}}]}],
        "rules": [{"name": "fat-rule", "pattern": {"source": ["hostile"]}, "targets": [{"flow": "fat"}]}]});
    std::fs::write(&cfg, doc.to_string()).unwrap();
    let server = serve(dir.path(), Some(&cfg), "fat");
    let url = server.url();
    let id = put(&url, "fat");
    let run = ended_run(&url, &id, 30, || {});
    assert_eq!(run["status"], "done", "{run:#}");
    let caught = step(&run, "set-variable", "caught").unwrap_or_else(|| panic!("{run:#}"));
    let text = caught["detail"]["value"].as_str().unwrap();
    assert!(text.contains("more than the 4096 KiB an expression may be given"), "{text}");
    let failed = run["steps"].as_array().unwrap().iter().find(|s| s["status"] == "error").unwrap();
    assert_eq!(failed["path"], "steps[0].try.steps[5].set-variable", "{failed}");
    let trace_bytes = trace(&url, &id).to_string().len();
    assert!(trace_bytes < 256 << 10, "the trace keeps what the steps did, not every megabyte: {trace_bytes} bytes");
}

#[test]
fn a_job_the_process_keeps_dying_in_ends_as_poison() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("magpie.json");
    // Three slow steps: a run lasts about six seconds, long enough to be killed in.
    let slow_flow = json!({"name": "slow", "steps": (0..3).map(|i| json!({"try": {
        "steps": [{"set-variable": {"name": format!("v{i}"), "value": SLOW}}],
        "catch": [{"errors": ["ANY"], "steps": []}]}})).collect::<Vec<_>>()});
    let doc = json!({"flows": [slow_flow],
                     "rules": [{"name": "poison-rule", "pattern": {"source": ["hostile"]}, "targets": [{"flow": "slow"}]}]});
    std::fs::write(&cfg, doc.to_string()).unwrap();
    let mut server = serve(dir.path(), Some(&cfg), "poison-0");
    let id = put(&server.url(), "slow");
    for round in 1..=3 {
        let url = server.url();
        eventually(20, "the run to be in flight", || {
            let t = trace(&url, &id);
            (t["runs"].as_array()?.first()?["status"] == "running").then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
        server.kill();
        server = serve(dir.path(), None, &format!("poison-{round}"));
    }
    let url = server.url();
    let letters = eventually(10, "a FLOW:POISON dead letter", || {
        let v = get(&format!("{url}/v1/dead-letters"));
        let l = v["dead_letters"].as_array()?.clone();
        l.iter().any(|d| d["error_type"] == "FLOW:POISON").then_some(l)
    });
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["flow"], "slow");
    let t = trace(&url, &id);
    assert_eq!(t["runs"][0]["status"], "failed", "not handed out again: {t:#}");
    assert!(server.log_text().contains("FLOW:POISON"), "{}", server.log_text());
    // And the server serves.
    assert_eq!(http_get(&format!("{url}/healthz")).unwrap().0, 200);
}
