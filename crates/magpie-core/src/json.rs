//! Strict JSON for everything that comes in from outside (events, configuration, pattern tests).
//!
//! `serde_json` accepts documents that a sender cannot have meant: an object with the same key
//! twice (it keeps the last; a scanner reading the raw bytes sees both, so the matcher and the
//! store could disagree on which `source` counts), and number literals no double can hold
//! (`1e400`, `1e-400`, which would round to infinity or zero). This parser reads the text once
//! into a [`Value`] and reports those as [`Fault`]s with the JSON path of each, so that a batch can
//! refuse exactly the entries at fault and keep the rest. Syntax errors (and nesting deeper than
//! [`MAX_NESTING`]) end the parse: nothing of a malformed document can be trusted.

use std::fmt;

use serde_json::{Map, Number, Value};

/// Deepest nesting of arrays and objects the parser follows (the event limit is lower; this one
/// protects the parser's stack).
pub const MAX_NESTING: usize = 128;

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// A well-formed document's part that is refused anyway: a duplicate key, a number no double
/// holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Where it is.
    pub path: Vec<Step>,
    /// Why it is refused.
    pub reason: String,
}

impl Fault {
    /// The path as text: `entries[2].data.cpu`.
    pub fn path_text(&self) -> String {
        path_text(&self.path)
    }
}

/// A path as text, `entries[2].data.cpu` (empty for the whole document).
pub fn path_text(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path_text();
        if path.is_empty() { write!(f, "{}", self.reason) } else { write!(f, "{path}: {}", self.reason) }
    }
}

/// A document that is not JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at line {line} column {column}")]
pub struct SyntaxError {
    /// What is wrong.
    pub reason: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in bytes).
    pub column: usize,
}

/// A parsed document and what in it is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The document (for a duplicate key, the first value is kept; a refused number is `null`).
    pub value: Value,
    /// What is refused, in document order.
    pub faults: Vec<Fault>,
}

impl Parsed {
    /// The document, or its first fault as an error.
    pub fn into_clean(self) -> Result<Value, Fault> {
        match self.faults.into_iter().next() {
            Some(f) => Err(f),
            None => Ok(self.value),
        }
    }

    /// The faults inside the part at `prefix`, with paths made relative to it.
    pub fn faults_under(&self, prefix: &[Step]) -> Vec<Fault> {
        self.faults
            .iter()
            .filter(|f| f.path.starts_with(prefix))
            .map(|f| Fault { path: f.path[prefix.len()..].to_vec(), reason: f.reason.clone() })
            .collect()
    }
}

/// Parses `bytes` as one JSON document.
pub fn parse(bytes: &[u8]) -> Result<Parsed, SyntaxError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let mut p = Parser::new(&bytes[..e.valid_up_to()]);
        p.i = e.valid_up_to();
        p.error("invalid UTF-8")
    })?;
    let mut p = Parser::new(text.as_bytes());
    p.ws();
    let value = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(p.error("trailing characters after the JSON value"));
    }
    Ok(Parsed { value, faults: p.faults })
}

/// Parses `bytes` and refuses any fault: for documents taken whole (configuration, pattern tests).
pub fn parse_clean(bytes: &[u8]) -> Result<Value, String> {
    let parsed = parse(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    parsed.into_clean().map_err(|f| f.to_string())
}

/// Whether any object key in `v` holds a dot (`"state.status"`): patterns read such a key as the
/// nested field it names, so a scanner that stops reading early must not, past such a key.
pub fn has_dotted_keys(v: &Value) -> bool {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    if k.contains('.') {
                        return true;
                    }
                    stack.push(v);
                }
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    false
}

/// Why a number literal cannot be kept, if it cannot: out of a double's range, or so small it
/// would round to zero (subnormals such as `1e-320` are fine).
pub fn number_fault(text: &str) -> Option<String> {
    // Without an exponent, only a literal of 300+ characters can leave a double's range.
    if text.len() < 300 && !text.bytes().any(|c| c == b'e' || c == b'E') {
        return None;
    }
    let f: f64 = text.parse().ok()?;
    // A 1,000-digit number is not echoed whole.
    let shown =
        if text.len() > 40 { format!("{}…({} characters)", &text[..24], text.len()) } else { text.to_string() };
    if f.is_infinite() {
        return Some(format!("{shown} is beyond the range of a double"));
    }
    let mantissa = text.bytes().take_while(|c| !matches!(c, b'e' | b'E'));
    if f == 0.0 && mantissa.clone().any(|c| matches!(c, b'1'..=b'9')) {
        return Some(format!("{shown} is too small for a double (it would round to 0)"));
    }
    None
}

