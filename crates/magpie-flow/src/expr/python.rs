//! `dw_process(msg)` functions (starlark): checked without running anything, defined and called
//! within the budgets.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::LazyLock;
use std::time::Instant;

use serde_json::Value;
use starlark::PrintHandler;
use starlark::environment::{Globals, LibraryExtension, Module};
use starlark::eval::Evaluator;
use starlark::syntax::ast::{AssignTargetP, AstExpr, AstLiteral, AstStmt, ExprP, ParameterP, StmtP};
use starlark::syntax::{AstModule, Dialect};
use starlark::values::OwnedFrozenValue;
use starlark::values::structs::AllocStruct;

use super::budget;

static GLOBALS: LazyLock<Globals> = LazyLock::new(|| {
    Globals::extended_by(&[
        LibraryExtension::StructType,
        LibraryExtension::Json,
        LibraryExtension::Map,
        LibraryExtension::Filter,
    ])
});

/// Whether a string is a `dw_process` function.
pub(super) fn is_python(s: &str) -> bool {
    s.contains("def dw_process")
}

/// Removes the indentation common to every non-blank line, so a function indented inside YAML
/// or copied from a console starts at column 0.
fn dedent(code: &str) -> String {
    let indent = code
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    code.lines()
        .map(|l| if l.len() >= indent && l.is_char_boundary(indent) { &l[indent..] } else { l.trim_start() })
        .collect::<Vec<_>>()
        .join("\n")
}

fn parse(code: &str) -> Result<AstModule, String> {
    AstModule::parse("dw_process", dedent(code), &Dialect::Extended).map_err(|e| format!("python: {e}"))
}

/// Checks a function's source: it parses, defines `dw_process`, and holds nothing at top level
/// but `def`s, constant assignments, docstrings and `pass` — nothing that would run when loaded.
pub(super) fn check(code: &str) -> Result<(), String> {
    super::check_code_size("python", code)?;
    check_here(code)
}

fn check_here(code: &str) -> Result<(), String> {
    let ast = parse(code)?;
    let mut defined = false;
    top_level(ast.statement(), &ast, &mut defined)?;
    if !defined {
        return Err("python: the code must define dw_process(msg)".into());
    }
    Ok(())
}

fn top_level(stmt: &AstStmt, ast: &AstModule, defined: &mut bool) -> Result<(), String> {
    let refuse = |what: &str| {
        let line = ast.file_span(stmt.span).resolve_span().begin.line + 1;
        Err(format!(
            "python: line {line}: {what} is not allowed at top level: outside a function only `def`s and \
             constant assignments may stand (top-level code would run whenever the flow is loaded)"
        ))
    };
    match &stmt.node {
        StmtP::Statements(list) => list.iter().try_for_each(|s| top_level(s, ast, defined)),
        StmtP::Pass => Ok(()),
        StmtP::Expression(e) if matches!(e.node, ExprP::Literal(AstLiteral::String(_))) => Ok(()),
        StmtP::Def(def) => {
            if def.name.ident == "dw_process" {
                *defined = true;
            }
            for p in &def.params {
                let (ty, default) = match &p.node {
                    ParameterP::Normal(_, ty, default) => (ty.as_deref(), default.as_deref()),
                    ParameterP::Args(_, ty) | ParameterP::KwArgs(_, ty) => (ty.as_deref(), None),
                    ParameterP::Slash | ParameterP::NoArgs => (None, None),
                };
                if ty.is_some_and(|t| !is_name(&t.expr)) {
                    return refuse("a computed type annotation");
                }
                if default.is_some_and(|d| !is_constant(d)) {
                    return refuse("a computed default value");
                }
            }
            if def.return_type.as_deref().is_some_and(|t| !is_name(&t.expr)) {
                return refuse("a computed type annotation");
            }
            Ok(())
        }
        StmtP::Assign(a) => {
            let names_only = match &a.lhs.node {
                AssignTargetP::Identifier(_) => true,
                AssignTargetP::Tuple(items) => items.iter().all(|t| matches!(t.node, AssignTargetP::Identifier(_))),
                _ => false,
            };
            if !names_only || a.ty.as_deref().is_some_and(|t| !is_name(&t.expr)) {
                return refuse("an assignment to something other than a name");
            }
            if !is_constant(&a.rhs) {
                return refuse("an assignment of a computed value");
            }
            Ok(())
        }
        StmtP::Load(_) => refuse("`load`"),
        StmtP::Expression(_) => refuse("an expression"),
        StmtP::For(_) => refuse("a `for` loop"),
        StmtP::If(..) | StmtP::IfElse(..) => refuse("an `if`"),
        StmtP::AssignModify(..) => refuse("an augmented assignment"),
        StmtP::Return(_) | StmtP::Break | StmtP::Continue => refuse("a `return`, `break` or `continue`"),
    }
}

