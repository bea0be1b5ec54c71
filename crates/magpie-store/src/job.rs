//! Jobs: one flow run per (event, rule, target), leased, parked while its messages wait.

use std::fmt;

use magpie_core::StepStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Due at `next_attempt_at`.
    Pending,
    /// Claimed by a worker (leased).
    Running,
    /// Waiting for its queued messages to be delivered or to fail: no worker holds it.
    Parked,
    /// The flow completed and every message was delivered.
    Done,
    /// The flow completed, but a message could not be delivered (its error was caught, and the
    /// message is a dead letter).
    DeliveryFailed,
    /// The flow ended with an uncaught error: the job is a dead letter.
    Failed,
}

impl JobStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Parked => "parked",
            JobStatus::Done => "done",
            JobStatus::DeliveryFailed => "delivery_failed",
            JobStatus::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "parked" => JobStatus::Parked,
            "done" => JobStatus::Done,
            "delivery_failed" => JobStatus::DeliveryFailed,
            "failed" => JobStatus::Failed,
            _ => return None,
        })
    }

    /// Whether the job will not run again by itself.
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::DeliveryFailed | JobStatus::Failed)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routed {
    /// The event's sequence number.
    pub seq: i64,
    /// Names of the rules it matched.
    pub matched: Vec<String>,
    /// Jobs to create (for rules that do not treat the event as an alert, or all of them).
    pub jobs: Vec<NewJob>,
    /// The alerts of the rules that treat it as one: their jobs are created only if the
    /// alert's state says it is to be told.
    pub alerts: Vec<crate::AlertTouch>,
    /// The silence in force that matches the event: no job is created.
    pub silenced_by: Option<String>,
}

/// A job of a replay: an archived event routed again by today's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayJob {
    /// The event's sequence number.
    pub seq: i64,
    /// The rule that matched.
    pub rule: String,
    /// The flow to run.
    pub flow: String,
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
    /// The version of the flow the job runs on: the live one when it was created (none for jobs
    /// created before flows had versions: they run on the live one).
    pub flow_version: Option<i64>,
    /// How many times the job has been claimed (this run included).
    pub runs: i64,
    /// The event (returned with the claim, to save a read).
    pub event: Value,
    /// When the event was received, ms since the epoch.
    pub received_at: i64,
    /// The replay that created the job, if one did.
    pub replay: Option<String>,
    /// The alert it tells (`msg.vars.alert`), when its event is one.
    pub alert: Option<Value>,
    /// What earlier runs recorded (returned with the claim of a job that ran before).
    #[serde(skip)]
    pub journal: Option<crate::Journal>,
}

/// How a job run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    /// The flow completed; `undelivered` tells whether a message failed (and was caught).
    Done {
        /// Whether a message of the run could not be delivered.
        undelivered: bool,
    },
    /// The flow failed with an uncaught error: the job is dead-lettered.
    Failed {
        /// The error type (`NS:KIND`).
        error_type: String,
        /// The error's description.
        error: String,
        /// The step that raised it: ordinal and path.
        step: Option<(u32, String)>,
    },
    /// A message is queued: wait for it without holding a worker.
    Parked,
    /// The run could not go on (the store failed under it): run it again at `at`.
    Retry {
        /// When, ms since the epoch.
        at: i64,
        /// Why.
        error: String,
    },
}

/// A job that runs when the process dies this many times in a row is dead-lettered as
/// `FLOW:POISON` instead of being run again.
pub const POISON_AFTER: i64 = 3;

/// What [`crate::Store::release_leases`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Released {
    /// Jobs handed out again.
    pub jobs: usize,
    /// Jobs (id, flow) dead-lettered as `FLOW:POISON`: the process died during their last
    /// [`POISON_AFTER`] runs.
    pub poisoned: Vec<(i64, String)>,
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
    /// How the step ended.
    pub status: StepStatus,
    /// Details.
    pub detail: Value,
    /// When, ms since the epoch.
    pub at: i64,
}
