//! Event to robot request: from the moment a PutEvents request is sent to the moment the robot
//! endpoint receives the message, through ingest, routing, a flow (template expression) and a
//! WeCom connector, at a steady rate.
//!
//! ```sh
//! cargo bench -p magpie-server --bench latency
//! ```
//!
//! The "robot" is a minimal local endpoint answering `{"errcode":0}`; the load generator and the
//! server share the machine's cores. CPU per event is the whole process's (server, load generator
//! and robot) user + system time over the run, divided by the events carried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use magpie_core::ConfigDocument;
use magpie_server::{AppState, ServerOptions};
use serde_json::{Value, json};

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn robot(arrivals: Arrivals) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().route(
        "/cgi-bin/webhook/send",
        post(move |body: axum::body::Bytes| {
            let arrivals = arrivals.clone();
            async move {
                let now = Instant::now();
                if let Ok(v) = serde_json::from_slice::<Value>(&body)
                    && let Some(id) = v["markdown"]["content"].as_str()
                {
                    arrivals.lock().expect("lock").insert(id.to_string(), now);
                }
                axum::Json(json!({"errcode": 0, "errmsg": "ok"}))
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/cgi-bin/webhook/send?key=bench")
}

/// CPU time (user + system) this process has used, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Latencies in ms, sorted, and the events per second carried from the first send to the last
/// arrival.
async fn run(url: &str, arrivals: &Arrivals, rate: u32, seconds: u32) -> (Vec<f64>, f64) {
    let http = reqwest::Client::new();
    let mut sent: Vec<(String, Instant)> = Vec::new();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tick = tokio::time::interval(interval);
    let mut tasks = Vec::new();
    for i in 0..rate * seconds {
        tick.tick().await;
        let id = format!("lat-{rate}-{i}");
        let body = json!({"id": id, "source": "cvm.cloud.tencent", "type": "cvm:ErrorEvent:PingUnreachable", "subject": "ins-1", "status": "1"});
        sent.push((id, Instant::now()));
        let (http, url) = (http.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let r = http.post(&url).header("content-type", "application/json").body(body.to_string()).send().await;
            assert!(r.is_ok_and(|r| r.status().is_success()));
        }));
    }
    for t in tasks {
        t.await.expect("send");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let arrived = |a: &Arrivals| {
        let a = a.lock().expect("lock");
        sent.iter().all(|(id, _)| a.contains_key(id))
    };
    while !arrived(arrivals) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = arrivals.lock().expect("lock").clone();
    let first = sent.first().map(|(_, t)| *t);
    let last = sent.iter().filter_map(|(id, _)| got.get(id)).max().copied();
    let carried = match (first, last) {
        (Some(f), Some(l)) => sent.len() as f64 / l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let mut ms: Vec<f64> =
        sent.iter().filter_map(|(id, t)| got.get(id).map(|r| r.duration_since(*t).as_secs_f64() * 1e3)).collect();
    assert_eq!(ms.len(), sent.len(), "every event reached the robot within 120 s");
    ms.sort_by(f64::total_cmp);
    (ms, carried)
}

fn main() {
    // Expressions run in sandbox processes started from this executable, as in `magpie serve`.
    magpie_sandbox::enter_if_child();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let arrivals: Arrivals = Arc::default();
        let webhook = robot(arrivals.clone()).await;
        let config = ConfigDocument::from_yaml(&format!(
            r#"
connections: [{{name: bench-wecom, platform: wecom, webhook: "{webhook}", rate: unlimited}}]
flows:
  - name: to-robot
    steps:
      - robot: {{connection: bench-wecom, content: "{{{{ payload.id }}}}"}}
rules:
  - {{name: all-cvm, pattern: {{source: [cvm.cloud.tencent]}}, targets: [{{flow: to-robot}}]}}
"#
        ))
        .expect("config");
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = ServerOptions {
            data_dir: dir.path().to_path_buf(),
            config: Some(config),
            sandbox: Some(magpie_sandbox::SandboxOptions::current_exe().expect("exe")),
            ..ServerOptions::default()
        };
        let state = AppState::open(&opts, Arc::new(|_: &str| None)).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/v1/buses/default/events", listener.local_addr().expect("addr"));
        tokio::spawn(magpie_server::run(state, listener, std::future::pending()));
        println!("event → robot request latency, single-event PutEvents at a steady rate\n");
        println!("| events/s | events | p50 ms | p90 ms | p99 ms | max ms | carried events/s | CPU µs/event |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (rate, seconds) in [(200, 10), (1000, 6), (2000, 4)] {
            let cpu = cpu_seconds();
            let (ms, carried) = run(&url, &arrivals, rate, seconds).await;
            let cpu_per_event = (cpu_seconds() - cpu) / ms.len() as f64 * 1e6;
            println!(
                "| {rate} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {carried:.0} | {cpu_per_event:.0} |",
                ms.len(),
                percentile(&ms, 0.5),
                percentile(&ms, 0.9),
                percentile(&ms, 0.99),
                ms[ms.len() - 1]
            );
        }
    });
}
