//! `magpie buses|rules|flows|connections list|get|delete` and `magpie apply`.
//!
//! Lists are tables on a terminal and JSON otherwise (or with `--json`); `get` prints the object
//! as YAML on a terminal (ready to edit and apply), JSON otherwise.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, anyhow};
use reqwest::Method;
use serde_json::Value;

use crate::client::Client;
use crate::cmd_letters::{s, time};
use crate::{Exit, invalid};

/// The kinds of configuration object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Event buses (事件集).
    Buses,
    /// Rules of a bus (事件规则).
    Rules,
    /// Flows (集成流).
    Flows,
    /// Connections (robots and their secrets).
    Connections,
}

/// What an objects command does.
pub enum Verb {
    /// Every object of the kind.
    List,
    /// One object.
    Get(String),
    /// Delete one object.
    Delete(String),
}

fn enc(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn path(kind: Kind, bus: &str, name: Option<&str>) -> String {
    let base = match kind {
        Kind::Buses => "/v1/buses".to_string(),
        Kind::Rules => format!("/v1/buses/{}/rules", enc(bus)),
        Kind::Flows => "/v1/flows".to_string(),
        Kind::Connections => "/v1/connections".to_string(),
    };
    match name {
        Some(n) => format!("{base}/{}", enc(n)),
        None => base,
    }
}

fn singular(kind: Kind) -> &'static str {
    match kind {
        Kind::Buses => "bus",
        Kind::Rules => "rule",
        Kind::Flows => "flow",
        Kind::Connections => "connection",
    }
}

/// Whether to print JSON: asked for, or the output is not a terminal.
pub(crate) fn json_out(as_json: bool) -> bool {
    as_json || !std::io::stdout().is_terminal()
}

/// Runs an objects command. `bus` is the rules' bus.
pub async fn run(client: &Client, kind: Kind, verb: Verb, bus: &str, as_json: bool) -> Result<u8, Exit> {
    match verb {
        Verb::List => list(client, kind, bus, as_json).await,
        Verb::Get(name) => {
            let v = client.call(Method::GET, &path(kind, bus, Some(&name)), None).await?;
            if json_out(as_json) {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", magpie_core::config::to_yaml(&v));
            }
            Ok(0)
        }
        Verb::Delete(name) => {
            client.call(Method::DELETE, &path(kind, bus, Some(&name)), None).await?;
            match kind {
                Kind::Rules => println!("deleted rule {name} of bus {bus}"),
                _ => println!("deleted {} {name}", singular(kind)),
            }
            Ok(0)
        }
    }
}

