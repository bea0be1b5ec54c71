//! Flows and their versions: saving drafts, publishing, diffs, rollback (seed step 7, 发布集成流).
//!
//! A flow saved with `PUT` is a draft until published; rules start the live version, and a job
//! finishes on the version it started on. `magpie apply` / `POST /v1/apply` publish at once.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use magpie_core::ConfigError;
use magpie_core::config::{ConfigDocument, FlowSpec};
use magpie_store::{FlowHead, FlowVersion, Kind};
use serde_json::{Value, json};

use super::{ApiResult, S, apply_doc_as, named_body};
use crate::AppState;
use crate::error::ApiError;
use crate::runtime::FlowWrite;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))
}

/// Strips the `flows[0].` an error about the one flow of a request carries.
fn one_flow(mut e: ApiError) -> ApiError {
    if let Some(p) = e.path.as_mut()
        && let Some(rest) = p.strip_prefix("flows[0].")
    {
        *p = rest.to_string();
        e.message = e.message.replacen("flows[0].", "", 1);
    }
    e
}

/// Where flow `name` stands, or 404.
async fn head(state: &AppState, name: &str) -> Result<FlowHead, ApiError> {
    let heads = state.store.flow_heads().await?;
    heads.into_iter().find(|h| h.name == name).ok_or_else(|| ApiError::not_found(format!("no flow {name:?}")))
}

/// Which version a `?version=` names: `live` (the default), `draft`, or a number.
fn pick(head: &FlowHead, which: Option<&str>, field: &str) -> Result<i64, ApiError> {
    let which = which.unwrap_or("live");
    match which {
        "live" => head.live.ok_or_else(|| {
            ApiError::not_found(format!(
                "flow {:?} is not published; its draft is version {} (?{field}=draft)",
                head.name,
                head.draft.unwrap_or_default()
            ))
        }),
        "draft" => head.draft.ok_or_else(|| ApiError::not_found(format!("flow {:?} has no draft", head.name))),
        n => n.parse::<i64>().ok().filter(|v| *v >= 1).ok_or_else(|| {
            ApiError::config(ConfigError::new(field, format!("{n:?} is not live, draft or a version number")))
        }),
    }
}

async fn version(state: &AppState, name: &str, v: i64) -> Result<FlowVersion, ApiError> {
    state
        .store
        .flow_version(name, v)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("flow {name:?} has no version {v}")))
}

fn summary(head: &FlowHead) -> Value {
    json!({"name": head.name, "live": head.live, "draft": head.draft, "updated_at": head.updated_at})
}

/// `GET /v1/flows`: the live flows.
pub(super) async fn list_flows(State(state): S) -> Json<Vec<FlowSpec>> {
    Json(state.runtime.get().flows.values().map(|(s, _)| s.clone()).collect())
}

