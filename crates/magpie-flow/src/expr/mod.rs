//! Expressions: literals, Jinja templates (minijinja) and Python-style `dw_process` functions
//! (starlark).
//!
//! A string holding `def dw_process` is a function called with the message; a string holding
//! `{{` or `{%` is a template rendered with `payload`, `vars`, `attrs`, `error`, `id` (and `msg`
//! holding all of them); any other string is itself. Objects and arrays are evaluated member by
//! member, so a structured payload can mix literals and expressions.
//!
//! Two forms, for two places:
//! - [`Expr`] is what a flow holds. Compiling it *checks* the code (templates parse; a
//!   `dw_process` source parses, defines `dw_process`, and has nothing at top level but `def`s and
//!   constant assignments) but runs none of it: saving or loading a flow never runs user code.
//!   A literal is evaluated where it is; code is a [`Program`], evaluated by whoever the runner's
//!   [`Effects`](crate::Effects) choose — in the server, a sandbox process.
//! - [`Compiled`] is a program made ready to run, in the process that runs it, with the budgets
//!   of [`budget`]: every breach is an error, never a panic.

mod lookup;
mod python;
mod template;

pub use lookup::Lookups;

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::Value;

use crate::message::Message;

/// What one evaluation may use. A breach ends the evaluation with a `FLOW:EXPRESSION` error.
pub mod budget {
    use std::time::Duration;

    /// Wall-clock time one evaluation may take.
    pub const TIME_LIMIT: Duration = Duration::from_secs(2);
    /// Starlark ticks (function calls and loop iterations) one `dw_process` call may take.
    pub const STARLARK_TICKS: u64 = 5_000_000;
    /// Starlark heap one `dw_process` call may hold, in bytes (checked as it runs).
    pub const STARLARK_HEAP_BYTES: usize = 64 << 20;
    /// Template fuel: bounds the instructions of one template render.
    pub const TEMPLATE_FUEL: u64 = 200_000;
    /// The largest result (rendered text, or the JSON a function returns), in bytes.
    pub const OUTPUT_BYTES: usize = 1 << 20;
    /// The memory a sandbox process may map, in bytes: what no check inside the interpreter can
    /// bound (one `[0] * 2000000000`) the operating system does.
    pub const PROCESS_MEMORY_BYTES: u64 = 512 << 20;
    /// The stack that checking and evaluating code runs on, in bytes (deeply nested code and
    /// values recurse).
    pub const STACK_BYTES: usize = 64 << 20;
    /// The longest code one expression string may hold, in bytes.
    pub const CODE_BYTES: usize = 64 << 10;
    /// The largest message (payload, variables, attributes) an expression may be given, in bytes
    /// of JSON: flow variables add up, and a run must not grow without bound.
    pub const MESSAGE_BYTES: usize = 4 << 20;
}

/// An expression error: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ExprError {
    /// Path of the expression in the flow, e.g. `steps[1].try.steps[0].robot.content`.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// Code to evaluate: the expression's source (a JSON value whose strings may be templates or
/// functions), checked, with an id that is the same wherever the same source is compiled.
#[derive(Debug, PartialEq)]
pub struct Program {
    id: u64,
    source: Value,
    /// The source as field lookups, when it is a template that does nothing more.
    lookups: Option<Lookups>,
}

impl Program {
    /// A program over `source`, not checked (a sandbox receiving a checked program uses this).
    pub fn unchecked(source: Value) -> Program {
        let mut h = std::hash::DefaultHasher::new();
        source.to_string().hash(&mut h);
        let lookups = source.as_str().filter(|s| template::is_template(s)).and_then(Lookups::parse);
        Program { id: h.finish(), source, lookups }
    }

    /// Renders it here, from the borrowed message, when it only looks fields up and they are
    /// of kinds rendered exactly so; `None` means it needs the template engine (a sandbox). The
    /// message budget holds here as in a sandbox.
    pub fn render_lookups(&self, msg: &Message) -> Option<Result<Value, String>> {
        let lookups = self.lookups.as_ref()?;
        let size = message_size(msg, budget::MESSAGE_BYTES);
        if size > budget::MESSAGE_BYTES {
            return Some(Err(message_too_large(size)));
        }
        lookups.render(msg, budget::OUTPUT_BYTES).map(|s| Ok(Value::String(s)))
    }

