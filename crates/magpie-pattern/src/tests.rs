use serde_json::{Value, json};

use crate::Pattern;

fn has_dotted_keys(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('.') || has_dotted_keys(v)),
        Value::Array(a) => a.iter().any(has_dotted_keys),
        _ => false,
    }
}

/// Checks the interpreter and the compiled matcher (tree walk and JSON scanner) alike.
fn check(pattern: Value, yes: &[Value], no: &[Value]) {
    let p = Pattern::parse(&pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    let m = crate::Matcher::build([(0u8, p.clone())]);
    let compiled = |e: &Value| {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        m.matches(e, &mut a);
        m.matches_json(e.to_string().as_bytes(), &mut b).unwrap();
        assert_eq!(a, b, "tree walk and scanner differ on {e}");
        if !has_dotted_keys(e) {
            let mut c = Vec::new();
            m.matches_json_undotted(e.to_string().as_bytes(), &mut c).unwrap();
            assert_eq!(a, c, "tree walk and early-stopping scanner differ on {e}");
        }
        !a.is_empty()
    };
    for e in yes {
        assert!(p.matches(e), "{pattern} should match {e}");
        assert!(compiled(e), "compiled: {pattern} should match {e}");
    }
    for e in no {
        assert!(!p.matches(e), "{pattern} should not match {e}");
        assert!(!compiled(e), "compiled: {pattern} should not match {e}");
    }
}

fn refuse(pattern: Value, want: &str) {
    let err = Pattern::parse(&pattern).expect_err(&format!("{pattern} should be refused"));
    assert_eq!(err.to_string(), want, "for {pattern}");
}

#[test]
fn exact_values_and_bare_scalars() {
    check(
        json!({"source": "cvm.cloud.tencent"}),
        &[json!({"source": "cvm.cloud.tencent", "x": 1})],
        &[json!({"source": "CVM.cloud.tencent"}), json!({"x": 1}), json!({"source": ["clb.cloud.tencent"]})],
    );
    check(json!({"status": ["1", "0"]}), &[json!({"status": "1"}), json!({"status": "0"})], &[json!({"status": "-"})]);
    check(json!({"n": [300]}), &[json!({"n": 300}), json!({"n": 300.0})], &[json!({"n": "300"}), json!({"n": 301})]);
    check(json!({"n": [null]}), &[json!({"n": null})], &[json!({"n": ""}), json!({})]);
    check(json!({"n": [""]}), &[json!({"n": ""})], &[json!({"n": null})]);
    check(json!({"b": [true]}), &[json!({"b": true})], &[json!({"b": "true"}), json!({"b": false})]);
}

#[test]
fn nesting_and_arrays() {
    check(
        json!({"data": {"dimensions": {"ip": ["10.0.0.12"]}}}),
        &[
            json!({"data": {"dimensions": {"ip": "10.0.0.12"}}}),
            json!({"data": {"dimensions": {"ip": ["1.1.1.1", "10.0.0.12"]}}}),
        ],
        &[
            json!({"data": {"dimensions": {}}}),
            json!({"data": "x"}),
            json!({"data": {"dimensions": {"ip": "10.0.0.13"}}}),
        ],
    );
    // Fields of one array element are matched together.
    check(
        json!({"a": {"x": [1], "y": [2]}}),
        &[json!({"a": [{"x": 9, "y": 9}, {"x": 1, "y": 2}]})],
        &[json!({"a": [{"x": 1, "y": 9}, {"x": 9, "y": 2}]})],
    );
    check(json!({"tags": ["a"]}), &[json!({"tags": ["b", "a"]}), json!({"tags": [["a"]]})], &[json!({"tags": []})]);
}

#[test]
fn string_operators() {
    check(
        json!({"type": [{"prefix": "cvm:ErrorEvent:"}]}),
        &[json!({"type": "cvm:ErrorEvent:GuestOom"})],
        &[json!({"type": "clb:ErrorEvent:VipBlockInfo"}), json!({"type": 5})],
    );
    check(
        json!({"subject": [{"suffix": "-prod"}]}),
        &[json!({"subject": "ins-web-prod"})],
        &[json!({"subject": "ins-web-dev"})],
    );
    check(
        json!({"region": [{"equals-ignore-case": "AP-Shanghai"}]}),
        &[json!({"region": "ap-shanghai"})],
        &[json!({"region": "ap-beijing"})],
    );
    check(
        json!({"type": [{"prefix": {"equals-ignore-case": "CVM:"}}]}),
        &[json!({"type": "cvm:ErrorEvent:x"})],
        &[json!({"type": "clb:x"})],
    );
    check(
        json!({"s": [{"suffix": {"equals-ignore-case": "oN"}}]}),
        &[json!({"s": "MASON"})],
        &[json!({"s": "MASONS"})],
    );
    check(
        json!({"subject": [{"wildcard": "ins-*-prod"}]}),
        &[json!({"subject": "ins-web-prod"})],
        &[json!({"subject": "ins-web-dev"})],
    );
    check(json!({"m": [{"contain": "timeout"}]}), &[json!({"m": "read timeout"})], &[json!({"m": "ok"})]);
    check(
        json!({"m": [{"contains": ["topic-1", "appid"]}]}),
        &[json!({"m": "appid/topic-1"})],
        &[json!({"m": "topic-1"})],
    );
    check(
        json!({"t": [{"prefix": "pre"}, {"suffix": "suf"}]}),
        &[json!({"t": "prefix"}), json!({"t": "a-suf"})],
        &[json!({"t": "mid"})],
    );
}

#[test]
fn anything_but() {
    check(
        json!({"status": [{"anything-but": ["0"]}]}),
        &[json!({"status": "1"}), json!({"status": "-"}), json!({"status": null})],
        &[json!({"status": "0"}), json!({})],
    );
    check(json!({"s": [{"anything-but": "test1"}]}), &[json!({"s": "test2"})], &[json!({"s": "test1"})]);
    check(json!({"n": [{"anything-but": [1, 2]}]}), &[json!({"n": 3})], &[json!({"n": 2.0})]);
    check(
        json!({"type": [{"anything-but": {"prefix": "cvm:"}}]}),
        &[json!({"type": "clb:x"})],
        &[json!({"type": "cvm:x"})],
    );
    check(json!({"t": [{"anything-but": {"suffix": "ULTON"}}]}), &[json!({"t": "MASON"})], &[json!({"t": "FULTON"})]);
    check(
        json!({"t": [{"anything-but": {"wildcard": "143*"}}]}),
        &[json!({"t": "1530022"})],
        &[json!({"t": "1430022"})],
    );
    check(
        json!({"t": [{"anything-but": {"equals-ignore-case": ["Fulton"]}}]}),
        &[json!({"t": "MASON"})],
        &[json!({"t": "FULTON"})],
    );
}

#[test]
fn numeric_cidr_exists() {
    check(
        json!({"d": {"cpu": [{"numeric": [">", 90, "<=", 100]}]}}),
        &[json!({"d": {"cpu": 95}}), json!({"d": {"cpu": 100}})],
        &[json!({"d": {"cpu": 90}}), json!({"d": {"cpu": "95"}})],
    );
    check(json!({"x": [{"numeric": ["=", -122.5]}]}), &[json!({"x": -122.5})], &[json!({"x": -122.4})]);
    check(json!({"scope": [{"numeric": [">", 0, "<", 100]}]}), &[json!({"scope": 99.9})], &[json!({"scope": 100})]);
    check(
        json!({"ip": [{"cidr": "10.0.0.0/8"}]}),
        &[json!({"ip": "10.1.2.3"})],
        &[json!({"ip": "192.168.1.1"}), json!({"ip": "nope"})],
    );
    check(json!({"ip": [{"cidr": "2001:db8::/32"}]}), &[json!({"ip": "2001:db8::1"})], &[json!({"ip": "2001:db9::1"})]);
    check(json!({"ip": [{"cidr": "2001:db8::1"}]}), &[json!({"ip": "2001:db8::1"})], &[json!({"ip": "2001:db8::2"})]);
    check(
        json!({"d": {"error": [{"exists": true}]}}),
        &[json!({"d": {"error": "x"}}), json!({"d": {"error": null}})],
        &[json!({"d": {}}), json!({})],
    );
    check(json!({"d": {"error": [{"exists": false}]}}), &[json!({"d": {}}), json!({})], &[json!({"d": {"error": 1}})]);
}

#[test]
fn or_and_array_operator() {
    check(
        json!({"$or": [{"status": ["1"]}, {"data": {"level": ["critical"]}}]}),
        &[json!({"status": "1"}), json!({"data": {"level": "critical"}})],
        &[json!({"status": "0", "data": {"level": "info"}})],
    );
    check(
        json!({"data": {"$or": [{"a": [1]}, {"b": [2]}], "c": [3]}}),
        &[json!({"data": {"b": 2, "c": 3}})],
        &[json!({"data": {"b": 2, "c": 4}})],
    );
    check(
        json!({"source": "dts.cloud.tencent", "data": {"cols": [{"array": "{\"name\":\"id\",\"originalType\":\"int(11)\"}"}]}}),
        &[
            json!({"source": "dts.cloud.tencent", "data": {"cols": [{"name": "time"}, {"name": "id", "originalType": "int(11)", "isKey": true}]}}),
        ],
        &[json!({"source": "dts.cloud.tencent", "data": {"cols": [{"name": "id", "originalType": "text"}]}})],
    );
}

#[test]
fn refusals_name_the_path_and_reason() {
    refuse(json!({}), "a pattern cannot be empty");
    refuse(json!([1]), "a pattern must be a JSON object");
    refuse(json!({"a": []}), "a: a list of values cannot be empty");
    refuse(json!({"a": {}}), "a: a nested pattern cannot be empty");
    refuse(json!({"a": [{"bogus": 1}]}), "a[0].bogus: unknown operator \"bogus\"");
    refuse(
        json!({"data": {"cpu": [{"numeric": [90]}]}}),
        "data.cpu[0].numeric: numeric takes one or two comparisons, e.g. [\">=\", 0] or [\">\", 0, \"<\", 5]",
    );
    refuse(
        json!({"data": {"cpu": [{"numeric": [90, ">"]}]}}),
        "data.cpu[0].numeric: expected an operator such as \">\" before 90",
    );
    refuse(
        json!({"n": [{"numeric": ["<", 5, ">", 1]}]}),
        "n[0].numeric: with two comparisons, give the lower bound (> or >=) first, then the upper (< or <=)",
    );
    refuse(
        json!({"n": [{"numeric": [">", 1e16]}]}),
        "n[0].numeric: 10000000000000000 is beyond the supported range of ±2^53 (9007199254740992)",
    );
    check(
        json!({"time": [{"numeric": [">=", 1700000000000i64, "<", 1700000001000i64]}]}),
        &[json!({"time": 1700000000999i64})],
        &[json!({"time": 1700000001000i64})],
    );
    refuse(json!({"w": [{"wildcard": "a**b"}]}), "w[0].wildcard: consecutive '*' characters are not allowed");
    refuse(json!({"$or": [{"a": [1]}]}), "$or: $or takes an array of at least two patterns");
    refuse(json!({"ip": [{"cidr": "10.0.0.0/33"}]}), "ip[0].cidr: \"10.0.0.0/33\" is not an IPv4 or IPv6 CIDR block");
    refuse(
        json!({"a": [{"prefix": "x", "suffix": "y"}]}),
        "a[0]: an operator object holds exactly one operator, found prefix, suffix",
    );
    refuse(json!({"a": [{"exists": "yes"}]}), "a[0].exists: exists takes true or false");
    refuse(
        json!({"a": [{"array": "{nope"}]}),
        "a[0].array: the array operand is not valid JSON: key must be a string at line 1 column 2",
    );
}

#[test]
fn limits_protect_the_server() {
    let many: Vec<Value> = (0..1001).map(Value::from).collect();
    assert!(Pattern::parse(&json!({"a": many})).is_err());
    assert!(Pattern::parse(&json!({"a": [{"wildcard": "*a*b*c*d*e*f*g*h*i*"}]})).is_err());
    let mut deep = json!({"x": [1]});
    for _ in 0..20 {
        deep = json!({"n": deep});
    }
    assert!(Pattern::parse(&deep).unwrap_err().reason.contains("deeper"));
}

/// The AWS EventBridge behaviours of `reference/patterns.md` ("validated against AWS"), in the
/// interpreter and both compiled paths.
mod aws {
    use super::{check, refuse};
    use crate::Pattern;
    use serde_json::json;

    #[test]
    fn anything_but_matches_null_and_lets_non_strings_through_its_string_forms() {
        for op in [
            json!({"anything-but": "x"}),
            json!({"anything-but": {"prefix": "init"}}),
            json!({"anything-but": {"suffix": "init"}}),
            json!({"anything-but": {"wildcard": "in*t"}}),
            json!({"anything-but": {"equals-ignore-case": "init"}}),
        ] {
            check(
                json!({"f": [op]}),
                &[json!({"f": null}), json!({"f": 5}), json!({"f": true}), json!({"f": "other"})],
                &[json!({}), json!({"g": 1}), json!({"f": {"init": 1}})],
            );
        }
        // A numeric exclusion list does not exclude strings.
        check(
            json!({"f": [{"anything-but": [111, 222, 333]}]}),
            &[json!({"f": "444"}), json!({"f": "111"})],
            &[json!({"f": 111})],
        );
    }

    #[test]
    fn anything_but_takes_lists_in_every_form() {
        check(
            json!({"f": [{"anything-but": {"prefix": ["init", "error"]}}]}),
            &[json!({"f": "ready"}), json!({"f": 1})],
            &[json!({"f": "initial"}), json!({"f": "error: x"})],
        );
        check(
            json!({"f": [{"anything-but": {"suffix": [".png", ".jpg"]}}]}),
            &[json!({"f": "a.gif"})],
            &[json!({"f": "a.png"}), json!({"f": "b.jpg"})],
        );
        check(
            json!({"f": [{"anything-but": {"wildcard": ["*/lib/*", "*.txt"]}}]}),
            &[json!({"f": "/usr/bin/x"})],
            &[json!({"f": "/usr/lib/x"}), json!({"f": "a.txt"})],
        );
        check(
            json!({"f": [{"anything-but": {"equals-ignore-case": ["Robert", "Dan"]}}]}),
            &[json!({"f": "Bob"})],
            &[json!({"f": "ROBERT"}), json!({"f": "dan"})],
        );
    }

    #[test]
    fn empty_prefix_suffix_and_wildcard() {
        for op in [json!({"prefix": ""}), json!({"suffix": ""}), json!({"prefix": {"equals-ignore-case": ""}})] {
            check(
                json!({"f": [op]}),
                &[json!({"f": ""}), json!({"f": "anything"})],
                &[json!({"f": 1}), json!({"f": null}), json!({})],
            );
        }
        check(json!({"f": [{"wildcard": ""}]}), &[json!({"f": ""})], &[json!({"f": "a"})]);
        check(
            json!({"f": [{"anything-but": {"wildcard": ""}}]}),
            &[json!({"f": "a"}), json!({"f": 1})],
            &[json!({"f": ""})],
        );
    }

    #[test]
    fn exists_looks_at_leaves_only() {
        check(
            json!({"f": [{"exists": true}]}),
            &[json!({"f": "x"}), json!({"f": null}), json!({"f": [1]}), json!({"f": 0})],
            &[json!({"f": {"a": 1}}), json!({"f": []}), json!({}), json!({"f": [{"a": 1}]})],
        );
        check(
            json!({"f": [{"exists": false}]}),
            &[json!({}), json!({"f": {"a": 1}}), json!({"g": 1})],
            &[json!({"f": "x"}), json!({"f": null})],
        );
        // An absent intermediate object is an absent leaf.
        check(
            json!({"a": {"b": {"c": [{"exists": false}]}}}),
            &[json!({}), json!({"a": {}})],
            &[json!({"a": {"b": {"c": 1}}})],
        );
    }

    #[test]
    fn dotted_keys_and_nesting_are_interchangeable() {
        let running = [
            json!({"detail": {"state": {"status": "running"}}}),
            json!({"detail": {"state.status": "running"}}),
            json!({"detail.state.status": "running"}),
            json!({"detail.state": {"status": "running"}}),
        ];
        let stopped =
            [json!({"detail": {"state": {"status": "stopped"}}}), json!({"detail": {"state.status": "stopped"}})];
        for p in [
            json!({"detail": {"state.status": ["running"]}}),
            json!({"detail": {"state": {"status": ["running"]}}}),
            json!({"detail.state.status": ["running"]}),
        ] {
            check(p, &running, &stopped);
        }
        // Dotted and nested parts of one pattern are matched together.
        check(
            json!({"detail.state": {"code": [16]}, "detail": {"state": {"status": ["running"]}}}),
            &[
                json!({"detail": {"state": {"status": "running", "code": 16}}}),
                json!({"detail": {"state.code": 16, "state.status": "running"}}),
            ],
            &[json!({"detail": {"state": {"status": "running", "code": 48}}})],
        );
    }

    #[test]
    fn numbers_nulls_and_strings_stay_apart() {
        check(json!({"n": [{"numeric": [">", 0]}]}), &[json!({"n": 1})], &[json!({"n": "1"}), json!({"n": null})]);
        check(json!({"n": [300]}), &[json!({"n": 300.0}), json!({"n": 3e2})], &[json!({"n": "300"})]);
        check(json!({"n": [null]}), &[json!({"n": null})], &[json!({"n": []}), json!({"n": ""})]);
        check(json!({"n": [""]}), &[json!({"n": ""})], &[json!({"n": null})]);
        check(json!({"j": ["{\"a\":1}"]}), &[json!({"j": "{\"a\":1}"})], &[json!({"j": {"a": 1}})]);
    }

    #[test]
    fn shellstyle_is_wildcard_without_escapes() {
        check(
            json!({"f": [{"shellstyle": "ins-*-prod"}]}),
            &[json!({"f": "ins-web-prod"})],
            &[json!({"f": "ins-web-dev"})],
        );
        check(json!({"f": [{"shellstyle": r"a\*"}]}), &[json!({"f": r"a\xyz"})], &[json!({"f": "a*"})]);
        refuse(json!({"f": [{"shellstyle": "a**"}]}), "f[0].shellstyle: consecutive '*' characters are not allowed");
    }

    #[test]
    fn validation_as_aws() {
        let bad = [
            json!({"f": [{"anything-but": ["child0", 111]}]}),
            json!({"f": [{"anything-but": [null]}]}),
            json!({"f": [{"anything-but": [true]}]}),
            json!({"f": [{"anything-but": null}]}),
            json!({"f": [{"anything-but": {"equals-ignore-case": [1]}}]}),
            json!({"f": [{"anything-but": {"prefix": ""}}]}),
            json!({"f": [{"anything-but": {"suffix": ""}}]}),
            json!({"f": [{"anything-but": {"prefix": ["a", ""]}}]}),
            json!({"f": [{"anything-but": {"prefix": []}}]}),
            json!({"f": [{"anything-but": {"numeric": [">", 1]}}]}),
            json!({"f": [{"anything-but": []}]}),
            json!({"f": [{"numeric": ["<", 1, ">", 0]}]}),
            json!({"f": [{"numeric": [">", 1, ">", 2]}]}),
            json!({"f": [{"numeric": [">", 1, "<", 1]}]}),
            json!({"f": [{"numeric": [">=", 1, "<", 1]}]}),
            json!({"f": [{"numeric": [">", 1, "<=", 1]}]}),
            json!({"f": [{"numeric": [">", 5, "<", 1]}]}),
            json!({"f": [{"numeric": [">", 1, "<", 5, "="]}]}),
            json!({"f": [{"numeric": [">", "1"]}]}),
            json!({"f": [{"numeric": ">"}]}),
            json!({"f": [{"wildcard": "a**"}]}),
            json!({"f": [{"wildcard": r"a\n"}]}),
            json!({"f": [{"wildcard": "*:*:*:*:*:event-bus/*"}]}),
            json!({"f": []}),
            json!({"f": [{"NUMERIC": [">", 1]}]}),
            json!({"f": [{"Prefix": "a"}]}),
        ];
        for p in bad {
            assert!(Pattern::parse(&p).is_err(), "{p} should be refused");
        }
        assert!(Pattern::parse(&json!({"f": [{"numeric": [">=", 1, "<=", 1]}]})).is_ok(), "a one-point range");
        let e = Pattern::parse(&json!({"f": [{"wildcard": "*:*:*:*:*:event-bus/*"}]})).unwrap_err();
        assert!(e.reason.starts_with("Rule is too complex"), "{e}");
        assert!(Pattern::parse(&json!({"f": [{"wildcard": "arn:aws:events:*:*:event-bus/*"}]})).is_ok());
        refuse(
            json!({"f": [{"anything-but": ["child0", 111]}]}),
            "f[0].anything-but: anything-but lists hold only strings or only numbers, not both",
        );
        refuse(json!({"f": [{"numeric": [">", 1, "<", 1]}]}), "f[0].numeric: the range > 1, < 1 is empty");
    }

    #[test]
    fn number_literals_a_double_cannot_hold_are_refused() {
        let parse = |text: &str| Pattern::parse_str(&format!(r#"{{"f": [{{"numeric": [">", {text}]}}]}}"#));
        assert!(parse("1E-320").is_ok(), "a subnormal is a double");
        assert!(parse("0.0").is_ok() && parse("0e-400").is_ok());
        let e = parse("1E-325").unwrap_err();
        assert_eq!(e.to_string(), "f[0].numeric: 1e-325 is too small for a double (it would round to 0)");
        assert!(parse("1E309").is_err());
        assert!(parse("9007199254740992").is_ok() && parse("9007199254740993").is_err(), "2^53 + 1 rounds");
        assert!(Pattern::parse_str(r#"{"f": [1E400]}"#).is_err(), "exact values too");
        assert!(Pattern::parse_str(r#"{"f": [1E-400]}"#).is_err());
    }
}
