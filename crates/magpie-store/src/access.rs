//! Who may use the API and what they changed: tokens created through the API (their hashes,
//! never the tokens) and the audit log.

use magpie_core::auth::Role;
use serde::Serialize;
use serde_json::Value;

/// A token created through the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRow {
    /// Who holds it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// `sha256:<hex>` of the token.
    #[serde(skip)]
    pub hash: String,
    /// When it was created, ms since the epoch.
    pub created_at: i64,
    /// The token name that created it.
    pub created_by: String,
}

/// A change to record in the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    /// The token name that made the change (`anonymous` on a server without tokens).
    pub who: String,
    /// What was done: `put`, `delete`, `publish`, `redrive`, `replay`, `silence.create`, …
    pub action: String,
    /// What it was done to: `connection wecom-ops`, `flow eb-wecom`, `token am`, …
    pub target: String,
    /// The object before, secrets masked (none when created).
    pub before: Option<Value>,
    /// The object after, secrets masked (none when deleted).
    pub after: Option<Value>,
}

/// An entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Position in the log.
    pub id: i64,
    /// When, ms since the epoch.
    pub at: i64,
    /// Who (a token name).
    pub who: String,
    /// What was done.
    pub action: String,
    /// To what.
    pub target: String,
    /// Before, secrets masked.
    pub before: Option<Value>,
    /// After, secrets masked.
    pub after: Option<Value>,
}

/// Which audit entries to list, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Only entries older than this id (paging).
    pub before_id: Option<i64>,
    /// Only this token name.
    pub who: Option<String>,
    /// Only targets starting with this (`connection`, `flow eb-wecom`).
    pub target: Option<String>,
    /// At most this many (default 100).
    pub limit: usize,
}
