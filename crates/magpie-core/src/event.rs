//! The event envelope: CloudEvents 1.0 JSON with Tencent EventBridge's extras.
//!
//! An [`Event`] keeps the JSON exactly as the producer sent it (so patterns see the producer's
//! values, e.g. `time` as a string), after checking the envelope's field types and adding what a
//! producer may leave out: `id`, `specversion` and `time`.

use serde_json::{Map, Value};

/// Default largest size of one event, in bytes of its JSON text.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;
/// Default deepest nesting of objects and arrays in one event.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Limits applied when an event is accepted.
#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    /// Largest JSON text of one event, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of objects and arrays.
    pub max_depth: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self { max_bytes: DEFAULT_MAX_EVENT_BYTES, max_depth: DEFAULT_MAX_DEPTH }
    }
}

/// Why an event was refused. The message names the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The event is not a JSON object.
    #[error("an event must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// A required field is absent or empty.
    #[error("{0}: required field is missing or empty")]
    Missing(&'static str),
    /// A field has the wrong JSON type or an unusable value.
    #[error("{field}: {reason}")]
    Invalid {
        /// The envelope field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The event is larger than the limit.
    #[error("event is {size} bytes, larger than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the event's JSON text.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The event nests deeper than the limit.
    #[error("event nests deeper than the limit of {0} levels")]
    TooDeep(usize),
    /// Part of the event's JSON is refused (a duplicate key, a number no double holds).
    #[error("{}", if path.is_empty() { reason.clone() } else { format!("{path}: {reason}") })]
    Json {
        /// Where in the event.
        path: String,
        /// Why.
        reason: String,
    },
}

impl EventError {
    /// A short machine-readable code, used in PutEvents per-entry results.
    pub fn code(&self) -> &'static str {
        match self {
            EventError::NotAnObject(_) => "InvalidEvent",
            EventError::Missing(_) => "MissingField",
            EventError::Invalid { .. } => "InvalidField",
            EventError::TooLarge { .. } => "EventTooLarge",
            EventError::TooDeep(_) => "EventTooDeep",
            EventError::Json { .. } => "InvalidJson",
        }
    }

    /// The path of the field at fault, when there is one.
    pub fn path(&self) -> Option<String> {
        match self {
            EventError::Missing(f) | EventError::Invalid { field: f, .. } => Some(f.to_string()),
            EventError::Json { path, .. } if !path.is_empty() => Some(path.clone()),
            _ => None,
        }
    }

    /// The first fault of a parsed document as an event error.
    pub fn from_fault(f: &crate::json::Fault) -> Self {
        EventError::Json { path: f.path_text(), reason: f.reason.clone() }
    }
}

/// An accepted event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event's id (the producer's, or one assigned on ingest).
    pub id: String,
    /// The event time as milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The whole event as JSON, with `id`, `specversion` and `time` filled in when absent.
    pub body: Value,
    /// `body` as JSON text: serialised once, here, and kept as it is from the store to the
    /// router's scanner.
    pub json: String,
    /// Whether `body` has a dotted key (`"a.b": 1`), which patterns read as a nested field.
    pub dotted: bool,
}

