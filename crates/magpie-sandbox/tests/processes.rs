//! Sandbox processes against hostile code: this test binary is its own sandbox executable
//! (`harness = false`: `main` enters the sandbox first when started as one).

use std::time::{Duration, Instant};

use magpie_flow::{Expr, Message};
use magpie_sandbox::{Sandbox, SandboxOptions, enter_if_child};
use serde_json::{Value, json};

/// Slow but frugal: few ticks, a fixed heap, seconds of work per thousand iterations.
const SLOW: &str = "def dw_process(msg):\n  big = 'a' * 10000000\n  n = 0\n  for i in range(1000000):\n    if 'b' in big:\n      n += 1\n  return n";

fn expr(src: &str) -> Expr {
    Expr::compile(&json!(src), "x").expect("compiles")
}

fn msg() -> Message {
    Message::new("e1", json!({"subject": "ins-1", "region": "ap-guangzhou"}))
}

fn sandbox(processes: usize) -> Sandbox {
    let mut opts = SandboxOptions::current_exe().expect("exe");
    opts.processes = processes;
    opts.memory_bytes = 256 << 20;
    Sandbox::processes(opts)
}

async fn check(name: &str, f: impl std::future::Future<Output = ()>) {
    let t = Instant::now();
    f.await;
    println!("test {name} ... ok ({:?})", t.elapsed());
}

fn main() {
    enter_if_child();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let sb = sandbox(2);
        check("answers_values", async {
            let v = sb.eval(&expr("def dw_process(msg):\n  return msg.payload['subject'] + '!'"), &msg()).await;
            assert_eq!(v, Ok(json!("ins-1!")));
            let v = sb.eval(&expr("{{ payload.region }}"), &msg()).await;
            assert_eq!(v, Ok(json!("ap-guangzhou")));
            let v = sb.eval(&Expr::compile(&json!({"a": "{{ id }}", "b": 2}), "x").unwrap(), &msg()).await;
            assert_eq!(v, Ok(json!({"a": "e1", "b": 2})));
        })
        .await;
        check("a_giant_allocation_costs_one_evaluation", async {
            let err = sb.eval(&expr("def dw_process(msg):\n  return len([0] * 2000000000)"), &msg()).await.unwrap_err();
            assert!(err.contains("memory"), "{err}");
            let err = sb.eval(&expr("def dw_process(msg):\n  return len('x' * 2000000000)"), &msg()).await.unwrap_err();
            assert!(err.contains("memory"), "{err}");
            // The next evaluation gets a fresh process.
            assert_eq!(sb.eval(&expr("{{ id }}"), &msg()).await, Ok(json!("e1")));
        })
        .await;
        check("big_integers_hit_a_budget", async {
            let code = "def dw_process(msg):\n  x = 1 << 60\n  for i in range(40):\n    x = x * x\n  return 1";
            let t = Instant::now();
            let err = sb.eval(&expr(code), &msg()).await.unwrap_err();
            assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
            assert!(err.contains("memory") || err.contains("time") || err.contains("heap"), "{err}");
        })
        .await;
        check("a_loop_ends_within_the_time_limit", async {
            let code = "def dw_process(msg):\n  for i in range(100000000):\n    pass\n  return 1";
            let err = sb.eval(&expr(code), &msg()).await.unwrap_err();
            assert!(err.to_lowercase().contains("tick"), "{err}");
            let t = Instant::now();
            let code = SLOW;
            let err = sb.eval(&expr(code), &msg()).await.unwrap_err();
            assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
            assert!(err.contains("time limit"), "{err}");
        })
        .await;
        check("evaluations_wait_for_a_free_process", async {
            let slow = expr(SLOW);
            let quick = expr("{{ id }}");
            let t = Instant::now();
            let m = msg();
            let (a, b, c) = tokio::join!(sb.eval(&slow, &m), sb.eval(&quick, &m), sb.eval(&quick, &m));
            assert!(a.is_err() && b == Ok(json!("e1")) && c == Ok(json!("e1")));
            assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        })
        .await;
        check("the_sandbox_sees_no_secrets", async {
            // Starlark cannot read the environment at all; the process has none to read anyway.
            let v = sb.eval(&expr("def dw_process(msg):\n  return str(msg.attrs)"), &msg()).await;
            assert_eq!(v, Ok(Value::String("{}".into())));
        })
        .await;
    });
}
