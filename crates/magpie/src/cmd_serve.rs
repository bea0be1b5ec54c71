//! `magpie serve` and `magpie robots`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use clap::Args;
use magpie_core::{ConfigDocument, EventLimits};
use magpie_robot_sim::{Robot, Simulator, token_of};
use magpie_server::{AppState, ServerOptions};

use crate::{Exit, invalid};

/// The demo configuration: the seed walkthrough (examples/demo/magpie.yaml).
pub const DEMO_CONFIG: &str = include_str!("../../../examples/demo/magpie.yaml");

/// Arguments of `magpie serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// A configuration file (buses, connections, flows, rules) applied at start-up.
    #[arg(long, env = "MAGPIE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the embedded database lives.
    #[arg(long, env = "MAGPIE_DATA_DIR", default_value = "magpie-data")]
    data_dir: PathBuf,
    /// The API's address.
    #[arg(long, env = "MAGPIE_LISTEN", default_value = "127.0.0.1:7480")]
    listen: String,
    /// Load the seed walkthrough's configuration and start the robot simulator beside the server.
    #[arg(long)]
    demo: bool,
    /// The robot simulator's address (with --demo).
    #[arg(long, default_value = "127.0.0.1:7481")]
    robots_listen: String,
    /// Largest event accepted, in bytes.
    #[arg(long, default_value_t = magpie_core::event::DEFAULT_MAX_EVENT_BYTES)]
    max_event_bytes: usize,
    /// Flow runs in parallel.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The URL users reach this server at, for the links in digests (default: http://LISTEN).
    #[arg(long, env = "MAGPIE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Sandbox processes evaluating expressions at once (default: one per core, at least 2).
    #[arg(long, env = "MAGPIE_EXPRESSION_PROCESSES")]
    expression_processes: Option<usize>,
    /// The region filled into events that carry none (Tencent's PutEvents sends it beside the
    /// events, not in them), on buses that set no `region` of their own.
    #[arg(long, env = "MAGPIE_REGION")]
    region: Option<String>,
}

/// Arguments of `magpie robots`.
#[derive(Args)]
pub struct RobotsArgs {
    /// The simulator's address.
    #[arg(long, default_value = "127.0.0.1:7481")]
    listen: String,
    /// Register the robots of this configuration's connections (default: the demo's).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn read_config(path: &PathBuf) -> Result<ConfigDocument, Exit> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display())).map_err(invalid)?;
    ConfigDocument::from_yaml(&text).map_err(|e| invalid(anyhow!("{}: {e}", path.display())))
}

/// Merges `b` into `a` (objects of `b` replace those of `a` with the same name).
fn merge(mut a: ConfigDocument, b: ConfigDocument) -> ConfigDocument {
    a.buses.retain(|x| !b.buses.iter().any(|y| y.name == x.name));
    a.connections.retain(|x| !b.connections.iter().any(|y| y.name == x.name));
    a.flows.retain(|x| !b.flows.iter().any(|y| y.name == x.name));
    a.rules.retain(|x| !b.rules.iter().any(|y| y.name == x.name && y.bus == x.bus));
    a.buses.extend(b.buses);
    a.connections.extend(b.connections);
    a.flows.extend(b.flows);
    a.rules.extend(b.rules);
    a
}

/// The robots behind a configuration's connections, for the simulator.
pub fn robots_of(doc: &ConfigDocument) -> Vec<Robot> {
    let env = |k: &str| std::env::var(k).ok();
    doc.connections
        .iter()
        .filter_map(|c| {
            let webhook = magpie_core::env::resolve(&c.webhook, env).ok()?;
            let secret = match &c.secret {
                Some(s) => Some(magpie_core::env::resolve(s, env).ok()?),
                None => None,
            };
            Some(Robot {
                secret,
                keywords: c.keywords.clone(),
                ..Robot::new(c.platform, token_of(c.platform, &webhook)?)
            })
        })
        .collect()
}