impl Event {
    /// Checks `value` as an event envelope and fills in the fields a producer may omit.
    ///
    /// `new_id` is called only when the event has no `id`; `now_ms` is used when it has no `time`.
    pub fn accept(
        value: Value,
        limits: &EventLimits,
        now_ms: i64,
        new_id: impl FnOnce() -> String,
    ) -> Result<Event, EventError> {
        if depth(&value) > limits.max_depth {
            return Err(EventError::TooDeep(limits.max_depth));
        }
        let mut obj = match value {
            Value::Object(o) => o,
            other => return Err(EventError::NotAnObject(json_kind(&other))),
        };
        for field in ["id", "specversion", "type", "subject", "region", "datacontenttype", "dataschema", "status"] {
            check_string(&obj, field)?;
        }
        match obj.get("specversion") {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) if v == "1.0" => {}
            Some(other) => {
                return Err(EventError::Invalid {
                    field: "specversion",
                    reason: format!("only CloudEvents 1.0 is accepted, got {other}"),
                });
            }
        }
        if let Some(Value::String(id)) = obj.get("id")
            && id.is_empty()
        {
            return Err(EventError::Invalid {
                field: "id",
                reason: "cannot be empty (leave it out to have one assigned)".into(),
            });
        }
        match obj.get("source") {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err(EventError::Missing("source"));
            }
            Some(other) => {
                return Err(EventError::Invalid {
                    field: "source",
                    reason: format!("expected a string, got {}", json_kind(other)),
                });
            }
        }
        match obj.get("tags") {
            None | Some(Value::Null) => {}
            Some(Value::Object(tags)) => {
                if let Some((k, v)) = tags.iter().find(|(_, v)| !v.is_string()) {
                    return Err(EventError::Invalid {
                        field: "tags",
                        reason: format!("tag {k:?}: expected a string value, got {}", json_kind(v)),
                    });
                }
            }
            Some(other) => {
                return Err(EventError::Invalid {
                    field: "tags",
                    reason: format!("expected an object of tag names to string values, got {}", json_kind(other)),
                });
            }
        }
        match obj.get("resource") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                if let Some((i, v)) = items.iter().enumerate().find(|(_, v)| !v.is_string()) {
                    return Err(EventError::Invalid {
                        field: "resource",
                        reason: format!("element {i}: expected a string, got {}", json_kind(v)),
                    });
                }
            }
            Some(other) => {
                return Err(EventError::Invalid {
                    field: "resource",
                    reason: format!("expected an array of resource names, got {}", json_kind(other)),
                });
            }
        }
        match (obj.get("data"), obj.get("data_base64")) {
            (_, None | Some(Value::Null)) => {}
            (Some(d), Some(_)) if !d.is_null() => {
                return Err(EventError::Invalid {
                    field: "data_base64",
                    reason: "an event carries data or data_base64, not both".into(),
                });
            }
            (_, Some(Value::String(b))) => {
                use base64::Engine as _;
                if base64::engine::general_purpose::STANDARD.decode(b).is_err() {
                    return Err(EventError::Invalid { field: "data_base64", reason: "not valid base64".into() });
                }
            }
            (_, Some(other)) => {
                return Err(EventError::Invalid {
                    field: "data_base64",
                    reason: format!("expected a base64 string, got {}", json_kind(other)),
                });
            }
        }
        let time_ms = match obj.get("time") {
            None | Some(Value::Null) => {
                obj.insert("time".into(), Value::from(now_ms));
                now_ms
            }
            Some(t) => parse_time(t).map_err(|reason| EventError::Invalid { field: "time", reason })?,
        };
        let id = match obj.get("id") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                let id = new_id();
                obj.insert("id".into(), Value::String(id.clone()));
                id
            }
        };
        if obj.get("specversion").is_none_or(Value::is_null) {
            obj.insert("specversion".into(), Value::String("1.0".into()));
        }
        let body = Value::Object(obj);
        // The size is that of the event as stored (with the fields filled in above).
        let json = serde_json::to_string(&body).unwrap_or_default();
        if json.len() > limits.max_bytes {
            return Err(EventError::TooLarge { size: json.len(), limit: limits.max_bytes });
        }
        let dotted = crate::json::has_dotted_keys(&body);
        Ok(Event { id, time_ms, body, json, dotted })
    }

    /// The attributes the CloudEvents 1.0 spec requires, for events that come as CloudEvents
    /// (structured, batch or binary mode): `specversion` (`1.0`), and `id`, `source` and `type`
    /// as non-empty strings. The plain PutEvents form does not need them (Magpie fills `id`,
    /// `specversion` and `time` in, as Tencent's PutEvents does).
    pub fn check_cloudevent(value: &Value) -> Result<(), EventError> {
        let Value::Object(obj) = value else { return Err(EventError::NotAnObject(json_kind(value))) };
        if let Some(name) = obj.keys().find(|k| {
            *k != "data_base64" && (k.is_empty() || !k.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        }) {
            return Err(EventError::Json {
                path: name.clone(),
                reason: "a CloudEvents attribute name holds only lower-case letters a-z and digits".into(),
            });
        }
        for field in ["specversion", "id", "source", "type"] {
            match obj.get(field) {
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(Value::String(_)) | None | Some(Value::Null) => return Err(EventError::Missing(field)),
                Some(other) => {
                    return Err(EventError::Invalid {
                        field,
                        reason: format!("expected a string, got {}", json_kind(other)),
                    });
                }
            }
        }
        Ok(())
    }

    /// The `source` field.
    pub fn source(&self) -> &str {
        self.body.get("source").and_then(Value::as_str).unwrap_or_default()
    }

    /// The `type` field, or "" when absent.
    pub fn event_type(&self) -> &str {
        self.body.get("type").and_then(Value::as_str).unwrap_or_default()
    }
}