    /// Its id: a hash of the source.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its source.
    pub fn source(&self) -> &Value {
        &self.source
    }
}

/// A checked expression, as a flow holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A value used as it is.
    Literal(Value),
    /// Code: templates or functions, maybe inside an object or array.
    Code(Arc<Program>),
}

impl Expr {
    /// Checks `value` and compiles it; `path` names it in errors. Runs no user code.
    ///
    /// The check runs on a thread with a big stack: parsers recurse on
    /// deeply nested or long-chained code, and the caller's (an async worker's) stack is small.
    pub fn compile(value: &Value, path: &str) -> Result<Expr, ExprError> {
        let has_code = {
            let (owned, at) = (value.clone(), path.to_string());
            let spawned = std::thread::Builder::new()
                .name("magpie-check".into())
                .stack_size(CHECK_STACK_BYTES)
                .spawn(move || check(&owned, &at));
            let fail = |reason: String| ExprError { path: path.to_string(), reason };
            match spawned {
                Ok(handle) => handle.join().unwrap_or_else(|_| Err(fail("the checker gave up on this code".into())))?,
                Err(e) => return Err(fail(format!("no thread to check the code on: {e}"))),
            }
        };
        if has_code {
            Ok(Expr::Code(Arc::new(Program::unchecked(value.clone()))))
        } else {
            Ok(Expr::Literal(value.clone()))
        }
    }

    /// Evaluates in this process, compiling the code first: for one-off evaluations (tests,
    /// tools). Budgets hold but for memory, which only a sandbox process bounds.
    pub fn eval_here(&self, msg: &Message) -> Result<Value, String> {
        match self {
            Expr::Literal(v) => Ok(v.clone()),
            Expr::Code(p) => match p.render_lookups(msg) {
                Some(v) => v,
                None => Compiled::build(p.source())?.eval(&msg.to_json()),
            },
        }
    }
}

/// Checks every string of `value`; whether any of them is code.
fn check(value: &Value, path: &str) -> Result<bool, ExprError> {
    let err = |reason: String| ExprError { path: path.to_string(), reason };
    match value {
        Value::String(s) if python::is_python(s) => python::check(s).map(|()| true).map_err(err),
        Value::String(s) if template::is_template(s) => template::check(s).map(|()| true).map_err(err),
        Value::Object(o) => {
            let mut code = false;
            for (k, v) in o {
                code |= check(v, &format!("{path}.{k}"))?;
            }
            Ok(code)
        }
        Value::Array(a) => {
            let mut code = false;
            for (i, v) in a.iter().enumerate() {
                code |= check(v, &format!("{path}[{i}]"))?;
            }
            Ok(code)
        }
        _ => Ok(false),
    }
}

/// A program made ready to run in this process: templates parsed, functions defined.
pub struct Compiled {
    root: Node,
    templates: template::Templates,
}

enum Node {
    Literal(Value),
    Template(usize),
    Python(python::Function),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
}

impl Compiled {
    /// Prepares `source` to run: parses its templates, runs the top level of its functions
    /// (`def`s and constants only, as checked, within the budgets).
    pub fn build(source: &Value) -> Result<Compiled, String> {
        let mut templates = template::Templates::new();
        let root = build(source, &mut templates)?;
        Ok(Compiled { root, templates })
    }

    /// Evaluates over `msg`, the message as JSON (`id`, `payload`, `attrs`, `vars`, `error`).
    pub fn eval(&self, msg: &Value) -> Result<Value, String> {
        let out = self.eval_node(&self.root, msg)?;
        let size = json_size(&out, budget::OUTPUT_BYTES);
        if size > budget::OUTPUT_BYTES {
            return Err(format!(
                "the result is larger than the {} KiB an expression may return",
                budget::OUTPUT_BYTES >> 10
            ));
        }
        Ok(out)
    }

    fn eval_node(&self, node: &Node, msg: &Value) -> Result<Value, String> {
        match node {
            Node::Literal(v) => Ok(v.clone()),
            Node::Template(i) => self.templates.render(*i, msg).map(Value::String),
            Node::Python(f) => f.call(msg),
            Node::Object(members) => {
                let mut out = serde_json::Map::with_capacity(members.len());
                for (k, n) in members {
                    out.insert(k.clone(), self.eval_node(n, msg)?);
                }
                Ok(Value::Object(out))
            }
            Node::Array(items) => {
                items.iter().map(|n| self.eval_node(n, msg)).collect::<Result<Vec<_>, _>>().map(Value::Array)
            }
        }
    }
}

