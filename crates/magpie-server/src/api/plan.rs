//! What `POST /v1/apply?dry_run=true` answers: each object of the document created, changed or
//! left alone, with a unified diff of the YAML of each change (secrets masked on both sides).

use magpie_core::config::ConfigDocument;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::runtime::FlowWrite;

/// The plan of `doc` (already checked) as the answer of a dry run.
pub(super) async fn plan(state: &AppState, doc: &ConfigDocument, mode: FlowWrite) -> Result<Value, ApiError> {
    let rt = state.runtime.get();
    let items = crate::runtime::audit::items(&rt, state.store.as_ref(), doc, mode).await?;
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
