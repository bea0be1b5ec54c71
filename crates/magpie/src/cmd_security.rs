//! `magpie token create|list|revoke`, `magpie secrets rotate` and `magpie audit`.

use std::path::Path;

use anyhow::{Context, anyhow};
use magpie_core::auth::{Role, hash_token, new_token};
use magpie_store::{ConfigChange, Kind, NewAudit, SqliteStore, Store};
use reqwest::Method;
use serde_json::json;

use crate::client::Client;
use crate::cmd_letters::{s, time};
use crate::{Exit, invalid};

fn role_of(role: &str) -> Result<Role, Exit> {
    Role::parse(role).ok_or_else(|| invalid(anyhow!("--role {role:?}: one of admin, operator, ingest, viewer")))
}

/// `magpie token create NAME --role ROLE`: a new token, printed once, and the entry for
/// `magpie.yaml`'s `auth.tokens` (only its hash). With `--on-server`, the server creates and keeps it.
pub async fn create(client: Option<&Client>, name: &str, role: &str) -> Result<u8, Exit> {
    let role = role_of(role)?;
    magpie_core::names::check_name(name).map_err(|r| invalid(anyhow!("NAME: {r}")))?;
    let Some(client) = client else {
        let token = new_token().map_err(|e| anyhow!(e))?;
        println!("{token}");
        eprintln!(
            "\nThe token above is shown this once; give it to its holder. Add its hash to magpie.yaml:\n\nauth:\n  tokens:\n    - name: {name}\n      role: {role}\n      hash: {}\n",
            hash_token(&token)
        );
        return Ok(0);
    };
    let v = client
        .call(
            Method::POST,
            "/v1/tokens",
            Some(("application/json", json!({"name": name, "role": role}).to_string().into_bytes())),
        )
        .await?;
    println!("{}", s(&v["token"]));
    eprintln!("\ntoken {name:?} ({role}) created on the server; the token above is shown this once");
    Ok(0)
}

/// `magpie token list`.
pub async fn list(client: &Client, as_json: bool) -> Result<u8, Exit> {
    let v = client.call(Method::GET, "/v1/tokens", None).await?;
    let tokens = v.as_array().cloned().unwrap_or_default();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&tokens).unwrap_or_default());
        return Ok(0);
    }
    println!("{:<24} {:<9} {:<12} {:<20} created by", "name", "role", "source", "created");
    for t in &tokens {
        println!(
            "{:<24} {:<9} {:<12} {:<20} {}",
            s(&t["name"]),
            s(&t["role"]),
            s(&t["source"]),
            time(&t["created_at"]),
            s(&t["created_by"])
        );
    }
    Ok(0)
}

/// `magpie token revoke NAME`.
pub async fn revoke(client: &Client, name: &str) -> Result<u8, Exit> {
    let path =
        format!("/v1/tokens/{}", percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC));
    client.call(Method::DELETE, &path, None).await?;
    eprintln!("token {name:?} revoked");
    Ok(0)
}

/// `magpie secrets rotate --data-dir DIR`: re-seals every connection's secrets under a new key,
/// with the server stopped (it holds the data directory).
pub async fn rotate(data_dir: &Path) -> Result<u8, Exit> {
    let db = data_dir.join("magpie.db");
    if !db.exists() {
        return Err(invalid(anyhow!("{}: no Magpie database here", db.display())));
    }
    let store = SqliteStore::open(&db)
        .with_context(|| format!("opening {} (stop the server first: it holds the data directory)", db.display()))?;
    let env_key = std::env::var("MAGPIE_SECRET_KEY").ok().filter(|k| !k.is_empty());
    let new_env_key = std::env::var("MAGPIE_NEW_SECRET_KEY").ok().filter(|k| !k.is_empty());
    let rotation = magpie_server::secrets::rotate(data_dir, env_key.as_deref(), new_env_key.as_deref())
        .map_err(|e| invalid(anyhow!("{e}")))?;
    let stored = store.list_objects(Kind::Connection).await?;
    let mut changes = Vec::new();
    for (name, mut body) in stored {
        rotation.sealer.unseal_connection(&name, &mut body).map_err(|e| anyhow!("{e}"))?;
        rotation.sealer.seal_connection(&name, &mut body).map_err(|e| anyhow!("{e}"))?;
        changes.push(ConfigChange::Put { kind: Kind::Connection, key: name, body });
    }
    let n = changes.len();
    let who = std::env::var("USER").unwrap_or_else(|_| "magpie secrets rotate".into());
    changes.push(ConfigChange::Audit(NewAudit {
        who,
        action: "rotate".into(),
        target: "secrets".into(),
        before: None,
        after: Some(json!({"connections": n})),
    }));
    store.apply_config(changes).await?;
    rotation.finish(data_dir).map_err(|e| anyhow!("{e}"))?;
    if env_key.is_some() {
        eprintln!("{n} connection(s) re-sealed: start the server with MAGPIE_SECRET_KEY set to the new key");
    } else {
        eprintln!("{n} connection(s) re-sealed under a new key ({})", data_dir.join("secret.key").display());
    }
    Ok(0)
}

/// `magpie audit [--who NAME] [--target PREFIX] [--limit N] [--json]`.
pub async fn audit(
    client: &Client,
    who: Option<&str>,
    target: Option<&str>,
    limit: usize,
    as_json: bool,
) -> Result<u8, Exit> {
    let enc = |v: &str| percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string();
    let mut q = format!("?limit={limit}");
    if let Some(w) = who {
        q.push_str(&format!("&who={}", enc(w)));
    }
    if let Some(t) = target {
        q.push_str(&format!("&target={}", enc(t)));
    }
    let v = client.call(Method::GET, &format!("/v1/audit{q}"), None).await?;
    let entries = v["entries"].as_array().cloned().unwrap_or_default();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&entries).unwrap_or_default());
        return Ok(0);
    }
    if entries.is_empty() {
        println!("no audit entries");
        return Ok(0);
    }
    println!("{:<20}  {:<16} {:<8} target", "when", "who", "action");
    for e in &entries {
        println!("{:<20}  {:<16} {:<8} {}", time(&e["at"]), s(&e["who"]), s(&e["action"]), s(&e["target"]));
    }
    Ok(0)
}
