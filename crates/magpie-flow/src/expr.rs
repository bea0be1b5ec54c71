//! Expressions: literals, Jinja templates (minijinja) and Python-style `dw_process` functions
//! (starlark).
//!
//! A string holding `def dw_process` is a function called with the message; a string holding
//! `{{` or `{%` is a template rendered with `payload`, `vars`, `attrs`, `error`, `id` (and `msg`
//! holding all of them); any other string is itself. Objects and arrays are evaluated member by
//! member, so a structured payload can mix literals and expressions.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use starlark::environment::{Globals, LibraryExtension, Module};
use starlark::eval::Evaluator;
use starlark::syntax::{AstModule, Dialect};
use starlark::values::OwnedFrozenValue;
use starlark::values::structs::AllocStruct;

use crate::message::Message;

/// How long one `dw_process` call may run.
pub const PYTHON_TIME_LIMIT: Duration = Duration::from_secs(2);
/// Template fuel: bounds the work of one template render.
pub const TEMPLATE_FUEL: u64 = 200_000;

/// An expression error: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ExprError {
    /// Path of the expression in the flow, e.g. `steps[1].try.steps[0].robot.content`.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// A compiled expression.
#[derive(Clone)]
pub enum Expr {
    /// A value used as it is.
    Literal(Value),
    /// A Jinja template, rendered to a string.
    Template(Arc<str>),
    /// A `dw_process(msg)` function.
    Python(Arc<OwnedFrozenValue>),
    /// An object whose members are expressions.
    Object(Vec<(String, Expr)>),
    /// An array whose items are expressions.
    Array(Vec<Expr>),
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expr::Literal(v) => write!(f, "Literal({v})"),
            Expr::Template(t) => write!(f, "Template({t:?})"),
            Expr::Python(_) => write!(f, "Python(dw_process)"),
            Expr::Object(m) => f.debug_map().entries(m.iter().map(|(k, v)| (k, v))).finish(),
            Expr::Array(a) => f.debug_list().entries(a).finish(),
        }
    }
}

static GLOBALS: LazyLock<Globals> = LazyLock::new(|| {
    Globals::extended_by(&[
        LibraryExtension::StructType,
        LibraryExtension::Json,
        LibraryExtension::Map,
        LibraryExtension::Filter,
    ])
});

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
});

impl Expr {
    /// Compiles `value`; `path` names it in errors.
    pub fn compile(value: &Value, path: &str) -> Result<Expr, ExprError> {
        match value {
            Value::String(s) if is_python(s) => compile_python(s, path),
            Value::String(s) if s.contains("{{") || s.contains("{%") => {
                TEMPLATES
                    .template_from_str(s)
                    .map_err(|e| ExprError { path: path.to_string(), reason: format!("template: {e}") })?;
                Ok(Expr::Template(Arc::from(s.as_str())))
            }
            Value::Object(o) => {
                Ok(Expr::Object(
                    o.iter()
                        .map(|(k, v)| Ok((k.clone(), Expr::compile(v, &format!("{path}.{k}"))?)))
                        .collect::<Result<_, ExprError>>()?,
                ))
            }
            Value::Array(a) => Ok(Expr::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| Expr::compile(v, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )),
            other => Ok(Expr::Literal(other.clone())),
        }
    }

    /// Evaluates the expression over `msg`.
    pub fn eval(&self, msg: &Message) -> Result<Value, String> {
        match self {
            Expr::Literal(v) => Ok(v.clone()),
            Expr::Template(t) => render(t, msg).map(Value::String),
            Expr::Python(f) => call_python(f, msg),
            Expr::Object(members) => {
                let mut out = serde_json::Map::with_capacity(members.len());
                for (k, e) in members {
                    out.insert(k.clone(), e.eval(msg)?);
                }
                Ok(Value::Object(out))
            }
            Expr::Array(items) => items.iter().map(|e| e.eval(msg)).collect::<Result<Vec<_>, _>>().map(Value::Array),
        }
    }
}

fn is_python(s: &str) -> bool {
    s.contains("def dw_process")
}

fn render(template: &str, msg: &Message) -> Result<String, String> {
    let json = msg.to_json();
    let ctx = minijinja::context! {
        payload => minijinja::Value::from_serialize(&json["payload"]),
        vars => minijinja::Value::from_serialize(&json["vars"]),
        attrs => minijinja::Value::from_serialize(&json["attrs"]),
        error => minijinja::Value::from_serialize(&json["error"]),
        id => minijinja::Value::from_serialize(&json["id"]),
        msg => minijinja::Value::from_serialize(&json),
    };
    TEMPLATES.render_str(template, ctx).map_err(|e| format!("template: {e}"))
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
    code.lines().map(|l| if l.len() >= indent { &l[indent..] } else { l.trim_start() }).collect::<Vec<_>>().join("\n")
}

fn compile_python(code: &str, path: &str) -> Result<Expr, ExprError> {
    let err = |reason: String| ExprError { path: path.to_string(), reason };
    let ast =
        AstModule::parse("dw_process", dedent(code), &Dialect::Extended).map_err(|e| err(format!("python: {e}")))?;
    let frozen = Module::with_temp_heap(|module| -> Result<_, String> {
        {
            let mut eval = Evaluator::new(&module);
            eval.eval_module(ast, &GLOBALS).map_err(|e| format!("python: {e}"))?;
        }
        module.freeze().map_err(|e| format!("python: {e:?}"))
    })
    .map_err(err)?;
    let f = frozen.get("dw_process").map_err(|_| ExprError {
        path: path.to_string(),
        reason: "python: the code must define dw_process(msg)".into(),
    })?;
    Ok(Expr::Python(Arc::new(f)))
}

