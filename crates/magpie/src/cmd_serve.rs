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
    /// Hosts or networks connections may send to besides the robot platforms' hosts (adds to
    /// magpie.yaml's outbound.allow): a host (hooks.example.com, *.example.com), a network
    /// (10.0.0.0/8) or an address. Repeat, or separate with commas.
    #[arg(long, env = "MAGPIE_OUTBOUND_ALLOW", value_delimiter = ',')]
    outbound_allow: Vec<String>,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key).
    #[arg(long, env = "MAGPIE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "MAGPIE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long a client may take to send a request's headers (or its TLS handshake).
    #[arg(long, default_value = "10s", value_parser = duration)]
    header_timeout: std::time::Duration,
    /// How long a request body may stall between two reads.
    #[arg(long, default_value = "30s", value_parser = duration)]
    body_timeout: std::time::Duration,
    /// Connections served at once (more wait to be accepted).
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Requests handled at once (more are answered 503 with Retry-After).
    #[arg(long, default_value_t = 512)]
    max_requests: usize,
}

fn duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (write 10s, 500ms, 1m)"))?;
    if d.is_zero() { Err("must be more than 0".into()) } else { Ok(d) }
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

/// The simulator's host as an outbound allowance (its address, or its host name).
fn sim_host(listen: &str) -> String {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(a) => a.ip().to_string(),
        Err(_) => listen.rsplit_once(':').map(|(h, _)| h).unwrap_or(listen).to_string(),
    }
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
        let mut demo = ConfigDocument::from_yaml(&text).map_err(|e| anyhow!("the built-in demo configuration: {e}"))?;
        // Its connections point at the simulator, wherever it listens.
        demo.outbound = None;
        demo_robots = Some(robots_of(&demo));
        config = Some(demo);
    }
    let mut outbound = magpie_core::auth::OutboundSpec::default();
    if args.demo {
        // The demo's connections point at the simulator.
        outbound.allow.push(sim_host(&args.robots_listen));
    }
    let mut auth = magpie_core::auth::AuthSpec::default();
    if let Some(path) = &args.config {
        let mut doc = read_config(path)?;
        if let Some(a) = doc.auth.take() {
            a.validate().map_err(|e| invalid(anyhow!("{}: {e}", path.display())))?;
            auth = a;
        }
        if let Some(o) = doc.outbound.take() {
            outbound.allow.extend(o.allow);
            outbound.allow_self |= o.allow_self;
        }
        config = Some(match config {
            Some(demo) => merge(demo, doc),
            None => doc,
        });
    }
    outbound.allow.extend(args.outbound_allow.iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()));
    let listen_addr = tokio::net::lookup_host(&args.listen).await.ok().and_then(|mut a| a.next());
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
        auth,
        outbound,
        secret_key: std::env::var("MAGPIE_SECRET_KEY").ok().filter(|k| !k.is_empty()),
        limits_http: magpie_server::serve::HttpLimits {
            header_timeout: args.header_timeout,
            body_timeout: args.body_timeout,
            max_connections: args.max_connections,
            max_requests: args.max_requests,
        },
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(magpie_server::serve::TlsFiles { cert, key }),
            _ => None,
        },
        listen: listen_addr,
        ..ServerOptions::default()
    };
    let open_to_all = listen_addr.is_some_and(|a| !a.ip().is_loopback());
    let env: magpie_server::EnvLookup = Arc::new(|k: &str| std::env::var(k).ok());
    let state = AppState::open(&opts, env).await.map_err(|e| match e {
        magpie_server::ServerError::Config(c) => invalid(anyhow!("{}", c.message)),
        magpie_server::ServerError::Setting(s) => invalid(anyhow!("{s}")),
        other => Exit(1, other.into()),
    })?;
    if open_to_all && !state.tokens.enabled() {
        tracing::warn!(listen = %args.listen, "listening beyond loopback without any token: anyone who reaches this port may change Magpie (give --token or auth.tokens)");
    }
    // The simulator starts once the data directory is this server's (a second server on it stops
    // before taking the simulator's port).
    if let Some(robots) = demo_robots {
        start_simulator(&args.robots_listen, robots).await?;
    }
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, %scheme, data_dir = %args.data_dir.display(), "magpie listening");
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
