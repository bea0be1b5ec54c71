//! The real-limit storm: 10,000 alerts within one minute to one WeCom robot that takes 20 a
//! minute (the robot simulator enforcing the platform's window), through the outbox.
//!
//! ```sh
//! cargo bench -p magpie-server --bench storm
//! ```
//!
//! Reports messages per minute, refused sends (must be 0), time to the first message, time until
//! the queue is empty, and whether every alert is accounted for (alone, or in a digest's list).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use magpie_core::ConfigDocument;
use magpie_core::config::Platform;
use magpie_robot_sim::{Robot, Simulator};
use magpie_server::{AppState, ServerOptions};
use serde_json::{Value, json};

const ALERTS: usize = 10_000;
const BATCH: usize = 100;
const STORM: Duration = Duration::from_secs(60);

fn main() {
    // Expressions run in sandbox processes started from this executable, as in `magpie serve`.
    magpie_sandbox::enter_if_child();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let sim = Simulator::new();
        sim.register(Robot::new(Platform::Wecom, "storm-bench"));
        let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let sim_addr = sim_listener.local_addr().expect("addr");
        tokio::spawn(magpie_robot_sim::serve(sim_listener, sim.clone(), std::future::pending()));
        let config = ConfigDocument::from_yaml(&format!(
            r#"
connections:
  - {{name: ops, platform: wecom, webhook: "http://{sim_addr}/cgi-bin/webhook/send?key=storm-bench"}}
flows:
  - name: alert
    steps:
      - robot:
          connection: ops
          content: "<font color=\"warning\">{{{{ payload.type }}}}</font>\n> 实例 ID:<font color=\"comment\">{{{{ payload.subject }}}}</font>"
rules:
  - {{name: all-cvm, pattern: {{source: [cvm.cloud.tencent]}}, targets: [{{flow: alert}}]}}
"#
        ))
        .expect("config");
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = ServerOptions { data_dir: dir.path().to_path_buf(), config: Some(config), sandbox: Some(magpie_sandbox::SandboxOptions::current_exe().expect("exe")), ..ServerOptions::default() };
        let state = AppState::open(&opts, Arc::new(|_: &str| None)).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(magpie_server::run(state, listener, std::future::pending()));
        let http = reqwest::Client::new();

        // The storm: 100 alerts every 600 ms for a minute.
        let started = Instant::now();
        let start_ms = magpie_core::now_ms();
        let batches = ALERTS / BATCH;
        let every = STORM / batches as u32;
        for b in 0..batches {
            tokio::time::sleep_until(tokio::time::Instant::from_std(started + every * b as u32)).await;
            let entries: Vec<Value> = (0..BATCH)
                .map(|i| {
                    let n = b * BATCH + i;
                    json!({"id": format!("a-{n:05}"), "source": "cvm.cloud.tencent", "type": "cvm:ErrorEvent:PingUnreachable",
                           "subject": format!("ins-{n:05}"), "status": "1"})
                })
                .collect();
            let r = http
                .post(format!("{base}/v1/buses/default/events"))
                .header("content-type", "application/json")
                .body(json!({"entries": entries}).to_string())
                .send()
                .await
                .expect("put");
            assert!(r.status().is_success());
        }
        let sent_in = started.elapsed();
        // Until every alert is told.
        let deadline = Instant::now() + Duration::from_secs(300);
        let emptied = loop {
            let o: Value = http.get(format!("{base}/v1/connections/ops/outbox")).send().await.expect("outbox").json().await.expect("json");
            let jobs_done = !sim.messages().is_empty() && o["depth"] == 0;
            if jobs_done {
                // The last runs may still be routing: wait until nothing is left anywhere.
                let told = told(&http, &base, &sim).await;
                if told.len() == ALERTS {
                    break started.elapsed();
                }
            }
            assert!(Instant::now() < deadline, "the storm was not told within 5 minutes");
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let messages = sim.messages();
        let refused = sim.answered().iter().filter(|a| a.answer["errcode"] != 0).count();
        let first = messages.first().map(|m| m.received_at - start_ms).unwrap_or(-1);
        let mut per_minute = vec![0usize; 1 + (emptied.as_secs() / 60) as usize];
        for m in &messages {
            let minute = ((m.received_at - start_ms).max(0) / 60_000) as usize;
            if minute < per_minute.len() {
                per_minute[minute] += 1;
            }
        }
        let digests = messages.iter().filter(|m| m.body.to_string().contains("/v1/digests/")).count();
        let max_window = {
            let t: Vec<i64> = messages.iter().map(|m| m.received_at).collect();
            (0..t.len()).map(|i| t[i..].iter().take_while(|u| **u < t[i] + 60_000).count()).max().unwrap_or(0)
        };
        let told = told(&http, &base, &sim).await;
        println!("real-limit storm: {ALERTS} alerts sent within {sent_in:.1?} to one WeCom robot (20/min)\n");
        println!("| measure | value |");
        println!("|---|---:|");
        println!("| messages to the robot | {} ({digests} digests) |", messages.len());
        for (i, n) in per_minute.iter().enumerate() {
            println!("| messages in minute {} | {n} |", i + 1);
        }
        println!("| most messages in any 60 s | {max_window} |");
        println!("| refused sends (45009) | {refused} |");
        println!("| time to the first message | {first} ms |");
        println!("| time until the queue is empty | {:.1} s |", emptied.as_secs_f64());
        println!("| alerts accounted for | {} of {ALERTS} |", told.len());
        assert_eq!(refused, 0);
        assert_eq!(told.len(), ALERTS);
    });
}

/// The alerts the robot was told: alone (its subject in the text) or listed by a digest.
async fn told(http: &reqwest::Client, base: &str, sim: &Simulator) -> BTreeSet<usize> {
    let mut told = BTreeSet::new();
    for m in sim.messages() {
        let content = m.body["markdown"]["content"].as_str().unwrap_or_default().to_string();
        if let Some(at) = content.find("/v1/digests/") {
            let id = content[at + "/v1/digests/".len()..].trim_end_matches(')');
            let d: Value =
                http.get(format!("{base}/v1/digests/{id}")).send().await.expect("digest").json().await.expect("json");
            for e in d["events"].as_array().into_iter().flatten() {
                if let Some(n) = e.as_str().and_then(|s| s.strip_prefix("a-")).and_then(|s| s.parse().ok()) {
                    told.insert(n);
                }
            }
        } else if let Some(at) = content.find("ins-")
            && let Ok(n) = content[at + 4..at + 9].parse()
        {
            told.insert(n);
        }
    }
    told
}
