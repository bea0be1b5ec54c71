//! A trace for people: the event, the rules it matched, each flow run with its steps and
//! delivery attempts.

use std::fmt::Write;

use serde_json::Value;

fn time(ms: &Value) -> String {
    match ms.as_i64() {
        Some(ms) if ms > 0 => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
            humantime::format_rfc3339_millis(t).to_string()
        }
        _ => "-".into(),
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn short(v: &Value, max: usize) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let one_line = text.replace('\n', "⏎");
    if one_line.chars().count() > max {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// Renders a trace answer of `GET /v1/events/{id}/trace`.
pub fn render(t: &Value) -> String {
    let mut out = String::new();
    let ev = &t["event"];
    let body = &ev["body"];
    let _ = writeln!(
        out,
        "event {}  {}  source {}  subject {}",
        s(&ev["id"]),
        s(&body["type"]),
        s(&body["source"]),
        short(&body["subject"], 60)
    );
    let matched: Vec<&str> =
        t["rules_matched"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let routing = if t["routed"].as_bool() == Some(true) {
        if matched.is_empty() {
            "routed, no rule matched".to_string()
        } else {
            format!("rules matched: {}", matched.join(", "))
        }
    } else {
        "not routed yet".to_string()
    };
    let _ = writeln!(out, "  bus {}  received {}  {routing}", s(&ev["bus"]), time(&ev["received_at"]));
    if let Some(by) = t["silenced_by"].as_str() {
        let _ = writeln!(out, "  silenced by {by}: routed, no flow told");
    }
    for a in t["alerts"].as_array().into_iter().flatten() {
        let what = match s(&a["outcome"]) {
            "told" => format!("told ({})", s(&a["notice"])),
            "deduplicated" => format!("deduplicated: already firing, last told {}", time(&a["last_told_at"])),
            "silenced" => format!("silenced by {}", s(&a["silence"])),
            other => other.to_string(),
        };
        let _ = writeln!(
            out,
            "  alert {} (rule {}): {what}, fired {} times",
            s(&a["key"]),
            s(&a["rule"]),
            a["fired_count"]
        );
    }
    for run in t["runs"].as_array().into_iter().flatten() {
        let mut status = s(&run["status"]).to_string();
        if status == "pending" && run["next_attempt_at"].is_number() {
            status = format!("pending, next attempt {}", time(&run["next_attempt_at"]));
        }
        if status == "parked" {
            status = "parked: waiting for delivery".into();
        }
        if status == "delivery_failed" {
            status = "done, but a message was not delivered (dead letter)".into();
        }
        let replay = match run["replay"].as_str() {
            Some(r) => format!("  (replay {r})"),
            None => String::new(),
        };
        let version = run["flow_version"].as_i64().map(|v| format!(" v{v}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "\nflow run #{}  rule {} → flow {}{version}  [{status}]  runs: {}{replay}",
            run["job_id"],
            s(&run["rule"]),
            s(&run["flow"]),
            run["runs"]
        );
        if let Some(e) = run["last_error"].as_str() {
            let _ = writeln!(out, "  last error: {e}");
        }
        if run["alert"].is_object() {
            let a = &run["alert"];
            let paired = if a["paired"] == false { ", unpaired" } else { "" };
            let _ = writeln!(
                out,
                "  alert {}: {}{paired}, fired {} times, duration {}s",
                s(&a["notice"]),
                s(&a["state"]),
                a["fired_count"],
                a["duration_s"]
            );
        }
        let attempts: Vec<&Value> = run["attempts"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        for step in run["steps"].as_array().into_iter().flatten() {
            let ord = step["ordinal"].as_u64().unwrap_or(0);
            let d = &step["detail"];
            let what = match s(&step["kind"]) {
                "set-variable" => format!("{} = {}", s(&d["name"]), short(&d["value"], 80)),
                "set-payload" => format!("payload = {}", short(&d["payload"], 80)),
                "logger" => format!("{} [{}] {}", s(&d["level"]), s(&d["category"]), short(&d["message"], 100)),
                "try" if s(&step["status"]) == "caught" => format!("caught {}", s(&d["error"]["code"])),
                "robot" if d["delivery"] == "delivered" => format!("delivered via {}", s(&d["connection"])),
                "robot" if d["delivery"] == "folded" => {
                    format!("folded into digest {} via {}", s(&d["digest_id"]), s(&d["connection"]))
                }
                _ if d.get("error").is_some() => {
                    format!("{}: {}", s(&d["error"]["code"]), short(&d["error"]["desc"], 120))
                }
                _ => String::new(),
            };
            let _ = writeln!(out, "  [{ord}] {:<40} {:<7} {what}", s(&step["path"]), s(&step["status"]));
            let first: Vec<&Value> = run["deliveries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["ordinal"].as_u64() == Some(ord) && d["generation"].as_u64() == Some(0))
                .map(|d| &d["message_id"])
                .collect();
            for a in attempts.iter().filter(|a| first.contains(&&a["message_id"])) {
                write_attempt(&mut out, a);
            }
        }
        // Messages whose step has not finished yet: queued in the outbox, or being retried.
        let recorded: Vec<u64> =
            run["steps"].as_array().into_iter().flatten().filter_map(|s| s["ordinal"].as_u64()).collect();
        for d in run["deliveries"].as_array().into_iter().flatten() {
            let ord = d["ordinal"].as_u64().unwrap_or(0);
            let later = d["generation"].as_u64().unwrap_or(0) > 0;
            if recorded.contains(&ord) && !later {
                continue;
            }
            let what = match s(&d["status"]) {
                "queued" | "sending" => {
                    format!("queued in the outbox of {} ({} failed attempts)", s(&d["connection"]), d["attempts"])
                }
                "folded" => format!("folded into digest {}", s(&d["digest_id"])),
                "delivered" => "delivered".to_string(),
                _ => format!("failed {}: {}", s(&d["error_type"]), short(&d["error"], 120)),
            };
            let redrive = if later { "  (redriven)" } else { "" };
            let _ = writeln!(out, "  [{ord}] {:<40} {what}{redrive}", s(&d["step"]));
            for a in attempts.iter().filter(|a| a["message_id"] == d["message_id"]) {
                write_attempt(&mut out, a);
            }
        }
        for l in run["dead_letters"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  dead letter #{} [{}] {} at {}: {}",
                l["id"],
                s(&l["status"]),
                s(&l["error_type"]),
                s(&l["step"]),
                short(&l["error"], 120)
            );
        }
    }
    if t["runs"].as_array().is_none_or(|r| r.is_empty()) {
        let _ = writeln!(out, "\nno flow runs");
    }
    out
}

fn write_attempt(out: &mut String, a: &Value) {
    let answer = match (a["status_code"].as_u64(), a["response"].as_str()) {
        (Some(code), Some(body)) => format!("HTTP {code} {}", short(&Value::String(body.to_string()), 160)),
        _ => "no answer".into(),
    };
    let outcome = match a["error_type"].as_str() {
        Some(t) => format!("{} {t}: {}", s(&a["outcome"]).replace('_', " "), short(&a["error"], 120)),
        None => s(&a["outcome"]).to_string(),
    };
    let folded = match a["folded"].as_u64() {
        Some(n) if n > 1 => format!(" digest {} of {n} messages", s(&a["send_id"])),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "      attempt {} → {} ({}){folded} {}  {answer}  {outcome}  {} ms",
        a["attempt"],
        s(&a["connection"]),
        s(&a["platform"]),
        s(&a["url"]),
        a["duration_ms"]
    );
}