fn is_name(e: &AstExpr) -> bool {
    match &e.node {
        ExprP::Identifier(_) => true,
        ExprP::Dot(inner, _) => is_name(inner),
        _ => false,
    }
}

/// A literal, a signed number, `None`/`True`/`False`, or a list, tuple or dict of constants.
fn is_constant(e: &AstExpr) -> bool {
    match &e.node {
        ExprP::Literal(_) => true,
        ExprP::Minus(x) | ExprP::Plus(x) => {
            matches!(x.node, ExprP::Literal(AstLiteral::Int(_) | AstLiteral::Float(_)))
        }
        ExprP::Identifier(id) => matches!(id.ident.as_str(), "None" | "True" | "False"),
        ExprP::List(items) | ExprP::Tuple(items) => items.iter().all(is_constant),
        ExprP::Dict(pairs) => pairs.iter().all(|(k, v)| is_constant(k) && is_constant(v)),
        _ => false,
    }
}

/// Starlark's `print` goes nowhere: a sandbox's output is its answers.
struct Discard;

impl PrintHandler for Discard {
    fn println(&self, _text: &str) -> starlark::Result<()> {
        Ok(())
    }
}

static DISCARD: Discard = Discard;

fn budgeted<'v, 'a, 'e>(eval: &mut Evaluator<'v, 'a, 'e>) {
    // Each limit is set once, on a new evaluator: these calls cannot fail.
    let _ = eval.set_max_tick_count(budget::STARLARK_TICKS);
    let _ = eval.set_max_heap_size(budget::STARLARK_HEAP_BYTES);
    let deadline = Instant::now() + budget::TIME_LIMIT;
    eval.set_check_cancelled(Box::new(move || Instant::now() > deadline));
    eval.set_print_handler(&DISCARD);
}

/// Runs `f`, turning a panic of the interpreter into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown");
        Err(format!("python: the interpreter gave up: {why}"))
    })
}

fn describe(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    if text.contains("cancelled") || text.contains("Cancelled") {
        format!("python: it ran longer than the {} s time limit", budget::TIME_LIMIT.as_secs())
    } else {
        format!("python: {text}")
    }
}

/// A defined `dw_process` function.
pub(super) struct Function(OwnedFrozenValue);

impl Function {
    /// Defines the function: runs the (checked) top level within the budgets.
    pub(super) fn load(code: &str) -> Result<Function, String> {
        check(code)?;
        let ast = parse(code)?;
        guarded(|| {
            let frozen = Module::with_temp_heap(|module| -> Result<_, String> {
                {
                    let mut eval = Evaluator::new(&module);
                    budgeted(&mut eval);
                    eval.eval_module(ast, &GLOBALS).map_err(describe)?;
                }
                module.freeze().map_err(|e| format!("python: {e:?}"))
            })?;
            let f = frozen.get("dw_process").map_err(|_| "python: the code must define dw_process(msg)".to_string())?;
            Ok(Function(f))
        })
    }

    /// Calls `dw_process(msg)` within the budgets; its result as JSON.
    pub(super) fn call(&self, msg: &Value) -> Result<Value, String> {
        guarded(|| {
            Module::with_temp_heap(|module| {
                let heap = module.heap();
                module.frozen_heap().add_reference(self.0.owner());
                // SAFETY: the module's frozen heap now holds a reference to the heap that owns the
                // function, so the value stays alive for as long as the module that uses it.
                let function = unsafe { self.0.unchecked_frozen_value() }.to_value();
                let field = |k: &str| msg.get(k).cloned().unwrap_or(Value::Null);
                let msg_value = heap.alloc(AllocStruct([
                    ("id", heap.alloc(field("id"))),
                    ("payload", heap.alloc(field("payload"))),
                    ("attrs", heap.alloc(field("attrs"))),
                    ("vars", heap.alloc(field("vars"))),
                    ("error", heap.alloc(field("error"))),
                ]));
                let mut eval = Evaluator::new(&module);
                budgeted(&mut eval);
                let result = eval.eval_function(function, &[msg_value], &[]).map_err(describe)?;
                result.to_json_value().map_err(|e| format!("python: the result cannot be turned into JSON: {e}"))
            })
        })
    }
}
