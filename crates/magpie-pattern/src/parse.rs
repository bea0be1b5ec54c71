//! Parsing and validation: JSON pattern → [`Pattern`] AST.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Number, Value};

use crate::ast::{AnythingBut, Bound, FieldPattern, Leaf, NumericRange, ObjPattern, Pattern, Scalar};
use crate::error::PatternError;
use crate::wildcard::Wildcard;

/// Limits that protect the server from patterns too costly to compile or run.
#[derive(Debug, Clone, Copy)]
pub struct PatternLimits {
    /// Deepest nesting of pattern objects.
    pub max_depth: usize,
    /// Most leaf operands (values and operators) in one pattern.
    pub max_operands: usize,
    /// Most `*` in one wildcard.
    pub max_wildcard_stars: usize,
    /// Longest string operand, in bytes.
    pub max_string_bytes: usize,
}

impl Default for PatternLimits {
    fn default() -> Self {
        Self { max_depth: 16, max_operands: 1_000, max_wildcard_stars: 8, max_string_bytes: 4_096 }
    }
}

/// Largest magnitude accepted in numeric comparisons: 2^53, up to which every integer is exact
/// as a double (so millisecond timestamps compare exactly).
pub const NUMERIC_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Most [`Wildcard::complexity`] accepted (AWS refuses `*:*:*:*:*:event-bus/*`, 16 here).
pub const MAX_WILDCARD_COMPLEXITY: usize = 10;

pub(crate) struct Parser {
    limits: PatternLimits,
    operands: usize,
}

impl Pattern {
    /// Parses and validates a pattern with the default limits.
    pub fn parse(value: &Value) -> Result<Pattern, PatternError> {
        Self::parse_with(value, PatternLimits::default())
    }

    /// Parses and validates a pattern with chosen limits.
    pub fn parse_with(value: &Value, limits: PatternLimits) -> Result<Pattern, PatternError> {
        let mut p = Parser { limits, operands: 0 };
        match value {
            Value::Object(o) => Ok(Pattern { root: p.object(o, "", 1)? }),
            _ => Err(PatternError::new("", "a pattern must be a JSON object")),
        }
    }

    /// Parses a pattern from JSON text.
    pub fn parse_str(text: &str) -> Result<Pattern, PatternError> {
        let v: Value = serde_json::from_str(text).map_err(|e| PatternError::new("", format!("not valid JSON: {e}")))?;
        Self::parse(&v)
    }
}

