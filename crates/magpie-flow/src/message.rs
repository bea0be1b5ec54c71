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
        serde_json::to_value(self.view()).unwrap_or(Value::Null)
    }

    /// The message as expressions see it, borrowed: serialises to what [`Message::to_json`]
    /// returns without copying the message first.
    pub fn view(&self) -> MessageView<'_> {
        MessageView(self)
    }
}

/// A borrowed view of a [`Message`] that serialises as expressions see it: `id`, `payload`,
/// `attrs`, `vars` and `error` (with `code`/`desc`, `Code`/`Description`, `type`, `namespace`).
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a>(&'a Message);

impl Serialize for MessageView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let m = self.0;
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("id", &m.id)?;
        map.serialize_entry("payload", &m.payload)?;
        map.serialize_entry("attrs", &m.attrs)?;
        map.serialize_entry("vars", &m.vars)?;
        map.serialize_entry("error", &m.error.as_ref().map(FlowError::to_json))?;
        map.end()
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
