//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of every route, with its error answers.
//!
//! The document is written here as one table (route, method, parameters, body, answers) and
//! read into utoipa's typed model, which checks its structure and serialises it. A test compares
//! the routes in it with the router's (`api/mod.rs`), so the two cannot drift apart silently.

use std::sync::OnceLock;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use utoipa::openapi::OpenApi;

/// The document, built once.
pub fn document() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_value(raw()).unwrap_or_else(|e| panic!("the OpenAPI table is malformed: {e}")))
}

pub(super) async fn serve() -> Response {
    Json(document()).into_response()
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn json_body(s: Value) -> Value {
    json!({"application/json": {"schema": s}})
}

/// Error answers by status, as the server writes them (`{"error": {"code", "message", "path"?}}`).
fn error(status: u16) -> (String, Value) {
    let why = match status {
        400 => "invalid input: the message says why and `path` names the field",
        401 => "no valid token (when the server has tokens)",
        403 => "the token's role may not do this (the message names the roles that may)",
        429 => "the token is over its ingest rate: retry after Retry-After seconds",
        508 => "a loop: the request comes from a chain of Magpie deliveries (Magpie-Hops)",
        404 => "no such object",
        405 => "the route does not take this method",
        409 => "the change conflicts with what exists (the message names the object)",
        413 => "the body is larger than the limit",
        415 => "the body's media type is not accepted",
        _ => "error",
    };
    (status.to_string(), json!({"description": why, "content": json_body(schema("Error"))}))
}

/// Where an operation's input comes from.
#[derive(Clone, Copy)]
enum Input {
    /// No body.
    None,
    /// A JSON body.
    Json(&'static str),
    /// A configuration object: JSON or YAML.
    Config(&'static str),
    /// Whatever a sender posts (events, webhooks, listen paths).
    Any,
}

struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    query: &'static [(&'static str, &'static str, &'static str)],
    input: Input,
    ok: (u16, Value),
    errors: &'static [u16],
}

fn op(method: &'static str, path: &'static str, summary: &'static str) -> Op {
    Op { method, path, summary, query: &[], input: Input::None, ok: (200, Value::Null), errors: &[] }
}

