//! Event ingest: PutEvents (one event, `{"entries": [...]}`, a bare array, or Tencent's
//! `{"EventList": [...]}`) and the CloudEvents HTTP binding (structured, batch and binary modes).
//!
//! This stage turns a request into entries, each an event envelope or the reason it is refused,
//! so that one bad entry never costs the others. The body is read once, strictly
//! (`magpie_core::json`): a duplicate key or a number no double holds refuses the entry it is in.
//! CloudEvents modes also require what the CloudEvents 1.0 spec requires (`specversion`, `id`,
//! `source`, `type`); the plain form keeps Tencent's defaults (Magpie fills `id`, `specversion`
//! and `time` in).

use axum::http::HeaderMap;
use magpie_core::EventError;
use magpie_core::json::{self, Parsed, Step};
use serde_json::{Map, Value, json};

use crate::error::ApiError;

mod service;
pub mod sources;

pub use service::credential_header;
pub use service::{HOPS_HEADER, MAX_HOPS, hops};
pub(crate) use service::{accept, append, bus_region};

/// Most entries in one request.
pub const MAX_ENTRIES: usize = 1_000;

/// A request's entries.
#[derive(Debug)]
pub struct Entries {
    /// Each entry: an envelope to accept, or why it is refused.
    pub items: Vec<Result<Value, EventError>>,
    /// Whether it was a batch (batches answer 200 with per-entry results; a single invalid event
    /// answers 400).
    pub batch: bool,
}

/// The media type of a request, lower-cased, without parameters; `None` when there is none.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(axum::http::header::CONTENT_TYPE)?;
    let v = v.to_str().unwrap_or("invalid");
    Some(v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
}

/// Whether a media type is JSON: `application/json`, `application/*+json`, none at all, or
/// curl's default for `-d` (`application/x-www-form-urlencoded`, which curl sends for JSON too).
pub fn is_json(media: Option<&str>) -> bool {
    match media {
        None => true,
        Some(m) => {
            m == "application/json"
                || (m.starts_with("application/") && m.ends_with("+json"))
                || m == "application/x-www-form-urlencoded"
        }
    }
}

/// 415 for a body that is not JSON.
pub fn unsupported(media: &str, accepted: &str) -> ApiError {
    ApiError::unsupported_media(format!("content type {media:?} is not accepted here; send {accepted}"))
}

/// The entries of a request to `bus`.
pub fn entries(headers: &HeaderMap, body: &[u8], bus: &str) -> Result<Entries, ApiError> {
    let media = media_type(headers);
    // A CloudEvents content type is structured mode whatever else is sent; `ce-specversion` is
    // binary mode; other `ce-` headers alone are a mistake, not something to ignore.
    let structured = media.as_deref().is_some_and(|m| m.starts_with("application/cloudevents"));
    if !structured && headers.contains_key("ce-specversion") {
        return Ok(Entries { items: vec![binary_event(headers, body)?], batch: false });
    }
    if !structured && let Some(name) = headers.keys().find(|k| k.as_str().starts_with("ce-")) {
        return Err(ApiError::field(
            "ce-specversion",
            format!("header {name} without ce-specversion: a binary-mode CloudEvent needs ce-specversion: 1.0"),
        ));
    }
    if !is_json(media.as_deref()) {
        return Err(unsupported(media.as_deref().unwrap_or_default(), "application/json or a CloudEvents JSON type"));
    }
    let mut parsed =
        json::parse(body).map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
    match media.as_deref() {
        Some("application/cloudevents-batch+json") => {
            let Value::Array(_) = &parsed.value else {
                return Err(ApiError::bad_request("a CloudEvents batch must be a JSON array of events"));
            };
            let items = split(&mut parsed, None, cloudevent);
            Ok(Entries { items, batch: true })
        }
        Some("application/cloudevents+json") => {
            let v = parsed.value.take();
            Ok(Entries { items: vec![whole(&parsed.faults, &[], v).and_then(cloudevent)], batch: false })
        }
        _ => plain(parsed, bus),
    }
}

