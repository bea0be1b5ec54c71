//! The flow runner: steps over a [`Message`], with every effect going through [`Effects`].
//!
//! Runs are durable by deterministic replay. Each step execution gets an ordinal in execution
//! order; the server records step records and send attempts as they happen, and on a re-run
//! hands back a [`Checkpoint`] built from them. The runner then re-evaluates the flow from the
//! start (expressions are pure), skips the effects already done (sends already delivered, step
//! records and log lines already written), and carries on from the first unfinished send. A
//! retryable send failure suspends the run with a time to retry at, instead of sleeping.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;

use magpie_core::config::{LogLevel, MessageKind, RetryPolicy};
use magpie_core::{OutboundMessage, StepStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::compile::Flow;
use crate::compile::{Op, Step};
use crate::expr::{Expr, truthy};
use crate::message::{FlowError, Message};

/// How a send ended, as the sender (the server's outbox, or `magpie flow run`) reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum SendResult {
    /// The platform accepted the message: alone, or folded into the digest `digest`.
    Delivered {
        /// The digest the message was folded into, when it was.
        digest: Option<String>,
    },
    /// It cannot be delivered: retries, the maximum age, or the platform's answer say so.
    Failed(FlowError),
    /// It is queued for delivery: the run waits (parked) until the sender reports the outcome.
    Queued,
}

/// One message to send, as the runner hands it to the sender.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    /// The step's ordinal in this run.
    pub ordinal: u32,
    /// The step's path.
    pub path: String,
    /// The connection's name.
    pub connection: String,
    /// The message.
    pub message: OutboundMessage,
    /// How failures are retried.
    pub retry: RetryPolicy,
}

/// The record of one executed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Execution ordinal within the run (from 0).
    pub ordinal: u32,
    /// Path in the flow, e.g. `steps[1].try.steps[0].robot`.
    pub path: String,
    /// Step kind.
    pub kind: String,
    /// How it ended.
    pub status: StepStatus,
    /// What the step did (the variable set, the log line, the error…).
    pub detail: Value,
}

/// The flow's only door to the world.
pub trait Effects: Sync {
    /// Hands a message to the sender: delivered, failed for good, or queued (the run parks).
    fn send(&self, req: SendRequest) -> impl Future<Output = SendResult> + Send;
    /// Persists a step record.
    fn record(&self, rec: StepRecord) -> impl Future<Output = ()> + Send;
    /// Writes a logger step's line.
    fn log(&self, level: LogLevel, category: &str, message: &str);
    /// The time now, in milliseconds since the epoch.
    fn now_ms(&self) -> i64;
    /// Evaluates an expression's code over the message. The default evaluates here, on the
    /// caller's thread; the server evaluates in sandbox processes, within budgets.
    fn eval(&self, expr: &Expr, msg: &Message) -> impl Future<Output = Result<Value, String>> + Send {
        std::future::ready(expr.eval_here(msg))
    }
}

/// Where a send of an earlier run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum SendState {
    /// Handed to the sender, no outcome yet.
    Queued,
    /// Delivered (alone, or folded into `digest`).
    Delivered {
        /// The digest, when folded.
        digest: Option<String>,
    },
    /// Failed for good.
    Failed(FlowError),
}

/// What earlier runs of the same job already did, rebuilt from the stored records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// Sends already handed to the sender, by step ordinal.
    pub sends: BTreeMap<u32, SendState>,
    /// Ordinals whose step records are already written.
    pub recorded: BTreeSet<u32>,
}

/// A step of a run: its ordinal and path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRef {
    /// Execution ordinal.
    pub ordinal: u32,
    /// Path in the flow.
    pub path: String,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    /// Every step ran (errors, if any, were caught).
    Completed {
        /// The message at the end.
        message: Message,
        /// Sends that failed for good (their errors were caught).
        undelivered: u32,
    },
    /// An error was not caught.
    Failed {
        /// The error.
        error: FlowError,
        /// The message when it happened.
        message: Message,
        /// The step that raised it.
        at: Option<StepRef>,
    },
    /// A send is queued: the run goes on when the sender reports its outcome.
    Parked,
}

enum Interrupt {
    Error(FlowError),
    Park,
}

type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Interrupt>> + Send + 'a>>;

