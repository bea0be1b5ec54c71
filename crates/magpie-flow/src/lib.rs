//! Magpie integration flows: the [`Message`], expressions (Jinja templates and Python-style
//! `dw_process(msg)` functions), steps (set-variable, set-payload, remove-variable, logger,
//! try/catch, choice, raise-error, robot) and the durable [`Runner`].
//!
//! This crate does no I/O: every effect goes through [`Effects`] — including the evaluation of
//! the code operators write, which the server hands to sandbox processes — so a flow runs the
//! same in the server, in `magpie flow run` and in tests.

mod compile;
pub mod expr;
pub mod message;
pub mod runner;

pub use expr::{Compiled, Expr, ExprError, Program, budget};
pub use magpie_core::StepStatus;
pub use message::{FlowError, Message, MessageView};
pub use runner::{
    Checkpoint, Effects, Flow, RunOutcome, Runner, SendRequest, SendResult, SendState, StepRecord, StepRef,
};

#[cfg(test)]
mod tests;
