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

impl Pattern {
    /// The estimated cost of matching this pattern against one event, in indexed comparisons.
    pub fn cost(&self) -> u64 {
        let (size, interpreted) = obj(&self.root);
        let alternatives = alternatives(&self.root);
        let base = size.saturating_mul(alternatives);
        if interpreted { base.saturating_mul(INTERPRETED) } else { base }
    }
}

/// Size of an object pattern, and whether it needs the interpreter.
fn obj(p: &ObjPattern) -> (u64, bool) {
    let mut size = 0u64;
    let mut interpreted = false;
    for (_, f) in &p.fields {
        match f {
            FieldPattern::Nested(o) => {
                let (s, i) = obj(o);
                size = size.saturating_add(s);
                interpreted |= i;
            }
            FieldPattern::Leaf(leaves) => {
                for l in leaves {
                    let (s, i) = leaf(l);
                    size = size.saturating_add(s);
                    interpreted |= i;
                }
            }
        }
    }
    for group in &p.ors {
        for branch in group {
            let (s, i) = obj(branch);
            size = size.saturating_add(s);
            interpreted |= i;
        }
    }
    (size.max(1), interpreted)
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
                AnythingBut::Prefix(_) | AnythingBut::Suffix(_) => 2,
                AnythingBut::Wildcard(ws) => ws.iter().map(|w| 2 + 2 * w.stars() as u64).sum(),
            },
            false,
        ),
        Leaf::Contain(parts) => (2 * parts.len() as u64, false),
        Leaf::Array(inner) => {
            let (s, _) = obj(inner);
            (s, true)
        }
    }
}

/// How many alternatives `$or` expands the pattern into.
fn alternatives(p: &ObjPattern) -> u64 {
    let mut n = 1u64;
    for (_, f) in &p.fields {
        if let FieldPattern::Nested(o) = f {
            n = n.saturating_mul(alternatives(o));
        }
    }
    for group in &p.ors {
        let branches: u64 = group.iter().map(alternatives).fold(0u64, u64::saturating_add);
        n = n.saturating_mul(branches.max(1));
    }
    n
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
        let or = cost(r#"{"$or": [{"a": ["1"]}, {"b": ["2"]}], "c": ["3"]}"#);
        assert_eq!(or, 3 * 2, "size 3, two alternatives");
        let interpreted = cost(r#"{"a": [{"exists": false}]}"#);
        assert_eq!(interpreted, 10);
    }
}
