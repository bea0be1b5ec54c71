//! When a silence ends, the alerts it kept quiet that are still firing are told once
//! (`msg.vars.alert.notice` = `silence_ended`), unless another silence in force keeps them quiet.

use std::sync::Arc;
use std::time::Duration;

use magpie_store::Release;
use tokio::sync::watch;

use crate::AppState;
use crate::telemetry::{InternalEvent, SilenceReleased};

/// How often ended silences are looked for (and the silence set refreshed).
const TICK: Duration = Duration::from_secs(1);

pub(crate) async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = tick(&state).await {
            tracing::error!(error = %e, "releasing ended silences failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = state.silences_changed.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

async fn tick(state: &AppState) -> Result<(), magpie_store::StoreError> {
    let now = magpie_core::now_ms();
    // Silences that ended (by time or by expiry) leave the set in force.
    state.silences.reload(state.store.as_ref()).await?;
    for id in state.store.ended_silences(now).await? {
        let quiet = state.store.silenced_alerts(&id).await?;
        let rt = state.runtime.get();
        let set = state.silences.get();
        let releases: Vec<(i64, Release)> = quiet
            .into_iter()
            .map(|a| {
                let release = match (&a.event, rt.rules.get(&a.bus).and_then(|r| r.get(&a.rule))) {
                    (Some((_, json)), Some(rule)) if rule.enabled && !rule.targets.is_empty() => {
                        match set.matching(&a.bus, json.as_bytes(), true, now) {
                            Some(other) => Release::StillSilenced(other),
                            None => Release::Tell(rule.targets.iter().map(|t| t.flow.clone()).collect()),
                        }
                    }
                    _ => Release::Drop,
                };
                (a.id, release)
            })
            .collect();
        let alerts = releases.len();
        let jobs = state.store.release_silence(&id, releases, now).await?;
        SilenceReleased { silence: &id, alerts, jobs }.emit();
        if jobs > 0 {
            state.wake_workers.notify_one();
        }
    }
    Ok(())
}
