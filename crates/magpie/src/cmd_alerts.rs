//! `magpie alerts` and `magpie silence add|list|expire`.

use std::path::Path;

use anyhow::anyhow;
use reqwest::Method;
use serde_json::json;

use crate::client::Client;
use crate::cmd_letters::{s, time};
use crate::{Exit, invalid};

fn enc(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `magpie alerts [--state firing|resolved|all] [--bus B]`.
pub async fn list(client: &Client, state: &str, bus: Option<&str>, as_json: bool) -> Result<u8, Exit> {
    let mut q = format!("?limit=1000&state={}", enc(state));
    if let Some(b) = bus {
        q.push_str(&format!("&bus={}", enc(b)));
    }
    let v = client.call(Method::GET, &format!("/v1/alerts{q}"), None).await?;
    let alerts = v["alerts"].as_array().cloned().unwrap_or_default();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&alerts).unwrap_or_default());
        return Ok(0);
    }
    if alerts.is_empty() {
        println!("no {} alerts", if state == "all" { "" } else { state }.trim());
        return Ok(0);
    }
    println!(
        "{:<9} {:<20}  {:>6}  {:<20}  {:<20}  {:<16} key",
        "state", "first fired", "fired", "resolved", "last told", "rule"
    );
    for a in &alerts {
        let mut state = s(&a["state"]).to_string();
        if let Some(by) = a["silenced_by"].as_str() {
            state = format!("{state} (silenced by {by})");
        }
        println!(
            "{:<9} {:<20}  {:>6}  {:<20}  {:<20}  {:<16} {}",
            state,
            time(&a["first_fired_at"]),
            a["fired_count"],
            time(&a["resolved_at"]),
            time(&a["last_told_at"]),
            format!("{}/{}", s(&a["bus"]), s(&a["rule"])),
            s(&a["key"]),
        );
    }
    Ok(0)
}

/// What `magpie silence add` sends.
pub struct AddArgs<'a> {
    /// The pattern file.
    pub pattern: &'a Path,
    /// How long, from the start.
    pub duration: Option<String>,
    /// Until when.
    pub until: Option<String>,
    /// From when (default now).
    pub start: Option<String>,
    /// Why.
    pub comment: String,
    /// Only this bus.
    pub bus: Option<String>,
    /// Who.
    pub created_by: Option<String>,
}

/// `magpie silence add --pattern FILE --for 2h --comment "..."`.
pub async fn add(client: &Client, a: AddArgs<'_>) -> Result<u8, Exit> {
    let pattern = crate::cmd_pattern::read_json(a.pattern, "pattern")?;
    if a.duration.is_none() && a.until.is_none() {
        return Err(invalid(anyhow!("say how long: --for 2h or --until TIME")));
    }
    let created_by = a.created_by.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
    let mut body = json!({"pattern": pattern, "comment": a.comment, "created_by": created_by});
    for (k, v) in [("duration", a.duration), ("ends_at", a.until), ("starts_at", a.start), ("bus", a.bus)] {
        if let Some(v) = v {
            body[k] = json!(v);
        }
    }
    let v =
        client.call(Method::POST, "/v1/silences", Some(("application/json", body.to_string().into_bytes()))).await?;
    println!(
        "silence {} {} from {} until {}",
        s(&v["id"]),
        s(&v["status"]),
        time(&v["starts_at"]),
        time(&v["ends_at"])
    );
    Ok(0)
}

/// `magpie silence list [--all]`.
pub async fn list_silences(client: &Client, all: bool, as_json: bool) -> Result<u8, Exit> {
    let q = if all { "?all=true" } else { "" };
    let v = client.call(Method::GET, &format!("/v1/silences{q}"), None).await?;
    let list = v["silences"].as_array().cloned().unwrap_or_default();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&list).unwrap_or_default());
        return Ok(0);
    }
    if list.is_empty() {
        println!("no silences");
        return Ok(0);
    }
    println!("{:<34} {:<8} {:<20}  {:<20}  {:<12} comment / pattern", "id", "status", "starts", "ends", "by");
    for x in &list {
        println!(
            "{:<34} {:<8} {:<20}  {:<20}  {:<12} {}",
            s(&x["id"]),
            s(&x["status"]),
            time(&x["starts_at"]),
            time(&x["ends_at"]),
            s(&x["created_by"]),
            s(&x["comment"]),
        );
        println!("{:<34} {}", "", x["pattern"]);
    }
    Ok(0)
}

/// `magpie silence expire ID`.
pub async fn expire(client: &Client, id: &str) -> Result<u8, Exit> {
    let v = client.call(Method::DELETE, &format!("/v1/silences/{}", enc(id)), None).await?;
    println!(
        "silence {} expired at {}; alerts it kept quiet that still fire are told once",
        s(&v["id"]),
        time(&v["ends_at"])
    );
    Ok(0)
}