fn call_python(f: &OwnedFrozenValue, msg: &Message) -> Result<Value, String> {
    let json = msg.to_json();
    Module::with_temp_heap(|module| {
        let heap = module.heap();
        module.frozen_heap().add_reference(f.owner());
        // SAFETY: the module's frozen heap now holds a reference to the heap that owns `f`, so
        // the function value stays alive for as long as the module that uses it.
        let function = unsafe { f.unchecked_frozen_value() }.to_value();
        let field = |k: &str| json.get(k).cloned().unwrap_or(Value::Null);
        let msg_value = heap.alloc(AllocStruct([
            ("id", heap.alloc(field("id"))),
            ("payload", heap.alloc(field("payload"))),
            ("attrs", heap.alloc(field("attrs"))),
            ("vars", heap.alloc(field("vars"))),
            ("error", heap.alloc(field("error"))),
        ]));
        let mut eval = Evaluator::new(&module);
        let deadline = Instant::now() + PYTHON_TIME_LIMIT;
        eval.set_check_cancelled(Box::new(move || Instant::now() > deadline));
        let result = eval.eval_function(function, &[msg_value], &[]).map_err(|e| format!("python: {e}"))?;
        result.to_json_value().map_err(|e| format!("python: the result cannot be turned into JSON: {e}"))
    })
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
mod tests {
    use super::*;
    use serde_json::json;
    use tests_support::SEED_WECOM;

    fn msg() -> Message {
        let mut m = Message::new(
            "e1",
            json!({"subject": "ins-1", "region": "ap-guangzhou", "type": "cvm:ErrorEvent:GuestReboot"}),
        );
        m.vars.insert("body".into(), m.payload.clone());
        m
    }

    fn eval(src: &str) -> Result<Value, String> {
        Expr::compile(&json!(src), "x").map_err(|e| e.to_string())?.eval(&msg())
    }

    #[test]
    fn the_seed_expression_runs_as_written() {
        let v = eval(SEED_WECOM).unwrap();
        let s = v.as_str().unwrap();
        assert!(s.starts_with("<font color=\"warning\"> 收到告警信息，请及时处理 </font>\n"), "{s}");
        assert!(s.contains("> 实例 ID:<font color=\"comment\">ins-1</font>"), "{s}");
        assert!(s.contains("> 地域:<font color=\"comment\">ap-guangzhou</font>"), "{s}");
        assert!(s.contains("> 事件名称:<font color=\"comment\">cvm:ErrorEvent:GuestReboot</font>"), "{s}");
    }

    #[test]
    fn python_sees_the_message() {
        assert_eq!(eval("def dw_process(msg):\n    return msg.payload").unwrap()["subject"], "ins-1");
        assert_eq!(eval("def dw_process(msg):\n    return msg.id").unwrap(), "e1");
        assert_eq!(eval("def dw_process(msg):\n    return msg.error").unwrap(), Value::Null);
        assert_eq!(eval("def dw_process(msg):\n    return msg.vars.get('nope', 'dflt')").unwrap(), "dflt");
        assert_eq!(
            eval("def dw_process(msg):\n    return {'n': len(msg.payload['subject'])}").unwrap(),
            json!({"n": 5})
        );
    }

    #[test]
    fn python_errors_are_reported_not_panics() {
        let err = eval("def dw_process(msg):\n    return msg.vars.get('missing').get('x')").unwrap_err();
        assert!(err.starts_with("python:"), "{err}");
        let err = Expr::compile(&json!("def dw_process(msg):\nreturn 1"), "steps[0].value").unwrap_err();
        assert!(err.to_string().starts_with("steps[0].value: python:"), "{err}");
        let err = Expr::compile(&json!("def other(msg):\n  return 1\n# def dw_process"), "p").unwrap_err();
        assert!(err.reason.contains("must define dw_process"), "{err}");
        let err = eval("def dw_process(msg):\n    x = 0\n    for i in range(100000000):\n        x += i\n    return x")
            .unwrap_err();
        assert!(err.contains("python"), "{err}");
    }

    #[test]
    fn templates_and_literals() {
        assert_eq!(eval("{{ vars.body.region }}/{{ payload.subject }}").unwrap(), "ap-guangzhou/ins-1");
        assert_eq!(eval("{{ vars.nothing.deeper }}").unwrap(), "");
        assert_eq!(eval("plain").unwrap(), "plain");
        let obj = Expr::compile(&json!({"a": "{{ id }}", "b": [1, "x"]}), "v").unwrap();
        assert_eq!(obj.eval(&msg()).unwrap(), json!({"a": "e1", "b": [1, "x"]}));
        assert!(Expr::compile(&json!("{{ unclosed"), "v").is_err());
    }

    #[test]
    fn truthiness() {
        for v in [json!(null), json!(false), json!(0), json!(""), json!("false"), json!([]), json!({})] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [json!(true), json!(1), json!("yes"), json!([0]), json!({"a": 1})] {
            assert!(truthy(&v), "{v}");
        }
    }
}
