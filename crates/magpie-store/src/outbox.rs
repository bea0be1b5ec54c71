//! The outbox of each connection: queued messages, the sends that carry them (alone or folded
//! into a digest), the limiter's state and the lease of the node that drains it.

use std::fmt;

use magpie_core::config::{MessageKind, RetryPolicy};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Waiting for a slot.
    Queued,
    /// In a send whose answer has not come yet.
    Sending,
    /// Delivered alone, as its flow rendered it.
    Delivered,
    /// Delivered folded into a digest.
    Folded,
    /// Not delivered: a dead letter.
    Failed,
}

impl MessageStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Folded => "folded",
            MessageStatus::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<MessageStatus> {
        Some(match s {
            "queued" => MessageStatus::Queued,
            "sending" => MessageStatus::Sending,
            "delivered" => MessageStatus::Delivered,
            "folded" => MessageStatus::Folded,
            "failed" => MessageStatus::Failed,
            _ => return None,
        })
    }

    /// Whether the message is finished (delivered, folded or failed).
    pub fn is_final(self) -> bool {
        matches!(self, MessageStatus::Delivered | MessageStatus::Folded | MessageStatus::Failed)
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one send (one HTTP request to a robot) came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendOutcome {
    /// Not answered yet.
    Pending,
    /// The platform accepted it.
    Delivered,
    /// The platform refused it for rate: the connection paused; no attempt was used up.
    RateLimited,
    /// The platform or the network failed it.
    Failed,
    /// The process stopped before the answer was recorded: the messages were queued again.
    Interrupted,
}

impl SendOutcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SendOutcome::Pending => "pending",
            SendOutcome::Delivered => "delivered",
            SendOutcome::RateLimited => "rate_limited",
            SendOutcome::Failed => "failed",
            SendOutcome::Interrupted => "interrupted",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<SendOutcome> {
        Some(match s {
            "pending" => SendOutcome::Pending,
            "delivered" => SendOutcome::Delivered,
            "rate_limited" => SendOutcome::RateLimited,
            "failed" => SendOutcome::Failed,
            "interrupted" => SendOutcome::Interrupted,
            _ => return None,
        })
    }
}

/// A message to queue: what a flow's robot step rendered, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// The job (flow run) that sends it.
    pub job_id: i64,
    /// The robot step's ordinal in the run.
    pub ordinal: u32,
    /// The step's path.
    pub path: String,
    /// The connection it goes through.
    pub connection: String,
    /// The flow.
    pub flow: String,
    /// The event's id.
    pub event_id: String,
    /// The event's `type` (for digests' headlines).
    pub event_type: String,
    /// The event's `status` ("1" firing, "0" recovered, "-").
    pub event_status: Option<String>,
    /// The message kind (folding is per connection and kind).
    pub kind: MessageKind,
    /// The rendered message (an `OutboundMessage` as JSON).
    pub message: Value,
    /// How failures are retried, and the message's maximum age.
    pub policy: RetryPolicy,
    /// When the event was received (for latency), ms since the epoch.
    pub received_at: i64,
    /// Now, ms since the epoch.
    pub now_ms: i64,
    /// The run's step records not written yet (written with the message).
    pub steps: Vec<crate::StepRow>,
}

/// A queued message, as the connection's drainer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedMessage {
    /// Message id.
    pub id: i64,
    /// The job waiting on it.
    pub job_id: i64,
    /// The event's id.
    pub event_id: String,
    /// The flow.
    pub flow: String,
    /// The event's `type`.
    pub event_type: String,
    /// The event's `status`.
    pub event_status: Option<String>,
    /// Kind.
    pub kind: MessageKind,
    /// The rendered message.
    pub message: Value,
    /// The retry policy.
    pub policy: RetryPolicy,
    /// Failed attempts so far (rate-limit refusals are not counted).
    pub attempts: u32,
    /// Not to be sent before this time (a retry's backoff), ms since the epoch.
    pub not_before: i64,
    /// Given up after this time (enqueued + max age), ms since the epoch.
    pub deadline: i64,
    /// When it was queued.
    pub enqueued_at: i64,
    /// When its event was received.
    pub received_at: i64,
    /// Never fold it again (a digest holding it was refused as a bad request).
    pub solo: bool,
    /// How many Magpie deliveries led to its event: the send carries one more (`Magpie-Hops`).
    pub hops: u32,
}

