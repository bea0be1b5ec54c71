//! Compiling a flow: every step checked, expressions checked (none run), error matchers built.

use magpie_core::config::{FlowSpec, LogLevel, MessageKind, RetryPolicy, StepSpec};
use magpie_core::{ErrorMatcher, ErrorType};
use serde_json::Value;

use crate::expr::{Expr, ExprError};

/// A flow compiled for running: expressions parsed, error matchers built.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The flow's name.
    pub name: String,
    pub(crate) steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) path: String,
    pub(crate) kind: &'static str,
    pub(crate) op: Op,
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
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