fn check_string(obj: &Map<String, Value>, field: &'static str) -> Result<(), EventError> {
    match obj.get(field) {
        None | Some(Value::Null) | Some(Value::String(_)) => Ok(()),
        Some(other) => {
            Err(EventError::Invalid { field, reason: format!("expected a string, got {}", json_kind(other)) })
        }
    }
}

/// The latest event time accepted: 9999-12-31T23:59:59.999Z.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// Parses an event time: milliseconds since the epoch as a JSON number or a numeric string (as
/// Tencent sends it), or an RFC 3339 timestamp (as other CloudEvents producers send it); from the
/// epoch to the end of year 9999.
pub fn parse_time(value: &Value) -> Result<i64, String> {
    let ms = parse_time_unchecked(value)?;
    if ms > MAX_TIME_MS {
        return Err(format!("{value} is after the end of year 9999"));
    }
    Ok(ms)
}

fn parse_time_unchecked(value: &Value) -> Result<i64, String> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
            .filter(|ms| *ms >= 0)
            .ok_or_else(|| format!("expected milliseconds since the epoch, got {n}")),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(ms) = s.parse::<i64>() {
                if ms >= 0 {
                    return Ok(ms);
                }
                return Err(format!("expected milliseconds since the epoch, got {s:?}"));
            }
            match rfc3339_ms(s) {
                Some(ms) if ms >= 0 => Ok(ms),
                Some(_) => Err(format!("{s:?} is before 1970 (the epoch)")),
                None => Err(format!("expected milliseconds since the epoch or an RFC 3339 time, got {s:?}")),
            }
        }
        other => Err(format!("expected a number or a numeric string, got {}", json_kind(other))),
    }
}

/// An RFC 3339 time (`2024-01-02T03:04:05.678+08:00`, `…Z`, `t`/`z` in either case; without a
/// zone, UTC) as milliseconds since the epoch (negative before it). `None` when it is not one.
pub fn rfc3339_ms(s: &str) -> Option<i64> {
    let upper = s.trim().to_ascii_uppercase();
    let b = upper.as_bytes();
    let (base, offset_s) = if let Some(base) = upper.strip_suffix('Z') {
        (base, 0)
    } else if b.len() > 6 && matches!(b[b.len() - 6], b'+' | b'-') && b[b.len() - 3] == b':' {
        let (base, off) = upper.split_at(upper.len() - 6);
        let digits = |r: std::ops::Range<usize>| -> Option<i64> {
            let t = off.get(r)?;
            if t.bytes().all(|c| c.is_ascii_digit()) { t.parse().ok() } else { None }
        };
        let (h, m) = (digits(1..3)?, digits(4..6)?);
        if h > 23 || m > 59 {
            return None;
        }
        let sign = if off.starts_with('-') { -1 } else { 1 };
        (base, sign * (h * 3600 + m * 60))
    } else {
        (upper.as_str(), 0)
    };
    // `T` between date and time is required (humantime's weak form also takes a space).
    if base.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let t = humantime::parse_rfc3339_weak(base).ok()?;
    let ms = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).ok()?,
        Err(e) => -i64::try_from(e.duration().as_millis()).ok()?,
    };
    Some(ms - offset_s * 1000)
}

