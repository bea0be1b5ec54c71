//! Magpie storage: configuration objects, the event log and its archive, which events are routed, the
//! job queue, step records, the per-connection outboxes with their sends and digests, and dead
//! letters.
//!
//! [`Store`] is the seam: every method is one transaction. [`SqliteStore`] is the embedded
//! backend (WAL, one writer thread; event appends wait for the disk and are group-committed, job
//! and outbox bookkeeping survives process crashes), used by default with zero set-up. Every
//! backend passes the same conformance suite ([`store_suite!`]).
//!
//! Statuses are enums ([`JobStatus`], [`MessageStatus`], [`SendOutcome`], [`LetterStatus`]),
//! stored as their lower-case names.

mod access;
mod alert;
#[doc(hidden)]
pub mod conformance;
mod dead_letter;
mod event;
mod flow;
mod job;
mod outbox;
mod sqlite;
mod trace;

use async_trait::async_trait;
use serde_json::Value;

pub use access::{AuditEntry, AuditFilter, NewAudit, TokenRow};
pub use alert::{AlertFilter, AlertRow, AlertTouch, Release, Silence, SilencedAlert};
pub use dead_letter::{DeadLetter, DeadLetterDetail, LetterFilter, LetterStatus, Redriven};
pub use event::{Appended, EventFilter, NewEvent, ReplayRange, StoredEvent, UnroutedEvent};
pub use flow::{FlowHead, FlowVersion};
pub use job::{Job, JobEnd, JobStatus, NewJob, POISON_AFTER, Released, ReplayJob, Routed, StepRow};
pub use outbox::{
    DigestRow, LimiterState, MessageStatus, MessageUpdate, NewMessage, OutboxState, OutboxStatus, QueuedMessage,
    SendClaim, SendCompletion, SendOutcome,
};
pub use sqlite::SqliteStore;
pub use trace::{AttemptRow, DeliveryRow, JobTrace, Journal, Trace};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
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
    /// Saves a flow as its draft (replacing a draft saved before); the live version is left as
    /// it is. A draft equal to the live version is no draft: it is discarded. A [`ConfigChange::Put`]
    /// of a flow saves it and publishes it at once.
    Draft {
        /// The flow's name.
        name: String,
        /// The flow as JSON.
        body: Value,
    },
    /// Makes a saved version of a flow live (publishing a draft, or rolling back).
    Publish {
        /// The flow's name.
        name: String,
        /// The version.
        version: i64,
    },
    /// Delete (absent is fine). A deleted flow's draft goes with it; its published versions are
    /// kept for the jobs still running on them.
    Delete {
        /// Kind.
        kind: Kind,
        /// Key.
        key: String,
    },
    /// Records a change in the audit log, in the same transaction as the change itself.
    Audit(NewAudit),
}