/// Adds `field` at the nested path `segments` of `obj`, merging with the nested patterns already
/// there (the fields of one object are matched together, within one array element).
fn insert_field(obj: &mut ObjPattern, segments: &[&str], field: FieldPattern) {
    let Some((first, rest)) = segments.split_first() else { return };
    let existing = obj.fields.iter_mut().find_map(|(k, f)| match f {
        FieldPattern::Nested(o) if k == first => Some(o),
        _ => None,
    });
    match (existing, rest.is_empty(), field) {
        (Some(o), true, FieldPattern::Nested(inner)) => {
            for (k, f) in inner.fields {
                insert_field(o, &[k.as_str()], f);
            }
            o.ors.extend(inner.ors);
        }
        (Some(o), false, field) => insert_field(o, rest, field),
        (None, false, field) => {
            let mut o = ObjPattern::default();
            insert_field(&mut o, rest, field);
            obj.fields.push((first.to_string(), FieldPattern::Nested(o)));
        }
        (_, true, field) => obj.fields.push((first.to_string(), field)),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

impl Parser {
    fn object(&mut self, o: &Map<String, Value>, path: &str, depth: usize) -> Result<ObjPattern, PatternError> {
        if depth > self.limits.max_depth {
            return Err(PatternError::new(path, format!("nests deeper than {} levels", self.limits.max_depth)));
        }
        if o.is_empty() {
            let what = if path.is_empty() { "a pattern" } else { "a nested pattern" };
            return Err(PatternError::new(path, format!("{what} cannot be empty")));
        }
        let mut out = ObjPattern::default();
        for (key, v) in o {
            let at = join(path, key);
            if key == "$or" {
                out.ors.push(self.or(v, &at, depth)?);
                continue;
            }
            // A dotted key names a nested field, as AWS reads it: `"state.status"` is
            // `"state": {"status": …}`.
            let segments: Vec<&str> = key.split('.').collect();
            let inner_depth = depth + segments.len() - 1;
            if inner_depth > self.limits.max_depth {
                return Err(PatternError::new(at, format!("nests deeper than {} levels", self.limits.max_depth)));
            }
            let field = match v {
                Value::Object(inner) => FieldPattern::Nested(self.object(inner, &at, inner_depth + 1)?),
                Value::Array(items) => FieldPattern::Leaf(self.leaves(items, &at, inner_depth)?),
                scalar => FieldPattern::Leaf(vec![self.exact(scalar, &at)?]),
            };
            insert_field(&mut out, &segments, field);
        }
        Ok(out)
    }

    fn or(&mut self, v: &Value, at: &str, depth: usize) -> Result<Vec<ObjPattern>, PatternError> {
        let items = v.as_array().ok_or_else(|| PatternError::new(at, "$or takes an array of at least two patterns"))?;
        if items.len() < 2 {
            return Err(PatternError::new(at, "$or takes an array of at least two patterns"));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("{at}[{i}]");
                match item {
                    Value::Object(o) => self.object(o, &at, depth + 1),
                    _ => Err(PatternError::new(at, "each $or branch must be an object")),
                }
            })
            .collect()
    }

    fn leaves(&mut self, items: &[Value], at: &str, depth: usize) -> Result<Vec<Leaf>, PatternError> {
        if items.is_empty() {
            return Err(PatternError::new(at, "a list of values cannot be empty"));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("{at}[{i}]");
                match item {
                    Value::Object(o) => self.operator(o, &at, depth),
                    Value::Array(_) => Err(PatternError::new(at, "a value list cannot hold another list")),
                    scalar => self.exact(scalar, &at),
                }
            })
            .collect()
    }

    fn count(&mut self, at: &str) -> Result<(), PatternError> {
        self.operands += 1;
        if self.operands > self.limits.max_operands {
            return Err(PatternError::new(
                at,
                format!("the pattern has more than {} values and operators", self.limits.max_operands),
            ));
        }
        Ok(())
    }

    fn string(&self, v: &Value, at: &str, what: &str) -> Result<String, PatternError> {
        match v {
            Value::String(s) if s.len() > self.limits.max_string_bytes => {
                Err(PatternError::new(at, format!("{what} is longer than {} bytes", self.limits.max_string_bytes)))
            }
            Value::String(s) => Ok(s.clone()),
            _ => Err(PatternError::new(at, format!("{what} must be a string"))),
        }
    }

    fn exact(&mut self, v: &Value, at: &str) -> Result<Leaf, PatternError> {
        self.count(at)?;
        Ok(Leaf::Exact(self.scalar(v, at)?))
    }

    fn scalar(&self, v: &Value, at: &str) -> Result<Scalar, PatternError> {
        Ok(match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Number(number(n, at)?),
            Value::String(_) => Scalar::String(self.string(v, at, "the value")?),
            _ => return Err(PatternError::new(at, "expected a string, number, boolean or null")),
        })
    }

    fn operator(&mut self, o: &Map<String, Value>, at: &str, depth: usize) -> Result<Leaf, PatternError> {
        self.count(at)?;
        if o.len() != 1 {
            let keys: Vec<&str> = o.keys().map(String::as_str).collect();
            return Err(PatternError::new(
                at,
                if o.is_empty() {
                    "an operator object cannot be empty".to_string()
                } else {
                    format!("an operator object holds exactly one operator, found {}", keys.join(", "))
                },
            ));
        }
        let Some((op, v)) = o.iter().next() else {
            return Err(PatternError::new(at, "an operator object cannot be empty"));
        };
        let at = join(at, op);
        match op.as_str() {
            "prefix" | "suffix" => {
                // An empty prefix or suffix is valid and matches any string (as in AWS).
                let (s, ci) = self.maybe_ignore_case(v, &at, op)?;
                Ok(if op == "prefix" {
                    Leaf::Prefix { value: s, ignore_case: ci }
                } else {
                    Leaf::Suffix { value: s, ignore_case: ci }
                })
            }
            "equals-ignore-case" => Ok(Leaf::EqualsIgnoreCase(self.string(v, &at, "equals-ignore-case")?)),
            "wildcard" => Ok(Leaf::Wildcard(self.wildcard(v, &at)?)),
            // quamina's older name for wildcard: no escapes, a backslash is an ordinary character.
            "shellstyle" => {
                let s = self.string(v, &at, "shellstyle")?;
                let w = Wildcard::parse_shellstyle(&s).map_err(|r| PatternError::new(&at, r))?;
                self.check_wildcard(w, &at).map(Leaf::Wildcard)
            }
            "anything-but" => Ok(Leaf::AnythingBut(self.anything_but(v, &at)?)),
            "numeric" => Ok(Leaf::Numeric(numeric(v, &at)?)),
            "cidr" => Ok(Leaf::Cidr(cidr(v, &at)?)),
            "exists" => match v {
                Value::Bool(b) => Ok(Leaf::Exists(*b)),
                _ => Err(PatternError::new(at, "exists takes true or false")),
            },
            "contain" | "contains" => {
                let list = match v {
                    Value::String(_) => vec![self.string(v, &at, op)?],
                    Value::Array(items) if !items.is_empty() => items
                        .iter()
                        .enumerate()
                        .map(|(i, s)| self.string(s, &format!("{at}[{i}]"), op))
                        .collect::<Result<_, _>>()?,
                    _ => {
                        return Err(PatternError::new(
                            at,
                            format!("{op} takes a string or a non-empty list of strings"),
                        ));
                    }
                };
                if list.iter().any(String::is_empty) {
                    return Err(PatternError::new(at, format!("{op} cannot be empty")));
                }
                Ok(Leaf::Contain(list))
            }
            "array" => {
                let text = match v {
                    Value::String(s) => s,
                    _ => return Err(PatternError::new(at, "array takes a JSON string holding a pattern")),
                };
                let sub: Value = serde_json::from_str(text)
                    .map_err(|e| PatternError::new(&at, format!("the array operand is not valid JSON: {e}")))?;
                match &sub {
                    Value::Object(o) => Ok(Leaf::Array(self.object(o, &at, depth + 1)?)),
                    _ => Err(PatternError::new(at, "the array operand must hold a JSON object pattern")),
                }
            }
            other => Err(PatternError::new(at, format!("unknown operator {other:?}"))),
        }
    }

    fn maybe_ignore_case(&self, v: &Value, at: &str, op: &str) -> Result<(String, bool), PatternError> {
        match v {
            Value::String(_) => Ok((self.string(v, at, op)?, false)),
            Value::Object(o) if o.len() == 1 && o.contains_key("equals-ignore-case") => {
                let at = join(at, "equals-ignore-case");
                Ok((self.string(&o["equals-ignore-case"], &at, "equals-ignore-case")?, true))
            }
            _ => Err(PatternError::new(at, format!("{op} takes a string or {{\"equals-ignore-case\": string}}"))),
        }
    }

    fn wildcard(&self, v: &Value, at: &str) -> Result<Wildcard, PatternError> {
        let s = self.string(v, at, "wildcard")?;
        let w = Wildcard::parse(&s).map_err(|r| PatternError::new(at, r))?;
        self.check_wildcard(w, at)
    }

    fn check_wildcard(&self, w: Wildcard, at: &str) -> Result<Wildcard, PatternError> {
        if w.stars() > self.limits.max_wildcard_stars {
            return Err(PatternError::new(
                at,
                format!("a wildcard may hold at most {} '*' characters", self.limits.max_wildcard_stars),
            ));
        }
        if w.complexity() > MAX_WILDCARD_COMPLEXITY {
            return Err(PatternError::new(
                at,
                "Rule is too complex - try using fewer wildcard characters or fewer repeating character \
                 sequences after a wildcard character",
            ));
        }
        Ok(w)
    }

    fn strings_or_one(&self, v: &Value, at: &str, what: &str) -> Result<Vec<String>, PatternError> {
        match v {
            Value::Array(items) if !items.is_empty() => {
                items.iter().enumerate().map(|(i, s)| self.string(s, &format!("{at}[{i}]"), what)).collect()
            }
            Value::Array(_) => Err(PatternError::new(at, format!("{what} list cannot be empty"))),
            _ => Ok(vec![self.string(v, at, what)?]),
        }
    }

    fn anything_but(&self, v: &Value, at: &str) -> Result<AnythingBut, PatternError> {
        match v {
            Value::Object(o) => {
                if o.len() != 1 {
                    return Err(PatternError::new(
                        at,
                        "anything-but takes one of prefix, suffix, wildcard or equals-ignore-case",
                    ));
                }
                let Some((op, inner)) = o.iter().next() else {
                    return Err(PatternError::new(at, "anything-but cannot be empty"));
                };
                let inner_at = join(at, op);
                match op.as_str() {
                    "prefix" | "suffix" => {
                        let list = self.strings_or_one(inner, &inner_at, op)?;
                        if list.iter().any(String::is_empty) {
                            return Err(PatternError::new(inner_at, format!("anything-but {op} cannot be empty")));
                        }
                        Ok(if op == "prefix" { AnythingBut::Prefix(list) } else { AnythingBut::Suffix(list) })
                    }
                    "wildcard" => {
                        let list = match inner {
                            Value::Array(items) if !items.is_empty() => items
                                .iter()
                                .enumerate()
                                .map(|(i, s)| self.wildcard(s, &format!("{inner_at}[{i}]")))
                                .collect::<Result<_, _>>()?,
                            Value::Array(_) => {
                                return Err(PatternError::new(inner_at, "wildcard list cannot be empty"));
                            }
                            _ => vec![self.wildcard(inner, &inner_at)?],
                        };
                        Ok(AnythingBut::Wildcard(list))
                    }
                    "equals-ignore-case" => {
                        Ok(AnythingBut::IgnoreCase(self.strings_or_one(inner, &inner_at, "equals-ignore-case")?))
                    }
                    other => Err(PatternError::new(
                        inner_at,
                        format!(
                            "unknown operator {other:?} inside anything-but (use prefix, suffix, wildcard or equals-ignore-case)"
                        ),
                    )),
                }
            }
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(PatternError::new(at, "anything-but list cannot be empty"));
                }
                let values = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let at = format!("{at}[{i}]");
                        match item {
                            Value::String(_) | Value::Number(_) => self.scalar(item, &at),
                            _ => Err(PatternError::new(at, "anything-but lists hold only strings or only numbers")),
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let strings = values.iter().filter(|v| matches!(v, Scalar::String(_))).count();
                if strings != 0 && strings != values.len() {
                    return Err(PatternError::new(
                        at,
                        "anything-but lists hold only strings or only numbers, not both",
                    ));
                }
                Ok(AnythingBut::Values(values))
            }
            Value::String(_) | Value::Number(_) => Ok(AnythingBut::Values(vec![self.scalar(v, at)?])),
            _ => Err(PatternError::new(
                at,
                "anything-but takes a string, a number, a list of them, or an operator object",
            )),
        }
    }
}

