//! Workers: claim due jobs with a lease, run their flow, record every step as it happens, hand
//! messages to the outbox, and end the job — done, parked while a message waits for its
//! connection (no worker slot held), or dead-lettered.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use magpie_core::ErrorType;
use magpie_core::config::LogLevel;
use magpie_flow::{
    Checkpoint, Effects, Expr, FlowError, Message, RunOutcome, Runner, SendRequest, SendResult, SendState, StepRecord,
};
use magpie_store::{Job, JobEnd, Journal, MessageStatus, NewMessage, StepRow};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::runtime::Runtime;
use crate::telemetry::{FlowRunEnded, InternalEvent, RunDeadLettered, RunEnd};
use crate::{AppState, outbox};

pub(crate) async fn run(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(state.concurrency));
    loop {
        let free = slots.available_permits();
        let mut claimed = 0;
        if free > 0 {
            let lease = state.lease.as_millis() as i64;
            match state.store.claim_jobs(magpie_core::now_ms(), lease, free).await {
                Ok(jobs) => {
                    claimed = jobs.len();
                    for job in jobs {
                        let Ok(permit) = slots.clone().acquire_owned().await else { return };
                        let state = state.clone();
                        tokio::spawn(async move {
                            let (id, flow) = (job.id, job.flow.clone());
                            let run = tokio::spawn({
                                let state = state.clone();
                                async move { run_job(&state, job).await }
                            });
                            if let Err(e) = run.await
                                && e.is_panic()
                            {
                                poisoned_by_panic(&state, id, &flow, e).await;
                            }
                            drop(permit);
                            state.wake_workers.notify_one();
                        });
                    }
                }
                Err(e) => tracing::error!(error = %e, "claiming jobs failed; will retry"),
            }
        }
        if claimed > 0 && claimed == free {
            continue;
        }
        if slots.available_permits() == 0 {
            // Every slot is busy: a finishing run wakes us (it notifies), no need to poll.
            tokio::select! {
                _ = state.wake_workers.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        let wait = match state.store.next_due().await {
            Ok(Some(at)) => Duration::from_millis((at - magpie_core::now_ms()).clamp(0, 1_000) as u64),
            _ => Duration::from_secs(1),
        };
        // Due jobs that none could claim are leased elsewhere: do not spin. A job that fell due
        // since the claim (a message was just delivered) came with a notification, which ends
        // the wait at once.
        let wait = if wait.is_zero() && claimed == 0 { Duration::from_millis(20) } else { wait };
        tokio::select! {
            _ = state.wake_workers.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A run that panicked (a bug, not the flow's error) would panic again: dead-letter it as
/// `FLOW:POISON` at once instead of leaving it leased until the lease runs out.
async fn poisoned_by_panic(state: &AppState, job: i64, flow: &str, e: tokio::task::JoinError) {
    let panic = e.into_panic();
    let why = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(job, flow, panic = why, "a flow run panicked: dead-lettered as FLOW:POISON");
    RunDeadLettered { flow, error_type: "FLOW:POISON" }.emit();
    let end =
        JobEnd::Failed { error_type: "FLOW:POISON".into(), error: format!("the run panicked: {why}"), step: None };
    if let Err(e) = state.store.end_job(job, end, Vec::new(), magpie_core::now_ms()).await {
        tracing::error!(job, error = %e, "recording the end of a flow run failed");
    }
}

/// What earlier runs did: the step records, and where each send stands (its newest message).
fn checkpoint(journal: &Journal) -> Checkpoint {
    let mut newest: BTreeMap<u32, (u32, SendState)> = BTreeMap::new();
    for d in &journal.deliveries {
        let state = match d.status {
            MessageStatus::Queued | MessageStatus::Sending => SendState::Queued,
            MessageStatus::Delivered => SendState::Delivered { digest: None },
            MessageStatus::Folded => SendState::Delivered { digest: d.digest_id.clone() },
            MessageStatus::Failed => {
                let error_type = d
                    .error_type
                    .as_deref()
                    .and_then(|t| ErrorType::try_from(t.to_string()).ok())
                    .unwrap_or_else(|| ErrorType::new("FLOW", "UNKNOWN"));
                SendState::Failed(FlowError::new(error_type, d.error.clone().unwrap_or_default()))
            }
        };
        if newest.get(&d.ordinal).is_none_or(|(g, _)| *g <= d.generation) {
            newest.insert(d.ordinal, (d.generation, state));
        }
    }
    Checkpoint {
        sends: newest.into_iter().map(|(o, (_, s))| (o, s)).collect(),
        recorded: journal.steps.iter().map(|s| s.ordinal).collect(),
    }
}

async fn run_job(state: &Arc<AppState>, mut job: Job) {
    let now = magpie_core::now_ms();
    // What the outbox files each message under, read before the event moves into the message.
    let text = |k: &str| job.event.get(k).and_then(Value::as_str).map(str::to_string);
    let (event_type, event_status) = (text("type").unwrap_or_default(), text("status"));
    let event = std::mem::take(&mut job.event);
    let (rt, msg, cp) = match prepare(state, &job, event).await {
        Ok(p) => p,
        Err(Unprepared::Store(reason)) => {
            tracing::error!(job = job.id, event_id = %job.event_id, flow = %job.flow, reason = %reason, "flow run cannot start; will retry");
            let end = JobEnd::Retry { at: now + 1_000, error: reason };
            return finish(state, &job, end, Vec::new()).await;
        }
        Err(Unprepared::NoEvent(error)) => {
            tracing::error!(job = job.id, event_id = %job.event_id, flow = %job.flow, %error, "flow run cannot start: dead-lettered");
            RunDeadLettered { flow: &job.flow, error_type: "FLOW:CONFIG" }.emit();
            let end = JobEnd::Failed { error_type: "FLOW:CONFIG".into(), error, step: None };
            return finish(state, &job, end, Vec::new()).await;
        }
    };
    let flow = match state.flow_versions.flow_of(state.store.as_ref(), &rt, &job.flow, job.flow_version).await {
        Ok(f) => f,
        Err(crate::runtime::NoFlow::Store(reason)) => {
            tracing::error!(job = job.id, flow = %job.flow, reason = %reason, "loading the flow's version failed; will retry");
            let end = JobEnd::Retry { at: now + 1_000, error: reason };
            return finish(state, &job, end, Vec::new()).await;
        }
        Err(crate::runtime::NoFlow::Gone(error)) => {
            RunDeadLettered { flow: &job.flow, error_type: "FLOW:CONFIG" }.emit();
            let end = JobEnd::Failed { error_type: "FLOW:CONFIG".into(), error, step: None };
            return finish(state, &job, end, Vec::new()).await;
        }
    };
    let effects = JobEffects {
        state,
        job: &job,
        event_type,
        event_status,
        rt: rt.clone(),
        store_failed: AtomicBool::new(false),
        queued: AtomicBool::new(false),
        unwritten: Mutex::new(Vec::new()),
    };
    let end = match Runner::run(&flow, msg, &effects, Some(cp.clone())).await {
        RunOutcome::Completed { undelivered, .. } => {
            let end = if undelivered > 0 { RunEnd::DeliveryFailed } else { RunEnd::Done };
            FlowRunEnded { job: job.id, event_id: &job.event_id, rule: &job.rule, flow: &job.flow, end, error: None }
                .emit();
            JobEnd::Done { undelivered: undelivered > 0 }
        }
        RunOutcome::Failed { error, at, .. } => {
            let text = error.to_string();
            FlowRunEnded {
                job: job.id,
                event_id: &job.event_id,
                rule: &job.rule,
                flow: &job.flow,
                end: RunEnd::Failed,
                error: Some(&text),
            }
            .emit();
            // A failed delivery was counted as a dead letter when it failed.
            let delivery = at.as_ref().is_some_and(|a| matches!(cp.sends.get(&a.ordinal), Some(SendState::Failed(_))));
            let error_type = error.error_type.to_string();
            if !delivery {
                RunDeadLettered { flow: &job.flow, error_type: &error_type }.emit();
            }
            JobEnd::Failed { error_type, error: error.description, step: at.map(|a| (a.ordinal, a.path)) }
        }
        RunOutcome::Parked if effects.store_failed.load(Ordering::Relaxed) => {
            JobEnd::Retry { at: now + 1_000, error: "the store refused a message; the run goes again".into() }
        }
        // Queueing the message parked the job in the same transaction.
        RunOutcome::Parked if effects.queued.load(Ordering::Relaxed) => return,
        RunOutcome::Parked => JobEnd::Parked,
    };
    let steps = effects.take_unwritten();
    finish(state, &job, end, steps).await;
}

async fn finish(state: &AppState, job: &Job, end: JobEnd, steps: Vec<StepRow>) {
    let again = matches!(end, JobEnd::Retry { .. } | JobEnd::Parked);
    if let Err(e) = state.store.end_job(job.id, end, steps, magpie_core::now_ms()).await {
        // The lease runs out and the job is claimed again: nothing is lost.
        tracing::error!(job = job.id, error = %e, "recording the end of a flow run failed");
    }
    if again {
        state.wake_workers.notify_one();
    }
}

/// Why a run cannot start.
enum Unprepared {
    /// The store failed: try again.
    Store(String),
    /// The event is gone: it never will.
    NoEvent(String),
}

async fn prepare(state: &AppState, job: &Job, body: Value) -> Result<(Arc<Runtime>, Message, Checkpoint), Unprepared> {
    if !body.is_object() {
        return Err(Unprepared::NoEvent(format!("event #{} is missing from the log", job.event_seq)));
    }
    // A first run has recorded nothing yet; a re-run resumes from what earlier runs recorded
    // (read with the claim).
    let journal = match &job.journal {
        Some(j) => j.clone(),
        None if job.runs > 1 => state.store.journal(job.id).await.map_err(|e| Unprepared::Store(e.to_string()))?,
        None => Journal::default(),
    };
    let mut msg = flow_message(&job.bus, &job.rule, &job.flow, &job.event_id, body, job.replay.as_deref());
    // An alert's state as the routing saw it: `msg.vars.alert` (key, notice, fired_count, …).
    if let Some(alert) = &job.alert {
        msg.vars.insert("alert".into(), alert.clone());
    }
    Ok((state.runtime.get(), msg, checkpoint(&journal)))
}

/// The message a flow run starts from: the event as payload (for a listen path, the request's
/// body, with its path and headers as attributes), and where it came from as attributes.
pub(crate) fn flow_message(
    bus: &str,
    rule: &str,
    flow: &str,
    event_id: &str,
    body: Value,
    replay: Option<&str>,
) -> Message {
    let mut msg;
    if bus == magpie_core::HOOKS_BUS {
        let mut body = body;
        let mut take = |k: &str| body.get_mut(k).map(Value::take).unwrap_or(Value::Null);
        let hook = take("hook");
        msg = Message::new(event_id, take("data"));
        if let Value::Object(hook) = hook {
            msg.attrs.extend(hook);
        }
    } else {
        let mut body = body;
        // Flows see `time` in one form whatever the producer sent: milliseconds since the epoch
        // (Tencent's form; CloudEvents' RFC 3339 strings converted). The stored event keeps the
        // producer's form, and patterns match that.
        if let Some(t) = body.get_mut("time")
            && !t.is_i64()
            && let Ok(ms) = magpie_core::event::parse_time(t)
        {
            *t = json!(ms);
        }
        let field = |k: &str| body.get(k).cloned().unwrap_or(Value::Null);
        let (source, ty) = (field("source"), field("type"));
        msg = Message::new(event_id, body);
        for (k, v) in [("bus", json!(bus)), ("rule", json!(rule)), ("source", source), ("type", ty)] {
            msg.attrs.insert(k.into(), v);
        }
    }
    msg.attrs.insert("flow".into(), json!(flow));
    msg.attrs.insert("event_id".into(), json!(event_id));
    if let Some(r) = replay {
        msg.attrs.insert("replay".into(), json!(r));
    }
    msg
}

/// Members of a step record's detail larger than this are stored shortened: the trace shows what a
/// step did, it does not keep every megabyte a variable held.
const DETAIL_MEMBER_BYTES: usize = 16 << 10;

/// `detail` with every member larger than [`DETAIL_MEMBER_BYTES`] replaced by the start of its
/// JSON text and its size.
fn shortened(detail: Value) -> Value {
    let Value::Object(members) = detail else { return detail };
    Value::Object(
        members
            .into_iter()
            .map(|(k, v)| {
                if magpie_flow::expr::json_size(&v, DETAIL_MEMBER_BYTES) > DETAIL_MEMBER_BYTES {
                    let text = v.to_string();
                    let mut end = 1024.min(text.len());
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    (k, json!(format!("{}… (shortened: {} bytes in all)", &text[..end], text.len())))
                } else {
                    (k, v)
                }
            })
            .collect(),
    )
}

struct JobEffects<'a> {
    state: &'a Arc<AppState>,
    job: &'a Job,
    /// The event's `type` and `status`, for the outbox.
    event_type: String,
    event_status: Option<String>,
    rt: Arc<Runtime>,
    /// Queueing a message failed: the run must go again.
    store_failed: AtomicBool,
    /// A message was queued (and the job parked with it).
    queued: AtomicBool,
    /// Step records not written yet: they go with the run's next write (its message or its end),
    /// one transaction instead of one per step.
    unwritten: Mutex<Vec<StepRow>>,
}

impl JobEffects<'_> {
    fn take_unwritten(&self) -> Vec<StepRow> {
        std::mem::take(&mut *self.unwritten.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Effects for JobEffects<'_> {
    async fn send(&self, req: SendRequest) -> SendResult {
        if !self.rt.connections.contains_key(&req.connection) {
            let e = FlowError::new(
                ErrorType::new("FLOW", "CONFIG"),
                format!("connection {:?} does not exist", req.connection),
            );
            return SendResult::Failed(e);
        }
        let msg = NewMessage {
            job_id: self.job.id,
            ordinal: req.ordinal,
            path: req.path,
            connection: req.connection.clone(),
            flow: self.job.flow.clone(),
            event_id: self.job.event_id.clone(),
            event_type: self.event_type.clone(),
            event_status: self.event_status.clone(),
            kind: req.message.kind,
            message: serde_json::to_value(&req.message).unwrap_or(Value::Null),
            policy: req.retry,
            received_at: self.job.received_at,
            now_ms: magpie_core::now_ms(),
            steps: self.take_unwritten(),
        };
        match self.state.store.enqueue(msg).await {
            Ok(_) => {
                self.queued.store(true, Ordering::Relaxed);
                outbox::wake(self.state, &req.connection);
            }
            Err(e) => {
                tracing::error!(job = self.job.id, error = %e, "queueing a message failed; the run goes again");
                self.store_failed.store(true, Ordering::Relaxed);
            }
        }
        SendResult::Queued
    }

    async fn record(&self, rec: StepRecord) {
        let row = StepRow {
            ordinal: rec.ordinal,
            path: rec.path,
            kind: rec.kind,
            status: rec.status,
            detail: shortened(rec.detail),
            at: magpie_core::now_ms(),
        };
        self.unwritten.lock().unwrap_or_else(|p| p.into_inner()).push(row);
    }

    fn log(&self, level: LogLevel, category: &str, message: &str) {
        let (job, event_id, flow) = (self.job.id, self.job.event_id.as_str(), self.job.flow.as_str());
        match level {
            LogLevel::Debug => tracing::debug!(target: "magpie::flow", job, event_id, flow, category, "{message}"),
            LogLevel::Info => tracing::info!(target: "magpie::flow", job, event_id, flow, category, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "magpie::flow", job, event_id, flow, category, "{message}"),
            LogLevel::Error => tracing::error!(target: "magpie::flow", job, event_id, flow, category, "{message}"),
        }
    }

    fn now_ms(&self) -> i64 {
        magpie_core::now_ms()
    }

    async fn eval(&self, expr: &Expr, msg: &Message) -> Result<Value, String> {
        self.state.sandbox.eval(expr, msg).await
    }
}
