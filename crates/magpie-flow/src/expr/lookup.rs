//! Templates that only look fields up (`<font>{{ vars.body.type }}</font> {{ payload.subject }}`),
//! rendered straight from the borrowed message: no sandbox round trip, no copy of the message.
//!
//! Only what renders exactly as minijinja renders it is taken: text and `{{ root.key.key }}`
//! placeholders over `payload`, `vars`, `attrs` and `id`, whose values turn out to be strings,
//! integers or missing. Anything else — a block, a filter, an index, a float, an
//! object — makes [`Lookups::render`] answer `None`, and the template goes to the sandbox.

use serde_json::Value;

use crate::message::Message;

/// A template of text and field lookups.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookups {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Field(Root, Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    Payload,
    Vars,
    Attrs,
    Id,
}

impl Lookups {
    /// The template as lookups, if it is nothing more.
    pub fn parse(template: &str) -> Option<Lookups> {
        if template.contains("{%") || template.contains("{#") || template.contains("%}") || template.contains("#}") {
            return None;
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            let end = rest[start..].find("}}")? + start;
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            parts.push(field(&rest[start + 2..end])?);
            rest = &rest[end + 2..];
        }
        if rest.contains("}}") {
            return None;
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Some(Lookups { parts })
    }

    /// Renders over `msg`, or `None` when a value is of a kind only the template engine renders.
    pub fn render(&self, msg: &Message, cap: usize) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(Root::Id, keys) if keys.is_empty() => out.push_str(&msg.id),
                Part::Field(Root::Id, _) => {}
                Part::Field(root, keys) => {
                    let (first, rest) = keys.split_first()?;
                    let top = match root {
                        Root::Payload => msg.payload.get(first),
                        Root::Vars => msg.vars.get(first),
                        Root::Attrs => msg.attrs.get(first),
                        Root::Id => None,
                    };
                    let mut v = top;
                    for k in rest {
                        v = match v {
                            Some(Value::Object(o)) => o.get(k),
                            // A key of something that is not an object: minijinja's rules apply.
                            Some(_) => return None,
                            None => None,
                        };
                    }
                    match v {
                        None => {}
                        Some(Value::String(s)) => out.push_str(s),
                        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => out.push_str(&n.to_string()),
                        Some(_) => return None,
                    }
                }
            }
            if out.len() > cap {
                return None;
            }
        }
        Some(out)
    }
}

/// `root.key.key`, with spaces around; identifiers only.
fn field(inner: &str) -> Option<Part> {
    let inner = inner.trim();
    let mut names = inner.split('.');
    let root = match names.next()? {
        "payload" => Root::Payload,
        "vars" => Root::Vars,
        "attrs" => Root::Attrs,
        "id" => Root::Id,
        _ => return None,
    };
    let keys: Vec<String> = names.map(str::to_string).collect();
    let identifier = |k: &String| {
        k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            // Names the engine resolves as methods or tests rather than keys.
            && !matches!(k.as_str(), "items" | "keys" | "values" | "get" | "true" | "false" | "none")
    };
    if !keys.iter().all(identifier) || (root != Root::Id && keys.is_empty()) {
        return None;
    }
    Some(Part::Field(root, keys))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::expr::Compiled;

    fn msg() -> Message {
        let mut m = Message::new(
            "e-1",
            json!({"subject": "ins-1", "n": 42, "ok": true, "f": 1.5, "nil": null,
                                              "o": {"a": "x"}, "list": [1]}),
        );
        m.vars.insert("body".into(), json!({"type": "cvm:GuestReboot", "deep": {"er": "d"}}));
        m.attrs.insert("bus".into(), json!("default"));
        m
    }

    /// Whatever the fast path renders, minijinja renders the same.
    #[test]
    fn lookups_render_as_the_template_engine_does() {
        let templates = [
            "{{ payload.subject }}",
            "<font color=\"warning\">{{ vars.body.type }}</font> {{payload.subject}}!",
            "{{ payload.n }}/{{ payload.missing }}/{{ payload.missing.deeper }}",
            "{{ payload.ok }}",
            "{{ vars.body.deep.er }} {{ attrs.bus }} {{ id }}",
            "{{ payload.o.a }}{{ vars.nothing }}",
            "plain text }",
            "{{ payload.f }}",
            "{{ payload.nil }}",
            "{{ payload.o }}",
            "{{ payload.subject.length }}",
        ];
        let m = msg();
        let mut fast = 0;
        for t in templates {
            let engine = Compiled::build(&json!(t)).unwrap().eval(&m.to_json()).unwrap();
            if let Some(s) = Lookups::parse(t).and_then(|l| l.render(&m, 1 << 20)) {
                assert_eq!(Value::String(s), engine, "{t}");
                fast += 1;
            }
        }
        assert_eq!(fast, 6, "text and lookups of strings, integers and missing fields take the fast path");
    }

    #[test]
    fn anything_more_than_lookups_goes_to_the_engine() {
        for t in [
            "{% if x %}a{% endif %}",
            "{{ payload.subject | upper }}",
            "{{ payload['subject'] }}",
            "{{ msg.payload }}",
            "{{ error.code }}",
            "{{ payload.subject ~ 'x' }}",
            "{{- payload.subject }}",
            "{{ payload }}",
            "{# c #}{{ id }}",
            "{{ payload.items }}",
        ] {
            assert!(Lookups::parse(t).is_none(), "{t}");
        }
    }
}