/// Reads a YAML document as strictly as [`parse`] reads JSON: [`Strict`] for duplicate keys and
/// non-finite numbers, and a look at the source text of plain scalars for numbers so small that
/// the YAML reader would make them 0 (`1e-400`), which it cannot report by itself.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    for item in granit_parser::Parser::new_from_str(text) {
        // Syntax errors are the YAML reader's to report, below.
        let Ok((event, span)) = item else { break };
        if let granit_parser::Event::Scalar(v, granit_parser::ScalarStyle::Plain, _, None) = &event
            && yaml_float_underflows(v.trim())
        {
            return Err(format!(
                "line {} column {}: {} is too small for a double (it would round to 0)",
                span.start.line(),
                span.start.col() + 1,
                v.trim()
            ));
        }
    }
    serde_saphyr::from_str::<Strict>(text).map(|s| s.0).map_err(|e| e.to_string())
}

/// Whether a plain YAML scalar is a float literal with an exponent that rounds to 0 though its
/// digits are not all zero.
fn yaml_float_underflows(t: &str) -> bool {
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let Some((mantissa, exp)) = body.split_once(['e', 'E']) else { return false };
    let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    let digits_dot =
        |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || c == b'.') && s.matches('.').count() <= 1;
    digits_dot(mantissa)
        && mantissa != "."
        && !exp.is_empty()
        && exp.bytes().all(|c| c.is_ascii_digit())
        && mantissa.bytes().any(|c| matches!(c, b'1'..=b'9'))
        && t.parse::<f64>().is_ok_and(|f| f == 0.0)
}

/// A document read through serde (YAML) with the checks [`parse`] makes: a duplicate key and a
/// number no double holds are errors (YAML readers would keep the last value, and turn `1e400`
/// into infinity, which JSON cannot hold and `serde_json` would silently make `null`).
#[derive(Debug, Clone, PartialEq)]
pub struct Strict(pub Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        Number::from_i128(v).map(Value::Number).ok_or_else(|| E::custom(format!("{v} is beyond the range of a double")))
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        Number::from_u128(v).map(Value::Number).ok_or_else(|| E::custom(format!("{v} is beyond the range of a double")))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        if v.is_nan() {
            return Err(E::custom("NaN is not a number JSON can hold"));
        }
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom(format!("{v} is beyond the range of a double")))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<Strict>()? {
            let key = match key.0 {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => return Err(serde::de::Error::custom(format!("a key must be a string, got {other}"))),
            };
            let Strict(v) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}: a key may appear once")));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    path: Vec<Step>,
    faults: Vec<Fault>,
}

impl<'a> Parser<'a> {
    fn new(b: &'a [u8]) -> Self {
        Parser { b, i: 0, path: Vec::new(), faults: Vec::new() }
    }

    fn error(&self, reason: &str) -> SyntaxError {
        let upto = &self.b[..self.i.min(self.b.len())];
        let line = upto.iter().filter(|&&c| c == b'\n').count() + 1;
        let column = upto.iter().rev().take_while(|&&c| c != b'\n').count() + 1;
        SyntaxError { reason: reason.to_string(), line, column }
    }

