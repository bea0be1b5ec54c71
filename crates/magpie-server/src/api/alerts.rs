//! Source adapters (`/v1/buses/{bus}/sources/{source}`), open alerts (`/v1/alerts`) and
//! silences (`/v1/silences`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use magpie_core::alert::AlertState;
use magpie_core::{ConfigError, EventError};
use magpie_pattern::Pattern;
use magpie_store::{AlertFilter, Appended, Silence};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiResult, S, document, params};
use crate::error::ApiError;
use crate::ingest::{self, sources};
use crate::ingest::{accept, append, bus_region};
use crate::telemetry::{InternalEvent, SourceAccepted};

// ---- sources -----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceQuery {
    tz: Option<String>,
}

fn source(name: &str) -> Result<sources::Source, ApiError> {
    sources::Source::parse(name).ok_or_else(|| {
        ApiError::not_found(format!("no source adapter {name:?}: there are alertmanager, grafana and tencent-monitor"))
    })
}

/// `POST /v1/buses/{bus}/sources/{source}`: a sender's request, one event per alert, stored
/// before the answer; all or nothing.
pub(super) async fn post_source(
    State(state): S,
    Path((bus, name)): Path<(String, String)>,
    q: Result<Query<SourceQuery>, QueryRejection>,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let hops = ingest::hops(&headers)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let src = source(&name)?;
    let region = bus_region(&state, &bus)?;
    // Tencent Cloud Monitor names no content type; the others send JSON.
    let media = ingest::media_type(&headers);
    if src != sources::Source::TencentMonitor && !ingest::is_json(media.as_deref()) {
        return Err(ingest::unsupported(media.as_deref().unwrap_or_default(), "application/json"));
    }
    let opts = sources::SourceOptions::new(q.tz)?;
    let now = magpie_core::now_ms();
    let envelopes = sources::events(src, &bytes, &opts, now)?;
    if envelopes.len() > ingest::MAX_ENTRIES {
        return Err(ApiError::too_large(format!(
            "{} alerts; at most {} per request",
            envelopes.len(),
            ingest::MAX_ENTRIES
        )));
    }
    let mut accepted = Vec::with_capacity(envelopes.len());
    for (i, v) in envelopes.into_iter().enumerate() {
        match accept(&state, region.as_deref(), v, now) {
            Ok(e) => accepted.push(e),
            Err(e) => {
                let at =
                    if src == sources::Source::TencentMonitor { "(body)".to_string() } else { format!("alerts[{i}]") };
                let err = ApiError::field(at, e.to_string());
                return Err(if matches!(e, EventError::TooLarge { .. }) {
                    ApiError { status: StatusCode::PAYLOAD_TOO_LARGE.as_u16(), code: "TooLarge", ..err }
                } else {
                    err
                });
            }
        }
    }
    let ids: Vec<String> = accepted.iter().map(|e| e.id.clone()).collect();
    let appended = if accepted.is_empty() { Vec::new() } else { append(&state, &bus, accepted, hops).await? };
    SourceAccepted { source: src.name(), bus: &bus, alerts: ids.len() as u64 }.emit();
    let entries: Vec<Value> = ids
        .iter()
        .zip(&appended)
        .map(|(id, a)| match a {
            Appended::Duplicate(_) => json!({"id": id, "duplicate": true}),
            Appended::Stored(_) => json!({"id": id}),
        })
        .collect();
    Ok(Json(json!({"failed_count": 0, "entries": entries})).into_response())
}

/// `GET /v1/buses/{bus}/sources/{source}`: what the adapter is (senders' URL checks).
pub(super) async fn get_source(State(state): S, Path((bus, name)): Path<(String, String)>) -> ApiResult {
    let src = source(&name)?;
    bus_region(&state, &bus)?;
    Ok(Json(json!({"bus": bus, "source": src.name(), "accepts": "POST with the sender's own webhook body"}))
        .into_response())
}

