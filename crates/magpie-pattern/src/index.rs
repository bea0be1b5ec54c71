//! Per-field value index: which conditions a value satisfies, at a cost that follows the value
//! (hash lookups by exact value, lower-cased value, prefix and suffix lengths), not the number of
//! conditions. Operators that cannot be hashed (numeric, cidr, wildcards without a literal end,
//! contain, anything-but) are checked one by one.

use rustc_hash::FxHashMap as HashMap;

use crate::ast::{AnythingBut, Leaf, Scalar};
use crate::wildcard::Wildcard;

/// A condition id.
pub(crate) type CondId = u32;

/// A scalar as the matcher sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
}

/// Strings keyed by their byte length, for prefix and suffix lookups.
#[derive(Debug, Default)]
struct ByLength {
    lengths: Vec<usize>,
    maps: HashMap<usize, HashMap<Box<str>, Vec<CondId>>>,
}

impl ByLength {
    fn insert(&mut self, key: &str, cond: CondId) {
        let m = self.maps.entry(key.len()).or_default();
        push_unique(m.entry(key.into()).or_default(), cond);
        if !self.lengths.contains(&key.len()) {
            self.lengths.push(key.len());
            self.lengths.sort_unstable();
        }
    }

    fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    fn prefixes(&self, s: &str, out: &mut Vec<CondId>) {
        for &len in &self.lengths {
            if len > s.len() {
                break;
            }
            if let Some(key) = s.get(..len)
                && let Some(c) = self.maps.get(&len).and_then(|m| m.get(key))
            {
                out.extend_from_slice(c);
            }
        }
    }

    fn suffixes(&self, s: &str, out: &mut Vec<CondId>) {
        for &len in &self.lengths {
            if len > s.len() {
                break;
            }
            if let Some(key) = s.get(s.len() - len..)
                && let Some(c) = self.maps.get(&len).and_then(|m| m.get(key))
            {
                out.extend_from_slice(c);
            }
        }
    }
}

fn push_unique(v: &mut Vec<CondId>, c: CondId) {
    if !v.contains(&c) {
        v.push(c);
    }
}

/// An IP family (IPv6?) and a prefix length.
type CidrFamily = (bool, u8);

/// Everything the conditions of one path ask of its values.
#[derive(Debug, Default)]
pub(crate) struct FieldIndex {
    exact_str: HashMap<Box<str>, Vec<CondId>>,
    exact_num: HashMap<u64, Vec<CondId>>,
    exact_null: Vec<CondId>,
    exact_true: Vec<CondId>,
    exact_false: Vec<CondId>,
    exists: Vec<CondId>,
    prefix: ByLength,
    suffix: ByLength,
    prefix_ci: ByLength,
    suffix_ci: ByLength,
    equals_ci: HashMap<Box<str>, Vec<CondId>>,
    /// Wildcards anchored by a literal start or end: positions in `wildcards` by that literal.
    wildcard_prefix: ByLength,
    wildcard_suffix: ByLength,
    wildcards: Vec<(Wildcard, CondId)>,
    /// Numeric ranges.
    numeric: crate::ranges::Ranges,
    /// CIDR blocks by (IPv6?, prefix length), then network.
    cidr: Vec<(CidrFamily, HashMap<ipnet::IpNet, Vec<CondId>>)>,
    /// Checked one by one.
    others: Vec<(Leaf, CondId)>,
}

fn num_key(x: f64) -> u64 {
    if x == 0.0 { 0f64.to_bits() } else { x.to_bits() }
}

impl FieldIndex {
    /// Adds one alternative of condition `cond`.
    pub(crate) fn add(&mut self, leaf: &Leaf, cond: CondId) {
        match leaf {
            Leaf::Exact(Scalar::String(s)) => push_unique(self.exact_str.entry(s.as_str().into()).or_default(), cond),
            Leaf::Exact(Scalar::Number(n)) => push_unique(self.exact_num.entry(num_key(*n)).or_default(), cond),
            Leaf::Exact(Scalar::Null) => push_unique(&mut self.exact_null, cond),
            Leaf::Exact(Scalar::Bool(true)) => push_unique(&mut self.exact_true, cond),
            Leaf::Exact(Scalar::Bool(false)) => push_unique(&mut self.exact_false, cond),
            Leaf::Exists(true) => push_unique(&mut self.exists, cond),
            Leaf::Prefix { value, ignore_case: false } => self.prefix.insert(value, cond),
            Leaf::Suffix { value, ignore_case: false } => self.suffix.insert(value, cond),
            Leaf::Prefix { value, ignore_case: true } => self.prefix_ci.insert(&value.to_lowercase(), cond),
            Leaf::Suffix { value, ignore_case: true } => self.suffix_ci.insert(&value.to_lowercase(), cond),
            Leaf::EqualsIgnoreCase(s) => push_unique(self.equals_ci.entry(s.to_lowercase().into()).or_default(), cond),
            Leaf::Wildcard(w) if w.stars() == 0 => {
                push_unique(self.exact_str.entry(w.literal().into()).or_default(), cond)
            }
            Leaf::Wildcard(w) => {
                // Index the wildcard by its literal start (or end); check it in full on a hit.
                let at = self.wildcards.len() as u32;
                match (w.literal_prefix(), w.literal_suffix()) {
                    (Some(p), _) => self.wildcard_prefix.insert(p, at),
                    (None, Some(s)) => self.wildcard_suffix.insert(s, at),
                    (None, None) => return self.others.push((leaf.clone(), cond)),
                }
                self.wildcards.push((w.clone(), cond));
            }
            Leaf::Numeric(r) => self.numeric.add(*r, cond),
            Leaf::Cidr(net) => {
                let len = (net.addr().is_ipv6(), net.prefix_len());
                let at = match self.cidr.iter().position(|(l, _)| *l == len) {
                    Some(i) => i,
                    None => {
                        self.cidr.push((len, HashMap::default()));
                        self.cidr.len() - 1
                    }
                };
                push_unique(self.cidr[at].1.entry(*net).or_default(), cond);
            }
            // Exists(false) and Array never reach the index (their rules are interpreted).
            other => self.others.push((other.clone(), cond)),
        }
    }

