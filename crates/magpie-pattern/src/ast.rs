//! The parsed form of a pattern.

use ipnet::IpNet;

use crate::wildcard::Wildcard;

/// A validated event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    pub(crate) root: ObjPattern,
}

/// Conditions on the fields of one object: every field must match, and every `$or` must have a
/// matching branch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjPattern {
    /// Field name → what its value must be.
    pub fields: Vec<(String, FieldPattern)>,
    /// `$or` groups at this level.
    pub ors: Vec<Vec<ObjPattern>>,
}

/// What one field of a pattern asks of the event's field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldPattern {
    /// A nested object pattern.
    Nested(ObjPattern),
    /// A list of alternatives (OR-ed).
    Leaf(Vec<Leaf>),
}

/// A JSON scalar in a pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, compared by value.
    Number(f64),
    /// A string.
    String(String),
}

/// One alternative of a leaf.
#[derive(Debug, Clone, PartialEq)]
pub enum Leaf {
    /// An exact value.
    Exact(Scalar),
    /// `prefix`, optionally ignoring case.
    Prefix {
        /// The prefix.
        value: String,
        /// Compare ignoring case.
        ignore_case: bool,
    },
    /// `suffix`, optionally ignoring case.
    Suffix {
        /// The suffix.
        value: String,
        /// Compare ignoring case.
        ignore_case: bool,
    },
    /// `equals-ignore-case`.
    EqualsIgnoreCase(String),
    /// `wildcard`.
    Wildcard(Wildcard),
    /// `anything-but`.
    AnythingBut(AnythingBut),
    /// `numeric`.
    Numeric(NumericRange),
    /// `cidr`.
    Cidr(IpNet),
    /// `exists`.
    Exists(bool),
    /// Tencent's `contain` (all listed substrings must occur).
    Contain(Vec<String>),
    /// Tencent's `array`: some element of an array field matches the sub-pattern.
    Array(ObjPattern),
}

/// The forms of `anything-but`. Every form matches a present scalar that is none of what it
/// lists, `null` included; the string forms also match numbers and booleans (as AWS does).
#[derive(Debug, Clone, PartialEq)]
pub enum AnythingBut {
    /// None of these values.
    Values(Vec<Scalar>),
    /// A value that is not a string starting with any of these.
    Prefix(Vec<String>),
    /// A value that is not a string ending with any of these.
    Suffix(Vec<String>),
    /// A value that is not a string matching any of these wildcards.
    Wildcard(Vec<Wildcard>),
    /// A value that is not a string equal, ignoring case, to any of these.
    IgnoreCase(Vec<String>),
}

/// A numeric range; a missing bound is open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumericRange {
    /// Lower bound.
    pub lower: Option<Bound>,
    /// Upper bound.
    pub upper: Option<Bound>,
}

/// One bound of a numeric range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    /// The value.
    pub value: f64,
    /// Whether the value itself is in the range.
    pub inclusive: bool,
}

impl NumericRange {
    /// Whether `x` is in the range.
    pub fn contains(&self, x: f64) -> bool {
        let lower_ok = match self.lower {
            None => true,
            Some(b) => x > b.value || (b.inclusive && x == b.value),
        };
        let upper_ok = match self.upper {
            None => true,
            Some(b) => x < b.value || (b.inclusive && x == b.value),
        };
        lower_ok && upper_ok
    }
}
