//! Statuses shared by the stages: how a flow step ended.

use serde::{Deserialize, Serialize};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It did its work.
    Ok,
    /// A try step whose error a catch handled.
    Caught,
    /// It raised an error (or a send failed for good).
    Error,
}

impl StepStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ok => "ok",
            StepStatus::Caught => "caught",
            StepStatus::Error => "error",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<StepStatus> {
        Some(match s {
            "ok" => StepStatus::Ok,
            "caught" => StepStatus::Caught,
            "error" => StepStatus::Error,
            _ => return None,
        })
    }
}

impl std::fmt::Display for StepStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}
