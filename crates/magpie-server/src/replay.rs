//! Replays: archived events of a bus routed again through today's rules into their flows, page
//! by page. A real replay creates jobs marked with the replay's id (traces show it); a dry run
//! runs each flow with nothing sent and returns the messages it would send.

use std::sync::Mutex;

use magpie_core::config::LogLevel;
use magpie_flow::{Effects, RunOutcome, Runner, SendRequest, SendResult, StepRecord};
use magpie_pattern::{Matcher, Pattern};
use magpie_store::{ReplayJob, ReplayRange};
use serde::Serialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::telemetry::{EventsReplayed, InternalEvent};
use crate::worker::flow_message;

/// Most events read per page.
pub const MAX_PAGE: usize = 1_000;
/// Most events per page of a dry run (each runs its flows).
pub const MAX_DRY_PAGE: usize = 100;

/// One page of a replay.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// The events: one bus, a time range.
    pub range: ReplayRange,
    /// Only this rule (enabled or not); default every enabled rule of the bus.
    pub rule: Option<String>,
    /// Send nothing: return what would be sent.
    pub dry_run: bool,
    /// Continue after this event sequence number (the previous page's `next_cursor`).
    pub cursor: i64,
    /// Events per page.
    pub limit: usize,
    /// The replay's id, from its first page (a new one is made when absent).
    pub replay_id: Option<String>,
}

/// A message a dry run would send.
#[derive(Debug, Clone, Serialize)]
pub struct WouldSend {
    /// The event.
    pub event_id: String,
    /// The rule that matched.
    pub rule: String,
    /// The flow.
    pub flow: String,
    /// The connection.
    pub connection: String,
    /// The message as the flow rendered it.
    pub message: Value,
}

/// What one page did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayPage {
    /// The replay's id (marks its jobs).
    pub replay_id: String,
    /// The bus.
    pub bus: String,
    /// The range, ms since the epoch.
    pub from: i64,
    /// The range's end (exclusive).
    pub to: i64,
    /// Events in the whole range (on the first page only).
    pub total: Option<u64>,
    /// Events read on this page.
    pub events: usize,
    /// Of those, how many matched a rule.
    pub matched: usize,
    /// Flow runs created (a dry run creates none).
    pub jobs: usize,
    /// For a dry run: flow runs that would start.
    pub runs: usize,
    /// The cursor of the next page; none when the range is done.
    pub next_cursor: Option<i64>,
    /// For a dry run: the messages that would be sent.
    pub would_send: Vec<WouldSend>,
    /// For a dry run: flow runs that would fail, with the error.
    pub would_fail: Vec<Value>,
}

/// Runs a flow offline, capturing what it would send.
struct DryRun<'a> {
    sent: Mutex<Vec<SendRequest>>,
    sandbox: &'a magpie_sandbox::Sandbox,
}

impl Effects for DryRun<'_> {
    async fn send(&self, req: SendRequest) -> SendResult {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).push(req);
        SendResult::Delivered { digest: None }
    }
    async fn record(&self, _: StepRecord) {}
    fn log(&self, _: LogLevel, _: &str, _: &str) {}
    fn now_ms(&self) -> i64 {
        magpie_core::now_ms()
    }
    async fn eval(&self, expr: &magpie_flow::Expr, msg: &magpie_flow::Message) -> Result<Value, String> {
        self.sandbox.eval(expr, msg).await
    }
}

/// Replays one page.
pub async fn replay_page(state: &AppState, req: ReplayRequest) -> Result<ReplayPage, ApiError> {
    let rt = state.runtime.get();
    let bus = &req.range.bus;
    if !rt.buses.contains_key(bus) {
        return Err(ApiError::not_found(format!("no bus {bus:?}")));
    }
    let no_rules = Default::default();
    let rules = rt.rules.get(bus).unwrap_or(&no_rules);
    // Today's rules: the bus's matcher, or one rule alone.
    let single;
    let matcher: Option<&Matcher<String>> = match &req.rule {
        Some(name) => {
            let spec =
                rules.get(name).ok_or_else(|| ApiError::not_found(format!("no rule {name:?} on bus {bus:?}")))?;
            let p = Pattern::parse(&spec.pattern).map_err(|e| ApiError::internal(format!("rule {name:?}: {e:?}")))?;
            single = Matcher::build(vec![(name.clone(), p)]);
            Some(&single)
        }
        None => rt.matchers.get(bus),
    };
    let max = if req.dry_run { MAX_DRY_PAGE } else { MAX_PAGE };
    let limit = req.limit.clamp(1, max);
    let replay_id = req.replay_id.clone().unwrap_or_else(|| format!("rp-{}", uuid::Uuid::now_v7()));
    let total = if req.cursor == 0 { Some(state.store.count_events(req.range.clone()).await?) } else { None };
    let events = state.store.range_events(req.range.clone(), req.cursor, limit).await?;
    let next_cursor = (events.len() == limit).then(|| events.last().map(|e| e.seq)).flatten();
    let mut page = ReplayPage {
        replay_id: replay_id.clone(),
        bus: bus.clone(),
        from: req.range.from_ms,
        to: req.range.to_ms,
        total,
        events: events.len(),
        matched: 0,
        jobs: 0,
        runs: 0,
        next_cursor,
        would_send: Vec::new(),
        would_fail: Vec::new(),
    };
    let mut jobs = Vec::new();
    let mut hits = Vec::new();
    for e in &events {
        hits.clear();
        if let Some(m) = matcher {
            m.matches(&e.body, &mut hits);
        }
        if !hits.is_empty() {
            page.matched += 1;
        }
        for rule in &hits {
            let Some(spec) = rules.get(rule) else { continue };
            for t in &spec.targets {
                jobs.push((e, rule.clone(), t.flow.clone()));
            }
        }
    }
    if req.dry_run {
        for (e, rule, flow_name) in jobs {
            let Some((_, flow)) = rt.flows.get(&flow_name) else { continue };
            page.runs += 1;
            let fx = DryRun { sent: Mutex::new(Vec::new()), sandbox: &state.sandbox };
            let out = Runner::run(
                flow,
                flow_message(&e.bus, &rule, &flow_name, &e.id, e.body.clone(), Some(&replay_id)),
                &fx,
                None,
            )
            .await;
            if let RunOutcome::Failed { error, .. } = out {
                page.would_fail
                    .push(json!({"event_id": e.id, "rule": rule, "flow": flow_name, "error": error.to_json()}));
            }
            for s in fx.sent.into_inner().unwrap_or_else(|p| p.into_inner()) {
                page.would_send.push(WouldSend {
                    event_id: e.id.clone(),
                    rule: rule.clone(),
                    flow: flow_name.clone(),
                    connection: s.connection,
                    message: serde_json::to_value(&s.message).unwrap_or(Value::Null),
                });
            }
        }
        return Ok(page);
    }
    let new: Vec<ReplayJob> = jobs.into_iter().map(|(e, rule, flow)| ReplayJob { seq: e.seq, rule, flow }).collect();
    page.jobs = state.store.create_jobs(new, &replay_id, magpie_core::now_ms()).await?;
    EventsReplayed { replay: &replay_id, events: events.len(), jobs: page.jobs }.emit();
    if page.jobs > 0 {
        state.wake_workers.notify_one();
    }
    Ok(page)
}