/// The JSON type name of a value, for error messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn depth(v: &Value) -> usize {
    // Iterative, so a hostile document cannot overflow the stack here.
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accept(v: Value) -> Result<Event, EventError> {
        Event::accept(v, &EventLimits::default(), 1_700_000_000_000, || "gen".into())
    }

    #[test]
    fn time_may_be_number_numeric_string_or_rfc3339() {
        let e = accept(json!({"source": "a", "time": 1615430559146u64})).unwrap();
        assert_eq!(e.time_ms, 1615430559146);
        let e = accept(json!({"source": "a", "time": "1615430559146"})).unwrap();
        assert_eq!(e.time_ms, 1615430559146);
        assert_eq!(e.body["time"], json!("1615430559146"), "the producer's form is kept");
        let e = accept(json!({"source": "a", "time": "2021-03-11T02:42:39.146Z"})).unwrap();
        assert_eq!(e.time_ms, 1615430559146);
        let err = accept(json!({"source": "a", "time": "yesterday"})).unwrap_err();
        assert!(err.to_string().starts_with("time: "), "{err}");
    }

    #[test]
    fn rfc3339_offsets_count() {
        let ms = |s: &str| rfc3339_ms(s);
        assert_eq!(ms("2024-01-02T03:04:05.678+08:00"), Some(1_704_135_845_678));
        assert_eq!(ms("2024-01-02T03:04:05.678Z"), Some(1_704_164_645_678));
        assert_eq!(ms("2024-01-02t03:04:05.678z"), Some(1_704_164_645_678));
        assert_eq!(ms("2024-01-02T03:04:05+08:00"), Some(1_704_135_845_000));
        assert_eq!(ms("2024-01-01T22:04:05.678-05:00"), Some(1_704_164_645_678));
        assert_eq!(ms("2024-01-02T03:04:05.123456789+08:30"), Some(1_704_134_045_123));
        assert_eq!(ms("1970-01-01T00:00:00+01:00"), Some(-3_600_000));
        for bad in [
            "2024-01-02T03:04:05+99:99",
            "2024-01-02T03:04:05+8:00",
            "2024-01-02 03:04:05Z",
            "2024-13-02T00:00:00Z",
            "x",
        ] {
            assert_eq!(ms(bad), None, "{bad}");
        }
        let e = accept(json!({"source": "a", "time": "1970-01-01T00:00:00+01:00"})).unwrap_err();
        assert!(e.to_string().contains("before 1970"), "{e}");
    }

    #[test]
    fn fills_id_time_and_specversion() {
        let e = accept(json!({"source": "a"})).unwrap();
        assert_eq!(e.id, "gen");
        assert_eq!(e.body["id"], "gen");
        assert_eq!(e.body["time"], 1_700_000_000_000i64);
        assert_eq!(e.body["specversion"], "1.0");
        let e = accept(json!({"source": "a", "id": "mine"})).unwrap();
        assert_eq!(e.id, "mine");
    }

    #[test]
    fn refuses_bad_envelopes_naming_the_field() {
        assert_eq!(accept(json!({"type": "x"})).unwrap_err(), EventError::Missing("source"));
        assert_eq!(accept(json!([1])).unwrap_err(), EventError::NotAnObject("an array"));
        let err = accept(json!({"source": "a", "subject": 5})).unwrap_err();
        assert_eq!(err.to_string(), "subject: expected a string, got a number");
        let err = accept(json!({"source": "a", "tags": [1]})).unwrap_err();
        assert!(err.to_string().starts_with("tags: "));
    }

    #[test]
    fn enforces_size_and_depth() {
        let big = "x".repeat(300 * 1024);
        assert!(matches!(accept(json!({"source": "a", "data": big})), Err(EventError::TooLarge { .. })));
        let mut deep = json!(1);
        for _ in 0..100 {
            deep = json!([deep]);
        }
        assert_eq!(accept(json!({"source": "a", "data": deep})), Err(EventError::TooDeep(64)));
    }
}