/// Storage, one transaction per method.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- configuration ----------------------------------------------------------------------

    /// Creates or replaces, or deletes, configuration objects, all in one transaction.
    async fn apply_config(&self, changes: Vec<ConfigChange>) -> Result<()>;
    /// One configuration object.
    async fn get_object(&self, kind: Kind, key: &str) -> Result<Option<Value>>;
    /// All objects of a kind, ordered by key. For flows, the live versions.
    async fn list_objects(&self, kind: Kind) -> Result<Vec<(String, Value)>>;
    /// Every flow with a live version or a draft, by name.
    async fn flow_heads(&self) -> Result<Vec<FlowHead>>;
    /// The saved versions of a flow, oldest first.
    async fn flow_versions(&self, name: &str) -> Result<Vec<FlowVersion>>;
    /// One saved version of a flow.
    async fn flow_version(&self, name: &str, version: i64) -> Result<Option<FlowVersion>>;

    // ---- event log and archive --------------------------------------------------------------

    /// Appends events to a bus; returns only after they are durable.
    async fn append_events(&self, bus: &str, events: Vec<NewEvent>) -> Result<Vec<Appended>>;
    /// Stores an event on `bus` already routed to `flow` under the name `rule`, with its job, in
    /// one transaction (requests to a flow's listen path). Returns the event's sequence number.
    async fn append_routed(&self, bus: &str, event: NewEvent, rule: &str, flow: &str) -> Result<i64>;
    /// Events of `bus` after `after_seq` not yet routed, oldest first, as stored (bytes for the
    /// router's scanner). Each bus's router lane keeps its own position.
    async fn unrouted_events(&self, bus: &str, after_seq: i64, limit: usize) -> Result<Vec<UnroutedEvent>>;
    /// Records routings (the events are marked routed) and creates their jobs, in one transaction.
    async fn commit_routing(&self, routed: Vec<Routed>, now_ms: i64) -> Result<usize>;
    /// Archived events, newest first, filtered; `filter.before_seq` continues a listing.
    async fn list_events(&self, filter: EventFilter) -> Result<Vec<StoredEvent>>;
    /// Events of a bus received within a range, oldest first, after `after_seq` (for replays).
    async fn range_events(&self, range: ReplayRange, after_seq: i64, limit: usize) -> Result<Vec<StoredEvent>>;
    /// How many events of a bus were received within a range.
    async fn count_events(&self, range: ReplayRange) -> Result<u64>;
    /// Creates jobs for archived events (a replay), marked with the replay's id.
    async fn create_jobs(&self, jobs: Vec<ReplayJob>, replay: &str, now_ms: i64) -> Result<usize>;
    /// Removes up to `limit` events of `bus` received before `before_ms` whose work is finished,
    /// with their jobs, steps, messages and sends. Returns how many events were removed.
    async fn sweep(&self, bus: &str, before_ms: i64, limit: usize) -> Result<usize>;

    // ---- jobs -------------------------------------------------------------------------------

    /// Claims up to `limit` due jobs (and jobs whose lease ran out) with a lease.
    async fn claim_jobs(&self, now_ms: i64, lease_ms: i64, limit: usize) -> Result<Vec<Job>>;
    /// Makes every running job claimable at once and frees every outbox (after a restart of the
    /// only node): nothing in flight survives a process. A job whose run the process died in
    /// [`POISON_AFTER`] times in a row is dead-lettered as `FLOW:POISON` instead.
    async fn release_leases(&self, now_ms: i64) -> Result<Released>;
    /// The earliest time a pending job falls due.
    async fn next_due(&self) -> Result<Option<i64>>;
    /// Stores a step record (idempotent per ordinal).
    async fn record_step(&self, job_id: i64, row: StepRow) -> Result<()>;
    /// A job's journal: its step records, its messages and their sends.
    async fn journal(&self, job_id: i64) -> Result<Journal>;
    /// Ends a job run, writing the run's last step records with it. [`JobEnd::Parked`] parks the
    /// job until its queued messages are finished (or makes it due at once if they already are);
    /// [`JobEnd::Failed`] dead-letters it.
    async fn end_job(&self, job_id: i64, end: JobEnd, steps: Vec<StepRow>, now_ms: i64) -> Result<()>;

    // ---- outbox -----------------------------------------------------------------------------

    /// Queues a message for its connection (idempotent per job and step), writes the run's step
    /// records so far (`msg.steps`) and parks the job until the message is finished, in one
    /// transaction. Returns the message's id.
    async fn enqueue(&self, msg: NewMessage) -> Result<i64>;
    /// Takes or renews the lease of a connection's outbox for `owner`. `None` when another owner
    /// holds it. A new owner gets messages left `sending` by the last one back in the queue.
    async fn outbox_acquire(
        &self,
        connection: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<OutboxState>>;
    /// Gives the lease up.
    async fn outbox_release(&self, connection: &str, owner: &str) -> Result<()>;
    /// The queued messages of a connection, oldest first.
    async fn outbox_queue(&self, connection: &str, limit: usize) -> Result<Vec<QueuedMessage>>;
    /// Marks the messages of one or more sends (of one connection) as being sent and saves the
    /// limiter of the last, if its `owner` still holds the lease (else nothing changes and the
    /// answer is `false`).
    async fn outbox_claim(&self, claims: Vec<SendClaim>) -> Result<bool>;
    /// Records sends' answers and applies their consequences to each message (delivered, queued
    /// again, or failed into a dead letter); wakes the jobs waiting on finished messages.
    /// Returns the woken jobs.
    async fn outbox_complete(&self, done: Vec<SendCompletion>) -> Result<Vec<i64>>;
    /// Fails queued messages without a send (too old, or their connection is gone). Returns the
    /// woken jobs.
    async fn outbox_fail(&self, failed: Vec<(i64, String, String)>, now_ms: i64) -> Result<Vec<i64>>;
    /// Depth, limiter and counters of a connection's outbox.
    async fn outbox_status(&self, connection: &str) -> Result<OutboxStatus>;
    /// Connections with queued messages.
    async fn outbox_connections(&self) -> Result<Vec<String>>;
    /// A digest: a delivered send that folded several messages.
    async fn digest(&self, id: &str) -> Result<Option<DigestRow>>;

    // ---- dead letters -----------------------------------------------------------------------

    /// Dead letters, newest first.
    async fn dead_letters(&self, filter: LetterFilter) -> Result<Vec<DeadLetter>>;
    /// One dead letter with its event, its attempts and the letters it was redriven from.
    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetterDetail>>;
    /// Redrives open dead letters: a failed message is queued again, a failed run resumes from
    /// its failed step. Redriven letters leave the list.
    async fn redrive(&self, ids: Vec<i64>, now_ms: i64) -> Result<Vec<Redriven>>;

    // ---- alerts and silences ----------------------------------------------------------------

    /// Alerts, most recently changed first.
    async fn alerts(&self, filter: AlertFilter) -> Result<Vec<AlertRow>>;
    /// Stores a new silence.
    async fn put_silence(&self, silence: Silence) -> Result<()>;
    /// Silences: all of them, or only those ending after `ended_since` (ms).
    async fn silences(&self, ended_since: Option<i64>) -> Result<Vec<Silence>>;
    /// One silence.
    async fn silence(&self, id: &str) -> Result<Option<Silence>>;
    /// Ends a silence now (if it has not ended). `None` if there is no such silence.
    async fn expire_silence(&self, id: &str, now_ms: i64) -> Result<Option<Silence>>;
    /// Silences that have ended and whose alerts have not been released yet.
    async fn ended_silences(&self, now_ms: i64) -> Result<Vec<String>>;
    /// The alerts a silence keeps quiet that are still firing, with their last events.
    async fn silenced_alerts(&self, silence: &str) -> Result<Vec<SilencedAlert>>;
    /// Releases an ended silence's alerts as decided (telling flows once, with a job per flow),
    /// and marks the silence released, in one transaction. Returns the jobs created.
    async fn release_silence(&self, silence: &str, releases: Vec<(i64, Release)>, now_ms: i64) -> Result<usize>;

    // ---- access ------------------------------------------------------------------------------

    /// Creates a token and records it in the audit log; false when the name is taken.
    async fn create_token(&self, token: TokenRow, audit: NewAudit) -> Result<bool>;
    /// Removes a token and records it; false when there is none of that name.
    async fn delete_token(&self, name: &str, audit: NewAudit) -> Result<bool>;
    /// The tokens created through the API, by name.
    async fn tokens(&self) -> Result<Vec<TokenRow>>;
    /// Appends entries to the audit log.
    async fn record_audit(&self, entries: Vec<NewAudit>) -> Result<()>;
    /// Entries of the audit log, newest first.
    async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditEntry>>;

    // ---- traces -----------------------------------------------------------------------------

    /// The trace of an event by id (the newest if several buses hold the id).
    async fn trace(&self, event_id: &str) -> Result<Option<Trace>>;
}
