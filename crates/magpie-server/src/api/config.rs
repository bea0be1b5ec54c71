//! Buses, rules, flows, connections and whole documents.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use magpie_core::DEFAULT_BUS;
use magpie_core::config::{BusSpec, ConfigDocument, ConnectionSpec, RuleSpec};
use magpie_store::Kind;
use serde_json::{Value, json};

use super::{ApiResult, S, apply_doc, named_body};
use crate::AppState;
use crate::error::ApiError;
use crate::ingest;
use crate::runtime::{self, FlowWrite, redacted_connection, rule_key};

/// An error about the one object a `PUT /…/{name}` sent: its path is in that object's body
/// (`pattern.data.cpu`), not in the document the change is applied as (`rules[0].pattern…`).
fn one_object(mut e: ApiError, prefix: &str) -> ApiError {
    if let Some(p) = e.path.as_mut()
        && let Some(rest) = p.strip_prefix(prefix)
    {
        *p = rest.to_string();
        e.message = e.message.replacen(prefix, "", 1);
    }
    e
}

// ---- buses -------------------------------------------------------------------------------

pub(super) async fn list_buses(State(state): S) -> Json<Vec<BusSpec>> {
    Json(state.runtime.get().buses.values().cloned().collect())
}

pub(super) async fn get_bus(State(state): S, Path(bus): Path<String>) -> ApiResult {
    let rt = state.runtime.get();
    let b = rt.buses.get(&bus).ok_or_else(|| ApiError::not_found(format!("no bus {bus:?}")))?;
    let rules: Vec<&String> = rt.rules.get(&bus).map(|r| r.keys().collect()).unwrap_or_default();
    Ok(Json(json!({"name": b.name, "description": b.description, "rules": rules})).into_response())
}

pub(super) async fn create_bus(
    State(state): S,
    axum::Extension(who): super::Who,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let b: BusSpec =
        magpie_core::config::from_value(super::document(&headers, &bytes, true)?).map_err(ApiError::config)?;
    if state.runtime.get().buses.contains_key(&b.name) {
        return Err(ApiError::conflict(format!("bus {:?} already exists", b.name)));
    }
    apply_doc(&state, &who, ConfigDocument { buses: vec![b.clone()], ..Default::default() }, vec![])
        .await
        .map_err(|e| one_object(e, "buses[0]."))?;
    Ok((StatusCode::CREATED, Json(b)).into_response())
}

pub(super) async fn put_bus(
    State(state): S,
    axum::Extension(who): super::Who,
    Path(bus): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let b: BusSpec =
        magpie_core::config::from_value(named_body(&headers, &bytes, &[("name", &bus)])?).map_err(ApiError::config)?;
    apply_doc(&state, &who, ConfigDocument { buses: vec![b.clone()], ..Default::default() }, vec![])
        .await
        .map_err(|e| one_object(e, "buses[0]."))?;
    Ok(Json(b).into_response())
}

