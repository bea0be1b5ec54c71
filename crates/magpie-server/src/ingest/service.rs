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
    Ok(NewEvent { id: e.id, time_ms: e.time_ms, body: e.body, json: e.json, dotted: e.dotted })
}

/// Appends accepted events to `bus` (durably) and wakes its router lane.
pub(crate) async fn append(state: &AppState, bus: &str, events: Vec<NewEvent>) -> Result<Vec<Appended>, ApiError> {
    let n = events.len() as u64;
    let appended = state.store.append_events(bus, events).await?;
    EventsAccepted { bus, count: n }.emit();
    state.wake_router.wake(bus);
    Ok(appended)
}
