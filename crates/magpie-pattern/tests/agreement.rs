//! Property test: the compiled matcher agrees with the reference interpreter on generated
//! patterns and events, with every operator.

use magpie_pattern::{Matcher, Pattern};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Dotted keys name nested fields in events and patterns alike (as AWS reads them).
const KEYS: [&str; 6] = ["a", "b", "c", "d", "a.b", "b.c"];
const STRINGS: [&str; 10] = ["x", "xy", "Xy", "yx", "ab", "a*b", "10.0.0.1", "2001:db8::1", "", "timeout x"];
const NUMBERS: [f64; 6] = [0.0, 1.0, 1.5, -2.0, 300.0, 1e9];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => prop::sample::select(&STRINGS[..]).prop_map(|s| json!(s)),
        2 => prop::sample::select(&NUMBERS[..]).prop_map(|n| json!(n)),
        1 => prop::sample::select(&[0i64, 1, 300][..]).prop_map(|n| json!(n)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
    ]
}

fn event_value(depth: u32) -> BoxedStrategy<Value> {
    let leaf = scalar().boxed();
    if depth == 0 {
        return leaf;
    }
    prop_oneof![
        4 => leaf,
        2 => event_object(depth - 1),
        1 => prop::collection::vec(prop_oneof![scalar(), event_object(depth - 1)], 0..3).prop_map(Value::Array),
    ]
    .boxed()
}

fn event_object(depth: u32) -> BoxedStrategy<Value> {
    // Dense: most keys present, so patterns often match.
    keyed(2..=4, event_value(depth))
}

/// An object with distinct keys from KEYS (no rejection sampling).
fn keyed(count: std::ops::RangeInclusive<usize>, value: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop::sample::subsequence(KEYS.to_vec(), count)
        .prop_flat_map(move |keys| {
            let n = keys.len();
            (Just(keys), prop::collection::vec(value.clone(), n))
        })
        .prop_map(|(keys, values)| Value::Object(keys.into_iter().map(str::to_string).zip(values).collect()))
        .boxed()
}

fn string() -> impl Strategy<Value = String> {
    prop::sample::select(&["x", "X", "y", "a", "ab", "10.", "xy", ""][..]).prop_map(str::to_string)
}

fn operator() -> BoxedStrategy<Value> {
    prop_oneof![
        scalar(),
        string().prop_map(|s| json!({"prefix": s})),
        string().prop_map(|s| json!({"suffix": s})),
        string().prop_map(|s| json!({"prefix": {"equals-ignore-case": s}})),
        string().prop_map(|s| json!({"suffix": {"equals-ignore-case": s}})),
        string().prop_map(|s| json!({"equals-ignore-case": s})),
        prop::sample::select(&["x*", "*y", "a*b", "*", "x\\*", "*b*", "xy"][..]).prop_map(|w| json!({"wildcard": w})),
        prop_oneof![
            prop::collection::vec(prop::sample::select(&STRINGS[..]).prop_map(|s| json!(s)), 1..3),
            prop::collection::vec(prop::sample::select(&NUMBERS[..]).prop_map(|n| json!(n)), 1..3),
        ]
        .prop_map(|v| json!({"anything-but": v})),
        string().prop_map(|s| json!({"anything-but": {"prefix": s}})),
        string().prop_map(|s| json!({"anything-but": {"suffix": s}})),
        prop::collection::vec(string(), 1..3).prop_map(|s| json!({"anything-but": {"prefix": s}})),
        prop::collection::vec(string(), 1..3).prop_map(|s| json!({"anything-but": {"suffix": s}})),
        prop::sample::select(&["x*", "*y", "a*b", ""][..]).prop_map(|w| json!({"anything-but": {"wildcard": w}})),
        prop::collection::vec(prop::sample::select(&["x*", "*y", "a*b", "", "xy"][..]), 1..3)
            .prop_map(|w| json!({"anything-but": {"wildcard": w}})),
        string().prop_map(|s| json!({"anything-but": {"equals-ignore-case": [s]}})),
        string().prop_map(|s| json!({"anything-but": {"equals-ignore-case": s}})),
        prop::sample::select(&["x*", "*y", "a\\*", "*"][..]).prop_map(|w| json!({"shellstyle": w})),
        (prop::sample::select(&NUMBERS[..]), prop::sample::select(&[">", ">=", "<", "<=", "="][..]))
            .prop_map(|(n, op)| json!({"numeric": [op, n]})),
        (prop::sample::select(&NUMBERS[..]), 0.0..500.0f64)
            .prop_map(|(lo, span)| json!({"numeric": [">=", lo, "<", lo + span]})),
        prop::sample::select(&["10.0.0.0/8", "2001:db8::/32", "10.0.0.1", "2001:db8::1", "0.0.0.0/0"][..])
            .prop_map(|c| json!({"cidr": c})),
        any::<bool>().prop_map(|b| json!({"exists": b})),
        string().prop_map(|s| json!({"contain": s})),
        prop::sample::select(&KEYS[..]).prop_map(|k| json!({"array": format!("{{\"{k}\": [\"x\"]}}")})),
    ]
    .boxed()
}

