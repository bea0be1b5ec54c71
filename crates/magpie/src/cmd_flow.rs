//! `magpie flow run`: a flow over an event, offline. Prints each step and the exact request of
//! each message it would send; sends nothing unless `--send`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, anyhow};
use clap::Args;
use magpie_connectors::{Answer, Destination, build_request, classify, redact_url, transport_failure};
use magpie_core::config::{ConnectionSpec, FlowSpec, LogLevel};
use magpie_core::{ConfigDocument, ErrorType, Retry};
use magpie_flow::{Checkpoint, Effects, Flow, Message, RunOutcome, Runner, SendRequest, SendResult, StepRecord};
use serde_json::{Value, json};

use crate::{Exit, invalid};

/// Arguments of `magpie flow run`.
#[derive(Args)]
pub struct RunArgs {
    /// A flow (YAML/JSON), or a configuration document holding flows and connections.
    file: PathBuf,
    /// The event (JSON) given to the flow as its payload.
    #[arg(long, conflicts_with = "template", required_unless_present = "template")]
    event: Option<PathBuf>,
    /// Use a built-in event template instead of --event.
    #[arg(long)]
    template: Option<String>,
    /// Which flow of the document to run (when it holds several).
    #[arg(long)]
    flow: Option<String>,
    /// A configuration document to take connections from (default: FILE itself).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Really send the messages (secrets from the environment), retrying as the flow says.
    #[arg(long)]
    send: bool,
}

struct Offline {
    connections: BTreeMap<String, ConnectionSpec>,
    send: bool,
    http: reqwest::Client,
    cp: Mutex<Checkpoint>,
}

impl Effects for Offline {
    async fn send(&self, req: SendRequest) -> SendResult {
        let result = self.try_send(&req).await;
        let mut cp = self.cp.lock().unwrap_or_else(|p| p.into_inner());
        cp.attempts.insert(req.ordinal, req.attempt);
        if result == SendResult::Delivered {
            cp.delivered.insert(req.ordinal);
        }
        result
    }

    async fn record(&self, rec: StepRecord) {
        let detail = match rec.detail {
            Value::Object(ref o) if o.is_empty() => String::new(),
            ref d => d.to_string(),
        };
        println!("[{}] {:<40} {:<7} {detail}", rec.ordinal, rec.path, rec.status);
        self.cp.lock().unwrap_or_else(|p| p.into_inner()).recorded.insert(rec.ordinal);
    }

    fn log(&self, level: LogLevel, category: &str, message: &str) {
        println!("    log {} [{category}] {message}", level.as_str());
    }

    fn now_ms(&self) -> i64 {
        magpie_core::now_ms()
    }
}

impl Offline {
    async fn try_send(&self, req: &SendRequest) -> SendResult {
        let fail = |ns: &str, kind: &str, retry, message: String| SendResult::Failed {
            error_type: ErrorType::new(ns, kind),
            retry,
            retry_after: None,
            message,
        };
        let Some(conn) = self.connections.get(&req.connection) else {
            println!(
                "    would send via {:?} (not defined here): {}",
                req.connection,
                json!({"kind": req.message.kind, "title": req.message.title, "content": req.message.content})
            );
            return SendResult::Delivered;
        };
        let env = |k: &str| std::env::var(k).ok();
        let resolve = |s: &str| magpie_core::env::resolve(s, env);
        let (webhook, secret) = if self.send {
            match (resolve(&conn.webhook), conn.secret.as_deref().map(resolve).transpose()) {
                (Ok(w), Ok(s)) => (w, s),
                (Err(r), _) | (_, Err(r)) => {
                    return fail("FLOW", "CONFIG", Retry::No, format!("connection {:?}: {r}", conn.name));
                }
            }
        } else {
            // A dry run needs no real secrets: unresolved references are shown as they are.
            (
                resolve(&conn.webhook).unwrap_or_else(|_| conn.webhook.clone()),
                conn.secret.as_deref().map(|s| resolve(s).unwrap_or_else(|_| s.to_string())),
            )
        };
        let ns = conn.platform.error_namespace();
        let dest = Destination { platform: conn.platform, webhook, secret, keywords: conn.keywords.clone() };
        let http = match build_request(&dest, &req.message, magpie_core::now_ms()) {
            Ok(h) => h,
            Err(e) => return fail(ns, "BAD_REQUEST", Retry::No, e.to_string()),
        };
        if !self.send {
            println!(
                "    would POST {}\n    {}",
                redact_url(&http.url),
                serde_json::to_string(&http.body).unwrap_or_default()
            );
            return SendResult::Delivered;
        }
        println!("    POST {} (attempt {})", redact_url(&http.url), req.attempt);
        let sent = self
            .http
            .post(&http.url)
            .json(&http.body)
            .timeout(conn.timeout.unwrap_or(std::time::Duration::from_secs(10)))
            .send()
            .await;
        match sent {
            Err(e) => {
                let f = transport_failure(e.is_timeout(), &e.without_url().to_string());
                println!("    → {}: {}", f.kind, f.message);
                SendResult::Failed {
                    error_type: ErrorType::new(ns, f.kind),
                    retry: f.retry,
                    retry_after: None,
                    message: f.message,
                }
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers: Vec<(String, String)> = resp
                    .headers()
                    .iter()
                    .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                    .collect();
                let body = resp.bytes().await.unwrap_or_default();
                println!("    → HTTP {status} {}", String::from_utf8_lossy(&body));
                match classify(conn.platform, status, &headers, &body) {
                    Answer::Delivered => SendResult::Delivered,
                    Answer::Failed(f) => SendResult::Failed {
                        error_type: ErrorType::new(ns, f.kind),
                        retry: f.retry,
                        retry_after: f.retry_after,
                        message: f.message,
                    },
                }
            }
        }
    }
}

