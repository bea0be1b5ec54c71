//! Flows: triggers, steps, robot messages and retry policies.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ConfigError;
use crate::error_type::ErrorMatcher;
use crate::names::check_name;

/// An integration flow (集成流): a trigger and steps over a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// The flow name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// What starts the flow.
    #[serde(default)]
    pub trigger: TriggerSpec,
    /// The steps, run in order.
    pub steps: Vec<StepSpec>,
}

/// What starts a flow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// The trigger kind.
    #[serde(rename = "type", default)]
    pub kind: TriggerKind,
    /// The listen path (监听路径): `POST /hooks/{path}` starts the flow with the request body as
    /// its payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The subject of the events a listen path stores: text and `{{ payload.field }}` lookups
    /// over the request body (e.g. `"{{ payload.host }}"`). Default: the flow's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Trigger kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    /// Started by rules that target the flow; the event is the message payload.
    #[default]
    Eventbridge,
}

/// An expression: a string is a literal, a Jinja template (`{{ … }}`) or a
/// `def dw_process(msg): …` function; objects and arrays are evaluated member by member.
pub type Expr = Value;

/// One step of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum StepSpec {
    /// Sets `msg.vars[name]`.
    SetVariable(SetVariableStep),
    /// Sets `msg.payload`.
    SetPayload(SetPayloadStep),
    /// Removes `msg.vars[name]`.
    RemoveVariable(RemoveVariableStep),
    /// Writes a log line; does not change the message.
    Logger(LoggerStep),
    /// Runs steps and hands errors to the first matching catch.
    Try(TryStep),
    /// Runs the first branch whose condition is true.
    Choice(ChoiceStep),
    /// Raises an error of a chosen type.
    RaiseError(RaiseErrorStep),
    /// Sends a message through a robot connection.
    Robot(RobotStep),
}

impl StepSpec {
    /// The step's kind as written in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            StepSpec::SetVariable(_) => "set-variable",
            StepSpec::SetPayload(_) => "set-payload",
            StepSpec::RemoveVariable(_) => "remove-variable",
            StepSpec::Logger(_) => "logger",
            StepSpec::Try(_) => "try",
            StepSpec::Choice(_) => "choice",
            StepSpec::RaiseError(_) => "raise-error",
            StepSpec::Robot(_) => "robot",
        }
    }
}

/// `set-variable`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetVariableStep {
    /// Variable name.
    pub name: String,
    /// Its value.
    pub value: Expr,
}

/// `set-payload`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPayloadStep {
    /// The new payload.
    pub value: Expr,
}

/// `remove-variable`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveVariableStep {
    /// Variable name.
    pub name: String,
}

/// Log levels of the logger step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Debug.
    #[serde(alias = "debug")]
    Debug,
    /// Info (default).
    #[default]
    #[serde(alias = "info")]
    Info,
    /// Warning.
    #[serde(alias = "warn", alias = "WARNING", alias = "warning")]
    Warn,
    /// Error.
    #[serde(alias = "error")]
    Error,
}

impl LogLevel {
    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        }
    }
}

/// `logger`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggerStep {
    /// Level (日志级别).
    #[serde(default)]
    pub level: LogLevel,
    /// Category (日志类别).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Content (日志内容), converted to a string.
    pub message: Expr,
}

/// `try`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TryStep {
    /// The steps tried.
    pub steps: Vec<StepSpec>,
    /// Error handlers; the first whose types match runs, and the flow goes on after the try.
    #[serde(default)]
    pub catch: Vec<CatchSpec>,
}

/// One catch of a try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatchSpec {
    /// Error types caught: `ANY`, `KIND`, `CONNECTOR:ANY` or `CONNECTOR:KIND` (default `ANY`).
    #[serde(default = "any_error")]
    pub errors: Vec<String>,
    /// Steps run with `msg.error` set.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
}

/// `choice`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceStep {
    /// Branches, tried in order.
    pub when: Vec<WhenBranch>,
    /// Steps run when no branch matches.
    #[serde(default)]
    pub otherwise: Vec<StepSpec>,
}

/// One branch of a choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenBranch {
    /// A condition expression; the branch runs when it is truthy.
    pub condition: Expr,
    /// The branch's steps.
    pub steps: Vec<StepSpec>,
}

/// `raise-error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RaiseErrorStep {
    /// The error type, e.g. `APP:VALIDATION` or `VALIDATION`.
    #[serde(rename = "type")]
    pub error_type: String,
    /// The description.
    #[serde(default)]
    pub description: Expr,
}

/// Message kinds a robot step can send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// Plain text (all platforms).
    Text,
    /// Markdown: WeCom and DingTalk markdown; Feishu/Lark get a `post` built from it.
    #[default]
    Markdown,
    /// Feishu/Lark rich-text `post` (content is the post's paragraphs, or text split in lines).
    Post,
}

/// `robot`: send through a robot connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotStep {
    /// The connection's name.
    pub connection: String,
    /// What kind of message (default markdown).
    #[serde(default)]
    pub message: MessageKind,
    /// Title (DingTalk markdown's title, Feishu post title). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Expr>,
    /// The message content.
    pub content: Expr,
    /// Retries of retryable failures (rate limits, timeouts, platform errors).
    #[serde(default)]
    pub retry: RetryPolicy,
}

