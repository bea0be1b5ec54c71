//! What `POST /v1/apply?dry_run=true` answers: each object of the document created, changed or
//! left alone, with a unified diff of the YAML of each change (secrets masked on both sides).

use magpie_core::config::ConfigDocument;
use serde::Serialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::runtime::{FlowWrite, redacted_connection};

/// One object of the document against what is in force.
struct Item {
    what: String,
    before: Option<Value>,
    after: Value,
}

fn value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The plan of `doc` (already checked) as the answer of a dry run.
pub(super) async fn plan(state: &AppState, doc: &ConfigDocument, mode: FlowWrite) -> Result<Value, ApiError> {
    let rt = state.runtime.get();
    let mut items = Vec::new();
    for b in &doc.buses {
        items.push(Item { what: format!("bus {}", b.name), before: rt.buses.get(&b.name).map(value), after: value(b) });
    }
    for c in &doc.connections {
        let old = rt.connections.get(&c.name);
        let mut after = redacted_connection(c);
        // A secret or webhook key that changes is shown as changed, never in clear.
        if let Some(o) = old {
            let masked = redacted_connection(o);
            for (field, changed) in [("webhook", o.webhook != c.webhook), ("secret", o.secret != c.secret)] {
                if changed && masked.get(field) == after.get(field) {
                    after[field] = Value::String("<changed, not shown>".into());
                }
            }
        }
        items.push(Item { what: format!("connection {}", c.name), before: old.map(redacted_connection), after });
    }
    let heads = state.store.flow_heads().await?;
    for f in &doc.flows {
        let live = rt.flows.get(&f.name).map(|(s, _)| value(s));
        let before = match (mode, heads.iter().find(|h| h.name == f.name).and_then(|h| h.draft)) {
            (FlowWrite::Draft, Some(d)) => state.store.flow_version(&f.name, d).await?.map(|v| v.body).or(live),
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
    let (mut created, mut changed, mut unchanged, mut diff) = (vec![], vec![], vec![], String::new());
    for it in items {
        let after = magpie_core::config::to_yaml(&it.after);
        let before = it.before.as_ref().map(magpie_core::config::to_yaml);
        match &before {
            None => created.push(it.what.clone()),
            Some(b) if *b == after => {
                unchanged.push(it.what);
                continue;
            }
            Some(_) => changed.push(it.what.clone()),
        }
        let old = before.unwrap_or_default();
        let text = similar::TextDiff::from_lines(&old, &after)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{} (in force)", it.what), &format!("{} (applied)", it.what))
            .to_string();
        diff.push_str(&text);
    }
    Ok(json!({"dry_run": true, "created": created, "changed": changed, "unchanged": unchanged, "diff": diff}))
}
