//! Dead letters: every message that could not be delivered, and every run that ended with an
//! uncaught error, kept with their event, flow, step, error and attempts until redriven.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{AttemptRow, StoredEvent};

/// Whether a dead letter is still waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LetterStatus {
    /// In the list.
    Open,
    /// Redriven: out of the list.
    Redriven,
}

impl LetterStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            LetterStatus::Open => "open",
            LetterStatus::Redriven => "redriven",
        }
    }
}

impl fmt::Display for LetterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A dead letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Its id.
    pub id: i64,
    /// Open or redriven.
    pub status: LetterStatus,
    /// The flow run.
    pub job_id: i64,
    /// The event's id.
    pub event_id: String,
    /// The bus.
    pub bus: String,
    /// The rule that routed the event.
    pub rule: String,
    /// The flow.
    pub flow: String,
    /// The failed step's ordinal in the run.
    pub ordinal: Option<u32>,
    /// The failed step's path.
    pub step: Option<String>,
    /// The undelivered message, when the failure was a delivery.
    pub message_id: Option<i64>,
    /// The message's connection.
    pub connection: Option<String>,
    /// `NS:KIND`.
    pub error_type: String,
    /// Description.
    pub error: String,
    /// Whether a catch of the flow handled the error (the run went on).
    pub caught: bool,
    /// When it became a dead letter, ms since the epoch.
    pub created_at: i64,
    /// When it was redriven.
    pub redriven_at: Option<i64>,
    /// The letter this one came back from (a redrive that failed again).
    pub previous: Option<i64>,
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LetterFilter {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this connection.
    pub connection: Option<String>,
    /// Only this error type (`NS:KIND`, or a bare `KIND` of any namespace).
    pub error_type: Option<String>,
    /// Created at or after (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Open letters only (the default), or redriven ones too.
    pub include_redriven: bool,
    /// Continue a listing: only letters older than this id.
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// A dead letter with everything known about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterDetail {
    /// The letter.
    #[serde(flatten)]
    pub letter: DeadLetter,
    /// Its event, while the archive keeps it.
    pub event: Option<StoredEvent>,
    /// The sends that tried its message, in order.
    pub attempts: Vec<AttemptRow>,
    /// The letters it was redriven from, newest first, each with its attempts.
    pub history: Vec<DeadLetterDetail>,
}

/// What a redrive did to one letter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Redriven {
    /// The letter.
    pub id: i64,
    /// Its flow run.
    pub job_id: i64,
    /// The message queued again, for a failed delivery.
    pub message_id: Option<i64>,
    /// Its connection.
    pub connection: Option<String>,
}
