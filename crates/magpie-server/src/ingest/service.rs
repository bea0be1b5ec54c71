//! The ingest service: accepting an envelope as an event of a bus and appending events durably.
//! The API's routes (PutEvents, source adapters) and the console call these.

use magpie_core::{Event, EventError};
use magpie_store::{Appended, NewEvent};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::telemetry::{EventsAccepted, InternalEvent};

/// The region filled into `bus`'s events that carry none (404 for an unknown bus).
pub(crate) fn bus_region(state: &AppState, bus: &str) -> Result<Option<String>, ApiError> {
    let rt = state.runtime.get();
    let Some(spec) = rt.buses.get(bus) else { return Err(ApiError::not_found(format!("no bus {bus:?}"))) };
    Ok(spec.region.clone().or_else(|| state.region.clone()))
}

/// Checks one envelope as an event of a bus whose region is `region`.
pub(crate) fn accept(state: &AppState, region: Option<&str>, mut v: Value, now: i64) -> Result<NewEvent, EventError> {
    // Tencent takes the region from the request: the bus's region stands in for it.
    if let (Some(r), Value::Object(o)) = (region, &mut v)
        && o.get("region").is_none_or(Value::is_null)
    {
        o.insert("region".into(), json!(r));
    }
    let e = Event::accept(v, &state.limits, now, || uuid::Uuid::now_v7().to_string())?;
    Ok(NewEvent { id: e.id, time_ms: e.time_ms, body: e.body, json: e.json, dotted: e.dotted, hops: 0 })
}

/// The header Magpie's own deliveries carry: how many Magpie deliveries led to this request.
pub const HOPS_HEADER: &str = "magpie-hops";
/// A request that has come through this many Magpie deliveries is refused: a loop.
pub const MAX_HOPS: u32 = 3;

/// The hop count of a request (0 without the header); a loop is refused with 508.
pub fn hops(headers: &axum::http::HeaderMap) -> Result<u32, ApiError> {
    let Some(v) = headers.get(HOPS_HEADER) else { return Ok(0) };
    let n: u32 = v.to_str().ok().and_then(|s| s.trim().parse().ok()).unwrap_or(MAX_HOPS);
    if n >= MAX_HOPS {
        return Err(ApiError::with_status(
            axum::http::StatusCode::LOOP_DETECTED,
            format!(
                "this request comes from a Magpie delivery that followed {n} others (Magpie-Hops: {n}): refused to stop a loop; a connection sends back into Magpie"
            ),
        ));
    }
    Ok(n)
}

/// Appends accepted events to `bus` (durably) and wakes its router lane; `hops` is the
/// request's hop count.
pub(crate) async fn append(
    state: &AppState,
    bus: &str,
    mut events: Vec<NewEvent>,
    hops: u32,
) -> Result<Vec<Appended>, ApiError> {
    for e in &mut events {
        e.hops = hops;
    }
    let n = events.len() as u64;
    let appended = state.store.append_events(bus, events).await?;
    EventsAccepted { bus, count: n }.emit();
    state.wake_router.wake(bus);
    Ok(appended)
}

/// Whether a request header (lower-case name) carries a credential, and so stays out of a stored
/// listen-path request: `Authorization`, cookies, API keys, tokens, signatures, secrets,
/// passwords, sessions (`x-api-key`, `x-gitlab-token`, `x-hub-signature-256`, `x-grafana-secret`…).
pub fn credential_header(name: &str) -> bool {
    const EXACT: [&str; 6] = ["authorization", "proxy-authorization", "cookie", "set-cookie", "apikey", "api-key"];
    const PARTS: [&str; 8] = ["token", "secret", "signature", "password", "passwd", "session", "auth", "credential"];
    EXACT.contains(&name) || name.ends_with("-key") || name.ends_with("_key") || PARTS.iter().any(|p| name.contains(p))
}

#[cfg(test)]
mod tests {
    use super::credential_header;

    #[test]
    fn credential_headers_are_recognised_and_ordinary_ones_kept() {
        for h in [
            "authorization",
            "cookie",
            "x-api-key",
            "x-gitlab-token",
            "x-hub-signature-256",
            "x-grafana-secret",
            "x-auth-user",
            "apikey",
            "x-session-id",
            "x-amz-security-token",
        ] {
            assert!(credential_header(h), "{h}");
        }
        for h in ["content-type", "x-source", "user-agent", "x-request-id", "x-forwarded-for", "accept"] {
            assert!(!credential_header(h), "{h}");
        }
    }
}