impl Op {
    fn q(mut self, query: &'static [(&'static str, &'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }
    fn body(mut self, input: Input) -> Self {
        self.input = input;
        self
    }
    fn ok(mut self, status: u16, schema: Value) -> Self {
        self.ok = (status, schema);
        self
    }
    fn err(mut self, errors: &'static [u16]) -> Self {
        self.errors = errors;
        self
    }
}

/// Every operation of the API.
fn operations() -> Vec<Op> {
    let list = |s: &str| json!({"type": "array", "items": schema(s)});
    let obj = json!({"type": "object"});
    let page = |key: &str| {
        json!({"type": "object", "required": [key, "next_cursor"], "properties": {
        key: {"type": "array", "items": {"type": "object"}}, "next_cursor": {"type": ["integer", "null"]}}})
    };
    const R: &[u16] = &[400, 404];
    const W: &[u16] = &[400, 404, 409, 413, 415];
    vec![
        op("get", "/v1/buses", "List buses").ok(200, list("Bus")),
        op("post", "/v1/buses", "Create a bus").body(Input::Config("Bus")).ok(201, schema("Bus")).err(&[400, 409, 413, 415]),
        op("get", "/v1/buses/{bus}", "One bus with its rules' names").ok(200, obj.clone()).err(R),
        op("put", "/v1/buses/{bus}", "Create or replace a bus").body(Input::Config("Bus")).ok(200, schema("Bus")).err(W),
        op("delete", "/v1/buses/{bus}", "Delete a bus without rules").ok(204, Value::Null).err(&[404, 409]),
        op("post", "/v1/buses/{bus}/events", "PutEvents: one event, a batch, Tencent's EventList or CloudEvents")
            .body(Input::Any)
            .ok(200, schema("PutEventsResult"))
            .err(&[400, 404, 413, 415]),
        op("post", "/v1/buses/{bus}/sources/{source}", "A sender's webhook: alertmanager, grafana, tencent-monitor")
            .q(&[("tz", "string", "Tencent Cloud Monitor's time zone (e.g. +08:00)")])
            .body(Input::Any)
            .ok(200, schema("PutEventsResult"))
            .err(&[400, 404, 413, 415]),
        op("get", "/v1/buses/{bus}/sources/{source}", "What a source adapter accepts").ok(200, obj.clone()).err(R),
        op("get", "/v1/alerts", "Alerts as their rules track them")
            .q(&[("state", "string", "firing, resolved or all"), ("bus", "string", "only this bus"), ("limit", "integer", "at most 1000")])
            .ok(200, json!({"type": "object", "required": ["alerts"], "properties": {"alerts": {"type": "array", "items": {"type": "object"}}}}))
            .err(&[400]),
        op("get", "/v1/silences", "Silences not ended")
            .q(&[("all", "boolean", "ended ones too")])
            .ok(200, json!({"type": "object", "required": ["silences"], "properties": {"silences": list("Silence")}}))
            .err(&[400]),
        op("post", "/v1/silences", "Create a silence")
            .body(Input::Json("SilenceRequest"))
            .ok(201, schema("Silence"))
            .err(&[400, 413, 415]),
        op("get", "/v1/silences/{id}", "One silence").ok(200, schema("Silence")).err(R),
        op("delete", "/v1/silences/{id}", "Expire a silence now").ok(200, schema("Silence")).err(R),
        op("get", "/v1/buses/{bus}/rules", "The rules of a bus").ok(200, list("Rule")).err(R),
        op("get", "/v1/buses/{bus}/rules/{rule}", "One rule").ok(200, schema("Rule")).err(R),
        op("put", "/v1/buses/{bus}/rules/{rule}", "Create or replace a rule").body(Input::Config("Rule")).ok(200, schema("Rule")).err(W),
        op("delete", "/v1/buses/{bus}/rules/{rule}", "Delete a rule").ok(204, Value::Null).err(&[404, 409]),
        op("get", "/v1/flows", "The live flows").ok(200, list("Flow")),
        op("get", "/v1/flow-versions", "Every flow, published or draft-only, with its live version and draft")
            .ok(200, list("FlowHead")),
        op("get", "/v1/flows/{flow}", "One flow (live by default)")
            .q(&[("version", "string", "live, draft or a version number")])
            .ok(200, schema("Flow"))
            .err(R),
        op("put", "/v1/flows/{flow}", "Save a flow as its draft (publish=true: and publish it)")
            .q(&[("publish", "boolean", "publish at once")])
            .body(Input::Config("Flow"))
            .ok(200, schema("FlowHead"))
            .err(W),
        op("delete", "/v1/flows/{flow}", "Delete a flow and its draft").ok(204, Value::Null).err(&[404, 409]),
        op("get", "/v1/flows/{flow}/versions", "A flow's saved versions").ok(200, schema("FlowVersions")).err(R),
        op("post", "/v1/flows/{flow}/publish", "Make the draft (or a version) live")
            .body(Input::Json("VersionRequest"))
            .ok(200, schema("FlowHead"))
            .err(W),
        op("post", "/v1/flows/{flow}/rollback", "Make an earlier version live")
            .body(Input::Json("VersionRequest"))
            .ok(200, schema("FlowHead"))
            .err(W),
        op("get", "/v1/flows/{flow}/diff", "Unified diff of two versions' YAML")
            .q(&[("from", "string", "live (default), draft or a number"), ("to", "string", "draft (default), live or a number")])
            .ok(200, schema("FlowDiff"))
            .err(R),
        op("get", "/v1/connections", "Connections, secrets masked").ok(200, list("Connection")),
        op("get", "/v1/connections/{name}", "One connection, secrets masked").ok(200, schema("Connection")).err(R),
        op("put", "/v1/connections/{name}", "Create or replace a connection")
            .body(Input::Config("Connection"))
            .ok(200, schema("Connection"))
            .err(W),
        op("delete", "/v1/connections/{name}", "Delete a connection no flow uses").ok(204, Value::Null).err(&[404, 409]),
        op("get", "/v1/connections/{name}/outbox", "Where a connection's outbox stands").ok(200, obj.clone()).err(R),
        op("get", "/v1/config", "The whole configuration (live flows, secrets masked)").ok(200, schema("Config")),
        op("post", "/v1/apply", "Apply a whole document in one transaction")
            .q(&[("draft", "boolean", "save flows as drafts"), ("dry_run", "boolean", "check and show the diff; store nothing")])
            .body(Input::Config("Config"))
            .ok(200, obj.clone())
            .err(&[400, 409, 413, 415]),
        op("post", "/v1/patterns/test", "Test a pattern against an event")
            .body(Input::Json("PatternTest"))
            .ok(200, json!({"type": "object", "required": ["matched"], "properties": {"matched": {"type": "boolean"}}}))
            .err(&[400, 413, 415]),
        op("get", "/v1/events", "Archived events, newest first")
            .q(&[
                ("bus", "string", "only this bus"),
                ("since", "string", "a duration back (1h), an RFC 3339 time or epoch ms"),
                ("until", "string", "as since"),
                ("type", "string", "only this type"),
                ("subject", "string", "only this subject"),
                ("limit", "integer", "at most 1000"),
                ("cursor", "integer", "next_cursor of the previous page"),
            ])
            .ok(200, page("events"))
            .err(&[400, 404]),
        op("post", "/v1/events/replay", "Route archived events again (one page)")
            .body(Input::Json("ReplayRequest"))
            .ok(200, obj.clone())
            .err(&[400, 404, 413, 415]),
        op("get", "/v1/events/{id}/trace", "Everything that happened to an event").ok(200, schema("Trace")).err(R),
        op("get", "/v1/templates", "The sample events (默认模板)").ok(200, json!({"type": "array", "items": {"type": "object"}})),
        op("get", "/v1/dead-letters", "Open dead letters, newest first")
            .q(&[
                ("flow", "string", "only this flow"),
                ("connection", "string", "only this connection"),
                ("error_type", "string", "NS:KIND or a kind"),
                ("since", "string", "a duration back or a time"),
                ("all", "boolean", "redriven ones too"),
                ("limit", "integer", "at most 1000"),
                ("cursor", "integer", "next_cursor of the previous page"),
            ])
            .ok(200, page("dead_letters"))
            .err(&[400]),
        op("post", "/v1/dead-letters/redrive", "Redrive dead letters")
            .body(Input::Json("RedriveRequest"))
            .ok(200, json!({"type": "object", "required": ["redriven", "skipped"]}))
            .err(&[400, 413, 415]),
        op("get", "/v1/dead-letters/{id}", "One dead letter").ok(200, obj.clone()).err(R),
        op("get", "/v1/digests/{id}", "One digest: the events it folded").ok(200, obj.clone()).err(R),
        op("post", "/hooks/{path}", "A flow's listen path: starts it with the body as payload")
            .body(Input::Any)
            .ok(202, json!({"type": "object", "required": ["id", "flow"], "properties": {"id": {"type": "string"}, "flow": {"type": "string"}}}))
            .err(&[400, 404, 413, 415]),
        op("get", "/metrics", "Prometheus metrics (text format)").ok(200, json!("text")),
        op("get", "/healthz", "Liveness").ok(200, json!("text")),
        op("get", "/readyz", "Readiness: the store answers").ok(200, json!("text")),
        op("get", "/v1/openapi.json", "This document").ok(200, obj.clone()),
        op("get", "/v1/tokens", "Tokens: name, role, where each comes from (never the token)").ok(200, json!({"type": "array", "items": {"type": "object"}})),
        op("post", "/v1/tokens", "Create a token: the answer shows it, once")
            .body(Input::Json("TokenRequest"))
            .ok(201, json!({"type": "object", "required": ["name", "role", "token"]}))
            .err(&[400, 409, 413, 415]),
        op("delete", "/v1/tokens/{name}", "Revoke a token created through the API").ok(204, Value::Null).err(&[404, 409]),
        op("get", "/v1/audit", "The audit log, newest first")
            .q(&[
                ("who", "string", "only this token name"),
                ("target", "string", "only targets starting with this (connection, flow eb-wecom)"),
                ("before_id", "integer", "next_before_id of the previous page"),
                ("limit", "integer", "at most 1000"),
            ])
            .ok(200, json!({"type": "object", "required": ["entries"], "properties": {"entries": {"type": "array", "items": {"type": "object"}}}}))
            .err(&[400]),
    ]
}

fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}}))
        .collect()
}

