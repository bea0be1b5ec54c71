//! Who may do what: API tokens and their roles, and the server settings that are read from
//! `magpie.yaml` at start-up only (`auth:`, `outbound:`), never applied through the API.
//!
//! A token is 32 random bytes, shown once (`mgp_` + base64url). Only its SHA-256 is kept: the
//! tokens are random and long, so a fast hash is as safe as a slow one and costs nothing per
//! request.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ConfigError;
use crate::names::check_name;
use crate::rate::RateSpec;

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, tokens included.
    Admin,
    /// Configuration, redrive, replay, silences; reads; sending events.
    Operator,
    /// Putting events, source adapters and listen paths only.
    Ingest,
    /// Reading only; secrets are masked as for everyone.
    Viewer,
}

/// What a route asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (health checks, the OpenAPI document, the console's login page).
    Public,
    /// Reading: viewer, operator, admin.
    Read,
    /// Sending events: ingest, operator, admin.
    Ingest,
    /// Changing configuration, redrive, replay, silences: operator, admin.
    Operate,
    /// Tokens and the audit log: admin.
    Admin,
}

impl Role {
    /// Every role, strongest first.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Ingest, Role::Viewer];

    /// The role's name as written in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Ingest => "ingest",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether this role may do what `need` asks.
    pub fn may(self, need: Need) -> bool {
        match need {
            Need::Public => true,
            Need::Read => matches!(self, Role::Admin | Role::Operator | Role::Viewer),
            Need::Ingest => matches!(self, Role::Admin | Role::Operator | Role::Ingest),
            Need::Operate => matches!(self, Role::Admin | Role::Operator),
            Need::Admin => self == Role::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Need {
    /// The roles that may, as README's table writes them.
    pub fn roles(self) -> Vec<Role> {
        Role::ALL.into_iter().filter(|r| r.may(self)).collect()
    }
}

/// The `auth:` section of `magpie.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// The API's tokens (more can be created through `POST /v1/tokens`).
    #[serde(default)]
    pub tokens: Vec<TokenSpec>,
}

/// One token as configured: its name, role and hash (never the token itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Who holds it: recorded in the audit log.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// `sha256:<hex>`, as `magpie token create` prints it.
    pub hash: String,
    /// Requests per window this token may make to the ingest routes (events, source adapters,
    /// listen paths); more are answered 429 with `Retry-After`. Default [`DEFAULT_INGEST_RATE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSpec>,
}

/// The ingest rate of a token that sets none: 100 requests a second.
pub const DEFAULT_INGEST_RATE: &str = "100/s";

impl AuthSpec {
    /// Checks names, hashes and duplicates; paths start at `auth`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let at = format!("auth.tokens[{i}]");
            check_name(&t.name).map_err(|r| ConfigError::new(format!("{at}.name"), r))?;
            if !seen.insert(t.name.as_str()) {
                return Err(ConfigError::new(format!("{at}.name"), format!("a second token named {:?}", t.name)));
            }
            if !is_hash(&t.hash) {
                return Err(ConfigError::new(
                    format!("{at}.hash"),
                    "expected sha256:<64 hex digits>, as `magpie token create` prints it (never the token itself)",
                ));
            }
        }
        Ok(())
    }
}

/// Whether `s` is a token hash as [`hash_token`] writes it.
pub fn is_hash(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.trim().as_bytes());
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A new random token (`mgp_` and 43 base64url characters).
pub fn new_token() -> Result<String, String> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the system's random source failed: {e}"))?;
    Ok(format!("mgp_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

/// The `outbound:` section of `magpie.yaml`: where connections may send.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSpec {
    /// Hosts (`hooks.example.com`, `*.example.com`) and networks (`10.1.0.0/16`,
    /// `127.0.0.1/32`, a bare address) allowed beside the platforms' own hosts.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Allow connections to this server's own address (a loop unless you know why).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_self: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_may_what_the_readme_says() {
        assert_eq!(Need::Read.roles(), [Role::Admin, Role::Operator, Role::Viewer]);
        assert_eq!(Need::Ingest.roles(), [Role::Admin, Role::Operator, Role::Ingest]);
        assert_eq!(Need::Operate.roles(), [Role::Admin, Role::Operator]);
        assert_eq!(Need::Admin.roles(), [Role::Admin]);
        assert_eq!(Need::Public.roles().len(), 4);
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("mgp_") && a.len() == 47);
        assert!(is_hash(&hash_token(&a)));
        assert_eq!(hash_token(&a), hash_token(&format!(" {a}\n")));
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn bad_hashes_and_duplicates_are_refused_with_their_path() {
        let spec = |hash: &str| TokenSpec { name: "am".into(), role: Role::Ingest, hash: hash.into(), rate: None };
        let e = AuthSpec { tokens: vec![spec("mgp_secret")] }.validate().unwrap_err();
        assert_eq!(e.path, "auth.tokens[0].hash");
        let ok = hash_token("x");
        let e = AuthSpec { tokens: vec![spec(&ok), spec(&ok)] }.validate().unwrap_err();
        assert_eq!(e.path, "auth.tokens[1].name");
    }
}