    /// Finishes the structures that are built once all conditions are added.
    pub(crate) fn finish(&mut self) {
        self.numeric.finish();
    }

    fn needs_lowercase(&self) -> bool {
        !(self.prefix_ci.is_empty() && self.suffix_ci.is_empty() && self.equals_ci.is_empty())
    }

    /// Appends the conditions `v` satisfies (possibly with repeats).
    /// `lower` is a reusable buffer for the lower-cased value.
    pub(crate) fn lookup(&self, v: Val<'_>, out: &mut Vec<CondId>, lower: &mut String) {
        out.extend_from_slice(&self.exists);
        match v {
            Val::Null => out.extend_from_slice(&self.exact_null),
            Val::Bool(true) => out.extend_from_slice(&self.exact_true),
            Val::Bool(false) => out.extend_from_slice(&self.exact_false),
            Val::Num(x) => {
                if let Some(c) = self.exact_num.get(&num_key(x)) {
                    out.extend_from_slice(c);
                }
                if !self.numeric.is_empty() {
                    self.numeric.query(x, out);
                }
            }
            Val::Str(s) => {
                if let Some(c) = self.exact_str.get(s) {
                    out.extend_from_slice(c);
                }
                if !self.cidr.is_empty()
                    && let Ok(ip) = s.parse::<std::net::IpAddr>()
                {
                    let v6 = ip.is_ipv6();
                    for ((family_v6, len), nets) in &self.cidr {
                        if *family_v6 != v6 {
                            continue;
                        }
                        if let Ok(net) = ipnet::IpNet::new(ip, *len)
                            && let Some(c) = nets.get(&net.trunc())
                        {
                            out.extend_from_slice(c);
                        }
                    }
                }
                self.prefix.prefixes(s, out);
                self.suffix.suffixes(s, out);
                if self.needs_lowercase() {
                    lower.clear();
                    if s.is_ascii() {
                        lower.push_str(s);
                        lower.make_ascii_lowercase();
                    } else {
                        lower.push_str(&s.to_lowercase());
                    }
                    if let Some(c) = self.equals_ci.get(lower.as_str()) {
                        out.extend_from_slice(c);
                    }
                    self.prefix_ci.prefixes(lower, out);
                    self.suffix_ci.suffixes(lower, out);
                }
                if !self.wildcards.is_empty() {
                    let start = out.len();
                    self.wildcard_prefix.prefixes(s, out);
                    self.wildcard_suffix.suffixes(s, out);
                    // The lookups above gave wildcard positions; keep the conditions of those
                    // that match in full.
                    let mut kept = start;
                    for i in start..out.len() {
                        let (w, c) = &self.wildcards[out[i] as usize];
                        if w.matches(s) {
                            out[kept] = *c;
                            kept += 1;
                        }
                    }
                    out.truncate(kept);
                }
            }
        }
        for (leaf, c) in &self.others {
            if leaf_accepts(leaf, v) {
                out.push(*c);
            }
        }
    }
}

/// The operators checked one by one (same semantics as the interpreter).
fn leaf_accepts(leaf: &Leaf, v: Val<'_>) -> bool {
    match (leaf, v) {
        (Leaf::Wildcard(w), Val::Str(s)) => w.matches(s),
        (Leaf::Contain(parts), Val::Str(s)) => parts.iter().all(|p| s.contains(p.as_str())),
        (Leaf::AnythingBut(ab), v) => anything_but(ab, v),
        _ => false,
    }
}

fn anything_but(ab: &AnythingBut, v: Val<'_>) -> bool {
    match (ab, v) {
        (AnythingBut::Values(list), v) => !list.iter().any(|s| match (s, v) {
            (Scalar::Null, Val::Null) => true,
            (Scalar::Bool(a), Val::Bool(b)) => *a == b,
            (Scalar::Number(a), Val::Num(b)) => *a == b,
            (Scalar::String(a), Val::Str(b)) => a == b,
            _ => false,
        }),
        (AnythingBut::Prefix(ps), Val::Str(s)) => !ps.iter().any(|p| s.starts_with(p.as_str())),
        (AnythingBut::Suffix(ps), Val::Str(s)) => !ps.iter().any(|p| s.ends_with(p.as_str())),
        (AnythingBut::Wildcard(ws), Val::Str(s)) => !ws.iter().any(|w| w.matches(s)),
        (AnythingBut::IgnoreCase(list), Val::Str(s)) => {
            let s = s.to_lowercase();
            !list.iter().any(|x| x.to_lowercase() == s)
        }
        // The string forms let every other scalar through, as AWS does.
        (_, Val::Null | Val::Bool(_) | Val::Num(_)) => true,
    }
}
