//! Alerts (one per rule and alert key, advanced by `magpie_core::alert::advance` in the
//! transaction that routes their events) and silences.

use magpie_core::alert::{AlertState, Signal};
use serde::Serialize;
use serde_json::Value;

/// An alert event matched by a rule: what the routing transaction advances the rule's alert with.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertTouch {
    /// The rule that matched.
    pub rule: String,
    /// The alert key (the event's default key, or the rule's own).
    pub key: String,
    /// Firing or resolved.
    pub signal: Signal,
    /// The event's time, ms.
    pub at: i64,
    /// The rule's repeat interval, ms.
    pub repeat_ms: i64,
    /// The flows to run if the alert is told.
    pub flows: Vec<String>,
}

/// An alert as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    /// Bus.
    pub bus: String,
    /// Rule.
    pub rule: String,
    /// The alert itself.
    #[serde(flatten)]
    pub alert: magpie_core::alert::Alert,
    /// The id of its last event.
    pub last_event_id: String,
    /// When it last changed (server time, ms).
    pub updated_at: i64,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertFilter {
    /// Only alerts in this state.
    pub state: Option<AlertState>,
    /// Only this bus.
    pub bus: Option<String>,
    /// At most this many, most recently changed first.
    pub limit: usize,
}

/// A silence (maintenance window): events matching its pattern within `[starts_at, ends_at)`
/// are routed and traced, but no flow is told.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    /// Its id.
    pub id: String,
    /// Only events of this bus (every bus when `None`).
    pub bus: Option<String>,
    /// The event pattern.
    pub pattern: Value,
    /// From (ms).
    pub starts_at: i64,
    /// Until (ms, excluded).
    pub ends_at: i64,
    /// Why.
    pub comment: String,
    /// Who created it.
    pub created_by: String,
    /// When it was created (ms).
    pub created_at: i64,
}

impl Silence {
    /// Whether it is in force at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

/// An alert a silence kept quiet, still firing when the silence ended.
#[derive(Debug, Clone, PartialEq)]
pub struct SilencedAlert {
    /// The alert's row id.
    pub id: i64,
    /// Bus.
    pub bus: String,
    /// Rule.
    pub rule: String,
    /// Key.
    pub key: String,
    /// Its last event: sequence number and stored JSON (`None` if the archive no longer has it).
    pub event: Option<(i64, String)>,
}

/// What to do with a [`SilencedAlert`] when its silence ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    /// Tell these flows (`SilenceEnded`), once.
    Tell(Vec<String>),
    /// Another silence in force matches it: it stays quiet under that one.
    StillSilenced(String),
    /// Nothing to tell (its rule is gone or has no targets, or its event was swept).
    Drop,
}
