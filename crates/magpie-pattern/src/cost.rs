//! What a pattern costs to match: a static estimate, so that a configuration can be refused
//! before it makes routing slow.
//!
//! The unit is one indexed comparison (an exact value, a prefix, a numeric range…), which the
//! compiled matcher answers from its indexes whatever the number of rules. Conditions it must
//! test one by one on every event that has the field cost more: a wildcard by its pieces,
//! `anything-but` and `contain` by their operands. A pattern the matcher hands to the
//! interpreter (`exists: false`, `array`) is tested whole on every event of its bus: ten times
//! its size. `$or` alternatives multiply, as the matcher expands them.

use crate::ast::{AnythingBut, FieldPattern, Leaf, ObjPattern, Pattern};

/// How much an interpreted pattern costs, per unit of its size.
const INTERPRETED: u64 = 10;
/// The matcher expands a pattern into at most this many alternatives; past it, the pattern is
/// interpreted (as `crate::matcher` does).
const MAX_ALTERNATIVES: u64 = 256;

impl Pattern {
    /// The estimated cost of matching this pattern against one event, in indexed comparisons.
    pub fn cost(&self) -> u64 {
        let c = obj(&self.root);
        if c.interpreted || c.alternatives > MAX_ALTERNATIVES { c.size.saturating_mul(INTERPRETED) } else { c.expanded }
    }
}

/// What a part of a pattern costs.
#[derive(Clone, Copy)]
struct Cost {
    /// Its operands, counted once.
    size: u64,
    /// How many alternatives (`$or` expanded) it has.
    alternatives: u64,
    /// The operands of all alternatives together: what the expanded form costs.
    expanded: u64,
    /// Whether the matcher hands it to the interpreter.
    interpreted: bool,
}

impl Cost {
    fn leaf(size: u64, interpreted: bool) -> Cost {
        Cost { size, alternatives: 1, expanded: size, interpreted }
    }

    /// Both `self` and `other` (every alternative of one with every alternative of the other).
    fn and(self, other: Cost) -> Cost {
        Cost {
            size: self.size.saturating_add(other.size),
            alternatives: self.alternatives.saturating_mul(other.alternatives),
            expanded: self
                .expanded
                .saturating_mul(other.alternatives)
                .saturating_add(other.expanded.saturating_mul(self.alternatives)),
            interpreted: self.interpreted || other.interpreted,
        }
    }

    /// `self` or `other`.
    fn or(self, other: Cost) -> Cost {
        Cost {
            size: self.size.saturating_add(other.size),
            alternatives: self.alternatives.saturating_add(other.alternatives),
            expanded: self.expanded.saturating_add(other.expanded),
            interpreted: self.interpreted || other.interpreted,
        }
    }
}

fn obj(p: &ObjPattern) -> Cost {
    let mut total = Cost::leaf(0, false);
    for (_, f) in &p.fields {
        let part = match f {
            FieldPattern::Nested(o) => obj(o),
            // A field's alternatives are one indexed condition: their operands add up.
            FieldPattern::Leaf(leaves) => leaves
                .iter()
                .map(leaf)
                .fold(Cost::leaf(0, false), |a, (s, i)| Cost::leaf(a.size.saturating_add(s), a.interpreted || i)),
        };
        total = total.and(part);
    }
    for group in &p.ors {
        let any = group.iter().map(obj).reduce(Cost::or).unwrap_or(Cost::leaf(0, false));
        total = total.and(any);
    }
    if total.size == 0 {
        total = Cost::leaf(1, total.interpreted);
    }
    total
}

fn leaf(l: &Leaf) -> (u64, bool) {
    match l {
        Leaf::Exact(_)
        | Leaf::Prefix { .. }
        | Leaf::Suffix { .. }
        | Leaf::EqualsIgnoreCase(_)
        | Leaf::Numeric(_)
        | Leaf::Cidr(_)
        | Leaf::Exists(true) => (1, false),
        Leaf::Exists(false) => (1, true),
        Leaf::Wildcard(w) => (2 + 2 * w.stars() as u64, false),
        Leaf::AnythingBut(a) => (
            match a {
                AnythingBut::Values(v) => 2 * v.len() as u64,
                AnythingBut::IgnoreCase(v) => 2 * v.len() as u64,
                AnythingBut::Prefix(v) | AnythingBut::Suffix(v) => 2 * v.len() as u64,
                AnythingBut::Wildcard(ws) => ws.iter().map(|w| 2 + 2 * w.stars() as u64).sum(),
            },
            false,
        ),
        Leaf::Contain(parts) => (2 * parts.len() as u64, false),
        Leaf::Array(inner) => (obj(inner).size, true),
    }
}

#[cfg(test)]
mod tests {
    use crate::Pattern;

    fn cost(p: &str) -> u64 {
        Pattern::parse_str(p).unwrap().cost()
    }

    #[test]
    fn costs_grow_with_size_wildcards_alternatives_and_interpretation() {
        let simple = cost(r#"{"source": ["cvm.cloud.tencent"]}"#);
        assert_eq!(simple, 1);
        assert_eq!(cost(r#"{"source": ["a", "b", "c"], "type": [{"prefix": "cvm:"}]}"#), 4);
        assert!(cost(r#"{"subject": [{"wildcard": "*a*b*c*"}]}"#) > 4 * simple);
        // Two alternatives, each of two operands (its branch and the shared `c`).
        assert_eq!(cost(r#"{"$or": [{"a": ["1"]}, {"b": ["2"]}], "c": ["3"]}"#), 4);
        assert_eq!(cost(r#"{"a": [{"exists": false}]}"#), 10);
    }

    #[test]
    fn a_flat_or_costs_what_as_many_rules_would() {
        let branches: Vec<String> = (0..500).map(|i| format!(r#"{{"k{i}": ["v"]}}"#)).collect();
        let flat = format!(r#"{{"$or": [{}]}}"#, branches.join(","));
        // Past 256 alternatives the matcher interprets it: ten per operand.
        assert_eq!(cost(&flat), 5_000);
        let few = format!(r#"{{"$or": [{}]}}"#, branches[..100].join(","));
        assert_eq!(cost(&few), 100, "as 100 one-operand rules");
        // (a|b) and (c|d): four alternatives of two operands.
        assert_eq!(cost(r#"{"$or": [{"a": ["1"]}, {"b": ["2"]}], "x": {"$or": [{"c": ["3"]}, {"d": ["4"]}]}}"#), 8);
    }
}