/// The shapes of a plain PutEvents body.
enum Shape {
    Entries,
    EventList,
    Array,
    One,
}

/// The plain PutEvents forms.
fn plain(mut parsed: Parsed, bus: &str) -> Result<Entries, ApiError> {
    let top_faults = |parsed: &Parsed, allowed: &str| -> Result<(), ApiError> {
        // Faults inside an entry refuse that entry; any other (a duplicate `entries`) the request.
        match parsed
            .faults
            .iter()
            .find(|f| !matches!(f.path.as_slice(), [Step::Key(k), Step::Index(_), ..] if k == allowed))
        {
            Some(f) => Err(ApiError::field(f.path_text(), f.to_string())),
            None => Ok(()),
        }
    };
    let shape = match &parsed.value {
        Value::Object(o) if o.contains_key("entries") => {
            top_faults(&parsed, "entries")?;
            wrapper(o, "entries", &[], "{\"entries\": [events]}")?;
            Shape::Entries
        }
        Value::Object(o) if o.contains_key("EventList") => {
            top_faults(&parsed, "EventList")?;
            if let Some(reason) = o.get("EventBusId").and_then(|id| other_bus(id, bus)) {
                return Err(ApiError::field("EventBusId", format!("EventBusId: {reason}")));
            }
            wrapper(o, "EventList", &["EventBusId"], "{\"EventList\": [events], \"EventBusId\": bus}")?;
            Shape::EventList
        }
        Value::Array(_) => Shape::Array,
        _ => Shape::One,
    };
    Ok(match shape {
        Shape::Entries => Entries { items: split(&mut parsed, Some("entries"), |v| bus_id(v, bus)), batch: true },
        Shape::EventList => Entries {
            items: split(&mut parsed, Some("EventList"), |v| bus_id(v, bus).and_then(from_tencent)),
            batch: true,
        },
        Shape::Array => Entries { items: split(&mut parsed, None, |v| bus_id(v, bus)), batch: true },
        Shape::One => {
            let v = parsed.value.take();
            Entries { items: vec![whole(&parsed.faults, &[], v).and_then(|v| bus_id(v, bus))], batch: false }
        }
    })
}

/// The elements of the array at the top (or under `key`), moved out of the document, each with
/// its own faults, through `then`.
fn split(
    parsed: &mut Parsed,
    key: Option<&str>,
    then: impl Fn(Value) -> Result<Value, EventError>,
) -> Vec<Result<Value, EventError>> {
    let array = match key {
        Some(k) => parsed.value.get_mut(k).map(Value::take),
        None => Some(parsed.value.take()),
    };
    let Some(Value::Array(items)) = array else { return Vec::new() };
    let mut path: Vec<Step> = key.map(|k| vec![Step::Key(k.to_string())]).unwrap_or_default();
    let base = path.len();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            path.truncate(base);
            path.push(Step::Index(i));
            whole(&parsed.faults, &path, item).and_then(&then)
        })
        .collect()
}

/// `value` (the part of the document at `at`), or the first fault in it.
fn whole(faults: &[json::Fault], at: &[Step], value: Value) -> Result<Value, EventError> {
    match faults.iter().find(|f| f.path.starts_with(at)) {
        Some(f) => Err(EventError::Json { path: json::path_text(&f.path[at.len()..]), reason: f.reason.clone() }),
        None => Ok(value),
    }
}

/// A batch wrapper (`{"entries": [...]}`, Tencent's `{"EventList": [...], ...}`): `list` is an
/// array and no key but it and `allowed` is there.
fn wrapper(o: &Map<String, Value>, list: &str, allowed: &[&str], form: &str) -> Result<(), ApiError> {
    if let Some(k) = o.keys().find(|k| *k != list && !allowed.contains(&k.as_str())) {
        return Err(ApiError::field(k.clone(), format!("{k}: unknown field; the batch form is {form}")));
    }
    match o.get(list) {
        Some(Value::Array(_)) => Ok(()),
        _ => Err(ApiError::field(list, format!("{list}: expected an array of events"))),
    }
}

