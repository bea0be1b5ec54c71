//! The configuration schema: buses, connections, rules and flows, as written in `magpie.yaml`
//! and sent over the HTTP API.
//!
//! Parsing reports the path of a faulty field (`flows[0].steps[1].robot.connection: …`);
//! [`ConfigDocument::validate`] checks what parsing cannot: names, references between objects
//! and duplicates. Patterns and expressions are checked by their own crates.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error_type::ErrorMatcher;
use crate::names::check_name;

/// A whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDocument {
    /// Event buses (事件集). `default` always exists and need not be listed.
    #[serde(default)]
    pub buses: Vec<BusSpec>,
    /// Named destinations with their secrets.
    #[serde(default)]
    pub connections: Vec<ConnectionSpec>,
    /// Integration flows.
    #[serde(default)]
    pub flows: Vec<FlowSpec>,
    /// Event rules.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// A configuration error with the path of the faulty field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    /// Where the fault is, e.g. `flows[0].steps[1].robot.connection`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl ConfigError {
    /// Builds an error at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { path: path.into(), reason: reason.into() }
    }
}

/// An event bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSpec {
    /// The bus name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// The robot platforms Magpie can send to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// WeCom (企业微信) group robot.
    Wecom,
    /// DingTalk (钉钉) custom robot.
    Dingtalk,
    /// Feishu (飞书) custom bot.
    Feishu,
    /// Lark custom bot (Feishu's international twin).
    Lark,
}

impl Platform {
    /// The platform's name as written in configuration and error types.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Wecom => "wecom",
            Platform::Dingtalk => "dingtalk",
            Platform::Feishu => "feishu",
            Platform::Lark => "lark",
        }
    }

    /// The namespace of this platform's error types (`WECOM:RATE_LIMITED`).
    pub fn error_namespace(self) -> &'static str {
        match self {
            Platform::Wecom => "WECOM",
            Platform::Dingtalk => "DINGTALK",
            Platform::Feishu => "FEISHU",
            Platform::Lark => "LARK",
        }
    }
}

/// A named destination and its secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// The connection name, referenced by robot steps.
    pub name: String,
    /// The platform.
    pub platform: Platform,
    /// The full webhook URL. May hold `${ENV}` references, resolved when sending.
    pub webhook: String,
    /// DingTalk 加签 or Feishu/Lark signature secret. May be a `${ENV}` reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The robot's custom keywords: a message lacking all of them gets the first prepended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// How long to wait for the platform's answer (default 10s).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// An event rule: a pattern over one bus and the targets of the events it matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// The rule name, unique within its bus.
    pub name: String,
    /// The bus the rule listens on.
    #[serde(default = "default_bus")]
    pub bus: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The event pattern (see magpie-pattern).
    pub pattern: Value,
    /// Whether the rule routes events.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where matching events go.
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
}

/// A rule target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The flow that receives the event as its payload.
    pub flow: String,
}

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
/// jitter until `attempts` sends have been made; then the error reaches the flow's catch.
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
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: default_attempts(), backoff: default_backoff(), max_backoff: default_max_backoff() }
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
fn default_bus() -> String {
    crate::DEFAULT_BUS.to_string()
}
fn yes() -> bool {
    true
}
fn any_error() -> Vec<String> {
    vec!["ANY".to_string()]
}

/// Parses a YAML or JSON document into `T`, naming the path of the faulty field on error.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let value: Value = serde_saphyr::from_str(text).map_err(|e| ConfigError::new("(document)", e.to_string()))?;
    from_value(value)
}

/// Converts JSON into `T`, naming the path of the faulty field on error.
pub fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "(document)".to_string() } else { path };
        ConfigError::new(path, e.into_inner().to_string())
    })
}

impl ConfigDocument {
    /// Parses a `magpie.yaml` document.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        parse_yaml(text)
    }

    /// Checks names, duplicates and references between the objects of this document.
    ///
    /// `known` holds objects that exist outside the document (already stored), so references to
    /// them are accepted.
    pub fn validate(&self, known: &KnownNames) -> Result<(), ConfigError> {
        let mut buses: HashSet<&str> = known.buses.iter().map(String::as_str).collect();
        buses.insert(crate::DEFAULT_BUS);
        let mut seen = HashSet::new();
        for (i, b) in self.buses.iter().enumerate() {
            check_name(&b.name).map_err(|r| ConfigError::new(format!("buses[{i}].name"), r))?;
            if !seen.insert(b.name.as_str()) {
                return Err(ConfigError::new(format!("buses[{i}].name"), format!("bus {:?} is defined twice", b.name)));
            }
            buses.insert(&b.name);
        }
        let mut connections: HashSet<&str> = known.connections.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        for (i, c) in self.connections.iter().enumerate() {
            let at = format!("connections[{i}]");
            c.validate(&at)?;
            if !seen.insert(c.name.as_str()) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("connection {:?} is defined twice", c.name),
                ));
            }
            connections.insert(&c.name);
        }
        let mut flows: HashSet<&str> = known.flows.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        let mut paths: HashMap<&str, &str> = HashMap::new();
        for (i, f) in self.flows.iter().enumerate() {
            if let Some(p) = f.trigger.path.as_deref()
                && let Some(other) = paths.insert(p, &f.name)
                && other != f.name
            {
                return Err(ConfigError::new(
                    format!("flows[{i}].trigger.path"),
                    format!("{p:?} is already the listen path of flow {other:?}"),
                ));
            }
            let at = format!("flows[{i}]");
            f.validate(&at, &|c| connections.contains(c))?;
            if !seen.insert(f.name.as_str()) {
                return Err(ConfigError::new(format!("{at}.name"), format!("flow {:?} is defined twice", f.name)));
            }
            flows.insert(&f.name);
        }
        let mut seen = HashSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("rules[{i}]");
            r.validate(&at, &|b| buses.contains(b), &|f| flows.contains(f))?;
            if !seen.insert((r.bus.as_str(), r.name.as_str())) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("rule {:?} is defined twice on bus {:?}", r.name, r.bus),
                ));
            }
        }
        Ok(())
    }
}

