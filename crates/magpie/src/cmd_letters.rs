//! `magpie dead-letters list|show|redrive`.

use std::time::Duration;

use anyhow::anyhow;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::Client;
use crate::{Exit, invalid};

/// Which letters.
#[derive(Default)]
pub struct Filter {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this connection.
    pub connection: Option<String>,
    /// Only this error type.
    pub error_type: Option<String>,
    /// Created since (duration back or time).
    pub since: Option<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.flow.is_none() && self.connection.is_none() && self.error_type.is_none() && self.since.is_none()
    }

    fn query(&self, extra: &[(&str, String)]) -> String {
        let enc = |v: &str| percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string();
        let mut q: Vec<String> = [
            ("flow", &self.flow),
            ("connection", &self.connection),
            ("error_type", &self.error_type),
            ("since", &self.since),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", enc(v))))
        .collect();
        q.extend(extra.iter().map(|(k, v)| format!("{k}={}", enc(v))));
        if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) }
    }
}

/// An epoch-ms value as an RFC 3339 time to the second, `-` when absent.
pub(crate) fn time(ms: &Value) -> String {
    match ms.as_i64() {
        Some(ms) if ms > 0 => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
        }
        _ => "-".into(),
    }
}

/// A string value, `-` when absent.
pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// `magpie dead-letters list`.
pub async fn list(client: &Client, f: Filter, redriven: bool, as_json: bool) -> Result<u8, Exit> {
    let mut extra = vec![("limit", "1000".to_string())];
    if redriven {
        extra.push(("all", "true".into()));
    }
    let v = client.call(Method::GET, &format!("/v1/dead-letters{}", f.query(&extra)), None).await?;
    let letters = v["dead_letters"].as_array().cloned().unwrap_or_default();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&letters).unwrap_or_default());
        return Ok(0);
    }
    if letters.is_empty() {
        println!("no dead letters");
        return Ok(0);
    }
    println!(
        "{:>6}  {:<20}  {:<16} {:<14} {:<22} {:<9} error",
        "id", "created", "flow", "connection", "error type", "status"
    );
    for l in &letters {
        let caught = if l["caught"] == true { "" } else { " (run stopped)" };
        println!(
            "{:>6}  {:<20}  {:<16} {:<14} {:<22} {:<9} {}{caught}  event {}",
            l["id"].as_i64().unwrap_or_default(),
            time(&l["created_at"]),
            s(&l["flow"]),
            s(&l["connection"]),
            s(&l["error_type"]),
            s(&l["status"]),
            s(&l["error"]).chars().take(80).collect::<String>(),
            s(&l["event_id"]),
        );
    }
    Ok(0)
}

/// `magpie dead-letters show ID`.
pub async fn show(client: &Client, id: i64, as_json: bool) -> Result<u8, Exit> {
    let l = client.call(Method::GET, &format!("/v1/dead-letters/{id}"), None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&l).unwrap_or_default());
        return Ok(0);
    }
    let print_one = |l: &Value, indent: &str| {
        println!("{indent}dead letter #{} [{}]  created {}", l["id"], s(&l["status"]), time(&l["created_at"]));
        println!(
            "{indent}  event {}  bus {}  rule {}  flow {}",
            s(&l["event_id"]),
            s(&l["bus"]),
            s(&l["rule"]),
            s(&l["flow"])
        );
        println!("{indent}  step {}  connection {}", s(&l["step"]), s(&l["connection"]));
        let handled =
            if l["caught"] == true { "the flow's catch handled it" } else { "no catch handled it: the run stopped" };
        println!("{indent}  {}: {}  ({handled})", s(&l["error_type"]), s(&l["error"]));
        for a in l["attempts"].as_array().into_iter().flatten() {
            let answer = match (a["status_code"].as_u64(), a["response"].as_str()) {
                (Some(c), Some(b)) => format!("HTTP {c} {}", b.chars().take(120).collect::<String>()),
                _ => "no answer".into(),
            };
            println!(
                "{indent}  attempt {}  {}  {}  {answer}  {} {}",
                a["attempt"],
                time(&a["started_at"]),
                s(&a["url"]),
                s(&a["outcome"]),
                a["error_type"].as_str().unwrap_or("")
            );
        }
    };
    print_one(&l, "");
    for h in l["history"].as_array().into_iter().flatten() {
        println!("\n  redriven from:");
        print_one(h, "  ");
    }
    if l["status"] == "open" {
        println!("\nredrive it: magpie dead-letters redrive {id}");
    }
    Ok(0)
}

/// `magpie dead-letters redrive`.
pub async fn redrive(client: &Client, ids: Vec<i64>, all: bool, f: Filter) -> Result<u8, Exit> {
    let body = match (ids.is_empty(), all, f.is_empty()) {
        (false, false, true) => json!({"ids": ids}),
        (true, true, true) => json!({"all": true}),
        (true, false, false) => {
            json!({"flow": f.flow, "connection": f.connection, "error_type": f.error_type, "since": f.since})
        }
        (true, false, true) => {
            return Err(invalid(anyhow!(
                "say which letters: IDS, --all, or a filter (--flow, --connection, --error-type, --since)"
            )));
        }
        _ => return Err(invalid(anyhow!("give IDS, --all, or a filter: one of them"))),
    };
    let mut body = body;
    if let Some(o) = body.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    let v = client
        .call(Method::POST, "/v1/dead-letters/redrive", Some(("application/json", body.to_string().into_bytes())))
        .await?;
    let redriven = v["redriven"].as_array().map(Vec::len).unwrap_or(0);
    let skipped: Vec<String> = v["skipped"].as_array().into_iter().flatten().map(|i| i.to_string()).collect();
    println!("redriven {redriven} dead letter(s): their messages are queued again and stopped runs resume");
    if !skipped.is_empty() {
        println!("not redriven (unknown or already redriven): {}", skipped.join(", "));
        return Ok(1);
    }
    Ok(0)
}
