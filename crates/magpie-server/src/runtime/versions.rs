//! Flow versions at run time: publishing a saved version (checked like any change), and the
//! compiled versions that are not live, for the jobs still on them.

use std::collections::HashMap;
use std::sync::Arc;

use magpie_core::config::{ConfigDocument, FlowSpec};
use magpie_flow::Flow;
use magpie_store::Store;

use super::{FlowWrite, Runtime, Shared, apply};
use crate::error::ApiError;

/// Makes saved version `version` of flow `name` live, checked against today's configuration
/// (its connections still exist, its listen path is free…). Publishing a draft and rolling back
/// are both this; the API and the console call it.
pub async fn make_live(
    shared: &Shared,
    store: &dyn Store,
    name: &str,
    version: i64,
    env: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    who: &str,
) -> Result<(), ApiError> {
    let saved = store
        .flow_version(name, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("flow {name:?} has no version {version}")))?;
    let spec: FlowSpec = magpie_core::config::from_value(saved.body)
        .map_err(|e| ApiError::conflict(format!("version {version} of flow {name:?} no longer reads: {e}")))?;
    let doc = ConfigDocument { flows: vec![spec], ..Default::default() };
    apply(shared, store, doc, vec![], FlowWrite::Version(version), env, who).await.map_err(|mut e| {
        // The error is about this one flow: its paths are the flow's own.
        if let Some(p) = e.path.as_mut()
            && let Some(rest) = p.strip_prefix("flows[0].")
        {
            *p = rest.to_string();
        }
        let reason = e.message.replacen("flows[0].", "", 1);
        ApiError { message: format!("version {version} of flow {name:?} cannot be made live: {reason}"), ..e }
    })?;
    tracing::info!(flow = name, version, "flow version made live");
    Ok(())
}

/// Why a job's flow could not be had.
#[derive(Debug)]
pub enum NoFlow {
    /// The store failed (try again later).
    Store(String),
    /// The flow, or the job's version of it, no longer exists or no longer compiles.
    Gone(String),
}

/// Compiled flow versions that are not live, for jobs created before a publish: a job finishes
/// on the version it started on.
#[derive(Default)]
pub struct FlowVersions {
    compiled: std::sync::Mutex<HashMap<(String, i64), Arc<Flow>>>,
}

/// How many non-live versions are kept compiled.
const KEPT_VERSIONS: usize = 64;

impl FlowVersions {
    /// The flow a job runs: the live one when the job is on it (or on no version), else its own
    /// version, loaded from the store and compiled once.
    pub async fn flow_of(
        &self,
        store: &dyn Store,
        rt: &Runtime,
        name: &str,
        version: Option<i64>,
    ) -> Result<Arc<Flow>, NoFlow> {
        let live = rt.flows.get(name).map(|(_, f)| f.clone());
        let Some(v) = version.filter(|v| rt.versions.get(name) != Some(v)) else {
            return live.ok_or_else(|| NoFlow::Gone(format!("flow {name:?} no longer exists")));
        };
        let key = (name.to_string(), v);
        if let Some(f) = self.compiled.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(f.clone());
        }
        let saved = store.flow_version(name, v).await.map_err(|e| NoFlow::Store(e.to_string()))?;
        let Some(saved) = saved else {
            return Err(NoFlow::Gone(format!("version {v} of flow {name:?} no longer exists")));
        };
        let spec: FlowSpec = magpie_core::config::from_value(saved.body)
            .map_err(|e| NoFlow::Gone(format!("version {v} of flow {name:?} is invalid: {e}")))?;
        let flow = Arc::new(
            Flow::compile(&spec).map_err(|e| NoFlow::Gone(format!("version {v} of flow {name:?}: {}", e.reason)))?,
        );
        let mut kept = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() >= KEPT_VERSIONS {
            kept.clear();
        }
        kept.insert(key, flow.clone());
        Ok(flow)
    }
}
