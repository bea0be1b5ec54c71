//! The reference interpreter: matches one pattern against one event by walking both.
//!
//! It states the language's semantics in the plainest form, so that faster matchers can be
//! checked against it.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::ast::{AnythingBut, FieldPattern, Leaf, ObjPattern, Pattern, Scalar};

impl Pattern {
    /// Whether `event` matches this pattern.
    pub fn matches(&self, event: &Value) -> bool {
        let event = undot(event);
        match event.as_ref() {
            Value::Object(o) => match_obj(&self.root, Some(o)),
            _ => match_obj(&self.root, None),
        }
    }
}

fn match_obj(p: &ObjPattern, v: Option<&Map<String, Value>>) -> bool {
    p.fields.iter().all(|(k, fp)| match_field(fp, v.and_then(|o| o.get(k))))
        && p.ors.iter().all(|branches| branches.iter().any(|b| match_obj(b, v)))
}

fn match_field(fp: &FieldPattern, child: Option<&Value>) -> bool {
    match fp {
        FieldPattern::Nested(obj) => match child {
            Some(Value::Object(o)) => match_obj(obj, Some(o)),
            Some(Value::Array(_)) => {
                let mut elements = Vec::new();
                flatten(child, &mut elements);
                if elements.is_empty() {
                    return match_obj(obj, None);
                }
                elements.iter().any(|e| match e {
                    Value::Object(o) => match_obj(obj, Some(o)),
                    _ => match_obj(obj, None),
                })
            }
            _ => match_obj(obj, None),
        },
        FieldPattern::Leaf(leaves) => {
            let mut values = Vec::new();
            flatten(child, &mut values);
            leaves.iter().any(|leaf| leaf_matches(leaf, &values))
        }
    }
}

/// The values a field holds: nothing when absent, the elements (recursively) of an array, or the
/// value itself.
fn flatten<'a>(v: Option<&'a Value>, out: &mut Vec<&'a Value>) {
    match v {
        None => {}
        Some(Value::Array(items)) => items.iter().for_each(|i| flatten(Some(i), out)),
        Some(v) => out.push(v),
    }
}

/// The event with every dotted key (`"state.status": x`) read as the nested field it names
/// (`"state": {"status": x}`), as AWS reads events. Values that meet at one path are kept
/// together: objects merge, an object meeting an array of objects joins each element, anything
/// else becomes a list of the values.
fn undot(v: &Value) -> Cow<'_, Value> {
    fn has_dots(v: &Value) -> bool {
        match v {
            Value::Object(o) => o.iter().any(|(k, v)| k.contains('.') || has_dots(v)),
            Value::Array(a) => a.iter().any(has_dots),
            _ => false,
        }
    }
    fn rebuild(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let mut out = Map::new();
                for (k, v) in o {
                    let mut v = rebuild(v);
                    let mut segments = k.split('.').rev();
                    let first = segments.next_back().unwrap_or_default();
                    for seg in segments {
                        let mut m = Map::new();
                        m.insert(seg.to_string(), v);
                        v = Value::Object(m);
                    }
                    add(&mut out, first, v);
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(rebuild).collect()),
            other => other.clone(),
        }
    }
    fn add(map: &mut Map<String, Value>, key: &str, v: Value) {
        match map.get_mut(key) {
            None => {
                map.insert(key.to_string(), v);
            }
            Some(old) => merge(old, v),
        }
    }
    // Two values at one path. A value outside an array goes with every element of it (as in
    // AWS, where only values from different elements of one array are kept apart), so an object
    // meeting an array of objects joins each of them.
    fn merge(old: &mut Value, new: Value) {
        let has_objects = |items: &[Value]| items.iter().any(Value::is_object);
        match (old, new) {
            (Value::Object(o), Value::Object(n)) => {
                for (k, v) in n {
                    add(o, &k, v);
                }
            }
            (Value::Array(items), Value::Object(n)) if has_objects(items) => {
                for e in items.iter_mut().filter(|e| e.is_object()) {
                    merge(e, Value::Object(n.clone()));
                }
            }
            (old @ Value::Object(_), Value::Array(mut items)) if has_objects(&items) => {
                let o = old.take();
                for e in items.iter_mut().filter(|e| e.is_object()) {
                    merge(e, o.clone());
                }
                *old = Value::Array(items);
            }
            (old, new) => {
                let mut items = match old.take() {
                    Value::Array(a) => a,
                    x => vec![x],
                };
                match new {
                    Value::Array(a) => items.extend(a),
                    x => items.push(x),
                }
                *old = Value::Array(items);
            }
        }
    }
    if has_dots(v) { Cow::Owned(rebuild(v)) } else { Cow::Borrowed(v) }
}

