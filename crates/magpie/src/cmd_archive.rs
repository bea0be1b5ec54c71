//! `magpie events list|replay|storm`: the archive, replays, and a storm to watch folding.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::Client;
use crate::{Exit, invalid};

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref().map(|v| {
                format!("{k}={}", percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC))
            })
        })
        .collect();
    if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) }
}

fn time(ms: &Value) -> String {
    match ms.as_i64() {
        Some(ms) if ms > 0 => {
            humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
        }
        _ => "-".into(),
    }
}

fn first_line(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Array(ps) => ps
            .iter()
            .flat_map(|p| p.as_array().into_iter().flatten())
            .filter_map(|n| n["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string();
    if line.chars().count() > 100 { format!("{}…", line.chars().take(100).collect::<String>()) } else { line }
}

/// Filters of `magpie events list`.
pub struct ListArgs {
    /// Bus.
    pub bus: Option<String>,
    /// Since (duration or time).
    pub since: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// Subject.
    pub subject: Option<String>,
    /// Most events.
    pub limit: usize,
    /// JSON lines.
    pub json: bool,
}

/// `magpie events list`.
pub async fn list(client: &Client, a: ListArgs) -> Result<u8, Exit> {
    if a.limit == 0 {
        return Err(invalid(anyhow!("--limit: at least 1")));
    }
    let mut cursor: Option<i64> = None;
    let mut shown = 0;
    let mut more = false;
    while shown < a.limit {
        let page = (a.limit - shown).min(1_000);
        let path = format!(
            "/v1/events{}",
            query(&[
                ("bus", a.bus.clone()),
                ("since", a.since.clone()),
                ("type", a.event_type.clone()),
                ("subject", a.subject.clone()),
                ("limit", Some(page.to_string())),
                ("cursor", cursor.map(|c| c.to_string())),
            ])
        );
        let v = client.call(Method::GET, &path, None).await?;
        let events = v["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            if a.json {
                println!("{}", e);
            } else {
                let b = &e["body"];
                println!(
                    "{}  {:<8} {:<38} {:<36} {}",
                    time(&e["received_at"]),
                    e["bus"].as_str().unwrap_or(""),
                    e["id"].as_str().unwrap_or(""),
                    b["type"].as_str().unwrap_or("-"),
                    b["subject"].as_str().unwrap_or("-")
                );
            }
        }
        shown += events.len();
        match v["next_cursor"].as_i64() {
            Some(c) if !events.is_empty() => {
                cursor = Some(c);
                more = true;
            }
            _ => {
                more = false;
                break;
            }
        }
    }
    if shown == 0 && !a.json {
        eprintln!("no events");
    }
    if more && shown >= a.limit {
        eprintln!("(the first {shown}: there may be more; raise --limit or narrow with --since, --type, --subject)");
    }
    Ok(0)
}

/// Arguments of `magpie events replay`.
pub struct ReplayArgs {
    /// Bus.
    pub bus: String,
    /// Since (duration back or time).
    pub since: Option<String>,
    /// From.
    pub from: Option<String>,
    /// To.
    pub to: Option<String>,
    /// Only this rule.
    pub rule: Option<String>,
    /// Send nothing.
    pub dry_run: bool,
}

/// `magpie events replay`.
pub async fn replay(client: &Client, a: ReplayArgs) -> Result<u8, Exit> {
    let mut body = json!({"bus": a.bus, "dry_run": a.dry_run});
    match (&a.since, &a.from, &a.to) {
        (Some(s), None, None) => body["since"] = json!(s),
        (None, Some(f), Some(t)) => {
            body["from"] = json!(f);
            body["to"] = json!(t);
        }
        _ => return Err(invalid(anyhow!("give --since DURATION, or --from TIME --to TIME"))),
    }
    if let Some(r) = &a.rule {
        body["rule"] = json!(r);
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos}/{len} events [{bar:30}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b
    });
    let (mut events, mut matched, mut jobs, mut runs, mut messages) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut replay_id: String;
    loop {
        let page = client
            .call(Method::POST, "/v1/events/replay", Some(("application/json", body.to_string().into_bytes())))
            .await?;
        if let (Some(b), Some(total)) = (&bar, page["total"].as_u64()) {
            b.set_length(total);
        }
        replay_id = page["replay_id"].as_str().unwrap_or_default().to_string();
        events += page["events"].as_u64().unwrap_or(0);
        matched += page["matched"].as_u64().unwrap_or(0);
        jobs += page["jobs"].as_u64().unwrap_or(0);
        runs += page["runs"].as_u64().unwrap_or(0);
        for w in page["would_send"].as_array().into_iter().flatten() {
            messages += 1;
            let line = format!(
                "would send  event {}  rule {} → flow {} → {}: {}",
                w["event_id"].as_str().unwrap_or(""),
                w["rule"].as_str().unwrap_or(""),
                w["flow"].as_str().unwrap_or(""),
                w["connection"].as_str().unwrap_or(""),
                first_line(&w["message"]["content"])
            );
            match &bar {
                Some(b) => b.println(line),
                None => println!("{line}"),
            }
        }
        for f in page["would_fail"].as_array().into_iter().flatten() {
            let line = format!(
                "would fail  event {}  flow {}: {}",
                f["event_id"].as_str().unwrap_or(""),
                f["flow"].as_str().unwrap_or(""),
                f["error"]["code"].as_str().unwrap_or("")
            );
            match &bar {
                Some(b) => b.println(line),
                None => println!("{line}"),
            }
        }
        if let Some(b) = &bar {
            b.set_position(events);
            b.set_message(format!("{matched} matched"));
        }
        match page["next_cursor"].as_i64() {
            Some(c) => {
                body["cursor"] = json!(c);
                body["replay_id"] = json!(replay_id);
                body["from"] = page["from"].clone();
                body["to"] = page["to"].clone();
                if let Some(o) = body.as_object_mut() {
                    o.remove("since");
                }
            }
            None => break,
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if a.dry_run {
        println!(
            "dry run {replay_id}: {events} events, {matched} matched, {runs} flow runs would send {messages} messages; nothing was sent"
        );
    } else {
        println!(
            "replay {replay_id}: {events} events, {matched} matched, {jobs} flow runs started (marked as replays in traces)"
        );
    }
    Ok(0)
}

/// Arguments of `magpie events storm`.
pub struct StormArgs {
    /// How many events.
    pub count: usize,
    /// The template.
    pub template: String,
    /// Bus.
    pub bus: String,
    /// Do not watch the outboxes drain.
    pub no_watch: bool,
}

/// `magpie events storm`: many alerts at once (300 servers rebooting), then the outboxes as they
/// drain — digests folding the storm, within each robot's limit.
pub async fn storm(client: &Client, a: StormArgs) -> Result<u8, Exit> {
    if a.count == 0 || a.count > 100_000 {
        return Err(invalid(anyhow!("--count: between 1 and 100000")));
    }
    let t = magpie_core::templates::find(&a.template)
        .ok_or_else(|| invalid(anyhow!("no template {:?}; see `magpie events templates`", a.template)))?;
    let started = Instant::now();
    let now = magpie_core::now_ms();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut sent = 0;
    for chunk in (0..a.count).collect::<Vec<_>>().chunks(100) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|i| {
                let mut e = t.instantiate(&format!("storm-{}-{i:05}", &run[..8]), now);
                e["subject"] = json!(format!("ins-storm{i:05}"));
                e
            })
            .collect();
        let body = json!({"entries": entries}).to_string().into_bytes();
        let v =
            client.call(Method::POST, &format!("/v1/buses/{}/events", a.bus), Some(("application/json", body))).await?;
        sent += chunk.len() - v["failed_count"].as_u64().unwrap_or(0) as usize;
    }
    println!("sent {sent} × {} ({}) to bus {} in {:.1?}", t.name, t.label, a.bus, started.elapsed());
    if a.no_watch {
        return Ok(0);
    }
    let conns = client.call(Method::GET, "/v1/connections", None).await?;
    let names: Vec<String> =
        conns.as_array().into_iter().flatten().filter_map(|c| c["name"].as_str().map(str::to_string)).collect();
    println!("watching the outboxes (Ctrl-C to stop):");
    let deadline = Instant::now() + Duration::from_secs(15 * 60);
    let mut quiet = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut parts = Vec::new();
        let mut waiting = 0;
        for n in &names {
            let o = client.call(Method::GET, &format!("/v1/connections/{n}/outbox"), None).await?;
            let depth = o["depth"].as_u64().unwrap_or(0);
            waiting += depth;
            let paused = if o["paused_until"].is_number() { " PAUSED" } else { "" };
            parts.push(format!(
                "{n}: {depth} waiting, {} sent ({} digests folding {}){paused}",
                o["sent"], o["digests"], o["folded"]
            ));
        }
        println!("  t+{:>3}s  {}", started.elapsed().as_secs(), parts.join(" | "));
        quiet = if waiting == 0 { quiet + 1 } else { 0 };
        if quiet >= 2 {
            println!(
                "every outbox is empty: the storm is told. See the robots' messages (GET /_sim/messages with --demo)"
            );
            return Ok(0);
        }
    }
    Ok(0)
}
