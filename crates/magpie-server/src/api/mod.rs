//! HTTP routes (the stable contract in DESIGN.md), one module per concern: `config` (buses,
//! rules, connections, apply), `flows` (flows, drafts, publishing), `events` (ingest, listen paths, traces, the archive,
//! replays), `delivery` (dead letters, digests, outboxes), `alerts` (source adapters, alerts,
//! silences). Handlers only call the services the
//! other stages expose; errors get their status in `crate::error`.

mod access;
mod alerts;
mod config;
mod delivery;
mod events;
mod flows;
mod openapi;
mod params;
mod plan;

#[cfg(test)]
pub(crate) use openapi::document as openapi_document;
pub(crate) use params::time as time_param;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use magpie_core::ConfigError;
use magpie_core::config::ConfigDocument;
use magpie_pattern::Pattern;
use magpie_store::Kind;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::{AppState, ingest, runtime};

type S = State<Arc<AppState>>;
type ApiResult = Result<Response, ApiError>;

/// Largest request body: a batch of events or a configuration document.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The HTTP API.
pub fn app(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/v1/buses", get(config::list_buses).post(config::create_bus))
        .route("/v1/buses/{bus}", get(config::get_bus).put(config::put_bus).delete(config::delete_bus))
        .route("/v1/buses/{bus}/events", post(events::put_events))
        .route("/v1/buses/{bus}/sources/{source}", post(alerts::post_source).get(alerts::get_source))
        .route("/v1/alerts", get(alerts::list_alerts))
        .route("/v1/silences", get(alerts::list_silences).post(alerts::create_silence))
        .route("/v1/silences/{id}", get(alerts::get_silence).delete(alerts::expire_silence))
        .route("/v1/buses/{bus}/rules", get(config::list_rules))
        .route("/v1/buses/{bus}/rules/{rule}", get(config::get_rule).put(config::put_rule).delete(config::delete_rule))
        .route("/v1/flows", get(flows::list_flows))
        .route("/v1/flow-versions", get(flows::list_heads))
        .route("/v1/flows/{flow}", get(flows::get_flow).put(flows::put_flow).delete(flows::delete_flow))
        .route("/v1/flows/{flow}/versions", get(flows::versions))
        .route("/v1/flows/{flow}/publish", post(flows::publish))
        .route("/v1/flows/{flow}/rollback", post(flows::rollback))
        .route("/v1/flows/{flow}/diff", get(flows::diff))
        .route("/v1/connections", get(config::list_connections))
        .route(
            "/v1/connections/{name}",
            get(config::get_connection).put(config::put_connection).delete(config::delete_connection),
        )
        .route("/v1/connections/{name}/outbox", get(delivery::outbox))
        .route("/v1/config", get(config::get_config))
        .route("/v1/apply", post(config::apply))
        .route("/v1/patterns/test", post(test_pattern))
        .route("/v1/events", get(events::list_events))
        .route("/v1/events/replay", post(events::replay))
        .route("/v1/events/{id}/trace", get(events::trace))
        .route("/v1/templates", get(events::templates))
        .route("/v1/dead-letters", get(delivery::list_dead_letters))
        .route("/v1/dead-letters/redrive", post(delivery::redrive))
        .route("/v1/dead-letters/{id}", get(delivery::get_dead_letter))
        .route("/v1/digests/{id}", get(delivery::digest))
        .route("/hooks/{*path}", post(events::hook))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/tokens", get(access::list_tokens).post(access::create_token))
        .route("/v1/tokens/{name}", delete(access::delete_token))
        .route("/v1/audit", get(access::audit))
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::auth::guard))
        .route_layer(middleware::from_fn(refuse_cross_site_writes));
    let requests = Arc::new(tokio::sync::Semaphore::new(state.http_limits.max_requests.max(1)));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(api)
        .merge(crate::console::router(state.clone()))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(refuse_long_bodies))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(move |req, next| shed_load(requests.clone(), req, next)))
        .with_state(state)
}

/// At most `--max-requests` requests are handled at once: more are answered 503 with
/// `Retry-After` at once, instead of queueing behind a client that floods the server.
async fn shed_load(requests: Arc<tokio::sync::Semaphore>, req: Request, next: Next) -> Response {
    let Ok(_permit) = requests.try_acquire_owned() else {
        let mut r = ApiError::with_status(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is handling as many requests as it may at once (--max-requests); retry shortly",
        )
        .into_response();
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    };
    next.run(req).await
}

/// A declared `Content-Length` over the limit is refused before the body is read.
async fn refuse_long_bodies(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        let mut r =
            ApiError::too_large(format!("the body is larger than the limit of {MAX_BODY_BYTES} bytes")).into_response();
        // The body is not read: the connection cannot be reused.
        r.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        return r;
    }
    next.run(req).await
}

