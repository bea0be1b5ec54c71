//! The router: one lane per bus. A lane reads its bus's events that are not routed yet, matches
//! their stored bytes against the bus's rules (the scanner, no parse), and writes one job per
//! (event, rule, target) in the transaction that marks them routed.
//!
//! Lanes run side by side, and their matching runs on the blocking pool: a bus with expensive
//! rules (bounded by [`crate::runtime::MAX_BUS_RULE_COST`]) or a backlog holds only itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use magpie_store::{AlertTouch, NewJob, Routed, UnroutedEvent};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::AppState;
use crate::alerts::SilenceSet;
use crate::runtime::Runtime;
use crate::telemetry::{EventsRouted, EventsSilenced, InternalEvent};

const BATCH: usize = 500;

/// One wake-up signal per bus: an event on a bus wakes that bus's lane only.
#[derive(Default)]
pub struct Wakers(Mutex<HashMap<String, Arc<Notify>>>);

impl Wakers {
    /// The signal of `bus`.
    fn of(&self, bus: &str) -> Arc<Notify> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(bus.to_string()).or_default().clone()
    }

    /// Wakes the lane of `bus` (if it waits; a lane that is reading looks again anyway).
    pub fn wake(&self, bus: &str) {
        self.of(bus).notify_waiters();
    }
}

/// Keeps one lane running per bus of the configuration in force.
pub(crate) async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let mut lanes: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        let rt = state.runtime.get();
        lanes.retain(|bus, lane| {
            let keep = rt.buses.contains_key(bus) && !lane.is_finished();
            if !keep {
                lane.abort();
            }
            keep
        });
        for bus in rt.buses.keys() {
            if bus != magpie_core::HOOKS_BUS && !lanes.contains_key(bus) {
                lanes.insert(bus.clone(), tokio::spawn(lane(state.clone(), bus.clone(), stop.clone())));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => break,
        }
    }
    for (_, lane) in lanes {
        let _ = lane.await;
    }
}

async fn lane(state: Arc<AppState>, bus: String, mut stop: watch::Receiver<bool>) {
    // Events at or before this position are routed (or being routed by this lane).
    let mut position = 0i64;
    let signal = state.wake_router.of(&bus);
    loop {
        // Registered before reading, so an event that arrives during the read still wakes us.
        let woken = signal.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let full = match state.store.unrouted_events(&bus, position, BATCH).await {
            Ok(events) if !events.is_empty() => {
                let full = events.len() == BATCH;
                let last = events.last().map_or(position, |e| e.seq);
                let rt = state.runtime.get();
                let silences = state.silences.get();
                let name = bus.clone();
                let routed =
                    tokio::task::spawn_blocking(move || route(&rt, &silences, &name, &events, magpie_core::now_ms()))
                        .await;
                match routed {
                    Ok(routed) => {
                        let n = routed.len() as u64;
                        let silenced = routed.iter().filter(|r| r.silenced_by.is_some()).count() as u64;
                        if silenced > 0 {
                            EventsSilenced { events: silenced }.emit();
                        }
                        match state.store.commit_routing(routed, magpie_core::now_ms()).await {
                            Ok(jobs) => {
                                position = last;
                                EventsRouted { events: n, jobs: jobs as u64 }.emit();
                                if jobs > 0 {
                                    state.wake_workers.notify_one();
                                }
                            }
                            Err(e) => {
                                tracing::error!(bus = %bus, error = %e, "committing routing failed; will retry");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    }
                    Err(e) => tracing::error!(bus = %bus, error = %e, "matching events failed; will retry"),
                }
                full
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(bus = %bus, error = %e, "reading the event log failed; will retry");
                tokio::time::sleep(Duration::from_millis(500)).await;
                false
            }
        };
        if full {
            continue;
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Matches a batch of one bus's events against its rules. An event a silence in force matches
/// gets no jobs; an alert event (`status` `"1"`/`"0"`) gets its jobs through its alert (the store
/// decides, in the routing transaction, whether the alert is told).
fn route(rt: &Runtime, silences: &SilenceSet, bus: &str, events: &[UnroutedEvent], now: i64) -> Vec<Routed> {
    let mut matched = Vec::new();
    let matcher = rt.matchers.get(bus);
    let rules = rt.rules.get(bus);
    let keys = rt.alert_keys.get(bus);
    events
        .iter()
        .map(|e| {
            matched.clear();
            if let Some(m) = matcher
                && let Err(err) = if e.dotted {
                    m.matches_json(e.body.as_bytes(), &mut matched)
                } else {
                    m.matches_json_undotted(e.body.as_bytes(), &mut matched)
                }
            {
                // Stored events were validated at ingest; a body the scanner refuses matches nothing.
                tracing::error!(event_id = %e.id, bus, error = %err, "a stored event cannot be read; it matches no rule");
                matched.clear();
            }
            let silenced_by = if matched.is_empty() || silences.is_empty() {
                None
            } else {
                silences.matching(bus, e.body.as_bytes(), e.dotted, now)
            };
            // A rule's own alert key reads the event; it is parsed once, only if one needs it.
            let mut parsed: Option<magpie_flow::Message> = None;
            let mut jobs = Vec::new();
            let mut alerts = Vec::new();
            for (rule, spec) in matched.iter().filter_map(|r| rules.and_then(|m| m.get(r)).map(|s| (r, s))) {
                let flows = spec.targets.iter().map(|t| t.flow.clone());
                match &e.alert {
                    Some(a) => {
                        let key = match keys.and_then(|k| k.get(rule)) {
                            None => a.key.clone(),
                            Some(template) => {
                                let msg = parsed.get_or_insert_with(|| {
                                    let body = serde_json::from_str(&e.body).unwrap_or_default();
                                    magpie_flow::Message::new(&e.id, body)
                                });
                                template.render(msg, 1024).unwrap_or_else(|| a.key.clone())
                            }
                        };
                        let repeat_ms = spec.alert.as_ref().map_or_else(
                            || magpie_core::alert::AlertSpec::default().repeat_ms(),
                            magpie_core::alert::AlertSpec::repeat_ms,
                        );
                        alerts.push(AlertTouch {
                            rule: rule.clone(),
                            key,
                            signal: a.signal,
                            at: e.time_ms,
                            repeat_ms,
                            flows: flows.collect(),
                        });
                    }
                    None if silenced_by.is_none() => {
                        jobs.extend(flows.map(|flow| NewJob { rule: rule.clone(), flow }));
                    }
                    None => {}
                }
            }
            tracing::debug!(event_id = %e.id, bus, rules = ?matched, silenced = ?silenced_by, "routed");
            Routed { seq: e.seq, matched: matched.clone(), jobs, alerts, silenced_by }
        })
        .collect()
}