/// What an operation needs (the auth table writes the listen path as `{*path}`).
fn need(method: &str, path: &str) -> magpie_core::auth::Need {
    let path = path.replace("/hooks/{path}", "/hooks/{*path}");
    crate::auth::routes::need(&method.to_uppercase().parse().unwrap_or(axum::http::Method::GET), &path)
}

fn raw() -> Value {
    let mut paths = Map::new();
    for o in operations() {
        let mut params = path_params(o.path);
        params.extend(o.query.iter().map(
            |(n, t, d)| json!({"name": n, "in": "query", "required": false, "description": d, "schema": {"type": t}}),
        ));
        let mut responses = Map::new();
        let (status, body) = o.ok;
        let ok = match body {
            Value::Null => json!({"description": "done"}),
            Value::String(_) => json!({"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}}),
            s => json!({"description": "ok", "content": json_body(s)}),
        };
        responses.insert(status.to_string(), ok);
        let mut errors: Vec<u16> = o.errors.to_vec();
        let need = need(o.method, o.path);
        if need != magpie_core::auth::Need::Public {
            errors.extend([401, 403]);
        }
        if need == magpie_core::auth::Need::Ingest {
            errors.extend([429, 508]);
        }
        if o.path == "/readyz" {
            responses.insert(
                "503".into(),
                json!({"description": "the store does not answer", "content": {"text/plain": {"schema": {"type": "string"}}}}),
            );
        }
        for e in errors {
            let (k, v) = error(e);
            responses.insert(k, v);
        }
        let mut operation = json!({
            "summary": o.summary,
            "operationId": format!("{} {}", o.method, o.path),
            "parameters": params,
            "responses": responses,
        });
        let request = match o.input {
            Input::None => None,
            Input::Json(s) => Some(json!({"required": true, "content": json_body(schema(s))})),
            Input::Config(s) => Some(json!({"required": true, "content": {
                "application/json": {"schema": schema(s)}, "application/yaml": {"schema": schema(s)}}})),
            Input::Any => {
                Some(json!({"required": true, "content": {"application/json": {"schema": {"type": "object"}}}}))
            }
        };
        if let Some(r) = request {
            operation["requestBody"] = r;
        }
        if need != magpie_core::auth::Need::Public {
            operation["security"] = json!([{"bearer": []}, {}]);
        }
        let item = paths.entry(o.path.to_string()).or_insert_with(|| json!({}));
        item[o.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Magpie",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A self-hosted event bus and integration-flow engine. Errors are {\"error\": {\"code\", \"message\", \"path\"?}}.",
        },
        "paths": paths,
        "components": {"schemas": schemas(), "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    })
}

fn schemas() -> Value {
    let string = json!({"type": "string"});
    let int_or_null = json!({"type": ["integer", "null"]});
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"],
            "properties": {"code": string, "message": string, "path": string}}}},
        "Bus": {"type": "object", "required": ["name"], "properties": {
            "name": string, "description": string, "region": {"type": ["string", "null"]}}},
        "Rule": {"type": "object", "required": ["name", "bus", "pattern", "targets"], "properties": {
            "name": string, "bus": string, "description": string, "enabled": {"type": "boolean"},
            "pattern": {"type": "object", "description": "an event pattern (README: Rules)"},
            "targets": {"type": "array", "items": {"type": "object", "required": ["flow"], "properties": {"flow": string}}},
            "alert": {"type": ["object", "null"]}}},
        "Flow": {"type": "object", "required": ["name", "steps"], "properties": {
            "name": string, "description": string, "trigger": {"type": "object"},
            "steps": {"type": "array", "items": {"type": "object"}}}},
        "FlowHead": {"type": "object", "required": ["name", "live", "draft", "updated_at"], "properties": {
            "name": string, "live": int_or_null, "draft": int_or_null, "updated_at": {"type": "integer"}}},
        "FlowVersions": {"type": "object", "required": ["name", "live", "draft", "versions"], "properties": {
            "name": string, "live": int_or_null, "draft": int_or_null,
            "versions": {"type": "array", "items": {"type": "object", "required": ["version", "saved_at", "live", "draft"],
                "properties": {"version": {"type": "integer"}, "saved_at": {"type": "integer"},
                    "published_at": int_or_null, "live": {"type": "boolean"}, "draft": {"type": "boolean"}}}}}},
        "FlowDiff": {"type": "object", "required": ["name", "from", "to", "changed", "diff"], "properties": {
            "name": string, "from": {"type": "integer"}, "to": {"type": "integer"}, "changed": {"type": "boolean"}, "diff": string}},
        "VersionRequest": {"type": "object", "properties": {"version": {"type": "integer", "minimum": 1}}},
        "Connection": {"type": "object", "required": ["name", "platform", "webhook"], "properties": {
            "name": string, "platform": string, "webhook": string, "secret": {"type": ["string", "null"]},
            "keywords": {"type": "array", "items": string}}},
        "Config": {"type": "object", "properties": {
            "buses": {"type": "array", "items": {"$ref": "#/components/schemas/Bus"}},
            "connections": {"type": "array", "items": {"$ref": "#/components/schemas/Connection"}},
            "flows": {"type": "array", "items": {"$ref": "#/components/schemas/Flow"}},
            "rules": {"type": "array", "items": {"$ref": "#/components/schemas/Rule"}}}},
        "PutEventsResult": {"type": "object", "required": ["failed_count", "entries"], "properties": {
            "failed_count": {"type": "integer"},
            "entries": {"type": "array", "items": {"type": "object", "properties": {
                "id": string, "error_code": string, "error_message": string, "error_path": string}}}}},
        "Silence": {"type": "object", "required": ["id", "pattern", "starts_at", "ends_at", "status"], "properties": {
            "id": string, "bus": {"type": ["string", "null"]}, "pattern": {"type": "object"},
            "starts_at": {"type": "integer"}, "ends_at": {"type": "integer"}, "comment": string, "created_by": string,
            "status": {"type": "string", "enum": ["pending", "active", "expired"]}}},
        "SilenceRequest": {"type": "object", "required": ["pattern", "comment"], "properties": {
            "pattern": {"type": "object"}, "starts_at": string, "ends_at": string, "duration": string,
            "comment": string, "created_by": string, "bus": string}},
        "TokenRequest": {"type": "object", "required": ["name", "role"], "properties": {
            "name": string, "role": {"type": "string", "enum": ["admin", "operator", "ingest", "viewer"]}}},
        "PatternTest": {"type": "object", "required": ["pattern", "event"], "properties": {
            "pattern": {"type": "object"}, "event": {"type": "object"}}},
        "ReplayRequest": {"type": "object", "required": ["bus"], "properties": {
            "bus": string, "since": string, "from": string, "to": string, "rule": string,
            "dry_run": {"type": "boolean"}, "cursor": {"type": "integer"}, "replay_id": string}},
        "RedriveRequest": {"type": "object", "properties": {
            "ids": {"type": "array", "items": {"type": "integer"}}, "all": {"type": "boolean"},
            "flow": string, "connection": string, "error_type": string, "since": string}},
        "Trace": {"type": "object", "required": ["event", "routed", "rules_matched", "runs"], "properties": {
            "event": {"type": "object"}, "routed": {"type": "boolean"},
            "rules_matched": {"type": "array", "items": string}, "runs": {"type": "array", "items": {"type": "object"}}}},
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The routes `api/mod.rs` registers, as `(method, path)`.
    fn router_routes() -> BTreeSet<(String, String)> {
        let src = include_str!("mod.rs");
        let mut out = BTreeSet::new();
        let mut text = src;
        while let Some(i) = text.find(".route(") {
            text = text[i + 7..].trim_start();
            let Some(rest) = text.strip_prefix('"') else { continue };
            text = rest;
            let Some(end) = text.find('"') else { break };
            let path = text[..end].replace("{*path}", "{path}");
            // The handlers up to the route's closing parenthesis at depth 0.
            let mut depth = 1;
            let mut j = end;
            for (k, c) in text[end..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    j = end + k;
                    break;
                }
            }
            for m in ["get", "post", "put", "delete"] {
                let calls = text[end..j].contains(&format!("({m}(")) || text[end..j].contains(&format!(".{m}("));
                let first = text[end..j].trim_start_matches(['"', ',', ' ', '\n']).starts_with(&format!("{m}("));
                if calls || first {
                    out.insert((m.to_string(), path.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_of_the_router_is_documented_and_nothing_else() {
        let doc = serde_json::to_value(document()).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in item.as_object().unwrap().keys() {
                documented.insert((m.clone(), path.clone()));
            }
        }
        let routed = router_routes();
        assert!(routed.len() > 40, "the router's routes were not read: {routed:?}");
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(missing.is_empty() && extra.is_empty(), "undocumented: {missing:?}; not routed: {extra:?}");
    }

    #[test]
    fn every_reference_resolves_and_every_protected_route_documents_401() {
        let doc = serde_json::to_value(document()).unwrap();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| c.is_alphanumeric()).collect();
            assert!(schemas.contains_key(&name), "unresolved $ref {name}");
        }
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (m, op) in item.as_object().unwrap() {
                let has_401 = op["responses"].get("401").is_some();
                let open = need(m, path) == magpie_core::auth::Need::Public;
                assert_eq!(has_401, !open, "{m} {path}");
                assert_eq!(op["responses"].get("403").is_some(), !open, "{m} {path}");
            }
        }
    }
}