fn leaf_matches(leaf: &Leaf, values: &[&Value]) -> bool {
    match leaf {
        // `exists` looks at leaves: an object is not one (as in AWS).
        Leaf::Exists(want) => values.iter().any(|v| !v.is_object()) == *want,
        Leaf::Array(sub) => values.iter().any(|v| matches!(v, Value::Object(o) if match_obj(sub, Some(o)))),
        _ => values.iter().any(|v| value_matches(leaf, v)),
    }
}

fn value_matches(leaf: &Leaf, v: &Value) -> bool {
    match leaf {
        Leaf::Exact(s) => scalar_eq(s, v),
        Leaf::Prefix { value, ignore_case } => v.as_str().is_some_and(|s| {
            if *ignore_case {
                s.to_lowercase().starts_with(&value.to_lowercase())
            } else {
                s.starts_with(value.as_str())
            }
        }),
        Leaf::Suffix { value, ignore_case } => v.as_str().is_some_and(|s| {
            if *ignore_case { s.to_lowercase().ends_with(&value.to_lowercase()) } else { s.ends_with(value.as_str()) }
        }),
        Leaf::EqualsIgnoreCase(want) => v.as_str().is_some_and(|s| s.to_lowercase() == want.to_lowercase()),
        Leaf::Wildcard(w) => v.as_str().is_some_and(|s| w.matches(s)),
        Leaf::AnythingBut(ab) => anything_but(ab, v),
        Leaf::Numeric(range) => v.as_f64().is_some_and(|x| range.contains(x)),
        Leaf::Cidr(net) => {
            v.as_str().and_then(|s| s.parse::<std::net::IpAddr>().ok()).is_some_and(|ip| net.contains(&ip))
        }
        Leaf::Contain(parts) => v.as_str().is_some_and(|s| parts.iter().all(|p| s.contains(p.as_str()))),
        Leaf::Exists(_) | Leaf::Array(_) => false,
    }
}

fn scalar_eq(s: &Scalar, v: &Value) -> bool {
    match (s, v) {
        (Scalar::Null, Value::Null) => true,
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        (Scalar::Number(a), Value::Number(b)) => b.as_f64() == Some(*a),
        (Scalar::String(a), Value::String(b)) => a == b,
        _ => false,
    }
}

fn anything_but(ab: &AnythingBut, v: &Value) -> bool {
    match ab {
        AnythingBut::Values(list) => match v {
            Value::Object(_) | Value::Array(_) => false,
            _ => !list.iter().any(|s| scalar_eq(s, v)),
        },
        // The string forms let every other scalar through (a number is not a string with the
        // prefix), as AWS does.
        _ if v.is_object() || v.is_array() => false,
        AnythingBut::Prefix(ps) => v.as_str().is_none_or(|s| !ps.iter().any(|p| s.starts_with(p.as_str()))),
        AnythingBut::Suffix(ps) => v.as_str().is_none_or(|s| !ps.iter().any(|p| s.ends_with(p.as_str()))),
        AnythingBut::Wildcard(ws) => v.as_str().is_none_or(|s| !ws.iter().any(|w| w.matches(s))),
        AnythingBut::IgnoreCase(list) => v.as_str().is_none_or(|s| {
            let s = s.to_lowercase();
            !list.iter().any(|x| x.to_lowercase() == s)
        }),
    }
}
