//! Many rules at once.

use serde_json::Value;

use crate::ast::Pattern;

/// The rules of one bus, matched together.
///
/// This version evaluates each rule in turn with the reference interpreter; its API is the one
/// the compiled matcher keeps.
#[derive(Debug, Clone)]
pub struct Matcher<Id> {
    rules: Vec<(Id, Pattern)>,
}

impl<Id: Clone> Matcher<Id> {
    /// Builds a matcher over `(rule id, pattern)` pairs.
    pub fn build(rules: impl IntoIterator<Item = (Id, Pattern)>) -> Self {
        Self { rules: rules.into_iter().collect() }
    }

    /// Appends to `out` the id of every rule `event` matches, in the order the rules were given.
    pub fn matches(&self, event: &Value, out: &mut Vec<Id>) {
        for (id, p) in &self.rules {
            if p.matches(event) {
                out.push(id.clone());
            }
        }
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}
