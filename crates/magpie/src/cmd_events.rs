//! `magpie events …` and `magpie apply`.

use std::io::Read;

use anyhow::{Context, anyhow};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, error_of};
use crate::{Exit, invalid, trace_view};

fn read_input(file: &str) -> Result<String, Exit> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading standard input").map_err(invalid)?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}")).map_err(invalid)
    }
}

/// The request body for a file of events: one event, `{"entries": …}`, an array, or JSON lines.
/// The events' text is sent as it is (never re-serialised), so the server reads them as the file
/// says — a duplicate key or a number no double holds refuses that entry there, and only it.
pub fn events_body(text: &str) -> Result<String, Exit> {
    let whole = match magpie_core::json::parse(text.as_bytes()) {
        Ok(_) => return Ok(text.to_string()),
        Err(e) => e,
    };
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        magpie_core::json::parse(line.as_bytes())
            .map_err(|e| invalid(anyhow!("not JSON ({whole}), nor JSON lines: line {}: {e}", i + 1)))?;
        lines.push(line.trim());
    }
    if lines.is_empty() {
        return Err(invalid(anyhow!("no events in the input")));
    }
    Ok(format!("{{\"entries\": [{}]}}", lines.join(",")))
}

fn print_results(answer: &Value) -> u8 {
    let entries = answer.get("entries").and_then(Value::as_array).cloned().unwrap_or_default();
    for e in &entries {
        match (e.get("id"), e.get("error_code")) {
            (Some(id), _) => {
                let dup = if e.get("duplicate").is_some() { " (duplicate id: already stored)" } else { "" };
                println!("accepted {}{dup}", id.as_str().unwrap_or_default());
            }
            (_, Some(code)) => {
                println!(
                    "refused  {}: {}",
                    code.as_str().unwrap_or_default(),
                    e["error_message"].as_str().unwrap_or_default()
                )
            }
            _ => {}
        }
    }
    let failed = answer.get("failed_count").and_then(Value::as_u64).unwrap_or(0);
    if failed > 0 { 1 } else { 0 }
}

/// `magpie events put`.
pub async fn put(client: &Client, bus: &str, file: &str) -> Result<u8, Exit> {
    let body = events_body(&read_input(file)?)?;
    let (status, answer) = client
        .call_raw(Method::POST, &format!("/v1/buses/{bus}/events"), Some(("application/json", body.into_bytes())))
        .await?;
    if answer.get("entries").is_some() {
        let code = print_results(&answer);
        return Ok(if status >= 400 { 2 } else { code });
    }
    Err(error_of(status, &answer))
}

/// `magpie events templates`.
pub fn templates(as_json: bool) -> Result<u8, Exit> {
    let all = magpie_core::templates::all();
    if as_json {
        let v: Vec<Value> = all
            .iter()
            .map(|t| json!({"name": t.name, "label": t.label, "description": t.description, "event": t.instantiate("<generated>", 0)}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    let width = all.iter().map(|t| t.name.len()).max().unwrap_or(0);
    for t in all {
        println!("{:width$}  {}  {}", t.name, t.label, t.description);
    }
    Ok(0)
}

/// `magpie events send-template`.
pub async fn send_template(client: &Client, name: &str, bus: &str) -> Result<u8, Exit> {
    let t = magpie_core::templates::find(name).ok_or_else(|| {
        let names: Vec<&str> = magpie_core::templates::all().iter().map(|t| t.name).collect();
        invalid(anyhow!("no template {name:?}; templates: {}", names.join(", ")))
    })?;
    let id = uuid::Uuid::new_v4().to_string();
    let event = t.instantiate(&id, magpie_core::now_ms());
    let answer = client
        .call(
            Method::POST,
            &format!("/v1/buses/{bus}/events"),
            Some(("application/json", event.to_string().into_bytes())),
        )
        .await?;
    let code = print_results(&answer);
    if code == 0 {
        println!("sent {} ({}) to bus {bus}; see: magpie events trace {id}", t.name, t.label);
    }
    Ok(code)
}

/// `magpie events trace`.
pub async fn trace(client: &Client, id: &str, as_json: bool) -> Result<u8, Exit> {
    let t = client.call(Method::GET, &format!("/v1/events/{id}/trace"), None).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&t).unwrap_or_default());
    } else {
        print!("{}", trace_view::render(&t));
    }
    Ok(0)
}
