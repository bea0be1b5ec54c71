//! The Magpie runtime, one module per stage: the HTTP API (`api`), ingest, the router, the
//! workers that run flows, the outbox that delivers their messages, the archive's sweep and
//! replays, and telemetry.
//!
//! [`app`] builds the axum router over an [`AppState`] (testable with `oneshot`); [`run`] starts
//! the router, workers, outbox and sweep and serves on a listener the caller binds (tests bind
//! port 0).

pub mod alerts;
mod api;
mod console;
pub mod delivery;
pub mod error;
pub mod ingest;
mod origin;
pub mod outbox;
pub mod replay;
pub mod router;
pub mod runtime;
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
    /// Bearer token required by the API, if set.
    pub token: Option<String>,
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
    /// API bearer token.
    pub token: Option<String>,
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
}

impl AppState {
    /// Opens the store in `opts.data_dir` and loads the stored configuration.
    pub async fn open(opts: &ServerOptions, env: EnvLookup) -> Result<Arc<AppState>, ServerError> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&opts.data_dir.join("magpie.db"))?);
        let http = reqwest::Client::builder()
            .user_agent(concat!("magpie/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ServerError::Http(e.to_string()))?;
        // Install the metrics recorder before anything counts.
        telemetry::handle();
        let public_url = OnceLock::new();
        if let Some(u) = &opts.public_url {
            let _ = public_url.set(u.trim_end_matches('/').to_string());
        }
        let state = Arc::new(AppState {
            store,
            runtime: runtime::Shared::default(),
            limits: opts.limits,
            region: opts.region.clone(),
            token: opts.token.clone(),
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
    if state.public_url.get().is_none() {
        let _ = state.public_url.set(format!("http://{}", listener.local_addr()?));
    }
    let stop = state.stop.subscribe();
    let tasks = [
        tokio::spawn(router::run(state.clone(), stop.clone())),
        tokio::spawn(worker::run(state.clone(), stop.clone())),
        tokio::spawn(outbox::supervise(state.clone(), stop.clone())),
        tokio::spawn(sweep::run(state.clone(), stop.clone())),
        tokio::spawn(alerts::run(state.clone(), stop)),
    ];
    let served = axum::serve(listener, app(state.clone())).with_graceful_shutdown(shutdown).await;
    let _ = state.stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    served.map_err(ServerError::Io)
}
