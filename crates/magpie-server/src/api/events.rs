//! Ingest (PutEvents, CloudEvents), listen paths, traces, templates, the archive and replays.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use magpie_core::{ConfigError, Event};
use magpie_store::{Appended, EventFilter, NewEvent, ReplayRange};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiResult, S, params};
use crate::error::ApiError;
use crate::ingest::{self, accept, append, bus_region};
use crate::replay::{self, ReplayRequest};
use crate::telemetry::{EventRejected, EventsAccepted, InternalEvent};

// ---- events ------------------------------------------------------------------------------

pub(super) async fn put_events(
    State(state): S,
    Path(bus): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let region = bus_region(&state, &bus)?;
    let hops = ingest::hops(&headers)?;
    let ingest::Entries { items, batch } = ingest::entries(&headers, &bytes, &bus)?;
    if items.len() > ingest::MAX_ENTRIES {
        return Err(ApiError::too_large(format!(
            "{} entries; at most {} per request",
            items.len(),
            ingest::MAX_ENTRIES
        )));
    }
    if items.is_empty() {
        return Err(ApiError::field("entries", "entries: at least one event is needed"));
    }
    let now = magpie_core::now_ms();
    let mut results: Vec<Value> = Vec::with_capacity(items.len());
    let mut accepted = Vec::new();
    let mut positions = Vec::new();
    for (i, entry) in items.into_iter().enumerate() {
        let event = entry.and_then(|v| accept(&state, region.as_deref(), v, now));
        match event {
            Ok(e) => {
                positions.push(i);
                results.push(json!({"id": e.id}));
                accepted.push(e);
            }
            Err(err) => {
                EventRejected { bus: &bus, code: err.code() }.emit();
                let mut r = json!({"error_code": err.code(), "error_message": err.to_string()});
                if let Some(p) = err.path() {
                    r["error_path"] = json!(p);
                }
                results.push(r);
            }
        }
    }
    if !accepted.is_empty() {
        let appended = append(&state, &bus, accepted, hops).await?;
        for (pos, a) in positions.iter().zip(&appended) {
            if let Appended::Duplicate(_) = a {
                results[*pos]["duplicate"] = json!(true);
            }
        }
    }
    let failed = results.iter().filter(|r| r.get("error_code").is_some()).count();
    let answer = json!({"failed_count": failed, "entries": results});
    if !batch && failed == 1 {
        let mut a = answer;
        let first = &a["entries"][0];
        let mut error = json!({"code": first["error_code"], "message": first["error_message"]});
        if let Some(p) = first.get("error_path") {
            error["path"] = p.clone();
        }
        a["error"] = error;
        let status = if a["entries"][0]["error_code"] == "EventTooLarge" {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        return Ok((status, Json(a)).into_response());
    }
    Ok(Json(answer).into_response())
}

/// `POST /hooks/{path}`: starts the flow listening on `path` with the request body as payload.
/// The request is stored before the answer (202 with its id, traceable like any event).
pub(super) async fn hook(State(state): S, Path(path): Path<String>, headers: HeaderMap, bytes: Bytes) -> ApiResult {
    let hook = state
        .runtime
        .get()
        .hooks
        .get(&path)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no flow listens on /hooks/{path}")))?;
    let hops = ingest::hops(&headers)?;
    let flow = hook.flow.clone();
    // Any body is taken (senders of webhooks are many); one that says it is JSON must be JSON.
    let declared_json = ingest::media_type(&headers).is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    let payload = if bytes.is_empty() {
        Value::Null
    } else {
        match magpie_core::json::parse(&bytes) {
            Ok(parsed) if parsed.faults.is_empty() => parsed.value,
            Ok(parsed) if declared_json => {
                let f = parsed.faults.first().map(|f| (f.path_text(), f.to_string())).unwrap_or_default();
                return Err(ApiError::field(f.0, f.1));
            }
            Err(e) if declared_json => return Err(ApiError::bad_request(format!("the body is not valid JSON: {e}"))),
            // Not declared JSON, and not clean JSON: the body is text.
            Ok(_) | Err(_) => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        }
    };
    let subject = match &hook.subject {
        None => flow.clone(),
        Some(t) => t.render(&magpie_flow::Message::new("", payload.clone()), 1024).unwrap_or_else(|| flow.clone()),
    };
    // Credentials stay out of the stored request.
    let kept: serde_json::Map<String, Value> = headers
        .iter()
        .filter(|(k, _)| !ingest::credential_header(k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_string(), json!(v.to_str().ok()?))))
        .collect();
    let now = magpie_core::now_ms();
    let id = uuid::Uuid::now_v7().to_string();
    let envelope = json!({
        "specversion": "1.0", "id": id, "source": "magpie.hooks", "type": format!("magpie:hook:{path}"), "subject": subject,
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
            NewEvent {
                id: event.id.clone(),
                time_ms: now,
                body: event.body,
                json: event.json,
                dotted: event.dotted,
                hops,
            },
            magpie_core::HOOK_RULE,
            &flow,
        )
        .await?;
    EventsAccepted { bus: magpie_core::HOOKS_BUS, count: 1 }.emit();
    state.wake_workers.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({"id": event.id, "flow": flow}))).into_response())
}

