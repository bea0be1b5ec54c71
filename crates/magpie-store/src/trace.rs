//! Traces: everything known about one event's runs.

use serde::Serialize;
use serde_json::Value;

use crate::{DeadLetter, JobStatus, MessageStatus, SendOutcome, StepRow, StoredEvent};

/// One message of a run and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRow {
    /// Message id.
    pub message_id: i64,
    /// The robot step's ordinal.
    pub ordinal: u32,
    /// The step's path.
    pub step: String,
    /// 0 for the first message of the step; each redrive adds one.
    pub generation: u32,
    /// The connection.
    pub connection: String,
    /// Queued, sending, delivered (alone), folded (into `digest_id`) or failed.
    pub status: MessageStatus,
    /// The digest that carried it, when folded.
    pub digest_id: Option<String>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// `NS:KIND` when failed.
    pub error_type: Option<String>,
    /// Description when failed.
    pub error: Option<String>,
    /// When it was queued.
    pub enqueued_at: i64,
    /// When it was delivered or failed.
    pub finished_at: Option<i64>,
}

/// One send that carried a message: one HTTP request to the robot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRow {
    /// The robot step's ordinal.
    pub ordinal: u32,
    /// The message.
    pub message_id: i64,
    /// Which send of this message this was, from 1.
    pub attempt: u32,
    /// The send's id.
    pub send_id: String,
    /// Whether the send was a digest, and of how many messages.
    pub folded: u32,
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
    /// What the send came to.
    pub outcome: SendOutcome,
    /// `NS:KIND` on failure.
    pub error_type: Option<String>,
    /// Description on failure.
    pub error: Option<String>,
    /// Start, ms since the epoch.
    pub started_at: i64,
    /// Duration in ms.
    pub duration_ms: i64,
}

/// What a job's runs recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Journal {
    /// Step records, by ordinal.
    pub steps: Vec<StepRow>,
    /// Messages handed to the outbox, in order.
    pub deliveries: Vec<DeliveryRow>,
    /// Sends that carried them, in order.
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
    /// The version of the flow the run is on (none for runs started before flows had versions).
    pub flow_version: Option<i64>,
    /// Where the run stands.
    pub status: JobStatus,
    /// The replay that started this run, if one did.
    pub replay: Option<String>,
    /// Runs so far.
    pub runs: i64,
    /// When the next run is due, if pending.
    pub next_attempt_at: Option<i64>,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Steps, messages and sends.
    #[serde(flatten)]
    pub journal: Journal,
    /// The run's dead letters, open or redriven.
    pub dead_letters: Vec<DeadLetter>,
    /// The alert the run tells (`msg.vars.alert`), when its event is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<serde_json::Value>,
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
    /// The silence that kept it quiet: routed, but no flow was told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silenced_by: Option<String>,
    /// What each rule's alert made of it: `{rule, key, outcome: told|deduplicated|silenced,
    /// notice, fired_count, silence}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<serde_json::Value>,
    /// Flow runs.
    pub runs: Vec<JobTrace>,
}
