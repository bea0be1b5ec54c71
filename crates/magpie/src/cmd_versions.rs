//! `magpie flow publish|diff|rollback|versions`: a flow's drafts and published versions.

use reqwest::Method;
use serde_json::json;

use crate::Exit;
use crate::client::Client;
use crate::cmd_letters::{s, time};

fn enc(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn said(v: &serde_json::Value) -> String {
    v.as_i64().map_or("none".into(), |n| format!("v{n}"))
}

/// `magpie flow publish NAME [--version N]`: the draft (or version N) becomes live.
pub async fn publish(client: &Client, name: &str, version: Option<i64>) -> Result<u8, Exit> {
    let body = match version {
        Some(v) => json!({"version": v}),
        None => json!({}),
    };
    let route = format!("/v1/flows/{}/publish", enc(name));
    let v = client.call(Method::POST, &route, Some(("application/json", body.to_string().into_bytes()))).await?;
    println!(
        "flow {name}: {} is live (rules start it from now on; runs already started finish on theirs)",
        said(&v["live"])
    );
    Ok(0)
}

/// `magpie flow rollback NAME --to N`: an earlier version becomes live again.
pub async fn rollback(client: &Client, name: &str, to: i64) -> Result<u8, Exit> {
    let route = format!("/v1/flows/{}/rollback", enc(name));
    let body = json!({"version": to}).to_string().into_bytes();
    let v = client.call(Method::POST, &route, Some(("application/json", body))).await?;
    println!("flow {name}: rolled back, {} is live", said(&v["live"]));
    if let Some(d) = v["draft"].as_i64() {
        println!("its draft v{d} is kept");
    }
    Ok(0)
}

/// `magpie flow diff NAME [--from live] [--to draft]`: exit 0 when equal, 1 when they differ.
pub async fn diff(client: &Client, name: &str, from: &str, to: &str) -> Result<u8, Exit> {
    let route = format!("/v1/flows/{}/diff?from={}&to={}", enc(name), enc(from), enc(to));
    let (status, v) = client.call_raw(Method::GET, &route, None).await?;
    let message = v["error"]["message"].as_str().unwrap_or_default();
    if status == 404 && to == "draft" && message.ends_with("has no draft") {
        println!("flow {name} has no draft: nothing differs from the live version");
        return Ok(0);
    }
    if !(200..300).contains(&status) {
        return Err(crate::client::error_of(status, &v));
    }
    if v["changed"] == json!(true) {
        print!("{}", s(&v["diff"]));
        Ok(1)
    } else {
        println!("flow {name}: v{} and v{} are the same", v["from"], v["to"]);
        Ok(0)
    }
}

/// `magpie flow versions NAME [--json]`: a table on a terminal, JSON otherwise.
pub async fn versions(client: &Client, name: &str, as_json: bool) -> Result<u8, Exit> {
    let v = client.call(Method::GET, &format!("/v1/flows/{}/versions", enc(name)), None).await?;
    if crate::cmd_objects::json_out(as_json) {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    let mut rows = vec![vec!["VERSION".into(), "STATE".into(), "SAVED".into(), "PUBLISHED".into()]];
    for x in v["versions"].as_array().cloned().unwrap_or_default() {
        let state = if x["live"] == json!(true) {
            "live"
        } else if x["draft"] == json!(true) {
            "draft"
        } else {
            "earlier"
        };
        rows.push(vec![format!("v{}", x["version"]), state.into(), time(&x["saved_at"]), time(&x["published_at"])]);
    }
    crate::cmd_objects::print_table(&rows);
    Ok(0)
}
