//! Magpie storage: configuration objects, the event log, the router cursor, the job queue, step
//! records and delivery attempts.
//!
//! [`Store`] is the seam: every method is one transaction. [`SqliteStore`] is the embedded
//! backend (WAL, one writer thread; event appends wait for the disk and are group-committed, job
//! bookkeeping survives process crashes), used by default with zero set-up.

mod sqlite;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use sqlite::SqliteStore;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database: {0}")]
    Database(String),
    /// The store has shut down.
    #[error("the store is closed")]
    Closed,
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Kinds of configuration object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Event buses.
    Bus,
    /// Connections.
    Connection,
    /// Flows.
    Flow,
    /// Rules (key `bus/rule`).
    Rule,
}

impl Kind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Bus => "bus",
            Kind::Connection => "connection",
            Kind::Flow => "flow",
            Kind::Rule => "rule",
        }
    }
}

/// One configuration change in an atomic batch.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigChange {
    /// Create or replace.
    Put {
        /// Kind.
        kind: Kind,
        /// Key.
        key: String,
        /// The object as JSON.
        body: Value,
    },
    /// Delete (absent is fine).
    Delete {
        /// Kind.
        kind: Kind,
        /// Key.
        key: String,
    },
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Its id.
    pub id: String,
    /// Event time, ms since the epoch.
    pub time_ms: i64,
    /// The event JSON.
    pub body: Value,
}

/// What happened to one appended event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored at this sequence number.
    Stored(i64),
    /// An event with the same id was already on the bus (idempotent put); nothing was added.
    Duplicate(i64),
}

/// An event in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    /// Position in the log.
    pub seq: i64,
    /// Bus.
    pub bus: String,
    /// Id.
    pub id: String,
    /// The event JSON.
    pub body: Value,
    /// When it was stored, ms since the epoch.
    pub received_at: i64,
}

/// A job the router creates: run `flow` for the event matched by `rule`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The rule that matched.
    pub rule: String,
    /// The flow to run.
    pub flow: String,
}

/// The routing of one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// The event's sequence number.
    pub seq: i64,
    /// Names of the rules it matched.
    pub matched: Vec<String>,
    /// Jobs to create.
    pub jobs: Vec<NewJob>,
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// Job id.
    pub id: i64,
    /// The event's sequence number.
    pub event_seq: i64,
    /// The event's id.
    pub event_id: String,
    /// Bus.
    pub bus: String,
    /// Rule.
    pub rule: String,
    /// Flow.
    pub flow: String,
    /// How many times the job has been claimed (this run included).
    pub runs: i64,
    /// The event (returned with the claim, to save a read).
    pub event: Value,
}

/// How a job run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    /// The flow completed.
    Done,
    /// The flow failed with an uncaught error: the job is dead-lettered.
    Failed {
        /// The error.
        error: String,
    },
    /// Run again at `at` (ms since the epoch).
    Retry {
        /// When.
        at: i64,
        /// The error that caused the retry.
        error: String,
    },
}

/// A step record as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// Execution ordinal.
    pub ordinal: u32,
    /// Path in the flow.
    pub path: String,
    /// Step kind.
    pub kind: String,
    /// ok / caught / error.
    pub status: String,
    /// Details.
    pub detail: Value,
    /// When, ms since the epoch.
    pub at: i64,
}

/// One delivery attempt as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRow {
    /// The send step's ordinal.
    pub ordinal: u32,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Connection name.
    pub connection: String,
    /// Platform.
    pub platform: String,
    /// The URL with secrets masked.
    pub url: String,
    /// The request body (signatures masked).
    pub request: Value,
    /// HTTP status, when an answer came.
    pub status_code: Option<u16>,
    /// The answer body (truncated).
    pub response: Option<String>,
    /// `delivered` or `failed`.
    pub outcome: String,
    /// `CONNECTOR:KIND` on failure.
    pub error_type: Option<String>,
    /// Description on failure.
    pub error: Option<String>,
    /// Start, ms since the epoch.
    pub started_at: i64,
    /// Duration in ms.
    pub duration_ms: i64,
}

/// What a job's earlier runs recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Journal {
    /// Step records, by ordinal.
    pub steps: Vec<StepRow>,
    /// Attempts, in order.
    pub attempts: Vec<AttemptRow>,
}

/// A job with its journal, for traces.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobTrace {
    /// Job id.
    pub job_id: i64,
    /// Rule.
    pub rule: String,
    /// Flow.
    pub flow: String,
    /// pending / running / done / failed.
    pub status: String,
    /// Runs so far.
    pub runs: i64,
    /// When the next run is due, if pending.
    pub next_attempt_at: Option<i64>,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Steps and attempts.
    #[serde(flatten)]
    pub journal: Journal,
}

/// Everything known about one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    /// The event.
    pub event: StoredEvent,
    /// Whether the router has processed it.
    pub routed: bool,
    /// Rules it matched.
    pub rules_matched: Vec<String>,
    /// Flow runs.
    pub runs: Vec<JobTrace>,
}

/// Storage, one transaction per method.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates or replaces, or deletes, configuration objects, all in one transaction.
    async fn apply_config(&self, changes: Vec<ConfigChange>) -> Result<()>;
    /// One configuration object.
    async fn get_object(&self, kind: Kind, key: &str) -> Result<Option<Value>>;
    /// All objects of a kind, ordered by key.
    async fn list_objects(&self, kind: Kind) -> Result<Vec<(String, Value)>>;
    /// Appends events to a bus; returns only after they are durable.
    async fn append_events(&self, bus: &str, events: Vec<NewEvent>) -> Result<Vec<Appended>>;
    /// Stores an event on `bus` already routed to `flow` under the name `rule`, with its job, in
    /// one transaction (requests to a flow's listen path). Returns the event's sequence number.
    async fn append_routed(&self, bus: &str, event: NewEvent, rule: &str, flow: &str) -> Result<i64>;
    /// Events after the router cursor not yet routed, oldest first.
    async fn unrouted_events(&self, limit: usize) -> Result<Vec<StoredEvent>>;
    /// Records routings, creates their jobs and advances the cursor, in one transaction.
    async fn commit_routing(&self, routed: Vec<Routed>, now_ms: i64) -> Result<usize>;
    /// Claims up to `limit` due jobs (and jobs whose lease ran out) with a lease.
    async fn claim_jobs(&self, now_ms: i64, lease_ms: i64, limit: usize) -> Result<Vec<Job>>;
    /// Makes every running job claimable at once (after a restart of the only node).
    async fn release_leases(&self) -> Result<usize>;
    /// The earliest time a pending job falls due.
    async fn next_due(&self) -> Result<Option<i64>>;
    /// Stores a step record (idempotent per ordinal).
    async fn record_step(&self, job_id: i64, row: StepRow) -> Result<()>;
    /// Stores a delivery attempt.
    async fn record_attempt(&self, job_id: i64, row: AttemptRow) -> Result<()>;
    /// A job's journal.
    async fn journal(&self, job_id: i64) -> Result<Journal>;
    /// Ends a job run.
    async fn end_job(&self, job_id: i64, end: JobEnd, now_ms: i64) -> Result<()>;
    /// The trace of an event by id (the newest if several buses hold the id).
    async fn trace(&self, event_id: &str) -> Result<Option<Trace>>;
}
