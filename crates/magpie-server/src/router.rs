//! The router: reads the event log after its cursor, matches each event against its bus's rules,
//! and writes one job per (event, rule, target) in the same transaction that moves the cursor.

use std::sync::Arc;
use std::time::Duration;

use magpie_store::{NewJob, Routed};
use tokio::sync::watch;

use crate::AppState;
use crate::telemetry::{EventsRouted, InternalEvent};

const BATCH: usize = 500;

pub(crate) async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let mut matched = Vec::new();
    loop {
        match state.store.unrouted_events(BATCH).await {
            Ok(events) if !events.is_empty() => {
                let rt = state.runtime.get();
                let full = events.len() == BATCH;
                let mut routed = Vec::with_capacity(events.len());
                for e in &events {
                    matched.clear();
                    if let Some(m) = rt.matchers.get(&e.bus) {
                        m.matches(&e.body, &mut matched);
                    }
                    let mut jobs = Vec::new();
                    for rule in &matched {
                        if let Some(spec) = rt.rules.get(&e.bus).and_then(|r| r.get(rule)) {
                            jobs.extend(
                                spec.targets.iter().map(|t| NewJob { rule: rule.clone(), flow: t.flow.clone() }),
                            );
                        }
                    }
                    tracing::debug!(event_id = %e.id, bus = %e.bus, rules = ?matched, "routed");
                    routed.push(Routed { seq: e.seq, matched: matched.clone(), jobs });
                }
                let n = routed.len() as u64;
                match state.store.commit_routing(routed, magpie_core::now_ms()).await {
                    Ok(jobs) => {
                        EventsRouted { events: n, jobs: jobs as u64 }.emit();
                        if jobs > 0 {
                            state.wake_workers.notify_one();
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "committing routing failed; will retry");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                if full {
                    continue;
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "reading the event log failed; will retry");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        tokio::select! {
            _ = state.wake_router.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}