/// How a failing send is retried. Retryable failures are retried with exponential backoff and
/// jitter until `attempts` sends have failed or the message is `max_age` old; then it is a dead
/// letter and the error reaches the flow's catch. Waiting for a rate-limit slot or a platform's
/// penalty uses up neither.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Total sends including the first (default 4; 1 means no retry).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The first wait (default 1s); each further wait doubles.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// The longest wait (default 5m), also capping a platform's retry-after hint.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long a message may wait, queued or retried, before it is given up (default 6h, as
    /// Tencent EventBridge).
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            backoff: default_backoff(),
            max_backoff: default_max_backoff(),
            max_age: default_max_age(),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (from 1): exponential from `backoff` with
    /// equal jitter (seeded, so a replay computes the same wait), at least the platform's `hint`,
    /// at most `max_backoff`.
    pub fn backoff_after(&self, attempt: u32, hint: Option<Duration>, seed: u64) -> Duration {
        let base = self.backoff.as_millis() as u64;
        let cap = self.max_backoff.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(30)).min(cap);
        let half = exp / 2;
        // SplitMix64 of the seed and attempt: cheap, well mixed, no dependency.
        let mut z = seed ^ (u64::from(attempt)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let jittered = half + if half > 0 { z % (half + 1) } else { 0 };
        Duration::from_millis(jittered).max(hint.unwrap_or_default()).min(self.max_backoff)
    }
}

fn default_attempts() -> u32 {
    4
}
fn default_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}
fn default_max_age() -> Duration {
    Duration::from_secs(6 * 3600)
}
impl FlowSpec {
    /// Checks the flow's own fields and the connections it names; `at` is its path for errors.
    pub fn validate(&self, at: &str, connection_exists: &dyn Fn(&str) -> bool) -> Result<(), ConfigError> {
        check_name(&self.name).map_err(|r| ConfigError::new(format!("{at}.name"), r))?;
        if let Some(path) = &self.trigger.path {
            check_listen_path(path).map_err(|r| ConfigError::new(format!("{at}.trigger.path"), r))?;
        }
        if self.steps.is_empty() {
            return Err(ConfigError::new(format!("{at}.steps"), "a flow needs at least one step"));
        }
        validate_steps(&self.steps, &format!("{at}.steps"), connection_exists)
    }
}

fn validate_steps(steps: &[StepSpec], at: &str, connection_exists: &dyn Fn(&str) -> bool) -> Result<(), ConfigError> {
    for (i, step) in steps.iter().enumerate() {
        let at = format!("{at}[{i}].{}", step.kind());
        match step {
            StepSpec::SetVariable(s) => check_var(&s.name, &format!("{at}.name"))?,
            StepSpec::RemoveVariable(s) => check_var(&s.name, &format!("{at}.name"))?,
            StepSpec::SetPayload(_) | StepSpec::Logger(_) => {}
            StepSpec::Try(t) => {
                validate_steps(&t.steps, &format!("{at}.steps"), connection_exists)?;
                for (j, c) in t.catch.iter().enumerate() {
                    if c.errors.is_empty() {
                        return Err(ConfigError::new(
                            format!("{at}.catch[{j}].errors"),
                            "list at least one error type, or ANY",
                        ));
                    }
                    for (k, e) in c.errors.iter().enumerate() {
                        ErrorMatcher::parse(e)
                            .map_err(|r| ConfigError::new(format!("{at}.catch[{j}].errors[{k}]"), r))?;
                    }
                    validate_steps(&c.steps, &format!("{at}.catch[{j}].steps"), connection_exists)?;
                }
            }
            StepSpec::Choice(c) => {
                for (j, w) in c.when.iter().enumerate() {
                    validate_steps(&w.steps, &format!("{at}.when[{j}].steps"), connection_exists)?;
                }
                validate_steps(&c.otherwise, &format!("{at}.otherwise"), connection_exists)?;
            }
            StepSpec::RaiseError(r) => {
                crate::error_type::ErrorType::parse(&r.error_type)
                    .map_err(|e| ConfigError::new(format!("{at}.type"), e))?;
            }
            StepSpec::Robot(r) => {
                if !connection_exists(&r.connection) {
                    return Err(ConfigError::new(
                        format!("{at}.connection"),
                        format!("unknown connection {:?}", r.connection),
                    ));
                }
                if r.retry.attempts == 0 || r.retry.attempts > 100 {
                    return Err(ConfigError::new(format!("{at}.retry.attempts"), "between 1 and 100"));
                }
                if r.retry.max_age.is_zero() || r.retry.max_age > Duration::from_secs(7 * 24 * 3600) {
                    return Err(ConfigError::new(format!("{at}.retry.max_age"), "between 1ms and 7 days"));
                }
                if r.retry.max_backoff < r.retry.backoff {
                    return Err(ConfigError::new(
                        format!("{at}.retry.max_backoff"),
                        "must not be shorter than backoff",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks a listen path: 1–128 characters of letters, digits, `-`, `_`, `.` and `/`, without
/// `..`, and not starting or ending with `/`.
pub fn check_listen_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.len() <= 128
        && path.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && !path.contains("..")
        && !path.starts_with('/')
        && !path.ends_with('/');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path:?} is not a listen path: use letters, digits, '-', '_', '.' and inner '/', e.g. ebtestwecom (served at POST /hooks/ebtestwecom)"
        ))
    }
}

fn check_var(name: &str, at: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            at,
            format!("{name:?} is not a variable name (letters, digits and '_', not starting with a digit)"),
        ))
    }
}

fn any_error() -> Vec<String> {
    vec!["ANY".to_string()]
}
