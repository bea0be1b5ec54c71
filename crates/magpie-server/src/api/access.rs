//! Tokens (`/v1/tokens`) and the audit log (`/v1/audit`): admin only.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use magpie_core::ConfigError;
use magpie_core::auth::{Role, hash_token, new_token};
use magpie_store::{AuditFilter, NewAudit, TokenRow};
use serde::Deserialize;
use serde_json::json;

use super::{ApiResult, S, Who, params};
use crate::AppState;
use crate::error::ApiError;

/// `GET /v1/tokens`: every token's name, role and where it comes from (never a hash).
pub(super) async fn list_tokens(State(state): S) -> ApiResult {
    let stored = state.store.tokens().await?;
    let mut out: Vec<_> = state
        .tokens
        .fixed()
        .into_iter()
        .map(|(name, role, source)| json!({"name": name, "role": role, "source": source}))
        .collect();
    out.extend(stored.iter().map(|t| {
        json!({"name": t.name, "role": t.role, "source": "api", "created_at": t.created_at, "created_by": t.created_by})
    }));
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Role,
}

/// `POST /v1/tokens` `{"name", "role"}`: creates a token and answers it, once.
pub(super) async fn create_token(
    State(state): S,
    axum::Extension(who): Who,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let b: NewToken = super::body(&headers, &bytes)?;
    magpie_core::names::check_name(&b.name).map_err(|r| ApiError::config(ConfigError::new("name", r)))?;
    if state.tokens.fixed_name(&b.name) {
        return Err(ApiError::conflict(format!(
            "token {:?} is configured in magpie.yaml (or is --token's): choose another name",
            b.name
        )));
    }
    let token = new_token().map_err(ApiError::internal)?;
    let row = TokenRow {
        name: b.name.clone(),
        role: b.role,
        hash: hash_token(&token),
        created_at: magpie_core::now_ms(),
        created_by: who.name.clone(),
    };
    let audit = entry(&who.name, "create", &b.name, None, Some(json!({"name": b.name, "role": b.role})));
    if !state.store.create_token(row, audit).await? {
        return Err(ApiError::conflict(format!("a token named {:?} exists: revoke it first", b.name)));
    }
    state.tokens.reload(state.store.as_ref()).await?;
    tracing::info!(token = %b.name, role = %b.role, by = %who.name, "token created");
    let body = json!({"name": b.name, "role": b.role, "token": token,
        "note": "this is the only time the token is shown: keep it now"});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /v1/tokens/{name}`: revokes a token created through the API.
pub(super) async fn delete_token(State(state): S, axum::Extension(who): Who, Path(name): Path<String>) -> ApiResult {
    if state.tokens.fixed_name(&name) {
        return Err(ApiError::conflict(format!(
            "token {name:?} is configured in magpie.yaml (or is --token's): remove it there and restart"
        )));
    }
    let before = state.store.tokens().await?.into_iter().find(|t| t.name == name);
    let before = before.map(|t| json!({"name": t.name, "role": t.role}));
    let audit = entry(&who.name, "delete", &name, before, None);
    if !state.store.delete_token(&name, audit).await? {
        return Err(ApiError::not_found(format!("no token {name:?} created through the API")));
    }
    state.tokens.reload(state.store.as_ref()).await?;
    tracing::info!(token = %name, by = %who.name, "token revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn entry(
    who: &str,
    action: &str,
    name: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> NewAudit {
    NewAudit { who: who.into(), action: action.into(), target: format!("token {name}"), before, after }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    who: Option<String>,
    target: Option<String>,
    before_id: Option<i64>,
    limit: Option<usize>,
}

/// `GET /v1/audit?who=&target=&before_id=&limit=`: newest first.
pub(super) async fn audit(
    State(state): S,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let limit = params::limit(q.limit)?;
    let entries =
        state.store.audit(AuditFilter { before_id: q.before_id, who: q.who, target: q.target, limit }).await?;
    let next = (entries.len() == limit).then(|| entries.last().map(|e| e.id)).flatten();
    Ok(Json(json!({"entries": entries, "next_before_id": next})).into_response())
}

/// Records a change that is not configuration (redrive, replay, silences); a failure to record
/// is logged, the change itself stands.
pub(super) async fn record(state: &AppState, who: &str, action: &str, target: String, after: serde_json::Value) {
    let e = NewAudit { who: who.into(), action: action.into(), target, before: None, after: Some(after) };
    if let Err(err) = state.store.record_audit(vec![e]).await {
        tracing::error!(error = %err, action, "recording an audit entry failed");
    }
}
