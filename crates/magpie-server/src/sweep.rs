//! The archive's retention: events older than their bus's `retention` are removed with their
//! runs, messages and traces — in small transactions, so ingest (which shares the store's single
//! writer) never waits long behind the sweep. Events with work left (a pending, running or
//! parked run, or an open dead letter) stay until it is done.

use std::sync::Arc;
use std::time::Duration;

use magpie_core::config::DEFAULT_RETENTION;
use tokio::sync::watch;

use crate::AppState;
use crate::telemetry::{EventsSwept, InternalEvent};

/// Events removed per transaction.
const BATCH: usize = 200;

pub(crate) async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        let rt = state.runtime.get();
        let mut buses: Vec<(String, Duration)> = rt.buses.values().map(|b| (b.name.clone(), b.retention())).collect();
        buses.push((magpie_core::HOOKS_BUS.to_string(), DEFAULT_RETENTION));
        drop(rt);
        // Sweep often enough for the shortest retention: a quarter of it, between 1 s and a minute.
        let shortest = buses.iter().map(|(_, r)| *r).min().unwrap_or(DEFAULT_RETENTION);
        let tick = (shortest / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        for (bus, retention) in buses {
            let before = magpie_core::now_ms() - retention.as_millis() as i64;
            let mut removed = 0;
            loop {
                match state.store.sweep(&bus, before, BATCH).await {
                    Ok(n) => {
                        removed += n;
                        if n < BATCH || *stop.borrow() {
                            break;
                        }
                        // Let waiting appends through between batches.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => {
                        tracing::error!(bus = %bus, error = %e, "archive sweep failed; will retry");
                        break;
                    }
                }
            }
            if removed > 0 {
                EventsSwept { bus: &bus, count: removed }.emit();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.changed() => return,
        }
    }
}
