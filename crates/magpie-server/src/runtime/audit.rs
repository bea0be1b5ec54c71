//! What a configuration change changes, object by object, with secrets masked on both sides:
//! the dry run's plan (`POST /v1/apply?dry_run=true`) and the audit log's entries are both read
//! from [`items`].

use magpie_core::config::{ConfigDocument, ConnectionSpec};
use magpie_store::{Kind, NewAudit, Store};
use serde::Serialize;
use serde_json::{Value, json};

use super::{FlowWrite, Runtime, redacted_connection};
use crate::error::ApiError;

/// One object of a document against what is in force.
pub struct Item {
    /// `bus b`, `connection c`, `flow f (draft)`, `rule r (bus b)`.
    pub what: String,
    /// In force (masked), if it exists.
    pub before: Option<Value>,
    /// As the document has it (masked).
    pub after: Value,
}

fn value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A connection as the document has it, masked; a secret or webhook key that changes is shown
/// as changed, never in clear.
fn masked_change(old: Option<&ConnectionSpec>, new: &ConnectionSpec) -> Value {
    let mut after = redacted_connection(new);
    if let Some(o) = old {
        let masked = redacted_connection(o);
        for (field, changed) in [("webhook", o.webhook != new.webhook), ("secret", o.secret != new.secret)] {
            if changed && masked.get(field) == after.get(field) {
                after[field] = Value::String("<changed, not shown>".into());
            }
        }
    }
    after
}

/// Each object of `doc` with what is in force.
pub async fn items(
    rt: &Runtime,
    store: &dyn Store,
    doc: &ConfigDocument,
    mode: FlowWrite,
) -> Result<Vec<Item>, ApiError> {
    let mut items = Vec::new();
    for b in &doc.buses {
        items.push(Item { what: format!("bus {}", b.name), before: rt.buses.get(&b.name).map(value), after: value(b) });
    }
    for c in &doc.connections {
        let old = rt.connections.get(&c.name);
        let before = old.map(redacted_connection);
        // Equal masked forms of different secrets must not read as unchanged.
        let after = if old == Some(c) { redacted_connection(c) } else { masked_change(old, c) };
        items.push(Item { what: format!("connection {}", c.name), before, after });
    }
    let heads = if doc.flows.is_empty() { Vec::new() } else { store.flow_heads().await? };
    for f in &doc.flows {
        let live = rt.flows.get(&f.name).map(|(s, _)| value(s));
        let before = match (mode, heads.iter().find(|h| h.name == f.name).and_then(|h| h.draft)) {
            (FlowWrite::Draft, Some(d)) => store.flow_version(&f.name, d).await?.map(|v| v.body).or(live),
            _ => live,
        };
        let what =
            if mode == FlowWrite::Draft { format!("flow {} (draft)", f.name) } else { format!("flow {}", f.name) };
        items.push(Item { what, before, after: value(f) });
    }
    for r in &doc.rules {
        let before = rt.rules.get(&r.bus).and_then(|m| m.get(&r.name)).map(value);
        items.push(Item { what: format!("rule {} (bus {})", r.name, r.bus), before, after: value(r) });
    }
    Ok(items)
}

/// The audit entries of a change by `who`: one per object created, changed or deleted (objects
/// left as they are have none).
pub async fn changes_of(
    rt: &Runtime,
    store: &dyn Store,
    doc: &ConfigDocument,
    deletes: &[(Kind, String)],
    mode: FlowWrite,
    who: &str,
) -> Result<Vec<NewAudit>, ApiError> {
    let mut out = Vec::new();
    if let FlowWrite::Version(v) = mode {
        for f in &doc.flows {
            let live = rt.versions.get(&f.name).copied();
            let before = live.map(|l| json!({"version": l}));
            out.push(masked_entry(who, "publish", &format!("flow {}", f.name), before, Some(json!({"version": v}))));
        }
    } else {
        let action = if mode == FlowWrite::Draft { "draft" } else { "put" };
        for it in items(rt, store, doc, mode).await? {
            if it.before.as_ref() != Some(&it.after) {
                out.push(masked_entry(who, action, &it.what, it.before, Some(it.after)));
            }
        }
    }
    for (kind, key) in deletes {
        let (what, before) = match kind {
            Kind::Bus => (format!("bus {key}"), rt.buses.get(key).map(value)),
            Kind::Connection => (format!("connection {key}"), rt.connections.get(key).map(redacted_connection)),
            Kind::Flow => (format!("flow {key}"), rt.flows.get(key).map(|(s, _)| value(s))),
            Kind::Rule => {
                let (bus, rule) = key.split_once('/').unwrap_or((key, ""));
                (format!("rule {rule} (bus {bus})"), rt.rules.get(bus).and_then(|m| m.get(rule)).map(value))
            }
        };
        if before.is_some() {
            out.push(masked_entry(who, "delete", &what, before, None));
        }
    }
    Ok(out)
}

/// An audit entry; the values given must already be masked.
pub fn masked_entry(who: &str, action: &str, target: &str, before: Option<Value>, after: Option<Value>) -> NewAudit {
    NewAudit { who: who.into(), action: action.into(), target: target.into(), before, after }
}