/// Every error answer of the API has a JSON body: those the HTTP layer makes (405, 413 while reading, 400
/// for a path that is not UTF-8…) are rewritten as `{"error": {"code", "message"}}`.
async fn json_errors(req: Request, next: Next) -> Response {
    // The console answers people, in HTML.
    if req.uri().path().starts_with("/console") {
        return next.run(req).await;
    }
    let head = req.method() == Method::HEAD;
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json || head {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        t => t.to_string(),
    };
    let mut out = ApiError::with_status(status, message).into_response();
    for (k, v) in parts.headers.iter() {
        if k == header::ALLOW || k == header::CONNECTION || k == header::WWW_AUTHENTICATE {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// A browser page of another site must not change anything here (CSRF): a write that carries a
/// foreign `Origin` (or `Referer`), or that the browser marks `Sec-Fetch-Site: cross-site`, is refused with 403.
/// Senders that are not browsers (Alertmanager, curl, the CLI) send neither header.
async fn refuse_cross_site_writes(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let h = req.headers();
    let cross_site = crate::origin::marked_cross_site(h);
    let foreign_origin = crate::origin::same_site(h) == Some(false);
    if cross_site || foreign_origin {
        return ApiError::with_status(
            StatusCode::FORBIDDEN,
            "a cross-site request from a browser page cannot change Magpie",
        )
        .into_response();
    }
    next.run(req).await
}

async fn readyz(State(state): S) -> Response {
    match state.store.next_due().await {
        Ok(_) => "ready".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::telemetry::render()).into_response()
}

/// Media types read as YAML on configuration routes.
const YAML_TYPES: [&str; 4] = ["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"];

/// A request body as a document: strict JSON (a duplicate key or a number no double holds is
/// refused with its path) or, where `yaml` allows, YAML. Other media types answer 415.
pub(super) fn document(headers: &HeaderMap, bytes: &[u8], yaml: bool) -> Result<Value, ApiError> {
    let media = ingest::media_type(headers);
    if yaml && media.as_deref().is_some_and(|m| YAML_TYPES.contains(&m)) {
        let text = std::str::from_utf8(bytes).map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
        return magpie_core::config::parse_yaml(text).map_err(ApiError::config);
    }
    if !ingest::is_json(media.as_deref()) {
        let accepted = if yaml { "application/json or application/yaml" } else { "application/json" };
        return Err(ingest::unsupported(media.as_deref().unwrap_or_default(), accepted));
    }
    let parsed = magpie_core::json::parse(bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    parsed.into_clean().map_err(|f| ApiError::config(ConfigError::new(f.path_text(), f.reason)))
}

/// Parses a JSON body into `T`, naming the faulty field.
pub(super) fn body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, ApiError> {
    magpie_core::config::from_value(document(headers, bytes, false)?).map_err(ApiError::config)
}

/// A body for `PUT /…/{name}` (JSON or YAML): the name may be omitted, and must match the path
/// if given.
pub(super) fn named_body(headers: &HeaderMap, bytes: &[u8], fields: &[(&str, &str)]) -> Result<Value, ApiError> {
    let mut v = document(headers, bytes, true)?;
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

pub(super) async fn apply_doc(
    state: &AppState,
    who: &Caller,
    doc: ConfigDocument,
    deletes: Vec<(Kind, String)>,
) -> Result<(), ApiError> {
    apply_doc_as(state, who, doc, deletes, runtime::FlowWrite::Publish).await
}

/// [`apply_doc`], with the document's flows recorded as `mode` says (drafts, a version).
pub(super) async fn apply_doc_as(
    state: &AppState,
    who: &Caller,
    doc: ConfigDocument,
    deletes: Vec<(Kind, String)>,
    mode: runtime::FlowWrite,
) -> Result<(), ApiError> {
    runtime::apply(&state.runtime, state.store.as_ref(), doc, deletes, mode, state.env.as_ref(), &who.name).await
}

/// Who made the request (the auth guard puts it in every request of the API).
pub(super) type Who = axum::Extension<Caller>;

// ---- patterns ----------------------------------------------------------------------------

async fn test_pattern(headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let v = document(&headers, &bytes, false)?;
    if let Some(k) = v.as_object().and_then(|o| o.keys().find(|k| !matches!(k.as_str(), "pattern" | "event"))) {
        return Err(ApiError::config(ConfigError::new(
            k.clone(),
            "unknown field; the body is {\"pattern\", \"event\"}",
        )));
    }
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
