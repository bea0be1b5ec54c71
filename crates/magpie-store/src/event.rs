//! Events: appended, listed from the archive, replayed.

use serde::Serialize;
use serde_json::Value;

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Its id.
    pub id: String,
    /// Event time, ms since the epoch.
    pub time_ms: i64,
    /// The event JSON.
    pub body: Value,
    /// `body` as JSON text, stored as it is.
    pub json: String,
    /// Whether `body` has a key with a dot in it (see `magpie_core::json::has_dotted_keys`).
    pub dotted: bool,
    /// How many Magpie deliveries led to this event (the `Magpie-Hops` header it came with).
    pub hops: u32,
}

impl NewEvent {
    /// An event to append, serialising `body` (ingest has the text already and sets `json`).
    pub fn new(id: impl Into<String>, time_ms: i64, body: Value) -> NewEvent {
        let json = body.to_string();
        let dotted = magpie_core::json::has_dotted_keys(&body);
        NewEvent { id: id.into(), time_ms, body, json, dotted, hops: 0 }
    }
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

/// An event waiting to be routed: its bytes as stored, for the matcher to scan.
#[derive(Debug, Clone, PartialEq)]
pub struct UnroutedEvent {
    /// Position in the log.
    pub seq: i64,
    /// Id.
    pub id: String,
    /// The event JSON, as validated at ingest and stored.
    pub body: String,
    /// Whether it has a dotted key (`"a.b": 1`); events stored before this was recorded say yes.
    pub dotted: bool,
    /// Its time, ms.
    pub time_ms: i64,
    /// What it is as an alert (`status` `"1"`/`"0"`), with its default key.
    pub alert: Option<magpie_core::alert::EventAlert>,
}

/// Which archived events to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    /// Only this bus.
    pub bus: Option<String>,
    /// Received at or after (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Received before (ms since the epoch).
    pub until_ms: Option<i64>,
    /// Only this `type`.
    pub event_type: Option<String>,
    /// Only this `subject`.
    pub subject: Option<String>,
    /// Continue a listing: only events older than this sequence number.
    pub before_seq: Option<i64>,
    /// At most this many.
    pub limit: usize,
}

/// The events of a replay: one bus, received within `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayRange {
    /// The bus.
    pub bus: String,
    /// From (inclusive), ms since the epoch.
    pub from_ms: i64,
    /// To (exclusive), ms since the epoch.
    pub to_ms: i64,
}