    fn fault(&mut self, reason: String) {
        self.faults.push(Fault { path: self.path.clone(), reason });
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a JSON value")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, SyntaxError> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.error("expected a JSON value"))
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        if depth > MAX_NESTING {
            return self.too_deep();
        }
        self.i += 1;
        let mut map = Map::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':' after a key"));
            }
            self.i += 1;
            self.ws();
            self.path.push(Step::Key(key));
            let v = self.value(depth)?;
            let Some(Step::Key(key)) = self.path.pop() else { unreachable!("the key pushed above") };
            if map.contains_key(&key) {
                self.path.push(Step::Key(key));
                self.fault("duplicate key: a key may appear once in an object".into());
                self.path.pop();
            } else {
                map.insert(key, v);
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Object(map));
                }
                _ => return Err(self.error("expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, SyntaxError> {
        if depth > MAX_NESTING {
            return self.too_deep();
        }
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.ws();
            self.path.push(Step::Index(items.len()));
            let v = self.value(depth)?;
            self.path.pop();
            items.push(v);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']' in an array")),
            }
        }
    }

    /// A value nested past [`MAX_NESTING`]: a fault of the part it is in, skipped without
    /// recursion (brackets balanced, strings read) so that the rest of the document is read.
    fn too_deep(&mut self) -> Result<Value, SyntaxError> {
        self.fault(format!("nested deeper than {MAX_NESTING} levels"));
        let mut open: Vec<u8> = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unexpected end of input")),
                Some(b'"') => {
                    self.string()?;
                    continue;
                }
                Some(c @ (b'{' | b'[')) => open.push(if c == b'{' { b'}' } else { b']' }),
                Some(c @ (b'}' | b']')) => {
                    if open.pop() != Some(c) {
                        return Err(self.error("mismatched bracket"));
                    }
                    if open.is_empty() {
                        self.i += 1;
                        return Ok(Value::Null);
                    }
                }
                Some(_) => {}
            }
            self.i += 1;
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let s = p.i;
            while let Some(b'0'..=b'9') = p.peek() {
                p.i += 1;
            }
            p.i > s
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !digits(self) {
                return Err(self.error("invalid number: digits expected after '.'"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !digits(self) {
                return Err(self.error("invalid number: digits expected in the exponent"));
            }
        }
        // Every byte read is ASCII, so this slice is text.
        let text = std::str::from_utf8(&self.b[start..self.i]).map_err(|_| self.error("invalid number"))?;
        if let Some(reason) = number_fault(text) {
            self.fault(reason);
            return Ok(Value::Null);
        }
        let n: Number = text.parse().map_err(|_| self.error("invalid number"))?;
        Ok(Value::Number(n))
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.i += 1;
        let start = self.i;
        let rest = &self.b[start..];
        let Some(end) = memchr_quote_or_escape(rest) else { return Err(self.error("unterminated string")) };
        if let Some(c) = rest[..end].iter().position(|&c| c < 0x20) {
            self.i = start + c;
            return Err(self.error("control character in a string (escape it)"));
        }
        if rest[end] == b'"' {
            self.i = start + end + 1;
            // The document was checked to be UTF-8 and the slice ends at ASCII bytes.
            return std::str::from_utf8(&rest[..end]).map(str::to_string).map_err(|_| self.error("invalid UTF-8"));
        }
        let mut out: Vec<u8> = rest[..end].to_vec();
        self.i = start + end;
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|_| self.error("invalid UTF-8"));
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(e) = self.peek() else { return Err(self.error("unterminated string")) };
                    self.i += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let c = self.unicode_escape()?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => {
                            self.i -= 1;
                            return Err(self.error("invalid escape in a string"));
                        }
                    }
                }
                Some(c) if c < 0x20 => return Err(self.error("control character in a string (escape it)")),
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let Some(h) = self.b.get(self.i..self.i + 4) else { return Err(self.error("invalid \\u escape")) };
        let s = std::str::from_utf8(h).map_err(|_| self.error("invalid \\u escape"))?;
        let v = u32::from_str_radix(s, 16).map_err(|_| self.error("invalid \\u escape"))?;
        if !h.iter().all(u8::is_ascii_hexdigit) {
            return Err(self.error("invalid \\u escape"));
        }
        self.i += 4;
        Ok(v)
    }

    /// A `\\u` escape (after the `u`). A lone surrogate is well-formed JSON but no character:
    /// a fault of the part it is in (read as U+FFFD so that the document can be read on).
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let hi = self.hex4()?;
        let lone = |p: &mut Self| {
            p.fault("a lone surrogate (\\ud800-\\udfff) in a \\u escape is not a character".into());
            Ok('\u{FFFD}')
        };
        let code = if (0xD800..0xDC00).contains(&hi) {
            if !self.b[self.i..].starts_with(b"\\u") {
                return lone(self);
            }
            let save = self.i;
            self.i += 2;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                self.i = save;
                return lone(self);
            }
            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
        } else if (0xDC00..0xE000).contains(&hi) {
            return lone(self);
        } else {
            hi
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }
}

