//! Flow versions: every saved flow is a numbered version, a draft until it is published; one
//! version of a flow is live (what rules start), and jobs remember the version they started on.

use serde::Serialize;
use serde_json::Value;

/// One saved version of a flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlowVersion {
    /// The flow's name.
    pub name: String,
    /// The version number (1, 2, …), in the order saved.
    pub version: i64,
    /// The flow as saved.
    pub body: Value,
    /// When it was saved, ms since the epoch.
    pub saved_at: i64,
    /// When it was first published, if it was.
    pub published_at: Option<i64>,
    /// Whether it is the live version.
    pub live: bool,
    /// Whether it is the draft (saved after the live one, never published).
    pub draft: bool,
}

/// Where one flow stands: its live version and its draft.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowHead {
    /// The flow's name.
    pub name: String,
    /// The live version, if the flow is published.
    pub live: Option<i64>,
    /// The draft, if one is saved and not yet published.
    pub draft: Option<i64>,
    /// When the flow was last saved or published, ms since the epoch.
    pub updated_at: i64,
}
