//! What a flow hands to a connector, and how a failed send may be retried.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::MessageKind;

/// A message to send, after the flow has evaluated its expressions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// Text, markdown or post.
    pub kind: MessageKind,
    /// Optional title.
    pub title: Option<String>,
    /// The content: a string, or for a Feishu post a JSON array of paragraphs.
    pub content: Value,
}

/// Whether a failed send may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retry {
    /// Never: the same request would fail again.
    No,
    /// Within the step's retry policy.
    Yes,
    /// One more time at most (e.g. a signature timestamp refused: re-sign once).
    Once,
}