/// Names of objects that already exist, for reference checks.
#[derive(Debug, Clone, Default)]
pub struct KnownNames {
    /// Bus names.
    pub buses: Vec<String>,
    /// Connection names.
    pub connections: Vec<String>,
    /// Flow names.
    pub flows: Vec<String>,
}

impl ConnectionSpec {
    /// Checks the connection's own fields; `at` is its path for errors.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        check_name(&self.name).map_err(|r| ConfigError::new(format!("{at}.name"), r))?;
        let webhook = &self.webhook;
        if webhook.trim().is_empty() {
            return Err(ConfigError::new(format!("{at}.webhook"), "the webhook URL is empty"));
        }
        if !(webhook.starts_with("http://") || webhook.starts_with("https://") || webhook.starts_with("${")) {
            return Err(ConfigError::new(
                format!("{at}.webhook"),
                "the webhook URL must start with https:// (or http:// for a local simulator)",
            ));
        }
        crate::env::check_references(webhook).map_err(|r| ConfigError::new(format!("{at}.webhook"), r))?;
        if let Some(secret) = &self.secret {
            if matches!(self.platform, Platform::Wecom) {
                return Err(ConfigError::new(format!("{at}.secret"), "WeCom robots have no signing secret"));
            }
            if secret.is_empty() {
                return Err(ConfigError::new(
                    format!("{at}.secret"),
                    "the secret is empty; remove the field to send unsigned",
                ));
            }
            crate::env::check_references(secret).map_err(|r| ConfigError::new(format!("{at}.secret"), r))?;
        }
        if self.keywords.len() > 10 {
            return Err(ConfigError::new(format!("{at}.keywords"), "a robot takes at most 10 keywords"));
        }
        if let Some(i) = self.keywords.iter().position(|k| k.trim().is_empty()) {
            return Err(ConfigError::new(format!("{at}.keywords[{i}]"), "a keyword cannot be empty"));
        }
        Ok(())
    }
}

impl RuleSpec {
    /// Checks the rule's own fields and references; `at` is its path for errors.
    pub fn validate(
        &self,
        at: &str,
        bus_exists: &dyn Fn(&str) -> bool,
        flow_exists: &dyn Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        check_name(&self.name).map_err(|r| ConfigError::new(format!("{at}.name"), r))?;
        if !bus_exists(&self.bus) {
            return Err(ConfigError::new(format!("{at}.bus"), format!("unknown bus {:?}", self.bus)));
        }
        if self.description.chars().count() > 200 {
            return Err(ConfigError::new(format!("{at}.description"), "at most 200 characters"));
        }
        for (j, t) in self.targets.iter().enumerate() {
            if !flow_exists(&t.flow) {
                return Err(ConfigError::new(format!("{at}.targets[{j}].flow"), format!("unknown flow {:?}", t.flow)));
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_field_path() {
        let err =
            ConfigDocument::from_yaml("flows:\n  - name: f1\n    steps:\n      - logger: {message: hi, colour: red}\n")
                .unwrap_err();
        assert_eq!(err.path, "flows[0].steps[0].logger.colour");
        assert!(err.reason.contains("colour"), "{err}");
        let err = ConfigDocument::from_yaml("rules:\n  - name: r1\n").unwrap_err();
        assert!(err.reason.contains("pattern"), "{err}");
        let err = ConfigDocument::from_yaml("buses: [\n").unwrap_err();
        assert_eq!(err.path, "(document)");
    }

    #[test]
    fn validation_checks_references() {
        let doc = ConfigDocument::from_yaml(
            "flows:\n  - name: f1\n    steps:\n      - try:\n          steps:\n            - robot: {connection: nope, content: hi}\n",
        )
        .unwrap();
        let err = doc.validate(&KnownNames::default()).unwrap_err();
        assert_eq!(err.path, "flows[0].steps[0].try.steps[0].robot.connection");
        let doc = ConfigDocument::from_yaml("rules:\n  - {name: r1, bus: missing, pattern: {source: [a]}}\n").unwrap();
        assert_eq!(doc.validate(&KnownNames::default()).unwrap_err().path, "rules[0].bus");
        let doc =
            ConfigDocument::from_yaml("rules:\n  - {name: r1, pattern: {source: [a]}, targets: [{flow: nope}]}\n")
                .unwrap();
        assert_eq!(doc.validate(&KnownNames::default()).unwrap_err().path, "rules[0].targets[0].flow");
    }

    #[test]
    fn bad_catch_error_type_is_refused() {
        let doc = ConfigDocument::from_yaml(
            "flows:\n  - name: f1\n    steps:\n      - try:\n          steps: [{logger: {message: x}}]\n          catch: [{errors: ['a:b:c']}]\n",
        )
        .unwrap();
        let err = doc.validate(&KnownNames::default()).unwrap_err();
        assert_eq!(err.path, "flows[0].steps[0].try.catch[0].errors[0]");
    }
}
