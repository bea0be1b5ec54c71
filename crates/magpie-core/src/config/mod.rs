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

use crate::names::check_name;

mod connection;
mod flow;

pub use connection::{ConnectionSpec, Platform};
pub use flow::{
    CatchSpec, ChoiceStep, Expr, FlowSpec, LogLevel, LoggerStep, MessageKind, RaiseErrorStep, RemoveVariableStep,
    RetryPolicy, RobotStep, SetPayloadStep, SetVariableStep, StepSpec, TriggerKind, TriggerSpec, TryStep, WhenBranch,
    check_listen_path,
};

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
    /// API tokens (server setting: read by `magpie serve --config` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<crate::auth::AuthSpec>,
    /// Where connections may send (server setting: read by `magpie serve --config` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<crate::auth::OutboundSpec>,
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
    /// How long events are kept in the archive (default 7 days): older events, their flow runs
    /// and traces are removed by a background sweep.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
    /// The region of the events put on this bus, filled into those that carry none (Tencent's
    /// PutEvents takes it from the request, not the event). Default: the server's `--region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The archive retention of a bus that does not set one.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl BusSpec {
    /// A bus with this name and description, default retention.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self { name: name.into(), description: description.into(), retention: None, region: None }
    }

    /// The retention in force.
    pub fn retention(&self) -> Duration {
        self.retention.unwrap_or(DEFAULT_RETENTION)
    }
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
    /// How events with `status` `"1"`/`"0"` are told as alerts (key, repeat interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<crate::alert::AlertSpec>,
}

/// A rule target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The flow that receives the event as its payload.
    pub flow: String,
}

fn default_bus() -> String {
    crate::DEFAULT_BUS.to_string()
}
fn yes() -> bool {
    true
}
/// Parses a YAML or JSON document into `T`, naming the path of the faulty field on error.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let value = crate::json::parse_yaml(text).map_err(|e| ConfigError::new("(document)", e))?;
    from_value(value)
}

/// Writes `value` as YAML (what `magpie flow diff` and the console show).
pub fn to_yaml<T: serde::Serialize>(value: &T) -> String {
    let v = match serde_json::to_value(value) {
        Ok(v) => v,
        Err(e) => return format!("# cannot be written as YAML: {e}\n"),
    };
    serde_saphyr::to_string(&PlainNumbers(&v)).unwrap_or_else(|e| format!("# cannot be written as YAML: {e}\n"))
}

/// JSON with its numbers as plain integers and floats: serde_json's arbitrary-precision numbers
/// would otherwise be written as a private map by other formats' serializers.
struct PlainNumbers<'a>(&'a Value);

impl serde::Serialize for PlainNumbers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    s.serialize_i64(i)
                } else if let Some(u) = n.as_u64() {
                    s.serialize_u64(u)
                } else if let Some(f) = n.as_f64().filter(|f| f.is_finite()) {
                    s.serialize_f64(f)
                } else {
                    s.serialize_str(&n.to_string())
                }
            }
            Value::String(t) => s.serialize_str(t),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for x in a {
                    seq.serialize_element(&PlainNumbers(x))?;
                }
                seq.end()
            }
            Value::Object(o) => {
                let mut map = s.serialize_map(Some(o.len()))?;
                for (k, x) in o {
                    map.serialize_entry(k, &PlainNumbers(x))?;
                }
                map.end()
            }
        }
    }
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
            if let Some(r) = b.retention
                && (r < Duration::from_secs(1) || r > Duration::from_secs(10 * 365 * 24 * 3600))
            {
                return Err(ConfigError::new(format!("buses[{i}].retention"), "between 1s and 10 years"));
            }
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
        if let Some(a) = &self.alert {
            if a.key.as_deref().is_some_and(|k| k.trim().is_empty() || k.len() > 1000) {
                return Err(ConfigError::new(format!("{at}.alert.key"), "a key template of 1 to 1000 characters"));
            }
            if a.repeat_interval.is_some_and(|d| d > Duration::from_secs(365 * 24 * 3600)) {
                return Err(ConfigError::new(format!("{at}.alert.repeat_interval"), "at most 365 days"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_written_reads_back_as_the_same_document() {
        let v: Value = crate::json::parse_yaml(
            "a: 4\nb: -2.5\nc: [1, 18446744073709551615, true, null]\nd: {e: \"x: y\", f: \"line\\nline\\n\"}\n",
        )
        .unwrap();
        let text = to_yaml(&v);
        assert!(!text.contains("serde_json"), "{text}");
        assert_eq!(crate::json::parse_yaml(&text).unwrap(), v, "{text}");
    }

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
    fn backoff_grows_with_jitter_honours_hints_and_caps() {
        let p = RetryPolicy {
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let b1 = p.backoff_after(1, None, 7);
        let b3 = p.backoff_after(3, None, 7);
        assert!(b1 >= Duration::from_millis(500) && b1 <= Duration::from_secs(1), "{b1:?}");
        assert!(b3 >= Duration::from_secs(2) && b3 <= Duration::from_secs(4), "{b3:?}");
        assert_eq!(p.backoff_after(3, None, 7), b3, "the same seed gives the same wait");
        assert!((0..50).map(|s| p.backoff_after(3, None, s)).collect::<HashSet<_>>().len() > 5, "jitter spreads");
        assert!(p.backoff_after(30, None, 1) <= Duration::from_secs(10));
        assert_eq!(p.backoff_after(1, Some(Duration::from_secs(60)), 1), Duration::from_secs(10), "hint capped");
        assert_eq!(p.backoff_after(1, Some(Duration::from_secs(3)), 1), Duration::from_secs(3), "hint honoured");
    }

    #[test]
    fn connection_rates_and_bus_retention() {
        let doc = ConfigDocument::from_yaml(
            "buses: [{name: ops, retention: 2d}]\nconnections:\n  - {name: c1, platform: wecom, webhook: 'https://x/?key=k'}\n  - {name: c2, platform: feishu, webhook: 'https://x/hook/t', rate: unlimited, penalty: 5s}\n  - {name: c3, platform: wecom, webhook: 'https://x/?key=k', rate: [5/2s]}\n",
        )
        .unwrap();
        doc.validate(&KnownNames::default()).unwrap();
        assert_eq!(doc.buses[0].retention(), Duration::from_secs(2 * 86400));
        assert_eq!(doc.connections[0].rate_limits(), Platform::Wecom.rate_limits());
        assert!(doc.connections[1].rate_limits().is_empty());
        assert_eq!(doc.connections[2].rate_limits(), [crate::RateLimit::new(5, Duration::from_secs(2))]);
        let err = ConfigDocument::from_yaml(
            "connections: [{name: a, platform: wecom, webhook: 'https://x', rate: 20/fortnight}]",
        )
        .unwrap_err();
        assert_eq!(err.path, "connections[0].rate");
        let doc = ConfigDocument::from_yaml("buses: [{name: ops, retention: 10ms}]").unwrap();
        assert_eq!(doc.validate(&KnownNames::default()).unwrap_err().path, "buses[0].retention");
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
