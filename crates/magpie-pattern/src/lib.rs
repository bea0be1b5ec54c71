//! The Magpie event-pattern language: the superset of AWS and Tencent EventBridge patterns.
//!
//! ```
//! use magpie_pattern::Pattern;
//! use serde_json::json;
//!
//! let p = Pattern::parse(&json!({"source": "cvm.cloud.tencent", "status": [{"anything-but": "0"}]})).unwrap();
//! assert!(p.matches(&json!({"source": "cvm.cloud.tencent", "status": "1"})));
//! assert!(!p.matches(&json!({"source": "cvm.cloud.tencent", "status": "0"})));
//! ```
//!
//! Semantics in brief: keys are AND-ed, the alternatives of a leaf are OR-ed, a bare scalar is a
//! one-element list, arrays in the event match when any element matches (fields of one array
//! element are matched together), `$or` may appear at any level. `anything-but` with values
//! matches any present scalar other than those values (null included) but not a missing field;
//! its prefix, suffix, wildcard and ignore-case forms and the string operators match strings
//! only. Numbers compare by value as IEEE doubles; numeric operands beyond ±2^53 (where integers stop
//! being exact) are refused.
//! This crate does no I/O.

mod ast;
mod cost;
mod error;
mod eval;
mod index;
mod matcher;
mod parse;
mod ranges;
mod scan;
mod wildcard;

pub use ast::{AnythingBut, Bound, FieldPattern, Leaf, NumericRange, ObjPattern, Pattern, Scalar};
pub use error::PatternError;
pub use matcher::Matcher;
pub use parse::{NUMERIC_LIMIT, PatternLimits};
pub use scan::{MAX_DEPTH, ScanError};
pub use wildcard::Wildcard;

#[cfg(test)]
mod tests;