pub(super) async fn trace(State(state): S, Path(id): Path<String>) -> ApiResult {
    let t = state.store.trace(&id).await?.ok_or_else(|| ApiError::not_found(format!("no event with id {id:?}")))?;
    Ok(Json(t).into_response())
}

pub(super) async fn templates() -> Json<Vec<Value>> {
    Json(
        magpie_core::templates::all()
            .iter()
            .map(|t| json!({"name": t.name, "label": t.label, "description": t.description, "event": t.instantiate("<generated>", 0)}))
            .collect(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventQuery {
    bus: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    subject: Option<String>,
    limit: Option<usize>,
    cursor: Option<i64>,
}

/// `GET /v1/events?bus=&since=&until=&type=&subject=&limit=&cursor=`: archived events, newest
/// first; `next_cursor` continues the listing.
pub(super) async fn list_events(State(state): S, q: Result<Query<EventQuery>, QueryRejection>) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let now = magpie_core::now_ms();
    if let Some(b) = &q.bus
        && !state.runtime.get().buses.contains_key(b)
        && b != magpie_core::HOOKS_BUS
    {
        return Err(ApiError::not_found(format!("no bus {b:?}")));
    }
    let limit = params::limit(q.limit)?;
    let filter = EventFilter {
        bus: q.bus,
        since_ms: q.since.as_deref().map(|s| params::time(s, "since", now)).transpose()?,
        until_ms: q.until.as_deref().map(|s| params::time(s, "until", now)).transpose()?,
        event_type: q.event_type,
        subject: q.subject,
        before_seq: q.cursor,
        limit,
    };
    let events = state.store.list_events(filter).await?;
    let next = (events.len() == limit).then(|| events.last().map(|e| e.seq)).flatten();
    Ok(Json(json!({"events": events, "next_cursor": next})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    bus: String,
    since: Option<String>,
    from: Option<Value>,
    to: Option<Value>,
    rule: Option<String>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    cursor: i64,
    limit: Option<usize>,
    replay_id: Option<String>,
}

fn time_value(v: &Value, field: &str, now: i64) -> Result<i64, ApiError> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| ApiError::config(ConfigError::new(field, "epoch milliseconds"))),
        Value::String(s) => params::time(s, field, now),
        _ => Err(ApiError::config(ConfigError::new(field, "a time: RFC 3339, epoch milliseconds, or a duration back"))),
    }
}

/// `POST /v1/events/replay` `{"bus", "since" | "from" (+ "to", default now), "rule"?, "dry_run"?, "cursor"?,
/// "replay_id"?}`: one page of a replay; call again with `next_cursor` and `replay_id` until
/// `next_cursor` is null.
pub(super) async fn replay(
    State(state): S,
    axum::Extension(who): super::Who,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let b: ReplayBody = super::body(&headers, &bytes)?;
    let now = magpie_core::now_ms();
    let (from_ms, to_ms) = match (&b.since, &b.from, &b.to) {
        (Some(s), None, None) => (params::time(s, "since", now)?, now + 1),
        (None, Some(f), t) => {
            let to = t.as_ref().map(|t| time_value(t, "to", now)).transpose()?.unwrap_or(now + 1);
            (time_value(f, "from", now)?, to)
        }
        (None, None, Some(_)) => {
            return Err(ApiError::config(ConfigError::new("from", "to needs a from (or give since)")));
        }
        (None, None, None) => {
            return Err(ApiError::config(ConfigError::new(
                "since",
                "give since (e.g. 1h), or from (and to, default now)",
            )));
        }
        _ => return Err(ApiError::config(ConfigError::new("since", "give since, or from and to: not both"))),
    };
    if to_ms <= from_ms {
        let field = if b.since.is_some() { "since" } else { "to" };
        return Err(ApiError::config(ConfigError::new(field, "the range is empty: its end must be after its start")));
    }
    if b.cursor < 0 {
        return Err(ApiError::config(ConfigError::new("cursor", "a next_cursor from the previous page")));
    }
    if let Some(r) = &b.replay_id
        && (r.is_empty() || r.len() > 100 || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(ApiError::config(ConfigError::new(
            "replay_id",
            "the replay_id of the first page: up to 100 letters, digits, '-' or '_'",
        )));
    }
    let req = ReplayRequest {
        range: ReplayRange { bus: b.bus, from_ms, to_ms },
        rule: b.rule,
        dry_run: b.dry_run,
        cursor: b.cursor,
        limit: b.limit.unwrap_or(if b.dry_run { replay::MAX_DRY_PAGE } else { replay::MAX_PAGE }),
        replay_id: b.replay_id,
    };
    let dry_run = req.dry_run;
    let summary = json!({"bus": req.range.bus, "from": req.range.from_ms, "to": req.range.to_ms, "rule": req.rule, "cursor": req.cursor});
    let page = replay::replay_page(&state, req).await?;
    if !dry_run {
        let mut after = summary;
        after["jobs"] = json!(page.jobs);
        super::access::record(&state, &who.name, "replay", format!("replay {}", page.replay_id), after).await;
    }
    Ok(Json(page).into_response())
}
