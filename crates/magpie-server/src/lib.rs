//! The Magpie runtime, one module per stage: the HTTP API (`api`), ingest, the router, the
//! workers that run flows, the outbox that delivers their messages, the archive's sweep and
//! replays, and telemetry.
//!
//! [`app`] builds the axum router over an [`AppState`] (testable with `oneshot`); [`run`] starts
//! the router, workers, outbox and sweep and serves on a listener the caller binds (tests bind
//! port 0).

pub mod alerts;
mod api;
pub mod auth;
mod console;
pub mod delivery;
pub mod egress;
pub mod error;
pub mod ingest;
mod origin;
pub mod outbox;
pub mod replay;
pub mod router;
pub mod runtime;
pub mod secrets;
pub mod serve;
mod sweep;
pub mod telemetry;
mod worker;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use magpie_core::{ConfigDocument, EventLimits};
use magpie_store::{SqliteStore, Store};
use tokio::sync::{Notify, watch};

pub use api::app;
pub use error::ApiError;

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where the embedded database lives.
    pub data_dir: PathBuf,
    /// A configuration applied at start-up (idempotently).
    pub config: Option<ConfigDocument>,
    /// Limits on each event.
    pub limits: EventLimits,
    /// An admin token (`--token`), if set.
    pub token: Option<String>,
    /// More tokens (`auth.tokens` of `magpie.yaml`).
    pub auth: magpie_core::auth::AuthSpec,
    /// Where connections may send (`outbound` of `magpie.yaml`, `--outbound-allow`).
    pub outbound: magpie_core::auth::OutboundSpec,
    /// The key sealing secrets at rest (`MAGPIE_SECRET_KEY`); else the data directory's key file.
    pub secret_key: Option<String>,
    /// Limits on connections and requests.
    pub limits_http: serve::HttpLimits,
    /// TLS certificate and key files (PEM), to serve HTTPS.
    pub tls: Option<serve::TlsFiles>,
    /// The address the server will listen on, known before it binds (the loop check of
    /// connections applied at start); `run` records the bound one otherwise.
    pub listen: Option<std::net::SocketAddr>,
    /// Flow runs in parallel.
    pub concurrency: usize,
    /// How long a claimed job is leased before another worker may take it.
    pub lease: Duration,
    /// The address users reach this server at, for links in digests (default: the listener's).
    pub public_url: Option<String>,
    /// Where expressions' code runs: sandbox processes (what `magpie serve` uses), or, when
    /// `None`, threads of this process — for tests and embedders that have no sandbox
    /// executable; there every budget holds but memory.
    pub sandbox: Option<magpie_sandbox::SandboxOptions>,
    /// The region filled into events that carry none, on buses that set no region of their own.
    pub region: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("magpie-data"),
            config: None,
            limits: EventLimits::default(),
            token: None,
            auth: Default::default(),
            outbound: Default::default(),
            secret_key: None,
            limits_http: serve::HttpLimits::default(),
            tls: None,
            listen: None,
            concurrency: 32,
            lease: Duration::from_secs(120),
            public_url: None,
            sandbox: None,
            region: None,
        }
    }
}

