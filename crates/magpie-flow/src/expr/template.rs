//! Jinja templates (minijinja): parsed when checked and when built, rendered with fuel and an
//! output cap.

use std::io;

use serde_json::Value;

use super::budget;

/// Whether a string is a template.
pub(super) fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(budget::TEMPLATE_FUEL));
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Checks that `s` parses (minijinja bounds its own nesting).
pub(super) fn check(s: &str) -> Result<(), String> {
    super::check_code_size("template", s)?;
    environment().template_from_str(s).map(|_| ()).map_err(|e| format!("template: {e}"))
}

/// The templates of one program, parsed once.
pub(super) struct Templates {
    env: minijinja::Environment<'static>,
    count: usize,
}

impl Templates {
    pub(super) fn new() -> Self {
        Templates { env: environment(), count: 0 }
    }

    /// Parses a template; its index.
    pub(super) fn add(&mut self, source: &str) -> Result<usize, String> {
        let i = self.count;
        self.env.add_template_owned(i.to_string(), source.to_string()).map_err(|e| format!("template: {e}"))?;
        self.count += 1;
        Ok(i)
    }

    /// Renders template `i` over the message JSON.
    pub(super) fn render(&self, i: usize, msg: &Value) -> Result<String, String> {
        let template = self.env.get_template(&i.to_string()).map_err(|e| format!("template: {e}"))?;
        let field = |k: &str| to_jinja(msg.get(k).unwrap_or(&Value::Null));
        let ctx = minijinja::context! {
            payload => field("payload"),
            vars => field("vars"),
            attrs => field("attrs"),
            error => field("error"),
            id => field("id"),
            msg => to_jinja(msg),
        };
        let mut out = Capped { buf: Vec::new(), cap: budget::OUTPUT_BYTES };
        match template.render_captured_to(ctx, &mut out).map(|_| ()) {
            Ok(_) => String::from_utf8(out.buf).map_err(|_| "template: the output is not valid UTF-8".to_string()),
            Err(_) if out.buf.len() >= out.cap => {
                Err(format!("template: the output is larger than the {} KiB allowed", budget::OUTPUT_BYTES >> 10))
            }
            Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(format!(
                "template: it ran out of fuel (more than {} instructions): look for loops that never end or nest too deep",
                budget::TEMPLATE_FUEL
            )),
            Err(e) => Err(format!("template: {e}")),
        }
    }
}

/// A JSON value as a template value. Converted by hand: serde_json's arbitrary-precision numbers
/// (which starlark turns on) would reach the template engine as maps, not numbers.
fn to_jinja(v: &Value) -> minijinja::Value {
    match v {
        Value::Null => minijinja::Value::from(()),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => minijinja::Value::from(i),
            (None, Some(u), _) => minijinja::Value::from(u),
            (None, None, Some(f)) => minijinja::Value::from(f),
            (None, None, None) => minijinja::Value::from(n.to_string()),
        },
        Value::String(s) => minijinja::Value::from(s.as_str()),
        Value::Array(a) => minijinja::Value::from(a.iter().map(to_jinja).collect::<Vec<_>>()),
        Value::Object(o) => o.iter().map(|(k, v)| (k.as_str(), to_jinja(v))).collect(),
    }
}

/// A writer that refuses to grow past `cap` bytes.
struct Capped {
    buf: Vec<u8>,
    cap: usize,
}

impl io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            self.buf.extend_from_slice(&data[..self.cap.saturating_sub(self.buf.len())]);
            return Err(io::Error::other("output cap"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