fn pattern_object(depth: u32) -> BoxedStrategy<Value> {
    let field = if depth == 0 {
        prop::collection::vec(operator(), 1..3).prop_map(Value::Array).boxed()
    } else {
        prop_oneof![
            6 => prop::collection::vec(operator(), 1..3).prop_map(Value::Array),
            1 => scalar(),
            2 => pattern_object(depth - 1),
        ]
        .boxed()
    };
    let fields = prop_oneof![3 => keyed(1..=1, field.clone()), 1 => keyed(2..=2, field)];
    let or = if depth == 0 {
        Just(None).boxed()
    } else {
        prop::option::weighted(0.2, prop::collection::vec(pattern_object(depth - 1), 2..3)).boxed()
    };
    (fields, or)
        .prop_map(|(fields, or)| {
            let mut m: Map<String, Value> = match fields {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if let Some(branches) = or {
                m.insert("$or".into(), Value::Array(branches));
            }
            Value::Object(m)
        })
        .boxed()
}

fn has_dotted_keys(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('.') || has_dotted_keys(v)),
        Value::Array(a) => a.iter().any(has_dotted_keys),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_matcher_agrees_with_the_interpreter(
        patterns in prop::collection::vec(pattern_object(2), 1..6),
        events in prop::collection::vec(event_object(3), 1..8),
    ) {
        let parsed: Vec<(usize, Pattern)> = patterns.iter().enumerate().filter_map(|(i, p)| Some((i, Pattern::parse(p).ok()?))).collect();
        let matcher = Matcher::build(parsed.clone());
        for event in &events {
            let want: Vec<usize> = parsed.iter().filter(|(_, p)| p.matches(event)).map(|(i, _)| *i).collect();
            let mut got = Vec::new();
            matcher.matches(event, &mut got);
            prop_assert_eq!(&got, &want, "tree walk; event {}", event);
            let mut got = Vec::new();
            matcher.matches_json(event.to_string().as_bytes(), &mut got).unwrap();
            prop_assert_eq!(&got, &want, "scanner; event {}", event);
            if !has_dotted_keys(event) {
                let mut got = Vec::new();
                matcher.matches_json_undotted(event.to_string().as_bytes(), &mut got).unwrap();
                prop_assert_eq!(&got, &want, "scanner with early stop; event {}", event);
            }
        }
    }

    #[test]
    fn the_scanner_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let p = Pattern::parse(&json!({"a": {"b": [{"prefix": "x"}]}, "c": [1]})).unwrap();
        let m = Matcher::build([(0, p)]);
        let _ = m.matches_json(&bytes, &mut Vec::new());
    }
}

fn small() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![json!(1), json!(2), json!("x"), json!("y")])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// Fields of one array element must match together: patterns over two fields of elements
    /// of an array of objects, events whose elements mix the values.
    #[test]
    fn array_elements_are_matched_as_wholes(
        elements in prop::collection::vec(prop::collection::btree_map(prop::sample::select(&["b", "c", "d"][..]), small(), 1..=3), 1..4),
        wants in prop::collection::vec((prop::sample::select(&["b", "c", "d"][..]), small()), 2..4),
        nested_or in any::<bool>(),
    ) {
        let elements: Vec<Value> = elements.into_iter().map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())).collect();
        let event = json!({"a": elements, "z": 1});
        let mut inner: Map<String, Value> = Map::new();
        for (k, v) in &wants {
            inner.insert(k.to_string(), json!([v]));
        }
        if nested_or {
            inner.insert("$or".into(), json!([{"b": [1]}, {"c": ["x"]}]));
        }
        let p = Pattern::parse(&json!({"a": inner, "z": [1]})).unwrap();
        let want = p.matches(&event);
        let m = Matcher::build([(0, p)]);
        let mut got = Vec::new();
        m.matches(&event, &mut got);
        prop_assert_eq!(got == [0], want, "tree walk; event {}", event);
        got.clear();
        m.matches_json(event.to_string().as_bytes(), &mut got).unwrap();
        prop_assert_eq!(got == [0], want, "scanner; event {}", event);
    }
}

#[test]
fn citylots_shaped_example_with_arrays() {
    let p =
        Pattern::parse(&json!({"geometry": {"type": ["Polygon"], "coordinates": {"x": [{"numeric": ["<", -122.4]}]}}}))
            .unwrap();
    let m = Matcher::build([("r0", p)]);
    let yes =
        json!({"geometry": {"type": "Polygon", "coordinates": [[{"x": -122.5, "y": 37.7}, {"x": -122.3, "y": 37.8}]]}});
    let no = json!({"geometry": {"type": "Polygon", "coordinates": [[{"x": -122.3, "y": 37.7}]]}});
    let mut out = Vec::new();
    m.matches(&yes, &mut out);
    assert_eq!(out, ["r0"]);
    out.clear();
    m.matches_json(no.to_string().as_bytes(), &mut out).unwrap();
    assert!(out.is_empty());
}
