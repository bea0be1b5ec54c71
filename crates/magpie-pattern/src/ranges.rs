//! A static interval tree: which numeric ranges hold a value, in O(log n + matches).

use crate::ast::NumericRange;
use crate::index::CondId;

type Item = (NumericRange, CondId);

fn lo(r: &NumericRange) -> f64 {
    r.lower.map_or(f64::NEG_INFINITY, |b| b.value)
}

fn hi(r: &NumericRange) -> f64 {
    r.upper.map_or(f64::INFINITY, |b| b.value)
}

/// A point every range contains (bounds' exclusivity aside).
fn anchor(r: &NumericRange) -> f64 {
    match (r.lower, r.upper) {
        (Some(l), Some(u)) => l.value + (u.value - l.value) / 2.0,
        (Some(l), None) => l.value,
        (None, Some(u)) => u.value,
        (None, None) => 0.0,
    }
}

#[derive(Debug)]
struct Node {
    center: f64,
    /// Ranges around `center`, by ascending lower bound.
    by_lo: Vec<Item>,
    /// The same ranges, by descending upper bound.
    by_hi: Vec<Item>,
    left: Option<Box<Node>>,
    right: Option<Box<Node>>,
}

/// Numeric ranges of one path.
#[derive(Debug, Default)]
pub(crate) struct Ranges {
    pending: Vec<Item>,
    root: Option<Box<Node>>,
}

impl Ranges {
    pub(crate) fn add(&mut self, r: NumericRange, cond: CondId) {
        self.pending.push((r, cond));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.root.is_none()
    }

    /// Builds the tree; call once all ranges are added.
    pub(crate) fn finish(&mut self) {
        let mut items = std::mem::take(&mut self.pending);
        if let Some(root) = self.root.take() {
            collect(*root, &mut items);
        }
        self.root = build(items);
    }

    /// Appends the conditions whose range holds `x`.
    pub(crate) fn query(&self, x: f64, out: &mut Vec<CondId>) {
        let mut node = self.root.as_deref();
        while let Some(n) = node {
            if x < n.center {
                for (r, c) in &n.by_lo {
                    if lo(r) > x {
                        break;
                    }
                    if r.contains(x) {
                        out.push(*c);
                    }
                }
                node = n.left.as_deref();
            } else if x > n.center {
                for (r, c) in &n.by_hi {
                    if hi(r) < x {
                        break;
                    }
                    if r.contains(x) {
                        out.push(*c);
                    }
                }
                node = n.right.as_deref();
            } else {
                out.extend(n.by_lo.iter().filter(|(r, _)| r.contains(x)).map(|(_, c)| *c));
                return;
            }
        }
    }
}

fn collect(n: Node, out: &mut Vec<Item>) {
    out.extend(n.by_lo);
    if let Some(l) = n.left {
        collect(*l, out);
    }
    if let Some(r) = n.right {
        collect(*r, out);
    }
}

fn build(items: Vec<Item>) -> Option<Box<Node>> {
    if items.is_empty() {
        return None;
    }
    let mut anchors: Vec<f64> = items.iter().map(|(r, _)| anchor(r)).collect();
    anchors.sort_by(f64::total_cmp);
    let center = anchors[anchors.len() / 2];
    let (mut left, mut right, mut here) = (Vec::new(), Vec::new(), Vec::new());
    for it in items {
        if hi(&it.0) < center {
            left.push(it);
        } else if lo(&it.0) > center {
            right.push(it);
        } else {
            here.push(it);
        }
    }
    let mut by_lo = here.clone();
    by_lo.sort_by(|a, b| lo(&a.0).total_cmp(&lo(&b.0)));
    let mut by_hi = here;
    by_hi.sort_by(|a, b| hi(&b.0).total_cmp(&hi(&a.0)));
    Some(Box::new(Node { center, by_lo, by_hi, left: build(left), right: build(right) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Bound;

    fn range(lo: Option<(f64, bool)>, hi: Option<(f64, bool)>) -> NumericRange {
        NumericRange {
            lower: lo.map(|(value, inclusive)| Bound { value, inclusive }),
            upper: hi.map(|(value, inclusive)| Bound { value, inclusive }),
        }
    }

    #[test]
    fn agrees_with_a_linear_scan() {
        let mut all = Vec::new();
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) % 100) as f64
        };
        for c in 0..300u32 {
            let a = next();
            let b = a + next() / 4.0;
            let r = match c % 5 {
                0 => range(Some((a, true)), Some((b, false))),
                1 => range(Some((a, false)), Some((b, true))),
                2 => range(None, Some((b, c % 2 == 0))),
                3 => range(Some((a, true)), None),
                _ => range(Some((a, true)), Some((a, true))),
            };
            all.push((r, c));
        }
        let mut t = Ranges::default();
        for (r, c) in &all {
            t.add(*r, *c);
        }
        t.finish();
        for i in -20..240 {
            let x = i as f64 / 2.0;
            let mut got = Vec::new();
            t.query(x, &mut got);
            got.sort_unstable();
            let want: Vec<u32> = all.iter().filter(|(r, _)| r.contains(x)).map(|(_, c)| *c).collect();
            assert_eq!(got, want, "at {x}");
        }
    }
}