/// `GET /v1/flow-versions`: every flow (published or only drafted) with its live version and draft.
pub(super) async fn list_heads(State(state): S) -> ApiResult {
    let heads = state.store.flow_heads().await?;
    Ok(Json(heads.iter().map(summary).collect::<Vec<_>>()).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VersionQuery {
    version: Option<String>,
}

/// `GET /v1/flows/{flow}?version=live|draft|N`.
pub(super) async fn get_flow(
    State(state): S,
    Path(flow): Path<String>,
    q: Result<Query<VersionQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    if q.version.is_none() {
        let rt = state.runtime.get();
        if let Some((f, _)) = rt.flows.get(&flow) {
            return Ok(Json(f.clone()).into_response());
        }
    }
    let h = head(&state, &flow).await?;
    let v = pick(&h, q.version.as_deref(), "version")?;
    Ok(Json(version(&state, &flow, v).await?.body).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SaveQuery {
    #[serde(default)]
    publish: bool,
}

/// `PUT /v1/flows/{flow}[?publish=true]`: saves the flow as its draft (or publishes it at once).
pub(super) async fn put_flow(
    State(state): S,
    axum::Extension(who): super::Who,
    Path(flow): Path<String>,
    q: Result<Query<SaveQuery>, QueryRejection>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let q = query(q)?;
    let f: FlowSpec =
        magpie_core::config::from_value(named_body(&headers, &bytes, &[("name", &flow)])?).map_err(ApiError::config)?;
    let mode = if q.publish { FlowWrite::Publish } else { FlowWrite::Draft };
    apply_doc_as(&state, &who, ConfigDocument { flows: vec![f], ..Default::default() }, vec![], mode)
        .await
        .map_err(one_flow)?;
    Ok(Json(summary(&head(&state, &flow).await?)).into_response())
}

/// `DELETE /v1/flows/{flow}`: the flow and its draft. Refused while a rule targets it.
pub(super) async fn delete_flow(
    State(state): S,
    axum::Extension(who): super::Who,
    Path(flow): Path<String>,
) -> ApiResult {
    head(&state, &flow).await?;
    let rt = state.runtime.get();
    let users: Vec<String> = rt
        .rules
        .values()
        .flat_map(|m| m.values())
        .filter(|r| r.targets.iter().any(|t| t.flow == flow))
        .map(|r| format!("{:?} (bus {:?})", r.name, r.bus))
        .collect();
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "flow {flow:?} is a target of rule {}: delete the rule or change its targets first",
            users.join(", rule ")
        )));
    }
    apply_doc_as(&state, &who, ConfigDocument::default(), vec![(Kind::Flow, flow)], FlowWrite::Publish).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/flows/{flow}/versions`: every saved version, oldest first.
pub(super) async fn versions(State(state): S, Path(flow): Path<String>) -> ApiResult {
    let h = head(&state, &flow).await?;
    let versions: Vec<Value> = state
        .store
        .flow_versions(&flow)
        .await?
        .into_iter()
        .map(|v| {
            json!({"version": v.version, "saved_at": v.saved_at, "published_at": v.published_at,
                   "live": v.live, "draft": v.draft})
        })
        .collect();
    let mut out = summary(&h);
    out["versions"] = Value::Array(versions);
    Ok(Json(out).into_response())
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    version: Option<i64>,
}

fn publish_body(headers: &HeaderMap, bytes: &[u8]) -> Result<PublishBody, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(PublishBody::default());
    }
    super::body(headers, bytes)
}

/// Makes version `v` of `flow` live and answers where the flow stands.
async fn make_live(state: &AppState, who: &crate::auth::Caller, flow: &str, v: i64) -> ApiResult {
    crate::runtime::make_live(&state.runtime, state.store.as_ref(), flow, v, state.env.as_ref(), &who.name).await?;
    Ok(Json(summary(&head(state, flow).await?)).into_response())
}

/// `POST /v1/flows/{flow}/publish` (`{"version": N}` optional, default the draft).
pub(super) async fn publish(
    State(state): S,
    axum::Extension(who): super::Who,
    Path(flow): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let b = publish_body(&headers, &bytes)?;
    let h = head(&state, &flow).await?;
    let v = match b.version {
        Some(v) => v,
        None => h.draft.ok_or_else(|| {
            ApiError::conflict(format!(
                "flow {flow:?} has no draft to publish (version {} is live): save a change first",
                h.live.unwrap_or_default()
            ))
        })?,
    };
    make_live(&state, &who, &flow, v).await
}

/// `POST /v1/flows/{flow}/rollback` (`{"version": N}`): makes an earlier published version live.
pub(super) async fn rollback(
    State(state): S,
    axum::Extension(who): super::Who,
    Path(flow): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let b = publish_body(&headers, &bytes)?;
    let Some(v) = b.version else {
        return Err(ApiError::config(ConfigError::new("version", "required: the version to go back to")));
    };
    let h = head(&state, &flow).await?;
    if h.draft == Some(v) {
        return Err(ApiError::conflict(format!(
            "version {v} of flow {flow:?} is its draft, never published: publish it instead"
        )));
    }
    make_live(&state, &who, &flow, v).await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiffQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /v1/flows/{flow}/diff?from=live&to=draft`: a unified diff of the two versions' YAML.
pub(super) async fn diff(
    State(state): S,
    Path(flow): Path<String>,
    q: Result<Query<DiffQuery>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let h = head(&state, &flow).await?;
    let from = pick(&h, Some(q.from.as_deref().unwrap_or("live")), "from")?;
    let to = pick(&h, Some(q.to.as_deref().unwrap_or("draft")), "to")?;
    let (a, b) = (version(&state, &flow, from).await?, version(&state, &flow, to).await?);
    let (a_text, b_text) = (magpie_core::config::to_yaml(&a.body), magpie_core::config::to_yaml(&b.body));
    let text = similar::TextDiff::from_lines(&a_text, &b_text)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{flow} v{from}"), &format!("{flow} v{to}"))
        .to_string();
    Ok(Json(json!({"name": flow, "from": from, "to": to, "changed": a_text != b_text, "diff": text})).into_response())
}
