//! `magpie flow run`: a flow over an event, offline. Prints each step and the exact request of
//! each message it would send; sends nothing unless `--send`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Args;
use magpie_connectors::{Destination, build_request, redact_url};
use magpie_core::config::{ConnectionSpec, FlowSpec, LogLevel};
use magpie_core::{ConfigDocument, ErrorType, Retry};
use magpie_flow::{Effects, Flow, FlowError, Message, RunOutcome, Runner, SendRequest, SendResult, StepRecord};
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
    /// With --send: hosts or networks the connections may reach besides the platforms' hosts
    /// (as `magpie serve --outbound-allow`; the files' `outbound.allow` counts too).
    #[arg(long, value_delimiter = ',')]
    outbound_allow: Vec<String>,
}

struct Offline {
    connections: BTreeMap<String, ConnectionSpec>,
    send: bool,
    http: reqwest::Client,
    egress: std::sync::Arc<magpie_server::egress::Egress>,
    sandbox: magpie_sandbox::Sandbox,
}

impl Effects for Offline {
    async fn send(&self, req: SendRequest) -> SendResult {
        self.try_send(&req).await
    }

    async fn record(&self, rec: StepRecord) {
        let detail = match rec.detail {
            Value::Object(ref o) if o.is_empty() => String::new(),
            ref d => d.to_string(),
        };
        println!("[{}] {:<40} {:<7} {detail}", rec.ordinal, rec.path, rec.status);
    }

    fn log(&self, level: LogLevel, category: &str, message: &str) {
        println!("    log {} [{category}] {message}", level.as_str());
    }

    fn now_ms(&self) -> i64 {
        magpie_core::now_ms()
    }

    async fn eval(&self, expr: &magpie_flow::Expr, msg: &Message) -> Result<Value, String> {
        self.sandbox.eval(expr, msg).await
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
            return SendResult::Delivered { digest: None };
        };
        let env = |k: &str| std::env::var(k).ok();
        let ns = conn.platform.error_namespace();
        let failed = |f: &magpie_connectors::Failure| {
            SendResult::Failed(FlowError::new(f.kind.in_namespace(ns), delivery::describe(f)))
        };
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
                    SendResult::Delivered { digest: None }
                }
                Err(e) => SendResult::Failed(FlowError::new(ErrorType::new(ns, "BAD_REQUEST"), e.to_string())),
            };
        }
        let dest = match delivery::destination(conn, &env) {
            Ok(d) => d,
            Err(reason) => return failed(&delivery::config_failure(&conn.name, &reason)),
        };
        // Sent directly, retried as the step's policy says (no outbox here: one message).
        let timeout = conn.timeout.unwrap_or(delivery::DEFAULT_TIMEOUT);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let prepared = match delivery::prepare(&dest, &req.message, magpie_core::now_ms()) {
                Ok(p) => p,
                Err(f) => return failed(&f),
            };
            println!("    POST {} (attempt {attempt})", prepared.masked_url);
            let a = delivery::send(&self.http, &self.egress, conn.platform, &prepared, timeout).await;
            if let (Some(status), Some(body)) = (a.status_code, &a.response) {
                println!("    → HTTP {status} {body}");
            }
            let Some(f) = a.failure else { return SendResult::Delivered { digest: None } };
            println!("    → {}: {}", f.kind.in_namespace(ns), delivery::describe(&f));
            let allowed = match f.retry {
                Retry::No => 1,
                Retry::Once => req.retry.attempts.min(2),
                Retry::Yes => req.retry.attempts,
            };
            if attempt >= allowed {
                return failed(&f);
            }
            let wait = req.retry.backoff_after(attempt, f.retry_after, attempt as u64);
            println!("    retrying in {} ms", wait.as_millis());
            tokio::time::sleep(wait).await;
        }
    }
}

fn load_doc(path: &PathBuf) -> Result<(Value, String), Exit> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display())).map_err(invalid)?;
    let v = magpie_core::json::parse_yaml(&text).map_err(|e| invalid(anyhow!("{}: {e}", path.display())))?;
    Ok((v, text))
}

/// `magpie flow run`.
pub async fn run(args: RunArgs) -> Result<u8, Exit> {
    let (v, text) = load_doc(&args.file)?;
    let at = |e: magpie_core::ConfigError| invalid(anyhow!("{}: {e}", args.file.display()));
    let mut outbound = magpie_core::auth::OutboundSpec::default();
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
            outbound = doc.outbound.unwrap_or_default();
            (spec, doc.connections)
        } else {
            (magpie_core::config::from_value(v).map_err(at)?, Vec::new())
        };
    if let Some(cfg) = &args.config {
        let (_, text) = load_doc(cfg)?;
        let doc = ConfigDocument::from_yaml(&text).map_err(|e| invalid(anyhow!("{}: {e}", cfg.display())))?;
        connections.extend(doc.connections);
        if let Some(o) = doc.outbound {
            outbound.allow.extend(o.allow);
        }
    }
    outbound.allow.extend(args.outbound_allow.iter().cloned());
    let egress = std::sync::Arc::new(magpie_server::egress::Egress::new(&outbound).map_err(|e| invalid(anyhow!(e)))?);
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
            magpie_core::json::parse_clean(text.as_bytes()).map_err(|e| invalid(anyhow!("{}: {e}", path.display())))?
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
        http: magpie_server::egress::http_client(egress.clone()).map_err(|e| anyhow!(e))?,
        egress,
        sandbox: magpie_sandbox::Sandbox::processes(
            magpie_sandbox::SandboxOptions::current_exe()
                .map_err(|e| Exit(1, anyhow!("finding this executable, to start an expression sandbox from: {e}")))?,
        ),
    };
    println!("flow {} over event {}{}", spec.name, msg.id, if args.send { "" } else { " (dry run: nothing is sent)" });
    match Runner::run(&flow, msg.clone(), &fx, None).await {
        RunOutcome::Completed { message, undelivered } => {
            if undelivered > 0 {
                println!(
                    "completed, but {undelivered} message(s) could not be delivered; vars: {}",
                    Value::Object(message.vars)
                );
                return Ok(1);
            }
            println!("completed; vars: {}", Value::Object(message.vars));
            Ok(0)
        }
        RunOutcome::Failed { error, at, .. } => {
            let at = at.map(|a| format!(" at {}", a.path)).unwrap_or_default();
            println!("failed{at}: {error}");
            Ok(1)
        }
        // Offline sends are answered at once: nothing queues.
        RunOutcome::Parked => Ok(0),
    }
}
