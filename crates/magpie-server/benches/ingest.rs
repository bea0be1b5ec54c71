//! Durable ingest throughput: PutEvents against a real server (SQLite store, WAL,
//! `synchronous=FULL`) over loopback HTTP, events acknowledged only after commit.
//!
//! ```sh
//! cargo bench -p magpie-server --bench ingest
//! ```
//!
//! Two shapes: many clients each sending one event per request, and clients sending batches of 100.
//! No rules are configured, so the router and workers add no load beyond reading the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use magpie_server::{AppState, ServerOptions};
use serde_json::json;

const SECONDS: u64 = 5;

async fn run(url: &str, clients: usize, batch: usize) -> f64 {
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
                let entries: Vec<_> = (0..batch)
                    .map(|i| {
                        n += 1;
                        json!({"source": "cvm.cloud.tencent", "type": "cvm:ErrorEvent:GuestReboot", "subject": format!("ins-{c}-{n}-{i}"),
                               "region": "ap-guangzhou", "status": "-", "data": {"instanceId": format!("ins-{c}-{n}"), "ip": "10.0.0.12"}})
                    })
                    .collect();
                let body = if batch == 1 { entries[0].to_string() } else { json!({"entries": entries}).to_string() };
                let r = http.post(&url).header("content-type", "application/json").body(body).send().await.expect("request");
                assert!(r.status().is_success(), "{}", r.status());
                sent += batch as u64;
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

fn main() {
    // Expressions run in sandbox processes started from this executable, as in `magpie serve`.
    magpie_sandbox::enter_if_child();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = ServerOptions {
            data_dir: dir.path().to_path_buf(),
            sandbox: Some(magpie_sandbox::SandboxOptions::current_exe().expect("exe")),
            ..ServerOptions::default()
        };
        let state = AppState::open(&opts, Arc::new(|_: &str| None)).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/v1/buses/default/events", listener.local_addr().expect("addr"));
        tokio::spawn(magpie_server::run(state, listener, std::future::pending()));
        println!("durable PutEvents over loopback, {SECONDS} s each\n");
        println!("| clients | events per request | events/s |");
        println!("|---:|---:|---:|");
        for (clients, batch) in [(1, 1), (16, 1), (64, 1), (4, 100), (64, 100)] {
            let eps = run(&url, clients, batch).await;
            println!("| {clients} | {batch} | {eps:.0} |");
        }
    });
}