/// Why an `EventBusId` (Tencent's field) does not name `bus`, if it does not; null is absent.
fn other_bus(id: &Value, bus: &str) -> Option<String> {
    match id {
        Value::Null => None,
        Value::String(id) if id == bus => None,
        other => Some(format!("{other} is not the bus of this request's path ({bus:?})")),
    }
}

/// An event's own `EventBusId` must name the bus it is put on; it is not kept.
fn bus_id(v: Value, bus: &str) -> Result<Value, EventError> {
    let Value::Object(mut o) = v else { return Ok(v) };
    if let Some(reason) = o.remove("EventBusId").and_then(|id| other_bus(&id, bus)) {
        return Err(EventError::Invalid { field: "EventBusId", reason });
    }
    Ok(Value::Object(o))
}

fn cloudevent(v: Value) -> Result<Value, EventError> {
    magpie_core::Event::check_cloudevent(&v)?;
    Ok(v)
}

/// Tencent PutEvents' capitalised event (`Source`, `Data` as a JSON string, `TagList`, …) as an
/// envelope. Tencent takes the region from the request; the bus's region fills it in later.
fn from_tencent(v: Value) -> Result<Value, EventError> {
    let Value::Object(o) = v else { return Err(EventError::NotAnObject(magpie_core::event::json_kind(&v))) };
    if !o.contains_key("Source") {
        // The plain envelope in an EventList: checked as it is.
        return Ok(Value::Object(o));
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
            // Data is a JSON document in a string; a string that is not JSON stays a string.
            Value::String(s) => match json::parse(s.as_bytes()) {
                Ok(p) => match p.faults.first() {
                    Some(f) => {
                        let path = json::path_text(&f.path);
                        let path = if path.is_empty() { "Data".to_string() } else { format!("Data.{path}") };
                        return Err(EventError::Json { path, reason: f.reason.clone() });
                    }
                    None => p.value,
                },
                Err(_) => data.clone(),
            },
            other => other.clone(),
        };
        e.insert("data".into(), parsed);
        e.insert("datacontenttype".into(), json!("application/json;charset=utf-8"));
    }
    match o.get("TagList") {
        None | Some(Value::Null) => {}
        Some(Value::Array(tags)) => {
            let mut out = Map::new();
            for (i, t) in tags.iter().enumerate() {
                match (t.get("Key").and_then(Value::as_str), t.get("Value").and_then(Value::as_str)) {
                    (Some(k), Some(v)) => {
                        out.insert(k.to_string(), json!(v));
                    }
                    _ => {
                        return Err(EventError::Json {
                            path: format!("TagList[{i}]"),
                            reason: "expected {\"Key\": string, \"Value\": string}".into(),
                        });
                    }
                }
            }
            e.insert("tags".into(), Value::Object(out));
        }
        Some(_) => {
            return Err(EventError::Json {
                path: "TagList".into(),
                reason: "expected an array of {\"Key\", \"Value\"} tags".into(),
            });
        }
    }
    Ok(Value::Object(e))
}

