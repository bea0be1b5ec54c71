//! The message a flow works on, and flow errors.

use magpie_core::ErrorType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The message passed from step to step (the iPaaS `msg`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Message id (the event id for rule-triggered flows).
    pub id: String,
    /// The body: the event, for flows started by rules.
    pub payload: Value,
    /// Metadata: bus, rule, event id, source, type.
    pub attrs: Map<String, Value>,
    /// Flow variables, visible to every later step.
    pub vars: Map<String, Value>,
    /// The error being handled, inside a catch.
    pub error: Option<FlowError>,
}

impl Message {
    /// A message with this id and payload.
    pub fn new(id: impl Into<String>, payload: Value) -> Self {
        Self { id: id.into(), payload, ..Default::default() }
    }

    /// The message as JSON, as expressions see it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "payload": self.payload,
            "attrs": self.attrs,
            "vars": self.vars,
            "error": self.error.as_ref().map(FlowError::to_json),
        })
    }
}

/// An error raised in a flow: a type and a description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{error_type}: {description}")]
pub struct FlowError {
    /// `CONNECTOR:KIND`.
    pub error_type: ErrorType,
    /// What happened.
    pub description: String,
}

impl FlowError {
    /// Builds an error.
    pub fn new(error_type: ErrorType, description: impl Into<String>) -> Self {
        Self { error_type, description: description.into() }
    }

    /// An expression failed.
    pub fn expression(description: impl Into<String>) -> Self {
        Self::new(ErrorType::new("FLOW", magpie_core::error_type::kinds::EXPRESSION), description)
    }

    /// The error as expressions see it: `code`/`desc` (Dataway) and `Code`/`Description`.
    pub fn to_json(&self) -> Value {
        let code = self.error_type.to_string();
        json!({"code": code, "desc": self.description, "Code": code, "Description": self.description,
               "type": self.error_type.kind, "namespace": self.error_type.namespace})
    }
}