fn build(value: &Value, templates: &mut template::Templates) -> Result<Node, String> {
    Ok(match value {
        Value::String(s) if python::is_python(s) => Node::Python(python::Function::load(s)?),
        Value::String(s) if template::is_template(s) => Node::Template(templates.add(s)?),
        Value::Object(o) => {
            Node::Object(o.iter().map(|(k, v)| Ok((k.clone(), build(v, templates)?))).collect::<Result<_, String>>()?)
        }
        Value::Array(a) => Node::Array(a.iter().map(|v| build(v, templates)).collect::<Result<_, _>>()?),
        other => Node::Literal(other.clone()),
    })
}

/// The stack saving a flow checks code on: room for the deepest recursion code of
/// [`budget::CODE_BYTES`] can cause (64 K unary operators in a row); only touched pages are used.
const CHECK_STACK_BYTES: usize = 256 << 20;

/// Refuses code longer than [`budget::CODE_BYTES`]; `what` is `python` or `template`.
fn check_code_size(what: &str, code: &str) -> Result<(), String> {
    if code.len() > budget::CODE_BYTES {
        return Err(format!(
            "{what}: the code is {} KiB, more than the {} KiB an expression may hold",
            code.len() >> 10,
            budget::CODE_BYTES >> 10
        ));
    }
    Ok(())
}

/// Why an expression is not given a message of `bytes` bytes.
pub fn message_too_large(bytes: usize) -> String {
    format!(
        "the message is {} KiB, more than the {} KiB an expression may be given (variables add up: \
         remove-variable what is no longer needed, or keep only the fields you use)",
        bytes >> 10,
        budget::MESSAGE_BYTES >> 10
    )
}

/// The size of `msg` as JSON text, roughly, counted up to `cap`.
fn message_size(msg: &Message, cap: usize) -> usize {
    let mut total = msg.id.len() + 64 + json_size(&msg.payload, cap);
    for (k, v) in msg.vars.iter().chain(msg.attrs.iter()) {
        if total > cap {
            break;
        }
        total += k.len() + 3 + json_size(v, cap);
    }
    total
}

/// The size of `v` as JSON text, roughly (strings by their bytes), counted up to `cap`: cheap
/// for any value, since the walk stops once past `cap`.
pub fn json_size(v: &Value, cap: usize) -> usize {
    fn walk(v: &Value, total: &mut usize, cap: usize) {
        if *total > cap {
            return;
        }
        match v {
            Value::Null | Value::Bool(_) => *total += 5,
            Value::Number(_) => *total += 8,
            Value::String(s) => *total += s.len() + 2,
            Value::Array(a) => {
                *total += 2;
                a.iter().for_each(|x| walk(x, total, cap));
            }
            Value::Object(o) => {
                *total += 2;
                for (k, x) in o {
                    *total += k.len() + 3;
                    walk(x, total, cap);
                }
            }
        }
    }
    let mut total = 0;
    walk(v, &mut total, cap);
    total
}

/// Whether a JSON value counts as true in a condition.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => {
            let t = s.trim();
            !(t.is_empty() || t.eq_ignore_ascii_case("false") || t == "0" || t.eq_ignore_ascii_case("none"))
        }
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Test fixtures shared with the runner's tests.
#[cfg(test)]
pub(crate) mod tests_support {
    /// The seed's step-6 expression, exactly as published but for its one indentation slip
    /// (`return result;` was dedented below the function body).
    pub(crate) const SEED_WECOM: &str = r#"      def dw_process (msg):
       result = '''<font color=\"warning\"> 收到告警信息，请及时处理 </font>\n
         > 实例 ID:<font color=\"comment\">''' + msg.vars.get ('body').get ('subject') + '''</font>
         > 地域:<font color=\"comment\">''' + msg.vars.get ('body').get ('region') + '''</font>
         > 事件名称:<font color=\"comment\">''' + msg.vars.get ('body').get ('type')  + '''</font>'''
       return result;
"#;
}

#[cfg(test)]
mod tests;
