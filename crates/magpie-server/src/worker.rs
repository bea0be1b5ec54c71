//! Workers: claim due jobs with a lease, run their flow, record every step and attempt as it
//! happens, and end the job (done, dead-lettered, or rescheduled for a retry).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use magpie_core::config::LogLevel;
use magpie_flow::{Checkpoint, Effects, Message, RunOutcome, Runner, SendRequest, SendResult, StepRecord};
use magpie_store::{AttemptRow, Job, JobEnd, Journal, StepRow};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::runtime::Runtime;
use crate::{AppState, Metrics, delivery};

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
                            run_job(&state, job).await;
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
        if wait.is_zero() && slots.available_permits() > 0 && claimed == 0 {
            // Due jobs exist but none could be claimed (e.g. leased elsewhere): do not spin.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        tokio::select! {
            _ = state.wake_workers.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

fn checkpoint(journal: &Journal) -> Checkpoint {
    let mut cp = Checkpoint::default();
    let mut attempts: BTreeMap<u32, u32> = BTreeMap::new();
    for a in &journal.attempts {
        let n = attempts.entry(a.ordinal).or_default();
        *n = (*n).max(a.attempt);
        if a.outcome == "delivered" {
            cp.delivered.insert(a.ordinal);
        }
    }
    cp.attempts = attempts;
    cp.recorded = journal.steps.iter().map(|s| s.ordinal).collect();
    cp
}

async fn run_job(state: &AppState, job: Job) {
    let now = magpie_core::now_ms();
    let end = match prepare(state, &job).await {
        Err(reason) => {
            tracing::error!(job = job.id, event_id = %job.event_id, flow = %job.flow, reason = %reason, "flow run cannot start");
            JobEnd::Failed { error: reason }
        }
        Ok((rt, msg, cp)) => {
            let Some((_, flow)) = rt.flows.get(&job.flow) else {
                return finish(state, &job, JobEnd::Failed { error: format!("flow {:?} no longer exists", job.flow) })
                    .await;
            };
            let flow = flow.clone();
            let effects = JobEffects { state, job: &job, rt: rt.clone() };
            match Runner::run(&flow, msg, &effects, Some(cp)).await {
                RunOutcome::Completed(_) => {
                    Metrics::inc(&state.metrics.runs_completed);
                    tracing::info!(job = job.id, event_id = %job.event_id, rule = %job.rule, flow = %job.flow, "flow run completed");
                    JobEnd::Done
                }
                RunOutcome::Failed { error, .. } => {
                    Metrics::inc(&state.metrics.runs_failed);
                    tracing::warn!(job = job.id, event_id = %job.event_id, flow = %job.flow, error = %error, "flow run failed: dead-lettered");
                    JobEnd::Failed { error: error.to_string() }
                }
                RunOutcome::Suspended { retry_at_ms, last_error } => {
                    Metrics::inc(&state.metrics.runs_retried);
                    tracing::info!(job = job.id, event_id = %job.event_id, flow = %job.flow, error = %last_error,
                        retry_in_ms = retry_at_ms - now, "send failed; retry scheduled");
                    JobEnd::Retry { at: retry_at_ms, error: last_error.to_string() }
                }
            }
        }
    };
    finish(state, &job, end).await;
}

async fn finish(state: &AppState, job: &Job, end: JobEnd) {
    let retry = matches!(end, JobEnd::Retry { .. });
    if let Err(e) = state.store.end_job(job.id, end, magpie_core::now_ms()).await {
        // The lease runs out and the job is claimed again: nothing is lost.
        tracing::error!(job = job.id, error = %e, "recording the end of a flow run failed");
    }
    if retry {
        state.wake_workers.notify_one();
    }
}

async fn prepare(state: &AppState, job: &Job) -> Result<(Arc<Runtime>, Message, Checkpoint), String> {
    let body = &job.event;
    if !body.is_object() {
        return Err(format!("event #{} is missing from the log", job.event_seq));
    }
    // A first run has recorded nothing yet; a re-run resumes from what earlier runs recorded.
    let journal =
        if job.runs > 1 { state.store.journal(job.id).await.map_err(|e| e.to_string())? } else { Journal::default() };
    let field = |k: &str| body.get(k).cloned().unwrap_or(Value::Null);
    let mut msg;
    if job.bus == magpie_core::HOOKS_BUS {
        // A request to the flow's listen path: its body is the payload, its path and headers the attributes.
        msg = Message::new(job.event_id.clone(), field("data"));
        if let Some(Value::Object(hook)) = body.get("hook") {
            msg.attrs.extend(hook.clone());
        }
    } else {
        msg = Message::new(job.event_id.clone(), body.clone());
        for (k, v) in
            [("bus", json!(job.bus)), ("rule", json!(job.rule)), ("source", field("source")), ("type", field("type"))]
        {
            msg.attrs.insert(k.into(), v);
        }
    }
    msg.attrs.insert("flow".into(), json!(job.flow));
    msg.attrs.insert("event_id".into(), json!(job.event_id));
    Ok((state.runtime.get(), msg, checkpoint(&journal)))
}

struct JobEffects<'a> {
    state: &'a AppState,
    job: &'a Job,
    rt: Arc<Runtime>,
}

impl Effects for JobEffects<'_> {
    async fn send(&self, req: SendRequest) -> SendResult {
        let Some(conn) = self.rt.connections.get(&req.connection) else {
            return delivery::config_failure(&req.connection, "no such connection");
        };
        let dest = match delivery::destination(conn, self.state.env.as_ref()) {
            Ok(d) => d,
            Err(reason) => return delivery::config_failure(&req.connection, &reason),
        };
        let started_at = magpie_core::now_ms();
        let a =
            delivery::deliver(&self.state.http, &dest, &req.message, conn.timeout.unwrap_or(delivery::DEFAULT_TIMEOUT))
                .await;
        let row = AttemptRow {
            ordinal: req.ordinal,
            attempt: req.attempt,
            connection: req.connection.clone(),
            platform: conn.platform.as_str().into(),
            url: a.url,
            request: a.request,
            status_code: a.status_code,
            response: a.response,
            outcome: "failed".into(),
            error_type: None,
            error: None,
            started_at,
            duration_ms: a.duration.as_millis() as i64,
        };
        self.record_attempt(row, a.result).await
    }

    async fn record(&self, rec: StepRecord) {
        let row = StepRow {
            ordinal: rec.ordinal,
            path: rec.path,
            kind: rec.kind,
            status: rec.status,
            detail: rec.detail,
            at: magpie_core::now_ms(),
        };
        if let Err(e) = self.state.store.record_step(self.job.id, row).await {
            tracing::error!(job = self.job.id, error = %e, "recording a step failed");
        }
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
}

impl JobEffects<'_> {
    async fn record_attempt(&self, mut row: AttemptRow, result: SendResult) -> SendResult {
        match &result {
            SendResult::Delivered => {
                row.outcome = "delivered".into();
                Metrics::inc(&self.state.metrics.deliveries_ok);
            }
            SendResult::Failed { error_type, message, .. } => {
                row.error_type = Some(error_type.to_string());
                row.error = Some(message.clone());
                Metrics::inc(&self.state.metrics.deliveries_failed);
                tracing::warn!(job = self.job.id, connection = %row.connection, attempt = row.attempt, error_type = %error_type, error = %message, "delivery attempt failed");
            }
        }
        if let Err(e) = self.state.store.record_attempt(self.job.id, row).await {
            tracing::error!(job = self.job.id, error = %e, "recording a delivery attempt failed");
        }
        result
    }
}