async fn list(client: &Client, kind: Kind, bus: &str, as_json: bool) -> Result<u8, Exit> {
    let items = client.call(Method::GET, &path(kind, bus, None), None).await?;
    let mut items = items.as_array().cloned().unwrap_or_default();
    let heads = if kind == Kind::Flows {
        let h = client.call(Method::GET, "/v1/flow-versions", None).await?;
        h.as_array().cloned().unwrap_or_default()
    } else {
        Vec::new()
    };
    if kind == Kind::Flows {
        // Flows saved only as drafts are flows too.
        for h in &heads {
            if h["live"].is_null() && !items.iter().any(|f| f["name"] == h["name"]) {
                items.push(serde_json::json!({"name": h["name"], "steps": []}));
            }
        }
    }
    if json_out(as_json) {
        if kind == Kind::Flows {
            for f in &mut items {
                if let Some(h) = heads.iter().find(|h| h["name"] == f["name"]) {
                    f["versions"] = serde_json::json!({"live": h["live"], "draft": h["draft"]});
                }
            }
        }
        println!("{}", serde_json::to_string_pretty(&items).unwrap_or_default());
        return Ok(0);
    }
    if items.is_empty() {
        match kind {
            Kind::Rules => println!("no rules on bus {bus}"),
            _ => println!(
                "no {}",
                match kind {
                    Kind::Buses => "buses",
                    Kind::Flows => "flows",
                    _ => "connections",
                }
            ),
        }
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = match kind {
        Kind::Buses => {
            let mut rows = vec![vec!["NAME".into(), "DESCRIPTION".into()]];
            rows.extend(items.iter().map(|b| vec![s(&b["name"]).into(), s(&b["description"]).into()]));
            rows
        }
        Kind::Rules => {
            let mut rows = vec![vec!["NAME".into(), "ENABLED".into(), "TARGETS".into(), "PATTERN".into()]];
            rows.extend(items.iter().map(|r| {
                let targets: Vec<&str> =
                    r["targets"].as_array().map(|t| t.iter().map(|t| s(&t["flow"])).collect()).unwrap_or_default();
                let mut pattern = r["pattern"].to_string();
                if pattern.chars().count() > 60 {
                    pattern = pattern.chars().take(57).collect::<String>() + "...";
                }
                vec![s(&r["name"]).into(), r["enabled"].to_string(), targets.join(","), pattern]
            }));
            rows
        }
        Kind::Flows => {
            let mut rows = vec![vec![
                "NAME".into(),
                "LIVE".into(),
                "DRAFT".into(),
                "TRIGGER".into(),
                "STEPS".into(),
                "SAVED".into(),
            ]];
            rows.extend(items.iter().map(|f| {
                let h = heads.iter().find(|h| h["name"] == f["name"]).cloned().unwrap_or(Value::Null);
                let v = |x: &Value| x.as_i64().map_or("-".to_string(), |n| format!("v{n}"));
                let trigger = match f["trigger"]["path"].as_str() {
                    Some(p) => format!("POST /hooks/{p}"),
                    None if h["live"].is_null() => "(draft)".into(),
                    None => "rules".into(),
                };
                let steps = f["steps"].as_array().map_or(0, Vec::len);
                vec![
                    s(&f["name"]).into(),
                    v(&h["live"]),
                    v(&h["draft"]),
                    trigger,
                    steps.to_string(),
                    time(&h["updated_at"]),
                ]
            }));
            rows
        }
        Kind::Connections => {
            let mut rows = vec![vec!["NAME".into(), "PLATFORM".into(), "WEBHOOK".into(), "SECRET".into()]];
            rows.extend(items.iter().map(|c| {
                let secret = if c["secret"].is_null() { "-" } else { s(&c["secret"]) };
                vec![s(&c["name"]).into(), s(&c["platform"]).into(), s(&c["webhook"]).into(), secret.into()]
            }));
            rows
        }
    };
    print_table(&rows);
    Ok(0)
}

/// Prints rows as aligned columns (the first row is the header).
pub fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

/// `magpie apply -f FILE [--draft] [--dry-run]`.
pub async fn apply(client: &Client, file: &Path, draft: bool, dry_run: bool) -> Result<u8, Exit> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display())).map_err(invalid)?;
    // Check locally first, so a mistake is named with its path before anything is sent.
    let mut doc =
        magpie_core::ConfigDocument::from_yaml(&text).map_err(|e| invalid(anyhow!("{}: {e}", file.display())))?;
    // Server settings are read by `magpie serve` at start; the API refuses them.
    let (media, text) = if doc.auth.is_some() || doc.outbound.is_some() {
        let left: Vec<&str> = [("auth", doc.auth.take().is_some()), ("outbound", doc.outbound.take().is_some())]
            .into_iter()
            .filter_map(|(k, had)| had.then_some(k))
            .collect();
        eprintln!(
            "note: {} of {}: server settings, read by `magpie serve --config` at start; not applied",
            left.join(" and "),
            file.display()
        );
        ("application/json", serde_json::to_string(&doc).map_err(|e| anyhow!(e))?)
    } else {
        ("application/yaml", text)
    };
    let mut q = Vec::new();
    if draft {
        q.push("draft=true");
    }
    if dry_run {
        q.push("dry_run=true");
    }
    let route = if q.is_empty() { "/v1/apply".to_string() } else { format!("/v1/apply?{}", q.join("&")) };
    let answer = client.call(Method::POST, &route, Some((media, text.into_bytes()))).await?;
    if dry_run {
        let list = |k: &str| -> Vec<String> {
            answer[k].as_array().map(|a| a.iter().map(|x| s(x).to_string()).collect()).unwrap_or_default()
        };
        let (created, changed, unchanged) = (list("created"), list("changed"), list("unchanged"));
        print!("{}", s(&answer["diff"]));
        println!(
            "dry run of {}: {} to create, {} to change, {} unchanged; nothing was applied",
            file.display(),
            created.len(),
            changed.len(),
            unchanged.len()
        );
        for (label, items) in [("create", &created), ("change", &changed), ("unchanged", &unchanged)] {
            for i in items {
                println!("  {label:<9} {i}");
            }
        }
        return Ok(0);
    }
    let a = &answer["applied"];
    println!(
        "applied {}: {} buses, {} connections, {} flows{}, {} rules",
        file.display(),
        a["buses"],
        a["connections"],
        a["flows"],
        if draft { " (saved as drafts: magpie flow publish NAME)" } else { "" },
        a["rules"]
    );
    Ok(0)
}