/// Runs compiled flows.
pub struct Runner<'e, E: Effects> {
    effects: &'e E,
    resume: Checkpoint,
    next_ordinal: u32,
    undelivered: u32,
    origin: Option<StepRef>,
}

impl<'e, E: Effects> Runner<'e, E> {
    /// Runs `flow` over `msg`, resuming after `resume` when given.
    pub async fn run(flow: &Flow, msg: Message, effects: &'e E, resume: Option<Checkpoint>) -> RunOutcome {
        let mut runner =
            Runner { effects, resume: resume.unwrap_or_default(), next_ordinal: 0, undelivered: 0, origin: None };
        let mut msg = msg;
        match runner.steps(&flow.steps, &mut msg).await {
            Ok(()) => RunOutcome::Completed { message: msg, undelivered: runner.undelivered },
            Err(Interrupt::Error(error)) => RunOutcome::Failed { error, message: msg, at: runner.origin },
            Err(Interrupt::Park) => RunOutcome::Parked,
        }
    }

    fn steps<'a>(&'a mut self, steps: &'a [Step], msg: &'a mut Message) -> StepFuture<'a> {
        Box::pin(async move {
            for step in steps {
                self.step(step, msg).await?;
            }
            Ok(())
        })
    }

    async fn emit(&self, ordinal: u32, step: &Step, status: StepStatus, detail: Value) {
        if !self.resume.recorded.contains(&ordinal) {
            let rec = StepRecord { ordinal, path: step.path.clone(), kind: step.kind.to_string(), status, detail };
            self.effects.record(rec).await;
        }
    }

    /// Evaluates an expression: a literal here, code through the effects.
    async fn eval(&self, e: &Expr, msg: &Message, path: &str, field: &str) -> Result<Value, FlowError> {
        match e {
            Expr::Literal(v) => Ok(v.clone()),
            Expr::Code(_) => self
                .effects
                .eval(e, msg)
                .await
                .map_err(|reason| FlowError::expression(format!("{path}.{field}: {reason}"))),
        }
    }

    async fn step(&mut self, step: &Step, msg: &mut Message) -> Result<(), Interrupt> {
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        let result: Result<Value, Interrupt> = match &step.op {
            Op::SetVariable { name, value } => match self.eval(value, msg, &step.path, "value").await {
                Ok(v) => {
                    msg.vars.insert(name.clone(), v.clone());
                    Ok(json!({"name": name, "value": v}))
                }
                Err(e) => Err(Interrupt::Error(e)),
            },
            Op::SetPayload { value } => match self.eval(value, msg, &step.path, "value").await {
                Ok(v) => {
                    msg.payload = v.clone();
                    Ok(json!({"payload": v}))
                }
                Err(e) => Err(Interrupt::Error(e)),
            },
            Op::RemoveVariable { name } => Ok(json!({"name": name, "removed": msg.vars.remove(name).is_some()})),
            Op::Logger { level, category, message } => match self.eval(message, msg, &step.path, "message").await {
                Ok(v) => {
                    let text = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    let category = category.clone().unwrap_or_default();
                    if !self.resume.recorded.contains(&ordinal) {
                        self.effects.log(*level, &category, &text);
                    }
                    Ok(json!({"level": level.as_str(), "category": category, "message": text}))
                }
                Err(e) => Err(Interrupt::Error(e)),
            },
            Op::RaiseError { error_type, description } => {
                let d = self.eval(description, msg, &step.path, "description").await.map(|v| match v {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                });
                match d {
                    Ok(d) => Err(Interrupt::Error(FlowError::new(error_type.clone(), d))),
                    Err(e) => Err(Interrupt::Error(e)),
                }
            }
            Op::Choice { branches, otherwise } => {
                let mut chosen = None;
                for (i, (cond, _)) in branches.iter().enumerate() {
                    match self.eval(cond, msg, &step.path, &format!("when[{i}].condition")).await {
                        Ok(v) if truthy(&v) => {
                            chosen = Some(i);
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.origin = Some(StepRef { ordinal, path: step.path.clone() });
                            self.emit(ordinal, step, StepStatus::Error, json!({"error": e.to_json()})).await;
                            return Err(Interrupt::Error(e));
                        }
                    }
                }
                let body = match chosen {
                    Some(i) => &branches[i].1,
                    None => otherwise,
                };
                let r = self.steps(body, msg).await;
                let detail =
                    json!({"branch": chosen.map(|i| format!("when[{i}]")).unwrap_or_else(|| "otherwise".into())});
                r.map(|()| detail)
            }
            Op::Try { steps, catches } => match self.steps(steps, msg).await {
                Ok(()) => Ok(json!({"outcome": "ok"})),
                Err(Interrupt::Error(err)) => {
                    match catches.iter().position(|(m, _)| m.iter().any(|m| m.matches(&err.error_type))) {
                        Some(i) => {
                            msg.error = Some(err.clone());
                            let r = self.steps(&catches[i].1, msg).await;
                            if r.is_ok() {
                                msg.error = None;
                            }
                            match r {
                                Ok(()) => {
                                    let detail = json!({"catch": i, "error": err.to_json()});
                                    self.emit(ordinal, step, StepStatus::Caught, detail).await;
                                    return Ok(());
                                }
                                Err(e) => Err(e),
                            }
                        }
                        None => Err(Interrupt::Error(err)),
                    }
                }
                Err(suspend) => Err(suspend),
            },
            Op::Robot { connection, kind, title, content, retry } => {
                return self.robot(ordinal, step, msg, connection, *kind, title.as_ref(), content, retry).await;
            }
        };
        match result {
            Ok(detail) => {
                self.emit(ordinal, step, StepStatus::Ok, detail).await;
                Ok(())
            }
            Err(Interrupt::Error(e)) => {
                if !matches!(step.op, Op::Try { .. } | Op::Choice { .. }) {
                    self.origin = Some(StepRef { ordinal, path: step.path.clone() });
                }
                self.emit(ordinal, step, StepStatus::Error, json!({"error": e.to_json()})).await;
                Err(Interrupt::Error(e))
            }
            Err(Interrupt::Park) => Err(Interrupt::Park),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn robot(
        &mut self,
        ordinal: u32,
        step: &Step,
        msg: &mut Message,
        connection: &str,
        kind: MessageKind,
        title: Option<&Expr>,
        content: &Expr,
        policy: &RetryPolicy,
    ) -> Result<(), Interrupt> {
        let state = match self.resume.sends.get(&ordinal) {
            Some(state) => state.clone(),
            None => {
                let built = async {
                    let title = match title {
                        Some(t) => match self.eval(t, msg, &step.path, "title").await? {
                            Value::Null => None,
                            Value::String(s) => Some(s),
                            other => Some(other.to_string()),
                        },
                        None => None,
                    };
                    let content = self.eval(content, msg, &step.path, "content").await?;
                    Ok::<_, FlowError>(OutboundMessage { kind, title, content })
                }
                .await;
                let message = match built {
                    Ok(m) => m,
                    Err(e) => {
                        self.origin = Some(StepRef { ordinal, path: step.path.clone() });
                        self.emit(ordinal, step, StepStatus::Error, json!({"error": e.to_json()})).await;
                        return Err(Interrupt::Error(e));
                    }
                };
                let req = SendRequest {
                    ordinal,
                    path: step.path.clone(),
                    connection: connection.to_string(),
                    message,
                    retry: policy.clone(),
                };
                match self.effects.send(req).await {
                    SendResult::Delivered { digest } => SendState::Delivered { digest },
                    SendResult::Failed(e) => SendState::Failed(e),
                    SendResult::Queued => SendState::Queued,
                }
            }
        };
        match state {
            SendState::Queued => Err(Interrupt::Park),
            SendState::Delivered { digest } => {
                let detail = match digest {
                    Some(d) => json!({"connection": connection, "delivery": "folded", "digest_id": d}),
                    None => json!({"connection": connection, "delivery": "delivered"}),
                };
                self.emit(ordinal, step, StepStatus::Ok, detail).await;
                Ok(())
            }
            SendState::Failed(error) => {
                self.undelivered += 1;
                self.origin = Some(StepRef { ordinal, path: step.path.clone() });
                self.emit(
                    ordinal,
                    step,
                    StepStatus::Error,
                    json!({"connection": connection, "delivery": "failed", "error": error.to_json()}),
                )
                .await;
                Err(Interrupt::Error(error))
            }
        }
    }
}
