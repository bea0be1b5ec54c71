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

use magpie_core::config::{FlowSpec, LogLevel, MessageKind, RetryPolicy, StepSpec};
use magpie_core::{ErrorMatcher, ErrorType, OutboundMessage};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::expr::{Expr, ExprError, truthy};
use crate::message::{FlowError, Message};

/// A flow compiled for running: expressions parsed, error matchers built.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The flow's name.
    pub name: String,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
struct Step {
    path: String,
    kind: &'static str,
    op: Op,
}

#[derive(Debug, Clone)]
enum Op {
    SetVariable { name: String, value: Expr },
    SetPayload { value: Expr },
    RemoveVariable { name: String },
    Logger { level: LogLevel, category: Option<String>, message: Expr },
    Try { steps: Vec<Step>, catches: Vec<(Vec<ErrorMatcher>, Vec<Step>)> },
    Choice { branches: Vec<(Expr, Vec<Step>)>, otherwise: Vec<Step> },
    RaiseError { error_type: ErrorType, description: Expr },
    Robot { connection: String, kind: MessageKind, title: Option<Expr>, content: Expr, retry: RetryPolicy },
}

impl Flow {
    /// Compiles a flow spec, checking every expression. Errors name the step path.
    pub fn compile(spec: &FlowSpec) -> Result<Flow, ExprError> {
        Ok(Flow { name: spec.name.clone(), steps: compile_steps(&spec.steps, "steps")? })
    }