/// A number as a double. Literals a double cannot hold are refused: beyond its range (`1E309`)
/// or so small that they would round to zero (`1E-325`; subnormals such as `1E-320` are kept).
fn number(n: &Number, at: &str) -> Result<f64, PatternError> {
    let text = n.to_string();
    let f = text.parse::<f64>().ok().or_else(|| n.as_f64());
    match f {
        Some(f) if f.is_finite() && (f != 0.0 || !nonzero_mantissa(&text)) => Ok(f),
        Some(f) if f.is_finite() => {
            Err(PatternError::new(at, format!("{text} is too small for a double (it would round to 0)")))
        }
        _ => Err(PatternError::new(at, format!("{text} is beyond the range of a double"))),
    }
}

/// Whether a number literal has a nonzero digit before its exponent.
fn nonzero_mantissa(text: &str) -> bool {
    text.bytes().take_while(|c| !matches!(c, b'e' | b'E')).any(|c| matches!(c, b'1'..=b'9'))
}

fn numeric(v: &Value, at: &str) -> Result<NumericRange, PatternError> {
    let items = match v {
        Value::Array(items) if !items.is_empty() => items,
        _ => return Err(PatternError::new(at, "numeric takes a list such as [\">\", 0, \"<=\", 5]")),
    };
    if items.len() != 2 && items.len() != 4 {
        return Err(PatternError::new(
            at,
            "numeric takes one or two comparisons, e.g. [\">=\", 0] or [\">\", 0, \"<\", 5]",
        ));
    }
    let mut parts = Vec::new();
    for (i, pair) in items.chunks(2).enumerate() {
        let op = match &pair[0] {
            Value::String(s) if matches!(s.as_str(), "=" | "<" | "<=" | ">" | ">=") => s.as_str(),
            Value::Number(n) => {
                return Err(PatternError::new(at, format!("expected an operator such as \">\" before {n}")));
            }
            other => return Err(PatternError::new(at, format!("unknown comparison {other}; use =, <, <=, > or >="))),
        };
        let n = match &pair[1] {
            // An integer is checked before rounding: 2^53 + 1 is not exactly a double.
            Value::Number(n) if n.as_i64().is_some_and(|i| i.unsigned_abs() > NUMERIC_LIMIT as u64) => {
                return Err(PatternError::new(
                    at,
                    format!("{n} is beyond the supported range of ±2^53 (9007199254740992)"),
                ));
            }
            Value::Number(n) => number(n, at)?,
            other => return Err(PatternError::new(at, format!("the operand of {op:?} must be a number, got {other}"))),
        };
        if n.abs() > NUMERIC_LIMIT {
            return Err(PatternError::new(
                at,
                format!("{n} is beyond the supported range of ±2^53 (9007199254740992)"),
            ));
        }
        parts.push((op, n, i));
    }
    let mut range = NumericRange { lower: None, upper: None };
    match parts.as_slice() {
        [("=", n, _)] => {
            range.lower = Some(Bound { value: *n, inclusive: true });
            range.upper = Some(Bound { value: *n, inclusive: true });
        }
        [(op, n, _)] => set_bound(&mut range, op, *n, at)?,
        [(op1, n1, _), (op2, n2, _)] => {
            if *op1 == "=" || *op2 == "=" {
                return Err(PatternError::new(at, "\"=\" cannot be combined with another comparison"));
            }
            if !op1.starts_with('>') || !op2.starts_with('<') {
                return Err(PatternError::new(
                    at,
                    "with two comparisons, give the lower bound (> or >=) first, then the upper (< or <=)",
                ));
            }
            set_bound(&mut range, op1, *n1, at)?;
            set_bound(&mut range, op2, *n2, at)?;
            if n1 > n2 {
                return Err(PatternError::new(at, format!("the lower bound {n1} is above the upper bound {n2}")));
            }
            if n1 == n2 && !(*op1 == ">=" && *op2 == "<=") {
                return Err(PatternError::new(at, format!("the range {op1} {n1}, {op2} {n2} is empty")));
            }
        }
        _ => return Err(PatternError::new(at, "numeric takes one or two comparisons")),
    }
    Ok(range)
}

fn set_bound(range: &mut NumericRange, op: &str, n: f64, _at: &str) -> Result<(), PatternError> {
    let inclusive = op.ends_with('=');
    if op.starts_with('>') {
        range.lower = Some(Bound { value: n, inclusive });
    } else {
        range.upper = Some(Bound { value: n, inclusive });
    }
    Ok(())
}

fn cidr(v: &Value, at: &str) -> Result<IpNet, PatternError> {
    let s = v.as_str().ok_or_else(|| PatternError::new(at, "cidr takes a string such as \"10.0.0.0/8\""))?;
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(PatternError::new(at, format!("{s:?} is not an IPv4 or IPv6 CIDR block")))
}
