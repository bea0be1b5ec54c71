use serde_json::json;

use super::tests_support::SEED_WECOM;
use super::*;

fn msg() -> Message {
    let mut m =
        Message::new("e1", json!({"subject": "ins-1", "region": "ap-guangzhou", "type": "cvm:ErrorEvent:GuestReboot"}));
    m.vars.insert("body".into(), m.payload.clone());
    m
}

fn eval(src: &str) -> Result<Value, String> {
    Expr::compile(&json!(src), "x").map_err(|e| e.to_string())?.eval_here(&msg())
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
    assert_eq!(eval("def dw_process(msg):\n    return {'n': len(msg.payload['subject'])}").unwrap(), json!({"n": 5}));
    // Helpers and constants beside dw_process are fine.
    let helper = "LEVEL = 'P1'\nNAMES = {'a': [1, -2.5, None]}\ndef tag(s, p='x'):\n  return p + s\n\
                  def dw_process(msg):\n  return tag(LEVEL) + str(NAMES['a'][1])";
    assert_eq!(eval(helper).unwrap(), "xP1-2.5");
}

#[test]
fn python_errors_are_reported_not_panics() {
    let err = eval("def dw_process(msg):\n    return msg.vars.get('missing').get('x')").unwrap_err();
    assert!(err.starts_with("python:"), "{err}");
    let err = Expr::compile(&json!("def dw_process(msg):\nreturn 1"), "steps[0].value").unwrap_err();
    assert!(err.to_string().starts_with("steps[0].value: python:"), "{err}");
    let err = Expr::compile(&json!("def other(msg):\n  return 1\n# def dw_process"), "p").unwrap_err();
    assert!(err.reason.contains("must define dw_process"), "{err}");
}

#[test]
fn top_level_code_is_refused_with_its_line() {
    for (code, line, what) in [
        ("def dw_process(msg):\n  return 1\nx = 0\nfor i in range(10):\n  x += i", 4, "`for` loop"),
        ("def dw_process(msg):\n  return 1\nprint('loaded')", 3, "an expression"),
        ("N = 2 * 1000000000\ndef dw_process(msg):\n  return N", 1, "computed value"),
        ("def dw_process(msg, big=[0] * 1000):\n  return 1", 1, "computed default"),
        ("load('x.star', 'y')\ndef dw_process(msg):\n  return 1", 1, "`load`"),
    ] {
        let err = Expr::compile(&json!(code), "steps[0].value").unwrap_err();
        assert!(err.reason.contains(&format!("line {line}:")), "{code}: {err}");
        assert!(err.reason.contains(what), "{code}: {err}");
    }
}

#[test]
fn budgets_end_evaluations_with_errors() {
    let err = eval("def dw_process(msg):\n    for i in range(100000000):\n        pass\n    return 1").unwrap_err();
    assert!(err.contains("python") && err.to_lowercase().contains("tick"), "{err}");
    // Big integers live on the heap: growing one without end meets the heap limit.
    let err = eval("def dw_process(msg):\n    x = 0\n    for i in range(100000000):\n        x += i\n    return x")
        .unwrap_err();
    assert!(err.contains("Heap memory limit"), "{err}");
    let err = eval("def dw_process(msg):\n    return 'x' * 2000000").unwrap_err();
    assert!(err.contains("larger than"), "{err}");
    let err = eval("{% for a in range(10000) %}{% for b in range(10000) %}.{% endfor %}{% endfor %}").unwrap_err();
    assert!(err.contains("fuel"), "{err}");
    let err = eval("{% for a in range(1000) %}{{ 'y' * 10000 }}{% endfor %}").unwrap_err();
    assert!(err.contains("larger than"), "{err}");
}

#[test]
fn templates_and_literals() {
    assert_eq!(eval("{{ vars.body.region }}/{{ payload.subject }}").unwrap(), "ap-guangzhou/ins-1");
    assert_eq!(eval("{{ vars.nothing.deeper }}").unwrap(), "");
    assert_eq!(eval("plain").unwrap(), "plain");
    // Numbers render as numbers (serde_json's arbitrary precision, which starlark enables, once
    // made them maps), through the engine and through the fast path alike.
    let mut m = msg();
    m.payload["cpu"] = json!(97);
    m.payload["load"] = json!(1.5);
    for t in ["{{ payload.cpu }}%", "{{ payload.cpu + 1 }}%", "{{ payload.load }}"] {
        let want = match t {
            "{{ payload.cpu }}%" => "97%",
            "{{ payload.cpu + 1 }}%" => "98%",
            _ => "1.5",
        };
        assert_eq!(Expr::compile(&json!(t), "x").unwrap().eval_here(&m).unwrap(), want, "{t}");
    }
    assert!(matches!(Expr::compile(&json!({"a": 1, "b": ["x"]}), "v").unwrap(), Expr::Literal(_)));
    let obj = Expr::compile(&json!({"a": "{{ id }}", "b": [1, "x"]}), "v").unwrap();
    assert!(matches!(obj, Expr::Code(_)));
    assert_eq!(obj.eval_here(&msg()).unwrap(), json!({"a": "e1", "b": [1, "x"]}));
    let err = Expr::compile(&json!({"a": ["{{ unclosed"]}), "v").unwrap_err();
    assert_eq!(err.path, "v.a[0]");
}

#[test]
fn a_program_id_follows_its_source() {
    let a = Program::unchecked(json!("{{ id }}"));
    assert_eq!(a.id(), Program::unchecked(json!("{{ id }}")).id());
    assert_ne!(a.id(), Program::unchecked(json!("{{ payload }}")).id());
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