    /// Names of the connections the flow sends through.
    pub fn connections(&self) -> Vec<String> {
        fn walk(steps: &[Step], out: &mut Vec<String>) {
            for s in steps {
                match &s.op {
                    Op::Robot { connection, .. } => out.push(connection.clone()),
                    Op::Try { steps, catches } => {
                        walk(steps, out);
                        catches.iter().for_each(|(_, s)| walk(s, out));
                    }
                    Op::Choice { branches, otherwise } => {
                        branches.iter().for_each(|(_, s)| walk(s, out));
                        walk(otherwise, out);
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.steps, &mut out);
        out.sort();
        out.dedup();
        out
    }
}

fn compile_steps(specs: &[StepSpec], at: &str) -> Result<Vec<Step>, ExprError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let path = format!("{at}[{i}].{}", spec.kind());
            let expr = |v: &Value, field: &str| Expr::compile(v, &format!("{path}.{field}"));
            let op = match spec {
                StepSpec::SetVariable(s) => Op::SetVariable { name: s.name.clone(), value: expr(&s.value, "value")? },
                StepSpec::SetPayload(s) => Op::SetPayload { value: expr(&s.value, "value")? },
                StepSpec::RemoveVariable(s) => Op::RemoveVariable { name: s.name.clone() },
                StepSpec::Logger(s) => {
                    Op::Logger { level: s.level, category: s.category.clone(), message: expr(&s.message, "message")? }
                }
                StepSpec::Try(t) => Op::Try {
                    steps: compile_steps(&t.steps, &format!("{path}.steps"))?,
                    catches: t
                        .catch
                        .iter()
                        .enumerate()
                        .map(|(j, c)| {
                            let matchers = c
                                .errors
                                .iter()
                                .map(|e| {
                                    ErrorMatcher::parse(e).map_err(|reason| ExprError {
                                        path: format!("{path}.catch[{j}].errors"),
                                        reason,
                                    })
                                })
                                .collect::<Result<Vec<_>, _>>()?;
                            Ok((matchers, compile_steps(&c.steps, &format!("{path}.catch[{j}].steps"))?))
                        })
                        .collect::<Result<_, ExprError>>()?,
                },
                StepSpec::Choice(c) => Op::Choice {
                    branches: c
                        .when
                        .iter()
                        .enumerate()
                        .map(|(j, w)| {
                            Ok((
                                Expr::compile(&w.condition, &format!("{path}.when[{j}].condition"))?,
                                compile_steps(&w.steps, &format!("{path}.when[{j}].steps"))?,
                            ))
                        })
                        .collect::<Result<_, ExprError>>()?,
                    otherwise: compile_steps(&c.otherwise, &format!("{path}.otherwise"))?,
                },
                StepSpec::RaiseError(r) => Op::RaiseError {
                    error_type: ErrorType::parse(&r.error_type)
                        .map_err(|reason| ExprError { path: format!("{path}.type"), reason })?,
                    description: expr(&r.description, "description")?,
                },
                StepSpec::Robot(r) => Op::Robot {
                    connection: r.connection.clone(),
                    kind: r.message,
                    title: r.title.as_ref().map(|t| expr(t, "title")).transpose()?,
                    content: expr(&r.content, "content")?,
                    retry: r.retry.clone(),
                },
            };
            Ok(Step { path, kind: spec.kind(), op })
        })
        .collect()
}

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
    /// `ok`, `caught`, `error` or `skipped`.
    pub status: String,
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

    async fn emit(&self, ordinal: u32, step: &Step, status: &str, detail: Value) {
        if !self.resume.recorded.contains(&ordinal) {
            let rec = StepRecord {
                ordinal,
                path: step.path.clone(),
                kind: step.kind.to_string(),
                status: status.into(),
                detail,
            };
            self.effects.record(rec).await;
        }
    }

    async fn step(&mut self, step: &Step, msg: &mut Message) -> Result<(), Interrupt> {
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        let eval = |e: &Expr, m: &Message, field: &str| {
            e.eval(m).map_err(|reason| FlowError::expression(format!("{}.{field}: {reason}", step.path)))
        };
        let result: Result<Value, Interrupt> = match &step.op {
            Op::SetVariable { name, value } => match eval(value, msg, "value") {
                Ok(v) => {
                    msg.vars.insert(name.clone(), v.clone());
                    Ok(json!({"name": name, "value": v}))
                }
                Err(e) => Err(Interrupt::Error(e)),
            },
            Op::SetPayload { value } => match eval(value, msg, "value") {
                Ok(v) => {
                    msg.payload = v.clone();
                    Ok(json!({"payload": v}))
                }
                Err(e) => Err(Interrupt::Error(e)),
            },
            Op::RemoveVariable { name } => Ok(json!({"name": name, "removed": msg.vars.remove(name).is_some()})),
            Op::Logger { level, category, message } => match eval(message, msg, "message") {
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
                let d = eval(description, msg, "description").map(|v| match v {
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
                    match eval(cond, msg, &format!("when[{i}].condition")) {
                        Ok(v) if truthy(&v) => {
                            chosen = Some(i);
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.origin = Some(StepRef { ordinal, path: step.path.clone() });
                            self.emit(ordinal, step, "error", json!({"error": e.to_json()})).await;
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
                                    self.emit(ordinal, step, "caught", json!({"catch": i, "error": err.to_json()}))
                                        .await;
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
                self.emit(ordinal, step, "ok", detail).await;
                Ok(())
            }
            Err(Interrupt::Error(e)) => {
                if !matches!(step.op, Op::Try { .. } | Op::Choice { .. }) {
                    self.origin = Some(StepRef { ordinal, path: step.path.clone() });
                }
                self.emit(ordinal, step, "error", json!({"error": e.to_json()})).await;
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
                let built = (|| {
                    let title = match title {
                        Some(t) => match t.eval(msg).map_err(|r| format!("{}.title: {r}", step.path))? {
                            Value::Null => None,
                            Value::String(s) => Some(s),
                            other => Some(other.to_string()),
                        },
                        None => None,
                    };
                    let content = content.eval(msg).map_err(|r| format!("{}.content: {r}", step.path))?;
                    Ok::<_, String>(OutboundMessage { kind, title, content })
                })();
                let message = match built {
                    Ok(m) => m,
                    Err(reason) => {
                        let e = FlowError::expression(reason);
                        self.origin = Some(StepRef { ordinal, path: step.path.clone() });
                        self.emit(ordinal, step, "error", json!({"error": e.to_json()})).await;
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
                self.emit(ordinal, step, "ok", detail).await;
                Ok(())
            }
            SendState::Failed(error) => {
                self.undelivered += 1;
                self.origin = Some(StepRef { ordinal, path: step.path.clone() });
                self.emit(
                    ordinal,
                    step,
                    "error",
                    json!({"connection": connection, "delivery": "failed", "error": error.to_json()}),
                )
                .await;
                Err(Interrupt::Error(error))
            }
        }
    }
}
