//! Source adapters: a monitoring system's own webhook, taken as it sends it, turned into one
//! event per alert (`POST /v1/buses/{bus}/sources/{source}`).
//!
//! An adapter only reads the sender's body: it knows nothing of routing or alerts' state. A
//! request is all or nothing (the senders read no per-alert answer): any alert that cannot be
//! read refuses the request with the path of the field at fault, and nothing is stored. Event
//! ids are derived from what identifies the alert, so a sender's retry of the same notification
//! is stored once.

mod alertmanager;
mod tencent;

use magpie_core::event::json_kind as kind;
use magpie_core::json;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The senders Magpie takes as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Prometheus Alertmanager's `webhook_config` (payload version 4).
    Alertmanager,
    /// Grafana Alerting's webhook contact point (and Grafana OnCall).
    Grafana,
    /// Tencent Cloud Monitor's alarm callback (告警回调), metric and event alarms.
    TencentMonitor,
}

impl Source {
    /// The adapter named in the route.
    pub fn parse(name: &str) -> Option<Source> {
        match name {
            "alertmanager" => Some(Source::Alertmanager),
            "grafana" => Some(Source::Grafana),
            "tencent-monitor" => Some(Source::TencentMonitor),
            _ => None,
        }
    }

    /// Its name in the route.
    pub fn name(self) -> &'static str {
        match self {
            Source::Alertmanager => "alertmanager",
            Source::Grafana => "grafana",
            Source::TencentMonitor => "tencent-monitor",
        }
    }
}

/// Options a sender's URL may carry.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// The UTC offset of Tencent Cloud Monitor's times, which carry none (default `+08:00`).
    pub tz: Option<String>,
}

impl SourceOptions {
    /// Options from the request's query (`tz`), checked.
    pub fn new(tz: Option<String>) -> Result<SourceOptions, ApiError> {
        if let Some(t) = &tz
            && !tencent::valid_tz(t)
        {
            return Err(ApiError::field("tz", format!("expected a UTC offset such as +08:00, got {t:?}")));
        }
        Ok(SourceOptions { tz })
    }
}

/// The events of one sender request, received at `now` (ms). An empty list is a request that
/// carries no alert (Tencent's URL check).
pub fn events(source: Source, body: &[u8], opts: &SourceOptions, now: i64) -> Result<Vec<Value>, ApiError> {
    if source == Source::TencentMonitor && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let parsed = json::parse(body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if let Some(f) = parsed.faults.first() {
        return Err(ApiError::field(f.path_text(), f.to_string()));
    }
    match source {
        Source::Alertmanager | Source::Grafana => alertmanager::events(source, &parsed.value, now),
        Source::TencentMonitor => tencent::events(&parsed.value, opts).map(|e| vec![e]),
    }
}

/// A stable event id: `prefix-` and 24 hex digits of a hash of `parts`.
fn stable_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}-{hex}")
}

/// Reading a sender's JSON with the path of what is wrong.
struct Doc<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Doc<'a> {
    fn root(value: &'a Value) -> Doc<'a> {
        Doc { value, path: String::new() }
    }

    fn at(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    fn object(&self) -> Result<&'a Map<String, Value>, ApiError> {
        self.value.as_object().ok_or_else(|| {
            let at = if self.path.is_empty() { "(body)".to_string() } else { self.path.clone() };
            ApiError::field(at, format!("expected an object, got {}", kind(self.value)))
        })
    }

    /// The member `key`, if present and not null.
    fn get(&self, key: &str) -> Result<Option<Doc<'a>>, ApiError> {
        Ok(self.object()?.get(key).filter(|v| !v.is_null()).map(|value| Doc { value, path: self.at(key) }))
    }

    fn need(&self, key: &str, hint: &str) -> Result<Doc<'a>, ApiError> {
        self.get(key)?.ok_or_else(|| ApiError::field(self.at(key), format!("missing{hint}")))
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key)? {
            None => Ok(None),
            Some(d) => match d.value {
                Value::String(s) => Ok(Some(s.as_str())),
                other => Err(ApiError::field(d.path, format!("expected a string, got {}", kind(other)))),
            },
        }
    }

    fn need_str(&self, key: &str) -> Result<&'a str, ApiError> {
        self.str(key)?.ok_or_else(|| ApiError::field(self.at(key), "missing"))
    }

    /// An object of string values (labels, annotations).
    fn strings(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        let Some(d) = self.get(key)? else { return Ok(None) };
        let m = d.object()?;
        if let Some((k, v)) = m.iter().find(|(_, v)| !v.is_string()) {
            return Err(ApiError::field(format!("{}.{k}", d.path), format!("expected a string, got {}", kind(v))));
        }
        Ok(Some(m))
    }
}

#[cfg(test)]
mod tests;
