//! A flow's dry run against a template: the flow runs as the worker would run it (expressions in
//! the sandbox), but each send only builds the platform's request, as the robot would receive it;
//! nothing is sent and nothing is stored.

use std::sync::Mutex;

use magpie_connectors::{Destination, build_request};
use magpie_core::config::LogLevel;
use magpie_flow::{Effects, Flow, Message, RunOutcome, Runner, SendRequest, SendResult, StepRecord};
use serde_json::Value;

use crate::AppState;

/// One message the flow would send.
pub(super) struct Preview {
    pub connection: String,
    pub platform: String,
    /// The message as the robot shows it (HTML).
    pub shown: String,
    /// The request body, as JSON.
    pub request: String,
}

/// What a dry run did.
pub(super) struct DryRun {
    pub steps: Vec<String>,
    pub previews: Vec<Preview>,
    pub outcome: String,
}

struct Collect<'a> {
    state: &'a AppState,
    steps: Mutex<Vec<String>>,
    previews: Mutex<Vec<Preview>>,
}

impl Effects for Collect<'_> {
    async fn send(&self, req: SendRequest) -> SendResult {
        let rt = self.state.runtime.get();
        let Some(conn) = rt.connections.get(&req.connection) else {
            return SendResult::Failed(magpie_flow::FlowError::new(
                magpie_core::ErrorType::new("FLOW", "CONFIG"),
                format!("no connection {:?}", req.connection),
            ));
        };
        // The request is built as for sending (signing included); only its body is shown.
        let env = |k: &str| (self.state.env)(k);
        let dest: Destination = match crate::delivery::destination(conn, &env) {
            Ok(d) => d,
            Err(reason) => {
                return SendResult::Failed(magpie_flow::FlowError::new(
                    magpie_core::ErrorType::new(conn.platform.error_namespace(), "CONFIG"),
                    reason,
                ));
            }
        };
        match build_request(&dest, &req.message, magpie_core::now_ms()) {
            Ok(http) => {
                self.previews.lock().unwrap_or_else(|p| p.into_inner()).push(Preview {
                    connection: conn.name.clone(),
                    platform: conn.platform.as_str().to_string(),
                    shown: super::trace::preview(&http.body),
                    request: serde_json::to_string_pretty(&http.body).unwrap_or_default(),
                });
                SendResult::Delivered { digest: None }
            }
            Err(e) => SendResult::Failed(magpie_flow::FlowError::new(
                magpie_core::ErrorType::new(conn.platform.error_namespace(), "BAD_REQUEST"),
                e.to_string(),
            )),
        }
    }

    async fn record(&self, rec: StepRecord) {
        let detail = match rec.detail {
            Value::Object(ref o) if o.is_empty() => String::new(),
            ref d => d.to_string(),
        };
        let line = format!("[{}] {} {} {}", rec.ordinal, rec.path, rec.status, detail);
        self.steps.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }

    fn log(&self, level: LogLevel, category: &str, message: &str) {
        let line = format!("    log {} [{category}] {message}", level.as_str());
        self.steps.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }

    fn now_ms(&self) -> i64 {
        magpie_core::now_ms()
    }

    async fn eval(&self, expr: &magpie_flow::Expr, msg: &Message) -> Result<Value, String> {
        self.state.sandbox.eval(expr, msg).await
    }
}

/// Runs `flow` over `event` (as rule `(dry run)` on the default bus would), sending nothing.
pub(super) async fn run(state: &AppState, flow_name: &str, flow: &Flow, event: Value) -> DryRun {
    let id = event.get("id").and_then(Value::as_str).unwrap_or("dry-run").to_string();
    let msg = crate::worker::flow_message(magpie_core::DEFAULT_BUS, "(dry run)", flow_name, &id, event, None);
    let effects = Collect { state, steps: Mutex::new(Vec::new()), previews: Mutex::new(Vec::new()) };
    let outcome = match Runner::run(flow, msg, &effects, None).await {
        RunOutcome::Completed { undelivered: 0, .. } => "done".to_string(),
        RunOutcome::Completed { undelivered, .. } => format!("done, {undelivered} message(s) could not be built"),
        RunOutcome::Failed { error, .. } => format!("failed: {}: {}", error.error_type, error.description),
        RunOutcome::Parked => "parked".to_string(),
    };
    DryRun {
        steps: effects.steps.into_inner().unwrap_or_default(),
        previews: effects.previews.into_inner().unwrap_or_default(),
        outcome,
    }
}
