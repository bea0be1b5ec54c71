//! HTTP routes (the stable contract in DESIGN.md).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use magpie_core::config::{BusSpec, ConfigDocument, ConnectionSpec, FlowSpec, RuleSpec};
use magpie_core::{ConfigError, DEFAULT_BUS, Event};
use magpie_pattern::Pattern;
use magpie_store::{Appended, Kind, NewEvent};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::runtime::{self, redacted_connection, rule_key};
use crate::{AppState, Metrics, ingest};

type S = State<Arc<AppState>>;
type ApiResult = Result<Response, ApiError>;

/// Largest request body: a batch of events or a configuration document.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The HTTP API.
pub fn app(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/buses", get(list_buses).post(create_bus))
        .route("/v1/buses/{bus}", get(get_bus).put(put_bus).delete(delete_bus))
        .route("/v1/buses/{bus}/events", post(put_events))
        .route("/v1/buses/{bus}/rules", get(list_rules))
        .route("/v1/buses/{bus}/rules/{rule}", get(get_rule).put(put_rule).delete(delete_rule))
        .route("/v1/flows", get(list_flows))
        .route("/v1/flows/{flow}", get(get_flow).put(put_flow).delete(delete_flow))
        .route("/v1/connections", get(list_connections))
        .route("/v1/connections/{name}", get(get_connection).put(put_connection).delete(delete_connection))
        .route("/v1/config", get(get_config))
        .route("/v1/apply", post(apply))
        .route("/v1/patterns/test", post(test_pattern))
        .route("/v1/events/{id}/trace", get(trace))
        .route("/v1/templates", get(templates))
        .route("/hooks/{*path}", post(hook))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(api)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn auth(State(state): S, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| magpie_connectors::signing::constant_time_eq(g.trim(), token)) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

async fn readyz(State(state): S) -> Response {
    match state.store.next_due().await {
        Ok(_) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn metrics(State(state): S) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// Parses a JSON body into `T`, naming the faulty field.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    magpie_core::config::from_value(v).map_err(ApiError::config)
}

/// A body for `PUT /…/{name}`: the name may be omitted, and must match the path if given.
fn named_body(bytes: &[u8], fields: &[(&str, &str)]) -> Result<Value, ApiError> {
    let mut v: Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let Some(obj) = v.as_object_mut() else { return Err(ApiError::bad_request("the body must be a JSON object")) };
    for (field, want) in fields {
        match obj.get(*field) {
            None => {
                obj.insert(field.to_string(), json!(want));
            }
            Some(Value::String(s)) if s == want => {}
            Some(other) => {
                return Err(ApiError::config(ConfigError::new(
                    *field,
                    format!("{other} does not match the path's {want:?}"),
                )));
            }
        }
    }
    Ok(v)
}

async fn apply_doc(state: &AppState, doc: ConfigDocument, deletes: Vec<(Kind, String)>) -> Result<(), ApiError> {
    runtime::apply(&state.runtime, state.store.as_ref(), doc, deletes, state.env.as_ref()).await
}

// ---- buses -------------------------------------------------------------------------------

async fn list_buses(State(state): S) -> Json<Vec<BusSpec>> {
    Json(state.runtime.get().buses.values().cloned().collect())
}

async fn get_bus(State(state): S, Path(bus): Path<String>) -> ApiResult {
    let rt = state.runtime.get();
    let b = rt.buses.get(&bus).ok_or_else(|| ApiError::not_found(format!("no bus {bus:?}")))?;
    let rules: Vec<&String> = rt.rules.get(&bus).map(|r| r.keys().collect()).unwrap_or_default();
    Ok(Json(json!({"name": b.name, "description": b.description, "rules": rules})).into_response())
}

async fn create_bus(State(state): S, bytes: Bytes) -> ApiResult {
    let b: BusSpec = body(&bytes)?;
    if state.runtime.get().buses.contains_key(&b.name) {
        return Err(ApiError::conflict(format!("bus {:?} already exists", b.name)));
    }
    apply_doc(&state, ConfigDocument { buses: vec![b.clone()], ..Default::default() }, vec![]).await?;
    Ok((StatusCode::CREATED, Json(b)).into_response())
}

async fn put_bus(State(state): S, Path(bus): Path<String>, bytes: Bytes) -> ApiResult {
    let b: BusSpec =
        magpie_core::config::from_value(named_body(&bytes, &[("name", &bus)])?).map_err(ApiError::config)?;
    apply_doc(&state, ConfigDocument { buses: vec![b.clone()], ..Default::default() }, vec![]).await?;
    Ok(Json(b).into_response())
}

async fn delete_bus(State(state): S, Path(bus): Path<String>) -> ApiResult {
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
    apply_doc(&state, ConfigDocument::default(), vec![(Kind::Bus, bus)]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- rules -------------------------------------------------------------------------------

async fn list_rules(State(state): S, Path(bus): Path<String>) -> ApiResult {
    let rt = state.runtime.get();
    if !rt.buses.contains_key(&bus) {
        return Err(ApiError::not_found(format!("no bus {bus:?}")));
    }
    let rules: Vec<RuleSpec> = rt.rules.get(&bus).map(|r| r.values().cloned().collect()).unwrap_or_default();
    Ok(Json(rules).into_response())
}

async fn get_rule(State(state): S, Path((bus, rule)): Path<(String, String)>) -> ApiResult {
    let rt = state.runtime.get();
    let r = rt
        .rules
        .get(&bus)
        .and_then(|m| m.get(&rule))
        .ok_or_else(|| ApiError::not_found(format!("no rule {rule:?} on bus {bus:?}")))?;
    Ok(Json(r.clone()).into_response())
}

async fn put_rule(State(state): S, Path((bus, rule)): Path<(String, String)>, bytes: Bytes) -> ApiResult {
    let r: RuleSpec = magpie_core::config::from_value(named_body(&bytes, &[("name", &rule), ("bus", &bus)])?)
        .map_err(ApiError::config)?;
    if !state.runtime.get().buses.contains_key(&bus) {
        return Err(ApiError::not_found(format!("no bus {bus:?}")));
    }
    apply_doc(&state, ConfigDocument { rules: vec![r.clone()], ..Default::default() }, vec![]).await?;
    Ok(Json(r).into_response())
}

async fn delete_rule(State(state): S, Path((bus, rule)): Path<(String, String)>) -> ApiResult {
    if !state.runtime.get().rules.get(&bus).is_some_and(|m| m.contains_key(&rule)) {
        return Err(ApiError::not_found(format!("no rule {rule:?} on bus {bus:?}")));
    }
    apply_doc(&state, ConfigDocument::default(), vec![(Kind::Rule, rule_key(&bus, &rule))]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- flows -------------------------------------------------------------------------------

async fn list_flows(State(state): S) -> Json<Vec<FlowSpec>> {
    Json(state.runtime.get().flows.values().map(|(s, _)| s.clone()).collect())
}

async fn get_flow(State(state): S, Path(flow): Path<String>) -> ApiResult {
    let rt = state.runtime.get();
    let (f, _) = rt.flows.get(&flow).ok_or_else(|| ApiError::not_found(format!("no flow {flow:?}")))?;
    Ok(Json(f.clone()).into_response())
}

async fn put_flow(State(state): S, Path(flow): Path<String>, bytes: Bytes) -> ApiResult {
    let f: FlowSpec =
        magpie_core::config::from_value(named_body(&bytes, &[("name", &flow)])?).map_err(ApiError::config)?;
    apply_doc(&state, ConfigDocument { flows: vec![f.clone()], ..Default::default() }, vec![]).await?;
    Ok(Json(f).into_response())
}

async fn delete_flow(State(state): S, Path(flow): Path<String>) -> ApiResult {
    if !state.runtime.get().flows.contains_key(&flow) {
        return Err(ApiError::not_found(format!("no flow {flow:?}")));
    }
    apply_doc(&state, ConfigDocument::default(), vec![(Kind::Flow, flow)]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- connections -------------------------------------------------------------------------

async fn list_connections(State(state): S) -> Json<Vec<Value>> {
    Json(state.runtime.get().connections.values().map(redacted_connection).collect())
}

async fn get_connection(State(state): S, Path(name): Path<String>) -> ApiResult {
    let rt = state.runtime.get();
    let c = rt.connections.get(&name).ok_or_else(|| ApiError::not_found(format!("no connection {name:?}")))?;
    Ok(Json(redacted_connection(c)).into_response())
}

async fn put_connection(State(state): S, Path(name): Path<String>, bytes: Bytes) -> ApiResult {
    let mut c: ConnectionSpec =
        magpie_core::config::from_value(named_body(&bytes, &[("name", &name)])?).map_err(ApiError::config)?;
    keep_redacted_secrets(&state, &mut c);
    apply_doc(&state, ConfigDocument { connections: vec![c.clone()], ..Default::default() }, vec![]).await?;
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

async fn delete_connection(State(state): S, Path(name): Path<String>) -> ApiResult {
    if !state.runtime.get().connections.contains_key(&name) {
        return Err(ApiError::not_found(format!("no connection {name:?}")));
    }
    apply_doc(&state, ConfigDocument::default(), vec![(Kind::Connection, name)]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- whole configuration -----------------------------------------------------------------

async fn get_config(State(state): S) -> Json<Value> {
    let doc = state.runtime.get().document();
    let mut v = serde_json::to_value(&doc).unwrap_or(Value::Null);
    v["connections"] = Value::Array(doc.connections.iter().map(redacted_connection).collect());
    Json(v)
}

async fn apply(State(state): S, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    let is_json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    let mut doc: ConfigDocument =
        if is_json { body(&bytes)? } else { magpie_core::config::parse_yaml(text).map_err(ApiError::config)? };
    for c in &mut doc.connections {
        keep_redacted_secrets(&state, c);
    }
    let counts = json!({
        "buses": doc.buses.len(), "connections": doc.connections.len(),
        "flows": doc.flows.len(), "rules": doc.rules.len(),
    });
    apply_doc(&state, doc, vec![]).await?;
    Ok(Json(json!({"applied": counts})).into_response())
}

// ---- events ------------------------------------------------------------------------------

async fn put_events(State(state): S, Path(bus): Path<String>, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    if !state.runtime.get().buses.contains_key(&bus) {
        return Err(ApiError::not_found(format!("no bus {bus:?}")));
    }
    let (entries, batch) = ingest::entries(&headers, &bytes)?;
    if entries.len() > ingest::MAX_ENTRIES {
        return Err(ApiError::too_large(format!(
            "{} entries; at most {} per request",
            entries.len(),
            ingest::MAX_ENTRIES
        )));
    }
    if entries.is_empty() {
        return Err(ApiError::bad_request("entries: at least one event is needed"));
    }
    let now = magpie_core::now_ms();
    let mut results: Vec<Value> = Vec::with_capacity(entries.len());
    let mut accepted = Vec::new();
    let mut positions = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        match Event::accept(entry, &state.limits, now, || uuid::Uuid::now_v7().to_string()) {
            Ok(e) => {
                positions.push(i);
                results.push(json!({"id": e.id}));
                accepted.push(NewEvent { id: e.id, time_ms: e.time_ms, body: e.body });
            }
            Err(err) => {
                Metrics::inc(&state.metrics.events_rejected);
                results.push(json!({"error_code": err.code(), "error_message": err.to_string()}));
            }
        }
    }
    if !accepted.is_empty() {
        let n = accepted.len() as u64;
        let appended = state.store.append_events(&bus, accepted).await?;
        for (pos, a) in positions.iter().zip(&appended) {
            if let Appended::Duplicate(_) = a {
                results[*pos]["duplicate"] = json!(true);
            }
        }
        state.metrics.events_accepted.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        state.wake_router.notify_one();
    }
    let failed = results.iter().filter(|r| r.get("error_code").is_some()).count();
    let answer = json!({"failed_count": failed, "entries": results});
    if !batch && failed == 1 {
        let mut a = answer;
        a["error"] = json!({"code": a["entries"][0]["error_code"], "message": a["entries"][0]["error_message"]});
        return Ok((StatusCode::BAD_REQUEST, Json(a)).into_response());
    }
    Ok(Json(answer).into_response())
}

/// `POST /hooks/{path}`: starts the flow listening on `path` with the request body as payload.
/// The request is stored before the answer (202 with its id, traceable like any event).
async fn hook(State(state): S, Path(path): Path<String>, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let flow = state
        .runtime
        .get()
        .hooks
        .get(&path)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no flow listens on /hooks/{path}")))?;
    let payload = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    // Credentials stay out of the stored request.
    let kept: serde_json::Map<String, Value> = headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "authorization" | "proxy-authorization" | "cookie"))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), json!(v.to_str().ok()?))))
        .collect();
    let now = magpie_core::now_ms();
    let id = uuid::Uuid::now_v7().to_string();
    let envelope = json!({
        "specversion": "1.0", "id": id, "source": "magpie.hooks", "type": format!("magpie:hook:{path}"),
        "time": now, "data": payload, "hook": {"path": path, "headers": kept},
    });
    let event = Event::accept(envelope, &state.limits, now, || id.clone()).map_err(|e| match e {
        magpie_core::EventError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    })?;
    state
        .store
        .append_routed(
            magpie_core::HOOKS_BUS,
            NewEvent { id: event.id.clone(), time_ms: now, body: event.body },
            magpie_core::HOOK_RULE,
            &flow,
        )
        .await?;
    Metrics::inc(&state.metrics.events_accepted);
    Metrics::inc(&state.metrics.jobs_created);
    state.wake_workers.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({"id": event.id, "flow": flow}))).into_response())
}

async fn trace(State(state): S, Path(id): Path<String>) -> ApiResult {
    let t = state.store.trace(&id).await?.ok_or_else(|| ApiError::not_found(format!("no event with id {id:?}")))?;
    Ok(Json(t).into_response())
}

async fn templates() -> Json<Vec<Value>> {
    Json(
        magpie_core::templates::all()
            .iter()
            .map(|t| json!({"name": t.name, "label": t.label, "description": t.description, "event": t.instantiate("<generated>", 0)}))
            .collect(),
    )
}

// ---- patterns ----------------------------------------------------------------------------

async fn test_pattern(bytes: Bytes) -> ApiResult {
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    let pattern = v.get("pattern").ok_or_else(|| ApiError::config(ConfigError::new("pattern", "required")))?;
    let event = v.get("event").ok_or_else(|| ApiError::config(ConfigError::new("event", "required")))?;
    let p = Pattern::parse(pattern).map_err(|e| {
        let path = if e.path.is_empty() { "pattern".to_string() } else { format!("pattern.{}", e.path) };
        ApiError::config(ConfigError::new(path, e.reason))
    })?;
    if !event.is_object() {
        return Err(ApiError::config(ConfigError::new("event", "must be a JSON object")));
    }
    Ok(Json(json!({"matched": p.matches(event)})).into_response())
}