fn load_doc(path: &PathBuf) -> Result<(Value, String), Exit> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display())).map_err(invalid)?;
    let v: Value = serde_saphyr::from_str(&text).map_err(|e| invalid(anyhow!("{}: {e}", path.display())))?;
    Ok((v, text))
}

/// `magpie flow run`.
pub async fn run(args: RunArgs) -> Result<u8, Exit> {
    let (v, text) = load_doc(&args.file)?;
    let at = |e: magpie_core::ConfigError| invalid(anyhow!("{}: {e}", args.file.display()));
    let (spec, mut connections): (FlowSpec, Vec<ConnectionSpec>) =
        if v.get("flows").is_some() || v.get("connections").is_some() {
            let doc = ConfigDocument::from_yaml(&text).map_err(at)?;
            let spec = match &args.flow {
                Some(name) => doc
                    .flows
                    .iter()
                    .find(|f| &f.name == name)
                    .cloned()
                    .ok_or_else(|| invalid(anyhow!("no flow {name:?} in {}", args.file.display())))?,
                None if doc.flows.len() == 1 => doc.flows[0].clone(),
                None => {
                    let names: Vec<&str> = doc.flows.iter().map(|f| f.name.as_str()).collect();
                    return Err(invalid(anyhow!(
                        "{} holds {} flows; choose one with --flow ({})",
                        args.file.display(),
                        names.len(),
                        names.join(", ")
                    )));
                }
            };
            (spec, doc.connections)
        } else {
            (magpie_core::config::from_value(v).map_err(at)?, Vec::new())
        };
    if let Some(cfg) = &args.config {
        let (_, text) = load_doc(cfg)?;
        let doc = ConfigDocument::from_yaml(&text).map_err(|e| invalid(anyhow!("{}: {e}", cfg.display())))?;
        connections.extend(doc.connections);
    }
    for (i, c) in connections.iter().enumerate() {
        c.validate(&format!("connections[{i}]")).map_err(at)?;
    }
    spec.validate("flow", &|_| true).map_err(at)?;
    let flow = Flow::compile(&spec).map_err(|e| invalid(anyhow!("{}: {e}", args.file.display())))?;
    let event = match (&args.event, &args.template) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))
                .map_err(invalid)?;
            serde_json::from_str::<Value>(&text)
                .map_err(|e| invalid(anyhow!("{}: not valid JSON: {e}", path.display())))?
        }
        (None, Some(name)) => magpie_core::templates::find(name)
            .ok_or_else(|| invalid(anyhow!("no template {name:?}; see `magpie events templates`")))?
            .instantiate(&uuid::Uuid::new_v4().to_string(), magpie_core::now_ms()),
        (None, None) => return Err(invalid(anyhow!("give --event FILE or --template NAME"))),
    };
    let id = event.get("id").and_then(Value::as_str).unwrap_or("offline").to_string();
    let mut msg = Message::new(id, event.clone());
    msg.attrs.insert("flow".into(), json!(spec.name));
    msg.attrs.insert("source".into(), event.get("source").cloned().unwrap_or(Value::Null));
    msg.attrs.insert("type".into(), event.get("type").cloned().unwrap_or(Value::Null));
    let fx = Offline {
        connections: connections.into_iter().map(|c| (c.name.clone(), c)).collect(),
        send: args.send,
        http: reqwest::Client::new(),
        cp: Mutex::new(Checkpoint::default()),
    };
    println!("flow {} over event {}{}", spec.name, msg.id, if args.send { "" } else { " (dry run: nothing is sent)" });
    loop {
        let cp = fx.cp.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match Runner::run(&flow, msg.clone(), &fx, Some(cp)).await {
            RunOutcome::Completed(m) => {
                println!("completed; vars: {}", Value::Object(m.vars));
                return Ok(0);
            }
            RunOutcome::Failed { error, .. } => {
                println!("failed: {error}");
                return Ok(1);
            }
            RunOutcome::Suspended { retry_at_ms, last_error } => {
                let wait = (retry_at_ms - magpie_core::now_ms()).max(0) as u64;
                println!("    {last_error}; retrying in {wait} ms");
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
        }
    }
}
