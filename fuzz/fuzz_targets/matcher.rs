//! Any bytes as an event against a fixed set of rules using every operator: the JSON scanner
//! never panics, and on valid JSON it agrees with the interpreter.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use magpie_pattern::{Matcher, Pattern};
use serde_json::json;

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    [
        json!({"source": ["cvm.cloud.tencent"], "status": [{"anything-but": "0"}]}),
        json!({"type": [{"prefix": "cvm:"}, {"suffix": "Oom"}], "region": [{"equals-ignore-case": "AP-Guangzhou"}]}),
        json!({"subject": [{"wildcard": "ins-*-prod"}], "data": {"ip": [{"cidr": "10.0.0.0/8"}]}}),
        json!({"data": {"cpu": [{"numeric": [">", 90, "<=", 100]}], "msg": [{"contain": "timeout"}]}}),
        json!({"data": {"error": [{"exists": false}]}, "a": {"b": [1, null, true]}}),
        json!({"$or": [{"a": {"x": [1]}}, {"a": {"y": [{"exists": true}]}}], "a": {"z": [{"anything-but": {"prefix": "q"}}]}}),
        json!({"cols": [{"array": "{\"name\": \"id\"}"}]}),
        json!({"s": [{"prefix": {"equals-ignore-case": "Ab"}}, {"anything-but": {"wildcard": "*x*"}}]}),
        // AWS's later forms: anything-but lists, empty prefix, dotted keys, shellstyle.
        json!({"t": [{"anything-but": {"prefix": ["init", "err"]}}], "detail.state": [{"prefix": ""}]}),
        json!({"detail": {"state.status": [{"anything-but": {"suffix": ["x", "y"]}}]}, "w": [{"shellstyle": "a*b"}]}),
        json!({"o": [{"exists": true}], "n": [{"anything-but": {"equals-ignore-case": ["A", "b"]}}]}),
    ]
    .iter()
    .map(|p| Pattern::parse(p).expect("valid fuzz pattern"))
    .collect()
});

static MATCHER: LazyLock<Matcher<usize>> = LazyLock::new(|| Matcher::build(PATTERNS.iter().cloned().enumerate()));

fuzz_target!(|data: &[u8]| {
    let mut scanned = Vec::new();
    let scan_ok = MATCHER.matches_json(data, &mut scanned).is_ok();
    if let Ok(event) = serde_json::from_slice::<serde_json::Value>(data) {
        let expected: Vec<usize> = PATTERNS.iter().enumerate().filter(|(_, p)| p.matches(&event)).map(|(i, _)| i).collect();
        let mut walked = Vec::new();
        MATCHER.matches(&event, &mut walked);
        assert_eq!(walked, expected, "tree walk disagrees with the interpreter");
        // JSON with duplicate keys is read differently (serde_json keeps the last value).
        if scan_ok && !has_duplicate_keys(&event, data) {
            assert_eq!(scanned, expected, "scanner disagrees with the interpreter");
        }
    }
});

/// Whether re-serialising the parsed event loses keys (a duplicate key in the input).
fn has_duplicate_keys(event: &serde_json::Value, data: &[u8]) -> bool {
    fn keys(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Object(o) => o.len() + o.values().map(keys).sum::<usize>(),
            serde_json::Value::Array(a) => a.iter().map(keys).sum(),
            _ => 0,
        }
    }
    // Count '":' pairs outside strings is unreliable; compare key counts instead.
    let mut count = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut last_string_end = false;
    for &b in data {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                last_string_end = true;
                continue;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b':' && last_string_end {
            count += 1;
        } else if !b.is_ascii_whitespace() {
            last_string_end = false;
        }
        if !in_string && b.is_ascii_whitespace() {
            continue;
        }
    }
    count != keys(event)
}
