//! Delivery: connections' outboxes, digests, dead letters and their redrive.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use magpie_core::ConfigError;
use magpie_store::LetterFilter;
use serde::Deserialize;
use serde_json::json;

use super::{ApiResult, S, params};
use crate::error::ApiError;
use crate::outbox::{self, limiter::Limiter};
use crate::telemetry::{InternalEvent, LettersRedriven};

/// `GET /v1/connections/{name}/outbox`: depth, next slot, pause, counters.
pub(super) async fn outbox(State(state): S, Path(name): Path<String>) -> ApiResult {
    let rt = state.runtime.get();
    let conn = rt.connections.get(&name).ok_or_else(|| ApiError::not_found(format!("no connection {name:?}")))?;
    let st = state.store.outbox_status(&name).await?;
    let now = magpie_core::now_ms();
    let limiter = Limiter::new(conn.rate_limits());
    let paused_until = st.state.paused_until.filter(|p| *p > now);
    let next_slot = if st.depth == 0 {
        None
    } else {
        Some(limiter.next_slot(&st.state.limiter.tat, now).max(paused_until.unwrap_or(0)))
    };
    let rate: Vec<String> = conn.rate_limits().iter().map(|l| l.to_string()).collect();
    Ok(Json(json!({
        "connection": name,
        "platform": conn.platform,
        "rate": if rate.is_empty() { json!("unlimited") } else { json!(rate) },
        "depth": st.depth,
        "oldest_enqueued_at": st.oldest_enqueued_at,
        "next_slot": next_slot,
        "paused_until": paused_until,
        "pause_reason": paused_until.and(st.state.pause_reason.clone()),
        "sent": st.state.sent,
        "folded": st.state.folded,
        "digests": st.state.digests,
        "last_send_at": st.state.limiter.last_send_at,
        "owner": st.state.owner,
        "lease_until": st.state.lease_until,
    }))
    .into_response())
}

/// `GET /v1/digests/{id}`.
pub(super) async fn digest(State(state): S, Path(id): Path<String>) -> ApiResult {
    let d = state.store.digest(&id).await?.ok_or_else(|| ApiError::not_found(format!("no digest {id:?}")))?;
    Ok(Json(d).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LetterQuery {
    flow: Option<String>,
    connection: Option<String>,
    error_type: Option<String>,
    since: Option<String>,
    #[serde(default)]
    all: bool,
    limit: Option<usize>,
    cursor: Option<i64>,
}

impl LetterQuery {
    fn filter(&self, limit: usize) -> Result<LetterFilter, ApiError> {
        let since_ms = self.since.as_deref().map(|s| params::time(s, "since", magpie_core::now_ms())).transpose()?;
        Ok(LetterFilter {
            flow: self.flow.clone(),
            connection: self.connection.clone(),
            error_type: self.error_type.clone(),
            since_ms,
            include_redriven: self.all,
            before_id: self.cursor,
            limit,
        })
    }
}

fn query_error(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request(format!("query: {}", e.body_text()))
}

/// `GET /v1/dead-letters?flow=&connection=&error_type=&since=&all=&limit=&cursor=`.
pub(super) async fn list_dead_letters(
    State(state): S,
    q: Result<Query<LetterQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(query_error)?;
    let limit = params::limit(q.limit)?;
    let letters = state.store.dead_letters(q.filter(limit)?).await?;
    let next = (letters.len() == limit).then(|| letters.last().map(|l| l.id)).flatten();
    Ok(Json(json!({"dead_letters": letters, "next_cursor": next})).into_response())
}

/// `GET /v1/dead-letters/{id}`.
pub(super) async fn get_dead_letter(State(state): S, Path(id): Path<String>) -> ApiResult {
    let n: i64 = id.parse().map_err(|_| ApiError::not_found(format!("no dead letter {id:?}")))?;
    let d = state.store.dead_letter(n).await?.ok_or_else(|| ApiError::not_found(format!("no dead letter {id:?}")))?;
    Ok(Json(d).into_response())
}

/// Letters redriven per store transaction.
const REDRIVE_BATCH: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedriveBody {
    ids: Option<Vec<i64>>,
    #[serde(default)]
    all: bool,
    flow: Option<String>,
    connection: Option<String>,
    error_type: Option<String>,
    since: Option<String>,
}

/// `POST /v1/dead-letters/redrive` with `{"ids": [...]}`, or a filter (`flow`, `connection`,
/// `error_type`, `since`), or `{"all": true}`.
pub(super) async fn redrive(
    State(state): S,
    axum::Extension(who): super::Who,
    headers: axum::http::HeaderMap,
    bytes: Bytes,
) -> Result<Response, ApiError> {
    let b: RedriveBody = super::body(&headers, &bytes)?;
    let has_filter = b.flow.is_some() || b.connection.is_some() || b.error_type.is_some() || b.since.is_some();
    let ids = match b.ids {
        Some(_) if has_filter || b.all => {
            return Err(ApiError::config(ConfigError::new("ids", "give ids, or a filter, or all: not both")));
        }
        Some(ids) if ids.is_empty() => return Err(ApiError::config(ConfigError::new("ids", "at least one id"))),
        Some(ids) if ids.len() > params::MAX_LIMIT => {
            return Err(ApiError::config(ConfigError::new(
                "ids",
                format!(
                    "at most {} ids per request; redrive more with a filter or {{\"all\": true}}",
                    params::MAX_LIMIT
                ),
            )));
        }
        Some(mut ids) => {
            let mut seen = std::collections::HashSet::new();
            ids.retain(|i| seen.insert(*i));
            ids
        }
        None if !has_filter && !b.all => {
            return Err(ApiError::config(ConfigError::new(
                "ids",
                "say which letters: {\"ids\": [...]}, a filter (flow, connection, error_type, since), or {\"all\": true}",
            )));
        }
        None => {
            let q = LetterQuery {
                flow: b.flow,
                connection: b.connection,
                error_type: b.error_type,
                since: b.since,
                ..LetterQuery::default()
            };
            let mut ids = Vec::new();
            let mut cursor = None;
            loop {
                let page = state
                    .store
                    .dead_letters(LetterFilter { before_id: cursor, ..q.filter(params::MAX_LIMIT)? })
                    .await?;
                ids.extend(page.iter().map(|l| l.id));
                if page.len() < params::MAX_LIMIT {
                    break;
                }
                cursor = page.last().map(|l| l.id);
            }
            ids.reverse(); // oldest first: they go back into their queues in order
            ids
        }
    };
    // In small transactions: ingest shares the store's single writer.
    let mut done = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(REDRIVE_BATCH) {
        done.extend(state.store.redrive(chunk.to_vec(), magpie_core::now_ms()).await?);
        tokio::task::yield_now().await;
    }
    LettersRedriven { count: done.len() }.emit();
    for r in &done {
        if let Some(c) = &r.connection {
            outbox::wake(&state, c);
        }
    }
    state.wake_workers.notify_one();
    let redriven: Vec<i64> = done.iter().map(|r| r.id).collect();
    let done_ids: std::collections::HashSet<i64> = redriven.iter().copied().collect();
    let skipped: Vec<i64> = ids.into_iter().filter(|i| !done_ids.contains(i)).collect();
    if !redriven.is_empty() {
        let target = format!("dead-letters ({})", redriven.len());
        super::access::record(&state, &who.name, "redrive", target, json!({"redriven": redriven})).await;
    }
    Ok(Json(json!({"redriven": redriven, "skipped": skipped, "details": done})).into_response())
}
