//! `magpie flow run`: a flow over an event, offline. Prints each step and the exact request of
//! each message it would send; sends nothing unless `--send`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, anyhow};
use clap::Args;
use magpie_connectors::{Destination, build_request, redact_url};
use magpie_core::config::{ConnectionSpec, FlowSpec, LogLevel};
use magpie_core::{ConfigDocument, ErrorType, Retry};
use magpie_flow::{Checkpoint, Effects, Flow, Message, RunOutcome, Runner, SendRequest, SendResult, StepRecord};
use magpie_server::delivery;
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
        let Some(conn) = self.connections.get(&req.connection) else {
            let m = &req.message;
            println!(
                "    would send via {:?} (not defined here): {}",
                req.connection,
                json!({"kind": m.kind, "title": m.title, "content": m.content})
            );
            return SendResult::Delivered;
        };
        let env = |k: &str| std::env::var(k).ok();
        if !self.send {
            // A dry run needs no real secrets: unresolved references are shown as they are.
            let resolve = |s: &str| magpie_core::env::resolve(s, env).unwrap_or_else(|_| s.to_string());
            let dest = Destination {
                platform: conn.platform,
                webhook: resolve(&conn.webhook),
                secret: conn.secret.as_deref().map(resolve),
                keywords: conn.keywords.clone(),
            };
            return match build_request(&dest, &req.message, magpie_core::now_ms()) {
                Ok(http) => {
                    println!(
                        "    would POST {}\n    {}",
                        redact_url(&http.url),
                        serde_json::to_string(&http.body).unwrap_or_default()
                    );
                    SendResult::Delivered
                }
                Err(e) => SendResult::Failed {
                    error_type: ErrorType::new(conn.platform.error_namespace(), "BAD_REQUEST"),
                    retry: Retry::No,
                    retry_after: None,
                    message: e.to_string(),
                },
            };
        }
        let dest = match delivery::destination(conn, &env) {
            Ok(d) => d,
            Err(reason) => return delivery::config_failure(&conn.name, &reason),
        };
        let a =
            delivery::deliver(&self.http, &dest, &req.message, conn.timeout.unwrap_or(delivery::DEFAULT_TIMEOUT)).await;
        println!("    POST {} (attempt {})", a.url, req.attempt);
        if let (Some(status), Some(body)) = (a.status_code, &a.response) {
            println!("    → HTTP {status} {body}");
        }
        if let SendResult::Failed { error_type, message, .. } = &a.result {
            println!("    → {error_type}: {message}");
        }
        a.result
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