/// The limiter of a connection, saved with every send so a restart or another node goes on
/// where the last send left it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimiterState {
    /// The theoretical arrival time of each limit (GCRA), ms since the epoch.
    pub tat: Vec<i64>,
    /// When the last send started.
    pub last_send_at: Option<i64>,
}

/// The stored state of a connection's outbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutboxState {
    /// The connection.
    pub connection: String,
    /// The node draining it.
    pub owner: Option<String>,
    /// Until when the owner holds it.
    pub lease_until: Option<i64>,
    /// The limiter.
    pub limiter: LimiterState,
    /// Paused until (after a rate-limit answer), ms since the epoch.
    pub paused_until: Option<i64>,
    /// Why it paused.
    pub pause_reason: Option<String>,
    /// Sends delivered.
    pub sent: i64,
    /// Messages delivered folded into digests.
    pub folded: i64,
    /// Digests delivered.
    pub digests: i64,
}

/// The state of a connection's outbox with its queue depth.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutboxStatus {
    /// The stored state (counters, limiter, pause, lease).
    #[serde(flatten)]
    pub state: OutboxState,
    /// Messages waiting (queued or being sent).
    pub depth: u64,
    /// When the oldest waiting message was queued.
    pub oldest_enqueued_at: Option<i64>,
}

/// Messages going out in one send.
#[derive(Debug, Clone, PartialEq)]
pub struct SendClaim {
    /// The send's id (a digest's id when it folds several messages).
    pub id: String,
    /// The connection.
    pub connection: String,
    /// Platform (for traces).
    pub platform: String,
    /// The node that holds the lease.
    pub owner: String,
    /// The messages it carries, oldest first.
    pub messages: Vec<i64>,
    /// The URL, secrets masked.
    pub url: String,
    /// The request body, signature masked.
    pub request: Value,
    /// For a digest: the rendered digest (an `OutboundMessage`).
    pub digest: Option<Value>,
    /// The limiter after this send.
    pub limiter: LimiterState,
    /// Now, ms since the epoch.
    pub now_ms: i64,
    /// The lease is extended to this time.
    pub lease_until: i64,
}

/// What a send's answer means for one of its messages.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageUpdate {
    /// Delivered (alone, or folded when the send was a digest).
    Delivered,
    /// Back in the queue.
    Requeue {
        /// Not before this time (ms since the epoch).
        not_before: i64,
        /// Whether this send counts as a failed attempt (rate-limit refusals do not).
        count_attempt: bool,
        /// Never fold it again.
        solo: bool,
    },
    /// Failed for good: a dead letter.
    Fail {
        /// `NS:KIND`.
        error_type: String,
        /// Description.
        error: String,
    },
}

/// A send's answer and its consequences.
#[derive(Debug, Clone, PartialEq)]
pub struct SendCompletion {
    /// The send.
    pub send_id: String,
    /// The connection.
    pub connection: String,
    /// The outcome.
    pub outcome: SendOutcome,
    /// HTTP status, when an answer came.
    pub status_code: Option<u16>,
    /// The answer body (truncated).
    pub response: Option<String>,
    /// `NS:KIND` on failure.
    pub error_type: Option<String>,
    /// Description on failure.
    pub error: Option<String>,
    /// How long the request took.
    pub duration_ms: i64,
    /// Each message's fate.
    pub updates: Vec<(i64, MessageUpdate)>,
    /// Pause the connection until then, for this reason.
    pub pause: Option<(i64, String)>,
    /// The limiter after the answer (a pause leaves no burst), when it changed.
    pub limiter: Option<LimiterState>,
    /// Now, ms since the epoch.
    pub now_ms: i64,
}

/// A delivered digest: `GET /v1/digests/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DigestRow {
    /// The digest's id.
    pub id: String,
    /// The connection it went through.
    pub connection: String,
    /// When it was sent, ms since the epoch.
    pub sent_at: i64,
    /// The ids of the events it folded, in order.
    pub events: Vec<String>,
    /// The digest as rendered.
    pub message: Value,
    /// The request as sent (signature masked).
    pub request: Value,
}