/// A CloudEvent in binary mode: attributes in `ce-*` headers, data in the body.
fn binary_event(headers: &HeaderMap, body: &[u8]) -> Result<Result<Value, EventError>, ApiError> {
    let mut e = Map::new();
    for name in headers.keys() {
        let Some(attr) = name.as_str().strip_prefix("ce-") else { continue };
        let mut values = headers.get_all(name).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(ApiError::field(name.as_str(), format!("header {name} is given more than once")));
        };
        let v =
            value.to_str().map_err(|_| ApiError::field(name.as_str(), format!("header {name} is not valid text")))?;
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8()
            .map_err(|_| ApiError::field(name.as_str(), format!("header {name} is not valid UTF-8 once decoded")))?
            .into_owned();
        let attr = attr.to_ascii_lowercase();
        if matches!(attr.as_str(), "data" | "data_base64" | "datacontenttype") {
            return Err(ApiError::field(
                name.as_str(),
                format!("header {name}: in binary mode the data is the body and its type the Content-Type"),
            ));
        }
        // Tencent's time is a millisecond number; keep it a number when it is one.
        let v = if attr == "time" {
            v.parse::<i64>().map(Value::from).unwrap_or(Value::String(v))
        } else {
            Value::String(v)
        };
        e.insert(attr, v);
    }
    let media = media_type(headers);
    if !body.is_empty() {
        let data = if media.as_deref().is_some_and(|m| m == "application/json" || m.ends_with("+json")) {
            let parsed =
                json::parse(body).map_err(|err| ApiError::bad_request(format!("the body is not valid JSON: {err}")))?;
            if let Some(f) = parsed.faults.first() {
                let path = json::path_text(&f.path);
                let path = if path.is_empty() { "data".to_string() } else { format!("data.{path}") };
                return Ok(Err(EventError::Json { path, reason: f.reason.clone() }));
            }
            ("data", parsed.value)
        } else {
            match std::str::from_utf8(body) {
                Ok(text) => ("data", Value::String(text.to_string())),
                Err(_) => {
                    use base64::Engine as _;
                    ("data_base64", Value::String(base64::engine::general_purpose::STANDARD.encode(body)))
                }
            }
        };
        e.insert(data.0.into(), data.1);
        if let Some(m) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            e.insert("datacontenttype".into(), Value::String(m.to_string()));
        }
    }
    let v = Value::Object(e);
    Ok(magpie_core::Event::check_cloudevent(&v).map(|()| v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ok(e: Entries) -> Vec<Value> {
        e.items.into_iter().map(|r| r.unwrap()).collect()
    }

    #[test]
    fn shapes() {
        let e = entries(&headers(&[]), br#"{"source":"a"}"#, "default").unwrap();
        assert!(!e.batch);
        assert_eq!(ok(e).len(), 1);
        let e = entries(&headers(&[]), br#"{"entries":[{"source":"a"},{"source":"b"}]}"#, "default").unwrap();
        assert!(e.batch);
        assert_eq!(ok(e).len(), 2);
        let ce = headers(&[("content-type", "application/cloudevents-batch+json")]);
        let e = entries(&ce, br#"[{"specversion":"1.0","id":"1","source":"a","type":"t"},{"source":"a"}]"#, "default")
            .unwrap();
        assert!(e.items[0].is_ok());
        assert_eq!(e.items[1].as_ref().unwrap_err(), &EventError::Missing("specversion"));
        let e = entries(&headers(&[]), br#"{"EventList":[{"Source":"myapp","Data":"{\"k\":1}","TagList":[{"Key":"env","Value":"prod"}],"Time":1700000000000}]}"#, "default").unwrap();
        assert_eq!(
            ok(e)[0],
            json!({"source": "myapp", "time": 1700000000000i64, "data": {"k": 1}, "datacontenttype": "application/json;charset=utf-8", "tags": {"env": "prod"}})
        );
        assert!(entries(&headers(&[]), b"{nope", "default").is_err());
        assert!(entries(&ce, br#"{"source":"a"}"#, "default").is_err());
    }

    #[test]
    fn faults_refuse_only_their_entry() {
        let e =
            entries(&headers(&[]), br#"[{"source":"a","source":"b"},{"source":"ok"},{"source":"n","x":1e999}]"#, "b")
                .unwrap();
        assert_eq!(
            e.items[0].as_ref().unwrap_err().to_string(),
            "source: duplicate key: a key may appear once in an object"
        );
        assert!(e.items[1].is_ok());
        assert_eq!(e.items[2].as_ref().unwrap_err().path().as_deref(), Some("x"));
        let e = entries(&headers(&[]), br#"{"EventList":[{"Source":"a","Data":"{\"k\":1,\"k\":2}"}]}"#, "b").unwrap();
        assert_eq!(e.items[0].as_ref().unwrap_err().path().as_deref(), Some("Data.k"));
    }

    #[test]
    fn tencent_bus_id_is_honoured_or_refused() {
        assert!(entries(&headers(&[]), br#"{"EventBusId":"b","EventList":[{"Source":"a"}]}"#, "b").is_ok());
        let err = entries(&headers(&[]), br#"{"EventBusId":"other","EventList":[{"Source":"a"}]}"#, "b").unwrap_err();
        assert_eq!(err.path.as_deref(), Some("EventBusId"));
        let one = entries(&headers(&[]), br#"{"source":"a","EventBusId":"other"}"#, "b").unwrap();
        assert_eq!(one.items[0].as_ref().unwrap_err().path().as_deref(), Some("EventBusId"));
        let one = entries(&headers(&[]), br#"{"source":"a","EventBusId":"b"}"#, "b").unwrap();
        assert_eq!(ok(one)[0], json!({"source": "a"}));
        let inner = entries(&headers(&[]), br#"{"EventList":[{"source":"x","EventBusId":"other"},{"Source":"y","EventBusId":"other"},{"source":"z"}]}"#, "b").unwrap();
        assert_eq!(inner.items[0].as_ref().unwrap_err().path().as_deref(), Some("EventBusId"));
        assert_eq!(inner.items[1].as_ref().unwrap_err().path().as_deref(), Some("EventBusId"));
        assert!(inner.items[2].is_ok());
    }

    #[test]
    fn content_types() {
        let e = entries(&headers(&[("content-type", "text/plain")]), br#"{"source":"a"}"#, "b").unwrap_err();
        assert_eq!(e.status, 415);
        for ok_type in
            ["application/json; charset=utf-8", "application/x-www-form-urlencoded", "application/vnd.x+json"]
        {
            assert!(entries(&headers(&[("content-type", ok_type)]), br#"{"source":"a"}"#, "b").is_ok(), "{ok_type}");
        }
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
        let e = ok(entries(&h, br#"{"instanceId":"ins-1"}"#, "b").unwrap());
        assert_eq!(e[0]["source"], "cvm.cloud.tencent");
        assert_eq!(e[0]["time"], 1700000000000i64);
        assert_eq!(e[0]["region"], "ap-guangzhou");
        assert_eq!(e[0]["data"]["instanceId"], "ins-1");
        let mut twice = h.clone();
        twice.append("ce-id", "x2".parse().unwrap());
        assert_eq!(entries(&twice, b"{}", "b").unwrap_err().path.as_deref(), Some("ce-id"));
        let mut bin = h.clone();
        bin.insert("content-type", "application/octet-stream".parse().unwrap());
        let e = ok(entries(&bin, &[0xff, 0x00], "b").unwrap());
        assert_eq!(e[0]["data_base64"], "/wA=");
        let mut lone = HeaderMap::new();
        lone.insert("ce-id", "x".parse().unwrap());
        assert_eq!(entries(&lone, br#"{"source":"a"}"#, "b").unwrap_err().path.as_deref(), Some("ce-specversion"));
        let mut structured = h.clone();
        structured.insert("content-type", "application/cloudevents+json".parse().unwrap());
        let e = entries(&structured, br#"{"specversion":"1.0","id":"s1","source":"a","type":"t"}"#, "b").unwrap();
        assert_eq!(ok(e)[0]["id"], "s1", "a CloudEvents content type is structured mode");
        let mut no_type = h.clone();
        no_type.remove("ce-type");
        assert_eq!(entries(&no_type, b"{}", "b").unwrap().items[0].as_ref().unwrap_err(), &EventError::Missing("type"));
    }
}