async fn start_simulator(listen: &str, robots: Vec<Robot>) -> Result<(), Exit> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the robot simulator to {listen}"))?;
    let sim = Simulator::new();
    for r in robots {
        sim.register(r);
    }
    let addr = listener.local_addr()?;
    tracing::info!(%addr, robots = sim.robots().len(), "robot simulator listening (WeCom, DingTalk, Feishu/Lark paths; GET /_sim/messages)");
    tokio::spawn(async move {
        if let Err(e) = magpie_robot_sim::serve(listener, sim, shutdown_signal()).await {
            tracing::error!(error = %e, "robot simulator stopped");
        }
    });
    Ok(())
}

/// `magpie serve`.
pub async fn serve(args: ServeArgs, token: Option<String>) -> Result<u8, Exit> {
    init_logging();
    let mut config = None;
    let mut demo_robots = None;
    if args.demo {
        // The demo's webhooks point at the simulator wherever it listens.
        let text = DEMO_CONFIG.replace("http://127.0.0.1:7481/", &format!("http://{}/", args.robots_listen));
        let demo = ConfigDocument::from_yaml(&text).map_err(|e| anyhow!("the built-in demo configuration: {e}"))?;
        demo_robots = Some(robots_of(&demo));
        config = Some(demo);
    }
    if let Some(path) = &args.config {
        let doc = read_config(path)?;
        config = Some(match config {
            Some(demo) => merge(demo, doc),
            None => doc,
        });
    }
    let mut sandbox = magpie_sandbox::SandboxOptions::current_exe()
        .map_err(|e| Exit(1, anyhow!("finding this executable, to start expression sandboxes from: {e}")))?;
    if let Some(n) = args.expression_processes {
        if n == 0 {
            return Err(invalid(anyhow!("--expression-processes: must be at least 1")));
        }
        sandbox.processes = n;
    }
    let opts = ServerOptions {
        data_dir: args.data_dir.clone(),
        config,
        limits: EventLimits { max_bytes: args.max_event_bytes, ..EventLimits::default() },
        token: token.filter(|t| !t.is_empty()),
        concurrency: args.concurrency,
        public_url: args.public_url.filter(|u| !u.is_empty()),
        sandbox: Some(sandbox),
        region: args.region.filter(|r| !r.is_empty()),
        ..ServerOptions::default()
    };
    let env: magpie_server::EnvLookup = Arc::new(|k: &str| std::env::var(k).ok());
    let state = AppState::open(&opts, env).await.map_err(|e| match e {
        magpie_server::ServerError::Config(c) => invalid(anyhow!("{}", c.message)),
        other => Exit(1, other.into()),
    })?;
    // The simulator starts once the data directory is this server's (a second server on it stops
    // before taking the simulator's port).
    if let Some(robots) = demo_robots {
        start_simulator(&args.robots_listen, robots).await?;
    }
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "magpie listening");
    if args.demo {
        // The hints work as printed: `--server` when the API is not where the CLI looks by default.
        let server =
            if addr.to_string() == "127.0.0.1:7480" { String::new() } else { format!(" --server http://{addr}") };
        eprintln!(
            "\n  Magpie demo: API http://{addr}, robot simulator http://{}\n  Try:  magpie{server} events send-template cvm:GuestReboot\n        curl -s http://{}/_sim/messages\n",
            args.robots_listen, args.robots_listen
        );
    }
    let stop = async {
        shutdown_signal().await;
        tracing::info!("shutting down");
    };
    magpie_server::run(state, listener, stop).await.map_err(|e| Exit(1, e.into()))?;
    Ok(0)
}

/// `magpie robots`.
pub async fn robots(args: RobotsArgs) -> Result<u8, Exit> {
    init_logging();
    let doc = match &args.config {
        Some(path) => read_config(path)?,
        None => ConfigDocument::from_yaml(DEMO_CONFIG).map_err(|e| anyhow!("the built-in demo configuration: {e}"))?,
    };
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let sim = Simulator::new();
    for r in robots_of(&doc) {
        sim.register(r);
    }
    tracing::info!(addr = %listener.local_addr()?, robots = sim.robots().len(), "robot simulator listening");
    magpie_robot_sim::serve(listener, sim, shutdown_signal()).await?;
    Ok(0)
}
