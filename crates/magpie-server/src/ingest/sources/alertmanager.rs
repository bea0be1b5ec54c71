//! Alertmanager's webhook (payload version 4) and Grafana Alerting's webhook contact point,
//! which sends the same shape with extras (`version` "1", `state`, `title`, `message`, and per
//! alert `values`, `valueString`, dashboard/panel/silence URLs…).
//!
//! One event per alert: `source` `prometheus.alertmanager` or `grafana`, `type` the `alertname`
//! label (Grafana: else the `ruleUID`), `subject` the `instance` label (else the fingerprint),
//! `status` `"1"` firing / `"0"` resolved, `time` `startsAt` (firing) or `endsAt` (resolved),
//! `region` a `region` label, `fingerprint` the alert's fingerprint, `data` the alert as sent
//! plus the group's fields (receiver, group and common labels, externalURL, groupKey…).

use magpie_core::event::rfc3339_ms;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Doc, Source, stable_id};
use crate::error::ApiError;

/// Group fields copied into every alert's `data` (Grafana's extras after Alertmanager's).
const GROUP_FIELDS: &[&str] = &[
    "receiver",
    "groupKey",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "truncatedAlerts",
    "notification_reason",
    "title",
    "message",
    "state",
    "orgId",
];

/// How long a firing notification is the same notification: a sender's retry within it is
/// stored once; the group re-sent later (Alertmanager's `group_interval`, `repeat_interval`)
/// counts as the alert firing again.
const SAME_NOTIFICATION_MS: i64 = 60_000;

pub(super) fn events(source: Source, body: &Value, now: i64) -> Result<Vec<Value>, ApiError> {
    let doc = Doc::root(body);
    let (source_name, want_version, prefix) = match source {
        Source::Grafana => ("grafana", "1", "grafana"),
        _ => ("prometheus.alertmanager", "4", "am"),
    };
    doc.object()?;
    let sender = if source == Source::Grafana { "a Grafana webhook contact point" } else { "an Alertmanager webhook" };
    let alerts = doc.need("alerts", &format!(": is this {sender}'s request?"))?;
    let Value::Array(items) = alerts.value else {
        return Err(ApiError::field("alerts", "expected an array of alerts"));
    };
    match doc.str("version")? {
        // Grafana OnCall and older Grafana send no version.
        None if source == Source::Grafana => {}
        Some(v) if v == want_version => {}
        other => {
            return Err(ApiError::field(
                "version",
                format!(
                    "expected {want_version:?} ({sender}), got {}",
                    other.map_or("none".into(), |v| format!("{v:?}"))
                ),
            ));
        }
    }
    let group: Map<String, Value> = GROUP_FIELDS
        .iter()
        .filter_map(|k| body.get(*k).filter(|v| !v.is_null()).map(|v| (k.to_string(), v.clone())))
        .collect();
    items
        .iter()
        .enumerate()
        .map(|(i, alert)| {
            let a = Doc { value: alert, path: format!("alerts[{i}]") };
            one(&a, source, source_name, prefix, &group, now)
        })
        .collect()
}

fn one(
    a: &Doc<'_>,
    source: Source,
    source_name: &str,
    prefix: &str,
    group: &Map<String, Value>,
    now: i64,
) -> Result<Value, ApiError> {
    let obj = a.object()?;
    let status = a.need_str("status")?;
    let firing = match status {
        "firing" => true,
        "resolved" => false,
        other => {
            return Err(ApiError::field(a.at("status"), format!("expected \"firing\" or \"resolved\", got {other:?}")));
        }
    };
    let labels = a.strings("labels")?.cloned().unwrap_or_default();
    a.strings("annotations")?;
    let label = |k: &str| labels.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let starts = time(a, "startsAt")?.ok_or_else(|| ApiError::field(a.at("startsAt"), "missing"))?;
    let ends = time(a, "endsAt")?;
    let at = if firing {
        starts.1
    } else {
        ends.map(|e| e.1).ok_or_else(|| ApiError::field(a.at("endsAt"), "a resolved alert needs the time it ended"))?
    };
    let fingerprint = match a.str("fingerprint")? {
        Some(f) if !f.is_empty() => f.to_string(),
        _ => label_fingerprint(&labels),
    };
    let ty = match (label("alertname"), source) {
        (Some(n), _) => n.to_string(),
        (None, Source::Grafana) => a.str("ruleUID")?.unwrap_or("grafana-alert").to_string(),
        (None, _) => "alertmanager-alert".to_string(),
    };
    let subject = label("instance").map_or_else(|| fingerprint.clone(), str::to_string);
    let id = if firing {
        let bucket = (now / SAME_NOTIFICATION_MS).to_string();
        stable_id(prefix, &[&fingerprint, starts.0, "firing", &bucket])
    } else {
        stable_id(prefix, &[&fingerprint, starts.0, "resolved", ends.map_or("", |e| e.0)])
    };
    let mut data = obj.clone();
    for (k, v) in group {
        data.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut event = json!({
        "specversion": "1.0",
        "id": id,
        "source": source_name,
        "type": ty,
        "subject": subject,
        "time": at,
        "status": if firing { "1" } else { "0" },
        "fingerprint": fingerprint,
        "datacontenttype": "application/json",
        "data": data,
    });
    if let Some(r) = label("region") {
        event["region"] = json!(r);
    }
    Ok(event)
}

/// An RFC 3339 time field: its text and ms. Alertmanager's zero time (`0001-01-01T00:00:00Z`,
/// what a firing alert's `endsAt` is) is no time.
fn time<'a>(a: &Doc<'a>, key: &str) -> Result<Option<(&'a str, i64)>, ApiError> {
    let Some(t) = a.str(key)? else { return Ok(None) };
    if t.is_empty() || t.starts_with("0001-01-01") {
        return Ok(None);
    }
    match rfc3339_ms(t) {
        Some(ms) if ms >= 0 => Ok(Some((t, ms))),
        _ => Err(ApiError::field(a.at(key), format!("expected an RFC 3339 time, got {t:?}"))),
    }
}

/// A fingerprint for an alert sent without one: a hash of its sorted labels (16 hex digits, as
/// Alertmanager's).
fn label_fingerprint(labels: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = labels.keys().collect();
    keys.sort();
    let mut h = Sha256::new();
    for k in keys {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(labels[k].as_str().unwrap_or_default().as_bytes());
        h.update([0xff]);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}
