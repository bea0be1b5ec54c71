//! Event ingest: PutEvents (one event, `{"entries": [...]}`, or Tencent's `{"EventList": [...]}`)
//! and the CloudEvents HTTP binding (structured, batch and binary modes).

use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

/// Most entries in one request.
pub const MAX_ENTRIES: usize = 1_000;

/// The entries of a request, and whether it was a batch (batches always answer 200 with
/// per-entry results; a single invalid event answers 400).
pub fn entries(headers: &HeaderMap, body: &[u8]) -> Result<(Vec<Value>, bool), ApiError> {
    let content_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_ascii_lowercase();
    if headers.contains_key("ce-specversion") {
        return Ok((vec![binary_event(headers, &content_type, body)?], false));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    if content_type.starts_with("application/cloudevents-batch+json") {
        return match value {
            Value::Array(items) => Ok((items, true)),
            _ => Err(ApiError::bad_request("a CloudEvents batch must be a JSON array of events")),
        };
    }
    if content_type.starts_with("application/cloudevents+json") {
        return Ok((vec![value], false));
    }
    match value {
        Value::Object(mut o) if o.contains_key("entries") => match o.remove("entries") {
            Some(Value::Array(items)) => Ok((items, true)),
            _ => Err(ApiError::bad_request("entries: expected an array of events")),
        },
        Value::Object(mut o) if o.contains_key("EventList") => match o.remove("EventList") {
            Some(Value::Array(items)) => Ok((items.into_iter().map(from_tencent).collect(), true)),
            _ => Err(ApiError::bad_request("EventList: expected an array of events")),
        },
        Value::Array(items) => Ok((items, true)),
        other => Ok((vec![other], false)),
    }
}

/// Tencent PutEvents' capitalised event (`Source`, `Data` as a JSON string, `TagList`, …) as an
/// envelope. Anything that is not an object is passed on for the envelope check to refuse.
fn from_tencent(v: Value) -> Value {
    let Value::Object(o) = v else { return v };
    if !o.contains_key("Source") {
        return Value::Object(o);
    }
    let mut e = Map::new();
    for (from, to) in [
        ("Id", "id"),
        ("Source", "source"),
        ("Type", "type"),
        ("Subject", "subject"),
        ("Time", "time"),
        ("Region", "region"),
        ("Status", "status"),
    ] {
        if let Some(v) = o.get(from) {
            e.insert(to.into(), v.clone());
        }
    }
    if let Some(data) = o.get("Data") {
        let parsed = match data {
            Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| data.clone()),
            other => other.clone(),
        };
        e.insert("data".into(), parsed);
        e.insert("datacontenttype".into(), json!("application/json;charset=utf-8"));
    }
    if let Some(Value::Array(tags)) = o.get("TagList") {
        let tags: Map<String, Value> = tags
            .iter()
            .filter_map(|t| Some((t.get("Key")?.as_str()?.to_string(), t.get("Value").cloned().unwrap_or(Value::Null))))
            .collect();
        e.insert("tags".into(), Value::Object(tags));
    }
    Value::Object(e)
}

/// A CloudEvent in binary mode: attributes in `ce-*` headers, data in the body.
fn binary_event(headers: &HeaderMap, content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let mut e = Map::new();
    for (name, value) in headers {
        if let Some(attr) = name.as_str().strip_prefix("ce-") {
            let v = value.to_str().map_err(|_| ApiError::bad_request(format!("header {name} is not valid text")))?;
            let v = percent_decode(v);
            let attr = attr.to_ascii_lowercase();
            // Tencent's time is a millisecond number; keep it a number when it is one.
            let v = if attr == "time" {
                v.parse::<i64>().map(Value::from).unwrap_or(Value::String(v))
            } else {
                Value::String(v)
            };
            e.insert(attr, v);
        }
    }
    if !body.is_empty() {
        let data = if content_type.contains("json") {
            serde_json::from_slice(body)
                .map_err(|err| ApiError::bad_request(format!("the body is not valid JSON: {err}")))?
        } else {
            Value::String(String::from_utf8_lossy(body).into_owned())
        };
        e.insert("data".into(), data);
        e.insert("datacontenttype".into(), Value::String(content_type.to_string()));
    }
    Ok(Value::Object(e))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn shapes() {
        let (e, batch) = entries(&headers(&[]), br#"{"source":"a"}"#).unwrap();
        assert_eq!((e.len(), batch), (1, false));
        let (e, batch) = entries(&headers(&[]), br#"{"entries":[{"source":"a"},{"source":"b"}]}"#).unwrap();
        assert_eq!((e.len(), batch), (2, true));
        let (e, _) =
            entries(&headers(&[("content-type", "application/cloudevents-batch+json")]), br#"[{"source":"a"}]"#)
                .unwrap();
        assert_eq!(e.len(), 1);
        let (e, _) = entries(&headers(&[]), br#"{"EventList":[{"Source":"myapp","Data":"{\"k\":1}","TagList":[{"Key":"env","Value":"prod"}],"Time":1700000000000}]}"#).unwrap();
        assert_eq!(
            e[0],
            json!({"source": "myapp", "time": 1700000000000i64, "data": {"k": 1}, "datacontenttype": "application/json;charset=utf-8", "tags": {"env": "prod"}})
        );
        assert!(entries(&headers(&[]), b"{nope").is_err());
        assert!(
            entries(&headers(&[("content-type", "application/cloudevents-batch+json")]), br#"{"source":"a"}"#).is_err()
        );
    }

    #[test]
    fn binary_mode() {
        let h = headers(&[
            ("ce-specversion", "1.0"),
            ("ce-id", "x1"),
            ("ce-source", "cvm.cloud.tencent"),
            ("ce-type", "cvm:ErrorEvent:GuestReboot"),
            ("ce-time", "1700000000000"),
            ("ce-region", "ap-guangzhou"),
            ("content-type", "application/json"),
        ]);
        let (e, _) = entries(&h, br#"{"instanceId":"ins-1"}"#).unwrap();
        assert_eq!(e[0]["source"], "cvm.cloud.tencent");
        assert_eq!(e[0]["time"], 1700000000000i64);
        assert_eq!(e[0]["region"], "ap-guangzhou");
        assert_eq!(e[0]["data"]["instanceId"], "ins-1");
    }
}
