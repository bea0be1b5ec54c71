//! Magpie integration flows: the [`Message`], expressions (Jinja templates and Python-style
//! `dw_process(msg)` functions), steps (set-variable, set-payload, remove-variable, logger,
//! try/catch, choice, raise-error, robot) and the durable [`Runner`].
//!
//! This crate does no I/O: every effect goes through [`Effects`], so a flow runs the same in the
//! server, in `magpie flow run` and in tests.

pub mod expr;
pub mod message;
pub mod runner;

pub use expr::{Expr, ExprError};
pub use message::{FlowError, Message};
pub use runner::{
    Checkpoint, Effects, Flow, RunOutcome, Runner, SendRequest, SendResult, SendState, StepRecord, StepRef,
};

#[cfg(test)]
mod tests;
