//! Alert source throughput: Alertmanager webhook batches (100 alerts per request) into one bus,
//! alerts per second stored, beside Alertmanager's own `POST /api/v2/alerts` on the same machine.
//!
//! ```sh
//! cargo bench -p magpie-server --bench sources
//! ```
//!
//! Magpie runs as in `magpie serve` (SQLite, WAL, `synchronous=FULL`): a request is answered only
//! after every alert of it is one event in the log, committed to disk. Alertmanager
//! (`prometheus-alertmanager`, or `alertmanager`, on `PATH`; skipped when absent) is started with a
//! route to a receiver that sends nothing, so it measures what Alertmanager does with an alert it
//! is given: validate, fingerprint and keep it (in memory; its snapshot to disk is periodic). No
//! Magpie rules are configured: the figure is the adapter and the durable append.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use magpie_server::{AppState, ServerOptions};
use serde_json::{Value, json};

const SECONDS: u64 = 5;
const BATCH: usize = 100;
const SHAPES: [usize; 3] = [1, 4, 16];

/// What a load client posts: a body with `BATCH` alerts, each unique (client, request, index).
type Body = fn(c: usize, n: u64) -> String;

fn labels(c: usize, n: u64, i: usize) -> Value {
    json!({"alertname": "HostDown", "instance": format!("10.{c}.{}.{i}:9100", n % 250), "job": "node",
           "severity": "critical", "seq": format!("{c}-{n}-{i}")})
}

/// Alertmanager's webhook (payload version 4), as Alertmanager sends it to a receiver.
fn webhook(c: usize, n: u64) -> String {
    let alerts: Vec<Value> = (0..BATCH)
        .map(|i| {
            json!({"status": "firing", "labels": labels(c, n, i),
                   "annotations": {"summary": "instance unreachable", "description": "ping failed for 2 minutes"},
                   "startsAt": "2026-12-03T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                   "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0",
                   "fingerprint": format!("{:016x}", (c as u64) << 48 | n << 8 | i as u64)})
        })
        .collect();
    json!({"version": "4", "groupKey": "{}:{alertname=\"HostDown\"}", "truncatedAlerts": 0, "status": "firing",
           "receiver": "magpie", "groupLabels": {"alertname": "HostDown"}, "commonLabels": {"alertname": "HostDown"},
           "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": alerts})
    .to_string()
}

/// Alertmanager's own API (`POST /api/v2/alerts`), as Prometheus sends alerts to Alertmanager.
fn postable(c: usize, n: u64) -> String {
    let alerts: Vec<Value> = (0..BATCH)
        .map(|i| {
            json!({"labels": labels(c, n, i),
                   "annotations": {"summary": "instance unreachable", "description": "ping failed for 2 minutes"},
                   "startsAt": "2026-12-03T10:00:00Z", "generatorURL": "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0"})
        })
        .collect();
    Value::Array(alerts).to_string()
}

/// Alerts per second accepted by `url` from `clients` concurrent senders.
async fn run(url: &str, clients: usize, body: Body) -> f64 {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build().expect("client");
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, url) = (http.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body(c, n))
                    .send()
                    .await
                    .expect("request");
                let status = r.status();
                assert!(status.is_success(), "{status}: {}", r.text().await.unwrap_or_default());
                sent += BATCH as u64;
            }
            sent
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// A started Alertmanager, killed on drop.
struct Alertmanager(Child);

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn alertmanager_binary() -> Option<&'static str> {
    ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok())
}

async fn start_alertmanager(bin: &str, dir: &std::path::Path) -> (Alertmanager, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(&cfg, "route:\n  receiver: none\nreceivers:\n  - name: none\n").expect("config");
    let child = Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start alertmanager");
    let am = Alertmanager(child);
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{base}/-/ready")).await.is_ok_and(|r| r.status().is_success()) {
            return (am, format!("{base}/api/v2/alerts"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("Alertmanager did not become ready on {base}");
}

fn main() {
    // Expressions run in sandbox processes started from this executable, as in `magpie serve`.
    magpie_sandbox::enter_if_child();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = ServerOptions {
            data_dir: dir.path().join("magpie"),
            sandbox: Some(magpie_sandbox::SandboxOptions::current_exe().expect("exe")),
            ..ServerOptions::default()
        };
        std::fs::create_dir_all(&opts.data_dir).expect("data dir");
        let state = AppState::open(&opts, Arc::new(|_: &str| None)).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let magpie = format!("http://{}/v1/buses/default/sources/alertmanager", listener.local_addr().expect("addr"));
        tokio::spawn(magpie_server::run(state, listener, std::future::pending()));

        let am = match alertmanager_binary() {
            Some(bin) => Some(start_alertmanager(bin, dir.path()).await),
            None => {
                eprintln!(
                    "Alertmanager is not installed (apt-get install prometheus-alertmanager): its column is left out"
                );
                None
            }
        };
        println!("{BATCH} alerts per request, {SECONDS} s each\n");
        println!("| clients | Magpie webhook adapter, stored alerts/s | Alertmanager POST /api/v2/alerts, alerts/s |");
        println!("|---:|---:|---:|");
        for clients in SHAPES {
            let ours = run(&magpie, clients, webhook).await;
            let theirs = match &am {
                Some((_, url)) => format!("{:.0}", run(url, clients, postable).await),
                None => "—".to_string(),
            };
            println!("| {clients} | {ours:.0} | {theirs} |");
        }
    });
}
