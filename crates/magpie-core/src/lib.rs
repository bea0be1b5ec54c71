//! Types shared by every Magpie stage: the event envelope, configuration objects (buses, rules,
//! connections, flows), error types, names, `${ENV}` references and the built-in event templates.

pub mod alert;
pub mod auth;
pub mod config;
pub mod env;
pub mod error_type;
pub mod event;
pub mod json;
pub mod names;
pub mod outbound;
pub mod rate;
pub mod status;
pub mod templates;

pub use config::{ConfigDocument, ConfigError};
pub use error_type::{ErrorMatcher, ErrorType, FailureKind};
pub use event::{Event, EventError, EventLimits};
pub use outbound::{OutboundMessage, Retry};
pub use rate::{RateLimit, RateSpec};
pub use status::StepStatus;

/// The bus that exists from the start: the cloud-service event set (云服务事件集).
pub const DEFAULT_BUS: &str = "default";

/// The internal bus that holds requests to flows' listen paths (`POST /hooks/{path}`). Its name
/// is not a valid bus name, so no one can create it or put events on it.
pub const HOOKS_BUS: &str = "_hooks";

/// The rule name shown for flow runs started by a listen path.
pub const HOOK_RULE: &str = "(listen path)";

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