/// Reads an environment variable (secrets' `${ENV}` references).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Everything the handlers and background tasks share.
pub struct AppState {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// The configuration in force.
    pub runtime: runtime::Shared,
    /// Event limits.
    pub limits: EventLimits,
    /// The region of events that carry none, unless their bus sets one.
    pub region: Option<String>,
    /// The API's tokens.
    pub tokens: auth::Tokens,
    /// Wakes a bus's router lane when events arrive on it.
    pub wake_router: router::Wakers,
    /// Wakes the workers when jobs arrive or wake.
    pub wake_workers: Notify,
    /// The drainers of this node's outboxes.
    pub outbox: outbox::Outbox,
    /// This process's identity for leases.
    pub node: String,
    /// Where users reach this server (links in digests).
    pub public_url: OnceLock<String>,
    /// Environment for `${ENV}` references.
    pub env: EnvLookup,
    /// The HTTP client for deliveries.
    pub http: reqwest::Client,
    /// Flow runs in parallel.
    pub concurrency: usize,
    /// Job lease.
    pub lease: Duration,
    /// Turns true when the server stops.
    pub stop: watch::Sender<bool>,
    /// Where expressions' code is evaluated.
    pub sandbox: magpie_sandbox::Sandbox,
    /// The silences that have not ended.
    pub silences: alerts::Silences,
    /// Wakes the silence task when a silence is created or expired.
    pub silences_changed: Notify,
    /// Flow versions that are not live, for the jobs still on them.
    pub flow_versions: runtime::FlowVersions,
    /// The web console's login sessions.
    pub(crate) console_sessions: console::Sessions,
    /// Limits on connections and requests.
    pub http_limits: serve::HttpLimits,
    /// TLS, when serving HTTPS.
    pub tls: Option<serve::TlsFiles>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The store could not be opened.
    #[error("opening the store")]
    Store(#[from] magpie_store::StoreError),
    /// The configuration was refused.
    #[error("configuration: {0}")]
    Config(ApiError),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(String),
    /// A setting is refused (tokens, outbound policy, TLS files).
    #[error("{0}")]
    Setting(String),
    /// Secrets cannot be sealed or opened.
    #[error("secrets: {0}")]
    Secrets(#[from] secrets::SecretError),
}

impl AppState {
    /// Opens the store in `opts.data_dir` and loads the stored configuration.
    pub async fn open(opts: &ServerOptions, env: EnvLookup) -> Result<Arc<AppState>, ServerError> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&opts.data_dir.join("magpie.db"))?);
        opts.auth.validate().map_err(|e| ServerError::Setting(e.to_string()))?;
        let tokens = auth::Tokens::new(opts.token.as_deref(), &opts.auth.tokens).map_err(ServerError::Setting)?;
        tokens.reload(store.as_ref()).await.map_err(ServerError::Config)?;
        let egress = Arc::new(egress::Egress::new(&opts.outbound).map_err(ServerError::Setting)?);
        if let Some(addr) = opts.listen {
            egress.set_own(addr);
        }
        let stored = store.list_objects(magpie_store::Kind::Connection).await?;
        secrets::settle_rotation(&opts.data_dir, &stored.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>())?;
        let sealer = Arc::new(secrets::Sealer::open(&opts.data_dir, opts.secret_key.as_deref())?);
        seal_clear_secrets(store.as_ref(), &sealer, stored).await?;
        let http = egress::http_client(egress.clone()).map_err(ServerError::Http)?;
        // Install the metrics recorder before anything counts.
        telemetry::handle();
        let public_url = OnceLock::new();
        if let Some(u) = &opts.public_url {
            let _ = public_url.set(u.trim_end_matches('/').to_string());
        }
        let state = Arc::new(AppState {
            store,
            runtime: runtime::Shared::new(egress, sealer),
            limits: opts.limits,
            region: opts.region.clone(),
            tokens,
            wake_router: router::Wakers::default(),
            wake_workers: Notify::new(),
            outbox: outbox::Outbox::default(),
            node: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            public_url,
            env,
            http,
            concurrency: opts.concurrency.max(1),
            lease: opts.lease,
            stop: watch::channel(false).0,
            sandbox: match &opts.sandbox {
                Some(o) => magpie_sandbox::Sandbox::processes(o.clone()),
                None => magpie_sandbox::Sandbox::in_process(2),
            },
            silences: alerts::Silences::default(),
            silences_changed: Notify::new(),
            flow_versions: runtime::FlowVersions::default(),
            console_sessions: console::Sessions::default(),
            http_limits: opts.limits_http.clone(),
            tls: opts.tls.clone(),
        });
        state.silences.reload(state.store.as_ref()).await?;
        tracing::info!(expressions = %state.sandbox.describe(), "expressions are evaluated in a sandbox");
        state.runtime.reload(state.store.as_ref()).await.map_err(ServerError::Config)?;
        if let Some(doc) = &opts.config {
            runtime::apply(
                &state.runtime,
                state.store.as_ref(),
                doc.clone(),
                Vec::new(),
                runtime::FlowWrite::Publish,
                state.env.as_ref(),
                "magpie.yaml",
            )
            .await
            .map_err(ServerError::Config)?;
        }
        Ok(state)
    }
}

/// Runs the server until `shutdown` resolves: API on `listener`; router, workers, outboxes and the
/// archive's sweep beside it.
pub async fn run(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // This node is the only user of the embedded store: jobs and sends left in flight by a crash
    // are free (sends without a recorded answer go again: at least once).
    let released = state.store.release_leases(magpie_core::now_ms()).await?;
    if released.jobs > 0 {
        tracing::info!(jobs = released.jobs, "resuming jobs interrupted by the last shutdown");
    }
    for (job, flow) in &released.poisoned {
        tracing::error!(
            job,
            flow = %flow,
            "the process died during this job's last {} runs: dead-lettered as FLOW:POISON, not run again",
            magpie_store::POISON_AFTER
        );
        telemetry::InternalEvent::emit(telemetry::RunDeadLettered { flow, error_type: "FLOW:POISON" });
    }
    let addr = listener.local_addr()?;
    state.runtime.egress.set_own(addr);
    if state.public_url.get().is_none() {
        let scheme = if state.tls.is_some() { "https" } else { "http" };
        let _ = state.public_url.set(format!("{scheme}://{addr}"));
    }
    let stop = state.stop.subscribe();
    let tasks = [
        tokio::spawn(router::run(state.clone(), stop.clone())),
        tokio::spawn(worker::run(state.clone(), stop.clone())),
        tokio::spawn(outbox::supervise(state.clone(), stop.clone())),
        tokio::spawn(sweep::run(state.clone(), stop.clone())),
        tokio::spawn(alerts::run(state.clone(), stop)),
    ];
    let served = serve::serve(listener, app(state.clone()), &state.http_limits, state.tls.as_ref(), shutdown).await;
    let _ = state.stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    served
}

/// Connections stored in clear by an older Magpie are sealed at start.
async fn seal_clear_secrets(
    store: &dyn Store,
    sealer: &secrets::Sealer,
    stored: Vec<(String, serde_json::Value)>,
) -> Result<(), ServerError> {
    let mut changes = Vec::new();
    for (name, mut body) in stored {
        if secrets::Sealer::has_clear(&body) {
            sealer.seal_connection(&name, &mut body)?;
            changes.push(magpie_store::ConfigChange::Put { kind: magpie_store::Kind::Connection, key: name, body });
        }
    }
    if !changes.is_empty() {
        tracing::info!(connections = changes.len(), "sealing secrets stored in clear by an older Magpie");
        store.apply_config(changes).await?;
    }
    Ok(())
}
