//! Pattern errors.

/// A pattern was refused: `path` is the JSON path of the fault (`data.cpu[0].numeric`), empty
/// for the pattern as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct PatternError {
    /// JSON path of the fault.
    pub path: String,
    /// Why it is refused.
    pub reason: String,
}

impl PatternError {
    /// Builds an error.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { path: path.into(), reason: reason.into() }
    }
}
