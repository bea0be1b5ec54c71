//! Error types (`CONNECTOR:KIND`) and the matchers of catch blocks.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An error type: a namespace (the connector, `FLOW`, `HTTP`, or an application's) and a kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ErrorType {
    /// Namespace, e.g. `WECOM`.
    pub namespace: String,
    /// Kind, e.g. `RATE_LIMITED`.
    pub kind: String,
}

/// Kinds every connector uses.
pub mod kinds {
    /// The platform refused for rate.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// Wrong key, token, signature, keyword or IP allow-list.
    pub const AUTH: &str = "AUTH";
    /// The platform refused the message itself (schema, size).
    pub const BAD_REQUEST: &str = "BAD_REQUEST";
    /// The platform could not be reached.
    pub const CONNECTIVITY: &str = "CONNECTIVITY";
    /// The platform did not answer in time.
    pub const TIMEOUT: &str = "TIMEOUT";
    /// The platform failed (busy, 5xx, unknown error code).
    pub const REMOTE: &str = "REMOTE";
    /// An expression failed.
    pub const EXPRESSION: &str = "EXPRESSION";
    /// A configuration problem found when running (e.g. a missing secret).
    pub const CONFIG: &str = "CONFIG";
    /// A message was not delivered within its retry policy's maximum age.
    pub const EXPIRED: &str = "EXPIRED";
}

/// Why a delivery failed: the kind of a connector's error type (`WECOM:RATE_LIMITED`). One type
/// from the connector's classification to the stored attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureKind {
    /// The platform refused for rate.
    RateLimited,
    /// Wrong key, token, signature, keyword or IP allow-list.
    Auth,
    /// The platform refused the message itself (schema, size).
    BadRequest,
    /// The platform could not be reached.
    Connectivity,
    /// The platform did not answer in time.
    Timeout,
    /// The platform failed (busy, 5xx, unknown error code).
    Remote,
    /// The connection cannot be used as configured (e.g. a missing secret).
    Config,
    /// The message was not delivered within its maximum age.
    Expired,
}

impl FailureKind {
    /// The kind as written in error types.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::RateLimited => kinds::RATE_LIMITED,
            FailureKind::Auth => kinds::AUTH,
            FailureKind::BadRequest => kinds::BAD_REQUEST,
            FailureKind::Connectivity => kinds::CONNECTIVITY,
            FailureKind::Timeout => kinds::TIMEOUT,
            FailureKind::Remote => kinds::REMOTE,
            FailureKind::Config => kinds::CONFIG,
            FailureKind::Expired => kinds::EXPIRED,
        }
    }

    /// The error type of this kind in a namespace (`WECOM:AUTH`).
    pub fn in_namespace(self, namespace: &str) -> ErrorType {
        ErrorType::new(namespace, self.as_str())
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorType {
    /// Builds an error type.
    pub fn new(namespace: impl Into<String>, kind: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), kind: kind.into() }
    }

    /// Parses `NAMESPACE:KIND`, or a bare `KIND` (namespace `APP`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ns, kind) = match s.split_once(':') {
            Some((ns, kind)) => (ns, kind),
            None => ("APP", s),
        };
        check_part(ns, s)?;
        check_part(kind, s)?;
        if kind == "ANY" {
            return Err(format!("{s:?}: ANY matches errors, it cannot be raised"));
        }
        Ok(Self::new(ns, kind))
    }
}

fn check_part(p: &str, whole: &str) -> Result<(), String> {
    let ok = !p.is_empty() && p.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{whole:?} is not an error type: write NAMESPACE:KIND or KIND in upper case, e.g. WECOM:RATE_LIMITED"
        ))
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.namespace, self.kind)
    }
}

impl TryFrom<String> for ErrorType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (ns, kind) = s.split_once(':').ok_or_else(|| format!("{s:?} is not NAMESPACE:KIND"))?;
        Ok(Self::new(ns, kind))
    }
}

impl From<ErrorType> for String {
    fn from(e: ErrorType) -> String {
        e.to_string()
    }
}

/// What a catch matches: `ANY`, `KIND` (in any namespace), `NS:ANY` or `NS:KIND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorMatcher {
    /// Every error.
    Any,
    /// A kind in any namespace.
    Kind(String),
    /// Every kind of one namespace.
    Namespace(String),
    /// One exact type.
    Exact(ErrorType),
}

impl ErrorMatcher {
    /// Parses a catch's error type.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("ANY") {
            return Ok(ErrorMatcher::Any);
        }
        match s.split_once(':') {
            None => {
                check_part(s, s)?;
                Ok(ErrorMatcher::Kind(s.to_string()))
            }
            Some((ns, kind)) => {
                check_part(ns, s)?;
                if kind == "ANY" {
                    return Ok(ErrorMatcher::Namespace(ns.to_string()));
                }
                check_part(kind, s)?;
                Ok(ErrorMatcher::Exact(ErrorType::new(ns, kind)))
            }
        }
    }

    /// Whether `e` is caught.
    pub fn matches(&self, e: &ErrorType) -> bool {
        match self {
            ErrorMatcher::Any => true,
            ErrorMatcher::Kind(k) => &e.kind == k,
            ErrorMatcher::Namespace(ns) => &e.namespace == ns,
            ErrorMatcher::Exact(x) => x == e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        let e = ErrorType::new("WECOM", "RATE_LIMITED");
        for (m, want) in [
            ("ANY", true),
            ("any", true),
            ("RATE_LIMITED", true),
            ("AUTH", false),
            ("WECOM:ANY", true),
            ("DINGTALK:ANY", false),
            ("WECOM:RATE_LIMITED", true),
            ("WECOM:AUTH", false),
        ] {
            assert_eq!(ErrorMatcher::parse(m).unwrap().matches(&e), want, "{m}");
        }
        assert!(ErrorMatcher::parse("a:b").is_err());
        assert!(ErrorMatcher::parse("A:B:C").is_err());
        assert_eq!(ErrorType::parse("VALIDATION").unwrap().to_string(), "APP:VALIDATION");
        assert!(ErrorType::parse("X:ANY").is_err());
    }
}