fn memchr_quote_or_escape(b: &[u8]) -> Option<usize> {
    memchr::memchr2(b'"', b'\\', b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> Value {
        let p = parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert!(p.faults.is_empty(), "{text}: {:?}", p.faults);
        p.value
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a":[1,-2.5,3e2,0,-0,1E-320,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"],"b":{}}"#,
            "  [ ]  ",
            r#""héllo""#,
            "123456789012345678901234567890",
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(ok(text), want, "{text}");
        }
    }

    #[test]
    fn faults_name_the_path() {
        let p = parse(br#"{"entries":[{"source":"a"},{"source":"a","source":"b"},{"n":[1,1e400]}]}"#).unwrap();
        let texts: Vec<String> = p.faults.iter().map(Fault::to_string).collect();
        assert_eq!(
            texts,
            [
                "entries[1].source: duplicate key: a key may appear once in an object",
                "entries[2].n[1]: 1e400 is beyond the range of a double"
            ]
        );
        let under = p.faults_under(&[Step::Key("entries".into()), Step::Index(2)]);
        assert_eq!(under[0].to_string(), "n[1]: 1e400 is beyond the range of a double");
        assert_eq!(p.value["entries"][1]["source"], json!("a"), "the first value is kept");
        let p = parse(b"[-1e400, 1e-400, 0e-400, 10e-1]").unwrap();
        assert_eq!(p.faults.len(), 2);
        assert!(p.faults[1].reason.contains("round to 0"));
    }

    #[test]
    fn yaml_is_read_as_strictly() {
        let read = |t: &str| serde_saphyr::from_str::<Strict>(t).map(|s| s.0);
        assert_eq!(
            read("a: [1, 2.5, x, null, true]\nb: {c: d}\n").unwrap(),
            json!({"a": [1, 2.5, "x", null, true], "b": {"c": "d"}})
        );
        for bad in ["a: 1\na: 2\n", "a: 1e400\n", "a: [-.inf]\n", "a: .nan\n"] {
            assert!(read(bad).is_err(), "{bad:?} should be refused");
        }
        let e = parse_yaml("a:\n  b: [1, 1e-400]\n").unwrap_err();
        assert_eq!(e, "line 2 column 10: 1e-400 is too small for a double (it would round to 0)");
        assert_eq!(
            parse_yaml("a: '1e-400'\nb: 1e-320\nc: 0e-999\nd: inf\ne: 1.5e3\n").unwrap(),
            json!({"a": "1e-400", "b": 1e-320, "c": 0.0, "d": "inf", "e": 1500.0})
        );
    }

    #[test]
    fn syntax_errors_stop_the_parse() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "01",
            "1.",
            "1e",
            "-",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "{\"a\" 1}",
            "nul",
            "[1] x",
            "\u{feff}{}",
            "\"tab\there\"",
        ] {
            assert!(parse(text.as_bytes()).is_err(), "{text:?} should be refused");
        }
        assert!(parse(b"\"\xff\"").is_err());
        let fine = "[".repeat(MAX_NESTING) + &"]".repeat(MAX_NESTING);
        assert!(parse(fine.as_bytes()).unwrap().faults.is_empty());
        let unbalanced = "[".repeat(MAX_NESTING + 5) + &"]".repeat(MAX_NESTING + 4);
        assert!(parse(unbalanced.as_bytes()).is_err());
    }

    #[test]
    fn deep_nesting_and_lone_surrogates_are_faults_of_their_part() {
        let deep = "[".repeat(MAX_NESTING + 10) + "\"]\"" + &"]".repeat(MAX_NESTING + 10);
        let doc =
            format!("[{{\"ok\": 1}}, {{\"deep\": {deep}}}, {{\"s\": \"\\ud800\"}}, {{\"pair\": \"\\ud83d\\ude00\"}}]");
        let p = parse(doc.as_bytes()).unwrap();
        let faults: Vec<String> = p.faults.iter().map(Fault::to_string).collect();
        assert_eq!(faults.len(), 2, "{faults:?}");
        assert!(faults[0].starts_with("[1].deep") && faults[0].contains("deeper"), "{faults:?}");
        assert!(faults[1].starts_with("[2].s: a lone surrogate"), "{faults:?}");
        assert_eq!(p.value[0]["ok"], json!(1));
        assert_eq!(p.value[3]["pair"], json!("😀"));
        assert!(number_fault(&format!("1{}", "0".repeat(999))).unwrap().contains("(1000 characters)"));
        let e = parse(b"{\n  \"a\": tru\n}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 8));
    }
}
