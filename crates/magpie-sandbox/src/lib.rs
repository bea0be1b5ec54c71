//! The expression sandbox: where the code operators write — Jinja templates and `dw_process`
//! functions — runs, so that a mistake in it (or a hostile configuration) costs one evaluation
//! and never the server.
//!
//! Owns: the sandbox processes (spawned from the server's own executable, which enters
//! [`enter_if_child`] first thing), their budgets, and the wire between them. Inside a sandbox
//! each evaluation has the interpreter budgets of [`magpie_flow::budget`] (time, Starlark ticks
//! and heap, template fuel, output size); around it the operating system bounds the process's
//! memory (`RLIMIT_AS`), and the server stops a process that outlives the time limit. A process
//! that dies or is stopped is replaced; the evaluation it was running ends with an error that
//! says why, which the flow sees as `FLOW:EXPRESSION`.
//!
//! Must not know: flows, steps, stores or connectors — it evaluates a [`magpie_flow::Program`] over a
//! [`Message`] and answers a value or a reason.
//!
//! [`Sandbox::in_process`] evaluates on a bounded pool of threads instead: for tests and tools
//! that have no executable to spawn. It keeps every budget but memory.

mod child;
mod local;
mod pool;
mod protocol;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use magpie_flow::{Expr, Message, budget};
use serde_json::Value;

/// The environment variable that makes an executable a sandbox process.
pub const CHILD_ENV: &str = "MAGPIE_SANDBOX_CHILD";
/// The environment variable carrying a sandbox process's memory budget, in bytes.
const MEMORY_ENV: &str = "MAGPIE_SANDBOX_MEMORY";

/// Turns this process into a sandbox process if it was started as one; returns otherwise.
///
/// Call it first thing in `main` of every executable that spawns sandboxes (the `magpie` binary,
/// benchmarks): a sandbox is the same executable started again with [`CHILD_ENV`] set.
pub fn enter_if_child() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child::serve();
    }
}

/// How sandbox processes are started and bounded.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// The executable (one that calls [`enter_if_child`] first).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// How many processes evaluate at once (more evaluations wait for one).
    pub processes: usize,
    /// The memory each process may map, in bytes.
    pub memory_bytes: u64,
    /// How long one evaluation may take before its process is stopped (a little more than the
    /// interpreter's own limit, which ends well-behaved loops first).
    pub time_limit: Duration,
}

impl SandboxOptions {
    /// Sandboxes started from this process's own executable, with the default budgets and one
    /// process per core (at least two).
    pub fn current_exe() -> std::io::Result<SandboxOptions> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(SandboxOptions {
            program: std::env::current_exe()?,
            args: Vec::new(),
            processes: cores.max(2),
            memory_bytes: budget::PROCESS_MEMORY_BYTES,
            time_limit: budget::TIME_LIMIT + Duration::from_millis(500),
        })
    }
}

/// Evaluates expressions' code away from the async runtime, within budgets.
pub struct Sandbox(Inner);

enum Inner {
    Processes(pool::Pool),
    InProcess(local::Local),
}

impl Sandbox {
    /// Evaluates in sandbox processes.
    pub fn processes(opts: SandboxOptions) -> Sandbox {
        Sandbox(Inner::Processes(pool::Pool::new(opts)))
    }

    /// Evaluates on at most `threads` blocking threads of this process (no memory bound).
    pub fn in_process(threads: usize) -> Sandbox {
        Sandbox(Inner::InProcess(local::Local::new(threads.max(1))))
    }

    /// Evaluates `expr` over `msg`: its value, or why it has none.
    pub async fn eval(&self, expr: &Expr, msg: &Message) -> Result<Value, String> {
        let program = match expr {
            Expr::Literal(v) => return Ok(v.clone()),
            Expr::Code(p) => p,
        };
        // A template that only looks fields up is rendered here: no round trip, no copy.
        if let Some(v) = program.render_lookups(msg) {
            return v;
        }
        match &self.0 {
            Inner::Processes(pool) => pool.eval(program, msg).await,
            Inner::InProcess(local) => {
                let json = msg.to_json();
                check_message_size(json.to_string().len())?;
                local.eval(program.clone(), json).await
            }
        }
    }

    /// What evaluates, for the start-up log.
    pub fn describe(&self) -> String {
        match &self.0 {
            Inner::Processes(p) => p.describe(),
            Inner::InProcess(l) => l.describe(),
        }
    }
}

/// Refuses to evaluate over a message larger than [`budget::MESSAGE_BYTES`].
fn check_message_size(bytes: usize) -> Result<(), String> {
    if bytes > budget::MESSAGE_BYTES {
        return Err(magpie_flow::expr::message_too_large(bytes));
    }
    Ok(())
}