// ---- alerts ------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertQuery {
    state: Option<String>,
    bus: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/alerts?state=firing|resolved&bus=&limit=`.
pub(super) async fn list_alerts(State(state): S, q: Result<Query<AlertQuery>, QueryRejection>) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let wanted = match q.state.as_deref() {
        None | Some("") | Some("all") => None,
        Some(s) => Some(AlertState::parse(s).ok_or_else(|| {
            ApiError::config(ConfigError::new("state", format!("expected firing, resolved or all, got {s:?}")))
        })?),
    };
    let filter = AlertFilter { state: wanted, bus: q.bus, limit: params::limit(q.limit)? };
    let alerts = state.store.alerts(filter).await?;
    Ok(Json(json!({"alerts": alerts})).into_response())
}

// ---- silences ----------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceBody {
    pattern: Value,
    #[serde(default)]
    bus: Option<String>,
    #[serde(default)]
    starts_at: Option<Value>,
    #[serde(default)]
    ends_at: Option<Value>,
    #[serde(default)]
    duration: Option<String>,
    comment: String,
    #[serde(default)]
    created_by: Option<String>,
}

/// The longest silence.
const MAX_SILENCE_MS: i64 = 366 * 24 * 3600 * 1000;

fn time_of(v: &Value, field: &str, now: i64) -> Result<i64, ApiError> {
    match v {
        Value::Number(n) => {
            n.as_i64().ok_or_else(|| ApiError::config(ConfigError::new(field, "expected epoch milliseconds")))
        }
        Value::String(s) => match magpie_core::event::rfc3339_ms(s) {
            Some(ms) => Ok(ms),
            None => params::time(s, field, now),
        },
        _ => Err(ApiError::config(ConfigError::new(field, "expected an RFC 3339 time or epoch milliseconds"))),
    }
}

/// `POST /v1/silences`: `{pattern, comment, duration | ends_at, starts_at?, bus?, created_by?}`.
pub(super) async fn create_silence(
    State(state): S,
    axum::Extension(who): super::Who,
    headers: HeaderMap,
    bytes: Bytes,
) -> ApiResult {
    let body: SilenceBody =
        magpie_core::config::from_value(document(&headers, &bytes, false)?).map_err(ApiError::config)?;
    let now = magpie_core::now_ms();
    Pattern::parse(&body.pattern).map_err(|e| {
        let path = if e.path.is_empty() { "pattern".to_string() } else { format!("pattern.{}", e.path) };
        ApiError::config(ConfigError::new(path, e.reason))
    })?;
    if let Some(b) = &body.bus
        && !state.runtime.get().buses.contains_key(b)
    {
        return Err(ApiError::config(ConfigError::new("bus", format!("unknown bus {b:?}"))));
    }
    let starts_at = body.starts_at.as_ref().map(|v| time_of(v, "starts_at", now)).transpose()?.unwrap_or(now);
    let ends_at = match (&body.ends_at, &body.duration) {
        (Some(v), None) => time_of(v, "ends_at", now)?,
        (None, Some(d)) => {
            let d = humantime::parse_duration(d.trim()).map_err(|e| {
                ApiError::config(ConfigError::new("duration", format!("{d:?} is not a duration (2h, 30m): {e}")))
            })?;
            starts_at.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        }
        _ => {
            return Err(ApiError::config(ConfigError::new(
                "duration",
                "give either duration (2h) or ends_at, not both and not neither",
            )));
        }
    };
    if ends_at <= starts_at {
        return Err(ApiError::config(ConfigError::new("ends_at", "must be after starts_at")));
    }
    if ends_at <= now {
        return Err(ApiError::config(ConfigError::new("ends_at", "is in the past: the silence would never apply")));
    }
    if ends_at - starts_at > MAX_SILENCE_MS {
        return Err(ApiError::config(ConfigError::new("duration", "a silence lasts at most 366 days")));
    }
    let comment = body.comment.trim().to_string();
    if comment.is_empty() || comment.chars().count() > 1000 {
        return Err(ApiError::config(ConfigError::new("comment", "say why, in 1 to 1000 characters")));
    }
    let created_by = body.created_by.map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).unwrap_or("api".into());
    if created_by.chars().count() > 200 {
        return Err(ApiError::config(ConfigError::new("created_by", "at most 200 characters")));
    }
    let silence = Silence {
        id: format!("sil-{}", uuid::Uuid::now_v7().simple()),
        bus: body.bus,
        pattern: body.pattern,
        starts_at,
        ends_at,
        comment,
        created_by,
        created_at: now,
    };
    state.store.put_silence(silence.clone()).await?;
    state.silences.reload(state.store.as_ref()).await?;
    state.silences_changed.notify_one();
    let view = silence_view(&silence, now);
    super::access::record(&state, &who.name, "create", format!("silence {}", silence.id), view.clone()).await;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

fn silence_view(s: &Silence, now: i64) -> Value {
    let status = if s.ends_at <= now {
        "expired"
    } else if s.starts_at > now {
        "pending"
    } else {
        "active"
    };
    let mut v = json!(s);
    v["status"] = json!(status);
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SilenceQuery {
    #[serde(default)]
    all: bool,
}

/// `GET /v1/silences[?all=true]`: silences that have not ended (all of them with `all`).
pub(super) async fn list_silences(State(state): S, q: Result<Query<SilenceQuery>, QueryRejection>) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let now = magpie_core::now_ms();
    let list = state.store.silences(if q.all { None } else { Some(now) }).await?;
    let list: Vec<Value> = list.iter().map(|s| silence_view(s, now)).collect();
    Ok(Json(json!({"silences": list})).into_response())
}

/// `GET /v1/silences/{id}`.
pub(super) async fn get_silence(State(state): S, Path(id): Path<String>) -> ApiResult {
    let s = state.store.silence(&id).await?.ok_or_else(|| ApiError::not_found(format!("no silence {id:?}")))?;
    Ok(Json(silence_view(&s, magpie_core::now_ms())).into_response())
}

/// `DELETE /v1/silences/{id}`: expires it now; alerts it kept quiet that still fire are told.
pub(super) async fn expire_silence(
    State(state): S,
    axum::Extension(who): super::Who,
    Path(id): Path<String>,
) -> ApiResult {
    let now = magpie_core::now_ms();
    let s =
        state.store.expire_silence(&id, now).await?.ok_or_else(|| ApiError::not_found(format!("no silence {id:?}")))?;
    state.silences.reload(state.store.as_ref()).await?;
    state.silences_changed.notify_one();
    let view = silence_view(&s, now);
    super::access::record(&state, &who.name, "expire", format!("silence {id}"), view.clone()).await;
    Ok(Json(view).into_response())
}