pub(super) async fn delete_bus(
    State(state): S,
    axum::Extension(who): super::Who,
    Path(bus): Path<String>,
) -> ApiResult {
    let rt = state.runtime.get();
    if bus == DEFAULT_BUS {
        return Err(ApiError::conflict("the default bus cannot be deleted"));
    }
    if !rt.buses.contains_key(&bus) {
        return Err(ApiError::not_found(format!("no bus {bus:?}")));
    }
    if rt.rules.get(&bus).is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::conflict(format!("bus {bus:?} still has rules; delete them first")));
    }
    apply_doc(&state, &who, ConfigDocument::default(), vec![(Kind::Bus, bus)]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- rules -------------------------------------------------------------------------------

pub(super) async fn list_rules(State(state): S, Path(bus): Path<String>) -> ApiResult {
    let rt = state.runtime.get();
    if !rt.buses.contains_key(&bus) {
        return Err(ApiError::not_found(format!("no bus {bus:?}")));
    }
    let rules: Vec<RuleSpec> = rt.rules.get(&bus).map(|r| r.values().cloned().collect()).unwrap_or_default();
    Ok(Json(rules).into_response())
}

pub(super) async fn get_rule(State(state): S, Path((bus, rule)): Path<(String, String)>) -> ApiResult {
    let rt = state.runtime.get();
    let r = rt
        .rules
        .get(&bus)
        .and_then(|m| m.get(&rule))
        .ok_or_else(|| ApiError::not_found(format!("no rule {rule:?} on bus {bus:?}")))?;
    Ok(Json(r.clone()).into_response())
}

pub(super) async fn put_rule(
    State(state): S,
    axum::Extension(who): super::Who,
    Path((bus, rule)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let r: RuleSpec = magpie_core::config::from_value(named_body(&headers, &bytes, &[("name", &rule), ("bus", &bus)])?)
        .map_err(ApiError::config)?;
    if !state.runtime.get().buses.contains_key(&bus) {
        return Err(ApiError::not_found(format!("no bus {bus:?}")));
    }
    apply_doc(&state, &who, ConfigDocument { rules: vec![r.clone()], ..Default::default() }, vec![])
        .await
        .map_err(|e| one_object(e, "rules[0]."))?;
    Ok(Json(r).into_response())
}

pub(super) async fn delete_rule(
    State(state): S,
    axum::Extension(who): super::Who,
    Path((bus, rule)): Path<(String, String)>,
) -> ApiResult {
    if !state.runtime.get().rules.get(&bus).is_some_and(|m| m.contains_key(&rule)) {
        return Err(ApiError::not_found(format!("no rule {rule:?} on bus {bus:?}")));
    }
    apply_doc(&state, &who, ConfigDocument::default(), vec![(Kind::Rule, rule_key(&bus, &rule))]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- connections -------------------------------------------------------------------------

pub(super) async fn list_connections(State(state): S) -> Json<Vec<Value>> {
    Json(state.runtime.get().connections.values().map(redacted_connection).collect())
}

pub(super) async fn get_connection(State(state): S, Path(name): Path<String>) -> ApiResult {
    let rt = state.runtime.get();
    let c = rt.connections.get(&name).ok_or_else(|| ApiError::not_found(format!("no connection {name:?}")))?;
    Ok(Json(redacted_connection(c)).into_response())
}

pub(super) async fn put_connection(
    State(state): S,
    axum::Extension(who): super::Who,
    Path(name): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let mut c: ConnectionSpec =
        magpie_core::config::from_value(named_body(&headers, &bytes, &[("name", &name)])?).map_err(ApiError::config)?;
    keep_redacted_secrets(&state, &mut c);
    apply_doc(&state, &who, ConfigDocument { connections: vec![c.clone()], ..Default::default() }, vec![])
        .await
        .map_err(|e| one_object(e, "connections[0]."))?;
    Ok(Json(redacted_connection(&c)).into_response())
}

/// A connection sent back as the API showed it (secrets masked) keeps its stored secrets.
fn keep_redacted_secrets(state: &AppState, c: &mut ConnectionSpec) {
    let rt = state.runtime.get();
    let Some(old) = rt.connections.get(&c.name) else { return };
    if c.secret.as_deref() == Some("<redacted>") {
        c.secret = old.secret.clone();
    }
    if c.webhook == magpie_connectors::redact_url(&old.webhook) {
        c.webhook = old.webhook.clone();
    }
}

pub(super) async fn delete_connection(
    State(state): S,
    axum::Extension(who): super::Who,
    Path(name): Path<String>,
) -> ApiResult {
    if !state.runtime.get().connections.contains_key(&name) {
        return Err(ApiError::not_found(format!("no connection {name:?}")));
    }
    // The flows whose steps send through it (their own check, with the connection gone).
    let users: Vec<String> = state
        .runtime
        .get()
        .flows
        .values()
        .filter_map(|(f, _)| f.validate("", &|c| c != name).err().map(|e| format!("flow {:?} ({})", f.name, e.path)))
        .collect();
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "connection {name:?} is still used by {}: change or delete it first",
            users.join(", ")
        )));
    }
    apply_doc(&state, &who, ConfigDocument::default(), vec![(Kind::Connection, name)]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- whole configuration -----------------------------------------------------------------

pub(super) async fn get_config(State(state): S) -> Json<Value> {
    let doc = state.runtime.get().document();
    let mut v = serde_json::to_value(&doc).unwrap_or(Value::Null);
    v["connections"] = Value::Array(doc.connections.iter().map(redacted_connection).collect());
    Json(v)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApplyQuery {
    /// Save flows as drafts instead of publishing them.
    #[serde(default)]
    draft: bool,
    /// Check and answer what would change; store nothing.
    #[serde(default)]
    dry_run: bool,
}

/// `POST /v1/apply[?draft=true][&dry_run=true]`: a whole document (YAML or JSON), in one transaction.
pub(super) async fn apply(
    State(state): S,
    axum::Extension(who): super::Who,
    q: Result<Query<ApplyQuery>, QueryRejection>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    // `magpie apply` sends YAML; JSON is read strictly like every other body. A body without a
    // type is YAML (JSON is YAML too).
    let value = if ingest::media_type(&headers).is_none() {
        let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
        magpie_core::config::parse_yaml(text).map_err(ApiError::config)?
    } else {
        super::document(&headers, &bytes, true)?
    };
    let mut doc: ConfigDocument = magpie_core::config::from_value(value).map_err(ApiError::config)?;
    for c in &mut doc.connections {
        keep_redacted_secrets(&state, c);
    }
    let mode = if q.draft { FlowWrite::Draft } else { FlowWrite::Publish };
    if q.dry_run {
        runtime::check(&state.runtime, state.store.as_ref(), doc.clone(), vec![], mode, state.env.as_ref()).await?;
        return Ok(Json(super::plan::plan(&state, &doc, mode).await?).into_response());
    }
    let counts = json!({
        "buses": doc.buses.len(), "connections": doc.connections.len(),
        "flows": doc.flows.len(), "rules": doc.rules.len(),
    });
    super::apply_doc_as(&state, &who, doc, vec![], mode).await?;
    Ok(Json(json!({"applied": counts, "flows_as": if q.draft { "drafts" } else { "published" }})).into_response())
}
